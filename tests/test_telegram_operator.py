"""The operator's Telegram commands (/strategies, /strategy, /sell + /confirm, /daily,
/balance, /reload) on a live session against the fake KIS, answered through the fake Bot API
on 127.0.0.1 by :class:`notifier.Notifier` (python-telegram-bot's Application). Waits are for
conditions (a number of answers), never for a time."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

import notifier.commands
from framework.events import Event
from notifier import HELP_TEXT, Notifier, alert_of
from tests.fakes.telegram_server import USER_ID, FakeTelegram
from tests.operate import Live, live_session

CHAT = 424242
OTHER_CHAT = 999_001
OTHER_USER = 555_000_333
WAIT_S = 120.0


def _ask(tg: FakeTelegram, command: str, user_id: int = USER_ID) -> str:
    before = len(tg.texts(CHAT))
    tg.push_command(command, chat_id=CHAT, user_id=user_id)
    assert tg.wait_for(lambda: len(tg.texts(CHAT)) > before, WAIT_S), f"no answer to {command}"
    return tg.texts(CHAT)[before]


def _commands(tg: FakeTelegram, live: Live, **kwargs: object) -> Notifier:
    kwargs.setdefault("allowed_user_ids", [USER_ID])
    bot = Notifier(tg.token, CHAT, base_url=tg.base_url, controls=live.controls,
                   retry_backoff_s=0.01, **kwargs)  # type: ignore[arg-type]
    bot.start()
    assert tg.wait_for(lambda: tg.call_count("deleteWebhook") >= 1, WAIT_S)
    return bot


def _sells(live: Live) -> list[object]:
    return [o for o in live.orders_of("day_trader") if o.side == "sell"]


def test_operator_commands_switch_sell_report_and_reload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with live_session(tmp_path, monkeypatch) as live, FakeTelegram() as tg:
        live.run_day()
        bot = _commands(tg, live)
        try:
            for name in ("/strategies", "/strategy", "/sell", "/daily", "/balance", "/reload"):
                assert name in HELP_TEXT

            answer = _ask(tg, "/strategies")
            assert answer.startswith("🧩 전략")
            assert "• day_trader: 켜짐" in answer

            assert _ask(tg, "/strategy day_trader off") == "⏹️ day_trader 전략을 껐습니다."
            assert live.session.trader.slots["day_trader"].enabled is False
            assert "스위치 off" in _ask(tg, "/strategies")
            assert _ask(tg, "/strategy nope on").startswith("⚠️ unknown strategy 'nope'")
            assert _ask(tg, "/strategy day_trader") == "사용법: /strategy 이름 on|off"

            held = {p.stock_code: p.qty for p in live.session.trader.open_positions()}
            code = sorted(held)[0]
            ask = _ask(tg, f"/sell {code}")
            assert ask.startswith("❓ 시장가 매도 확인: ")
            assert f"({code})" in ask.splitlines()[0]
            assert f"[day_trader] {held[code]}주" in ask
            sells_before = [o for o in live.orders_of("day_trader") if o.side == "sell"]
            done = _ask(tg, "/confirm")
            assert done == f"📤 sell of {code} sent for day_trader"
            sells = [o for o in live.orders_of("day_trader") if o.side == "sell"]
            assert len(sells) == len(sells_before) + 1
            assert (sells[-1].stock_code, sells[-1].qty) == (code, held[code])
            assert _ask(tg, "/confirm").startswith("⚠️ 확인할 매도가 없습니다")
            assert _ask(tg, "/sell 999999").startswith("⚠️ 999999: 보유하고 있지 않습니다")

            daily = _ask(tg, "/daily")
            assert daily.startswith("📊 일일 보고 2025-06-16")
            cash = live.session.trader.cash_krw
            assert f"현금: {cash:,}원" in _ask(tg, "/balance")

            old = live.session.trader.slots["day_trader"].strategy
            live.config().write_text("risk_management:\n  stop_los_pct: 0.1\n", encoding="utf-8")
            refused = _ask(tg, "/reload")
            assert refused.startswith("⚠️ 설정 다시 읽기 거부 (이전 설정으로 계속 거래)")
            assert "did you mean 'stop_loss_pct'" in refused
            assert live.session.trader.slots["day_trader"].strategy is old

            live.config().write_text(
                (Path(__file__).parent / "e2e" / "strategies" / "day_trader" / "config.yaml")
                .read_text(encoding="utf-8").replace("max_daily_trades: 3", "max_daily_trades: 4"),
                encoding="utf-8",
            )
            assert _ask(tg, "/reload") == "🔄 설정을 다시 읽었습니다: day_trader config changed"
            assert live.session.trader.slots["day_trader"].strategy.risk.max_daily_trades == 4
        finally:
            bot.stop(timeout_s=WAIT_S)


def test_a_strategy_switched_off_from_telegram_sends_no_new_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the same day with the strategy on sends orders (the test above holds its positions)
    with live_session(tmp_path, monkeypatch) as live, FakeTelegram() as tg:
        bot = _commands(tg, live)
        try:
            assert _ask(tg, "/strategy day_trader off") == "⏹️ day_trader 전략을 껐습니다."
            live.run_day()
            assert live.orders_of("day_trader") == []
            assert "• day_trader: 꺼짐, 스위치 off" in _ask(tg, "/strategies")
            switched = live.session.repository.get_events(live.session.run_id,
                                                          kind="strategy_disabled")
            assert any("telegram" in e["message"] for e in switched)
        finally:
            bot.stop(timeout_s=WAIT_S)


def test_sell_of_one_strategy_needs_a_confirm_from_the_same_user_in_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with live_session(tmp_path, monkeypatch) as live, FakeTelegram() as tg:
        live.run_day()
        bot = _commands(tg, live, allowed_user_ids=[USER_ID, OTHER_USER])
        try:
            held = {p.stock_code: p.qty for p in live.session.trader.open_positions()}
            code = sorted(held)[0]
            before = len(_sells(live))
            assert _ask(tg, f"/sell {code} nope").startswith(f"⚠️ {code} (nope): 보유하고")
            ask = _ask(tg, f"/sell {code} day_trader")
            assert f"[day_trader] {held[code]}주" in ask

            tg.push_command("/confirm", chat_id=OTHER_CHAT)  # another chat: ignored
            assert _ask(tg, "/confirm", user_id=OTHER_USER) == (
                "⚠️ 매도를 요청한 사용자만 /confirm 할 수 있습니다."
            )
            assert tg.texts(OTHER_CHAT) == []
            assert len(_sells(live)) == before

            monkeypatch.setattr(notifier.commands, "CONFIRM_S", -1.0)  # the deadline has passed
            _ask(tg, f"/sell {code} day_trader")
            assert _ask(tg, "/confirm").startswith("⚠️ 확인할 매도가 없습니다")
            assert len(_sells(live)) == before

            monkeypatch.setattr(notifier.commands, "CONFIRM_S", 60.0)
            _ask(tg, f"/sell {code} day_trader")
            assert _ask(tg, "/confirm") == f"📤 sell of {code} sent for day_trader"
            sells = _sells(live)
            assert len(sells) == before + 1
            assert (sells[-1].stock_code, sells[-1].qty) == (code, held[code])
        finally:
            bot.stop(timeout_s=WAIT_S)


def _dead_url() -> str:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_trading_goes_on_while_the_bot_api_is_down_and_messages_are_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with live_session(tmp_path, monkeypatch) as live:
        bot = Notifier("123:AAdown", CHAT, base_url=_dead_url(), controls=live.controls,
                       allowed_user_ids=[USER_ID], retry_backoff_s=0.01, send_timeout_s=2.0)
        alerted: list[Event] = []

        class Counting:
            def on_event(self, event: Event) -> None:
                if alert_of(event) is not None:
                    alerted.append(event)
                bot.on_event(event)

            def stop(self, timeout_s: float = 5.0) -> None:
                bot.stop(timeout_s)

        bot.start()
        live.session.alerts = Counting()
        live.run_day()
        assert live.orders_of("day_trader"), "trading stopped while Telegram was down"
        assert live.session.trader.open_positions()
        bot.stop(timeout_s=WAIT_S)
        assert alerted
        assert bot.sent_count == 0
        assert bot.failed_count + bot.dropped_count == len(alerted)
        assert bot.failed_count >= 1
