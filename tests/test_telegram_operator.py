"""The operator's Telegram commands (/strategies, /strategy, /sell + /confirm, /daily,
/balance, /reload) on a live session against the fake KIS, answered through the fake Bot API
on 127.0.0.1. Waits are for conditions (a number of answers), never for a time."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.telegram_commands import OperatorCommands
from core.telegram_integration import HELP_TEXT, Notifier
from tests.fakes.telegram_server import USER_ID, FakeTelegram
from tests.operate import live_session

CHAT = 424242
WAIT_S = 120.0


def _ask(tg: FakeTelegram, command: str) -> str:
    before = len(tg.texts(CHAT))
    tg.push_command(command, chat_id=CHAT)
    assert tg.wait_for(lambda: len(tg.texts(CHAT)) > before, WAIT_S), f"no answer to {command}"
    return tg.texts(CHAT)[before]


def test_operator_commands_switch_sell_report_and_reload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with live_session(tmp_path, monkeypatch) as live, FakeTelegram() as tg:
        live.run_day()
        notifier = Notifier(
            tg.token, CHAT, base_url=tg.base_url, controller=live.session,
            operator=OperatorCommands(live.controls), allowed_user_ids=[USER_ID],
            retry_backoff_s=0.01,
        )
        notifier.start()
        try:
            assert tg.wait_for(lambda: tg.call_count("deleteWebhook") >= 1, WAIT_S)
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
            assert ask.startswith(f"❓ 시장가 매도 확인: {code}")
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
            notifier.stop(timeout_s=WAIT_S)
