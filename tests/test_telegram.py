"""Telegram notifier: Korean alert texts, commands, and delivery guarantees over real HTTP.

Everything talks to :class:`tests.fakes.telegram_server.FakeTelegram` on 127.0.0.1. Waits are
event-driven (``FakeTelegram.wait_for`` on a condition variable, ``threading.Event``); no test
sleeps to make a timing assertion.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from config.settings import load_settings
from framework.errors import ConfigError
from framework.events import (
    CircuitBreakerChanged,
    DailyReport,
    Event,
    JobFailed,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
    ProtectiveExit,
    Reconciled,
    RiskRejected,
    RiskStateChanged,
    SessionStarted,
    SessionStopped,
    StrategyError,
    StrategyIsolated,
)
from framework.types import OrderSide, OrderType
from notifier import (
    ALERT_KINDS,
    EVENT_ALERT_KINDS,
    HELP_TEXT,
    Notifier,
    format_event,
    parse_user_ids,
)
from notifier.formatting import (
    format_fill,
    format_krw,
    format_order_sent,
    format_pct,
    format_reconcile,
    format_signed_krw,
)
from tests.fakes.telegram_server import BOT_USERNAME, USER_ID, FakeTelegram
from utils.clock import KST

CHAT = 424242
OTHER_CHAT = 999_001
NAMES = {"005930": "삼성전자", "000660": "SK하이닉스"}
WAIT_S = 15.0

FILL_BUY = {
    "strategy": "ma_cross", "code": "005930", "name": "삼성전자", "side": "buy", "qty": 10,
    "price": 72000, "amount_krw": 720000, "commission_krw": 108, "tax_krw": 0,
    "reasons": ["골든크로스", "거래량 급증"],
}
FILL_SELL = {
    "strategy": "ma_cross", "code": "005930", "side": "sell", "qty": 10, "price": 73234,
    "amount_krw": 732340, "commission_krw": 110, "tax_krw": 1318, "reasons": [],
    "realized_pnl_krw": 12345,
}

# (engine kind, message, data, alert kind, first line of the text)
EVENTS: list[tuple[str, str, dict[str, Any], str, str]] = [
    ("session_started", "session started",
     {"mode": "live", "env": "virtual", "strategies": ["ma_cross", "rsi"]},
     "start", "🚀 자동매매 시작 (모의투자, live)"),
    ("session_stopped", "session stopped", {"reason": "장 마감"},
     "stop", "🛑 자동매매 종료: 장 마감"),
    ("order_sent", "buy sent",
     {"strategy": "ma_cross", "code": "005930", "side": "buy", "qty": 10, "price": 72000,
      "order_type": "limit", "reasons": ["골든크로스"], "attempt": 0},
     "order_sent", "📤 매수 주문: 삼성전자(005930) 10주 @ 72,000원 (지정가)"),
    ("order_filled", "filled", FILL_BUY, "fill", "📈 매수 체결: 삼성전자(005930) 10주 @ 72,000원"),
    ("order_cancelled", "cancelled",
     {"strategy": "ma_cross", "code": "000660", "side": "sell", "qty": 7, "filled_qty": 3,
      "reason": "시간 초과"},
     "cancel", "❎ 주문 취소: SK하이닉스(000660) 매도 7주 (체결 3주)"),
    ("order_rejected", "rejected",
     {"strategy": "ma_cross", "code": "005930", "side": "buy", "qty": 10, "price": None,
      "reason": "주문가능금액 부족"},
     "error", "⚠️ 주문 거부: 삼성전자(005930) 매수 10주 @ 시장가"),
    ("strategy_error", "ma_cross.on_bar: ZeroDivisionError: division by zero",
     {"strategy": "ma_cross", "hook": "on_bar"},
     "error", "⚠️ 오류: ma_cross.on_bar: ZeroDivisionError: division by zero"),
    ("strategy_isolated", "ma_cross isolated after 3 errors in a row", {"strategy": "ma_cross"},
     "error", "⚠️ 오류: ma_cross isolated after 3 errors in a row"),
    ("circuit_breaker", "KIS circuit breaker closed -> open",
     {"old_state": "closed", "new_state": "open"},
     "circuit_breaker", "🔌 서킷 브레이커: closed → open (API 호출 일시 중단)"),
    ("reconcile", "reconciled",
     {"ok": True, "differences": [
         {"kind": "matched", "code": "005930", "db_qty": 10, "account_qty": 10},
         {"kind": "adopted", "code": "000660", "account_qty": 5},
     ]},
     "reconcile", "🔄 재시작 대사: 차이 1건"),
    ("daily_report", "daily report",
     {"date": "2025-06-16", "equity_krw": 10_123_456, "cash_krw": 5_000_000,
      "pnl_krw": 123_456, "pnl_pct": 1.234, "trades": 3, "fills": 5, "positions": []},
     "daily_report", "📊 일일 리포트 2025-06-16"),
    ("risk_exit", "stop loss",
     {"strategy": "ma_cross", "code": "005930", "rule": "stop_loss", "price": 68000,
      "trigger_price": 68400},
     "risk", "🛡️ 손절 발동: 삼성전자(005930) 현재가 68,000원 (기준가 68,400원)"),
    ("state_changed", "state halted", {"state": "halted", "by": "telegram"},
     "risk", "⏸️ 거래 상태: HALTED (신규 주문 중지, 요청: telegram)"),
]


AT = datetime(2025, 6, 16, 10, 0, tzinfo=KST)


def typed(kind: str, message: str, data: dict[str, Any]) -> Event:
    """The typed engine event that carries ``data`` (the legacy tables above)."""
    d = dict(data)
    base: dict[str, Any] = {"at": AT, "message": message}
    who = {k: d[k] for k in ("strategy", "code") if k in d}
    if kind in ("order_sent", "order_filled", "order_cancelled", "order_rejected"):
        side = OrderSide(d["side"])
        price = d.get("price")
        order: dict[str, Any] = {
            **base, **who, "client_order_id": "c1", "side": side,
            "order_type": OrderType(d.get("order_type") or ("limit" if price else "market")),
            "qty": d["qty"] + d.get("filled_qty", 0), "price": price,
            "reasons": tuple(d.get("reasons") or ()), "attempt": d.get("attempt", 0),
            "name": d.get("name"),
        }
        if kind == "order_sent":
            return OrderSubmitted(**order)
        if kind == "order_rejected":
            return OrderRejected(**order, reason=d.get("reason", ""))
        if kind == "order_cancelled":
            return OrderCancelled(
                **order, unfilled_qty=d["qty"], filled_qty=d.get("filled_qty", 0),
                reason=d.get("reason"),
            )
        return OrderFilled(
            **order, fill_qty=d["qty"], fill_price=d["price"], amount_krw=d["amount_krw"],
            commission_krw=d.get("commission_krw", 0), tax_krw=d.get("tax_krw", 0),
            realized_pnl_krw=d.get("realized_pnl_krw"),
        )
    if kind == "session_started":
        return SessionStarted(
            **base, mode=d["mode"], env=d["env"], strategies=tuple(d["strategies"])
        )
    if kind == "session_stopped":
        return SessionStopped(**base, reason=d["reason"])
    if kind == "strategy_error":
        return StrategyError(**base, level="error", **who, hook=d["hook"], error=message)
    if kind == "strategy_isolated":
        return StrategyIsolated(**base, level="error", **who, errors=3)
    if kind == "circuit_breaker":
        return CircuitBreakerChanged(**base, old_state=d["old_state"], new_state=d["new_state"])
    if kind == "reconcile":
        return Reconciled(
            **base, ok=d["ok"], error=None, positions_restored=0, orders_restored=0,
            fills_applied=0, cash_krw=0, differences=tuple(d["differences"]),
        )
    if kind == "daily_report":
        return DailyReport(
            **base, date=date.fromisoformat(d["date"]), equity_krw=d["equity_krw"],
            cash_krw=d["cash_krw"], pnl_krw=d["pnl_krw"], pnl_pct=d["pnl_pct"],
            trades=d["trades"], fills=d["fills"], positions=tuple(d["positions"]),
        )
    if kind == "risk_exit":
        return ProtectiveExit(
            **base, **who, rule=d["rule"], price=d["price"], trigger_price=d["trigger_price"]
        )
    if kind == "state_changed":
        return RiskStateChanged(**base, state=d["state"], by=d["by"])
    raise ValueError(f"no typed event for {kind}")


class FakeController:
    """Records every call (thread-safe); methods named in ``fail`` raise."""

    def __init__(self, fail: dict[str, Exception] | None = None) -> None:
        self.calls: list[Any] = []
        self.fail = dict(fail or {})
        self._lock = threading.Lock()

    def _record(self, call: Any, name: str) -> None:
        with self._lock:
            self.calls.append(call)
        if name in self.fail:
            raise self.fail[name]

    def status(self) -> dict[str, Any]:
        self._record("status", "status")
        return {
            "mode": "live", "env": "virtual", "state": "active", "market": "open",
            "next_event": "15:30 장 마감", "equity_krw": 10_000_000, "cash_krw": 4_321_000,
            "strategies": [{"name": "ma_cross", "active": True, "trades_today": 2, "errors": 0}],
        }

    def positions(self) -> list[dict[str, Any]]:
        self._record("positions", "positions")
        return [{"strategy": "ma_cross", "code": "005930", "name": None, "qty": 10,
                 "avg_price": 72000, "price": 73000, "pnl_krw": 10000, "pnl_pct": 1.39,
                 "stop_loss": 70000, "target_price": 80000}]

    def pnl(self) -> dict[str, Any]:
        self._record("pnl", "pnl")
        return {"date": "2025-06-16", "start_equity_krw": 10_000_000, "equity_krw": 10_050_000,
                "pnl_krw": 50_000, "pnl_pct": 0.5, "realized_krw": 40_000,
                "unrealized_krw": 10_000, "trades": 4}

    def orders(self) -> list[dict[str, Any]]:
        self._record("orders", "orders")
        return [{"client_order_id": "c-1", "strategy": "ma_cross", "code": "000660",
                 "name": "SK하이닉스", "side": "buy", "qty": 5, "filled_qty": 2, "price": None,
                 "status": "partially_filled", "created_at": "09:01:02"}]

    def set_state(self, state: str, by: str) -> str:
        self._record(("set_state", state, by), "set_state")
        return state

    def request_stop(self, by: str) -> str:
        self._record(("request_stop", by), "request_stop")
        return "stopping"


@pytest.fixture
def tg() -> Iterator[FakeTelegram]:
    with FakeTelegram() as fake:
        yield fake


@pytest.fixture
def make_notifier(tg: FakeTelegram) -> Iterator[Callable[..., Notifier]]:
    made: list[Notifier] = []

    def make(**kwargs: Any) -> Notifier:
        kwargs.setdefault("base_url", tg.base_url)
        kwargs.setdefault("retry_backoff_s", 0.01)
        kwargs.setdefault("send_timeout_s", 5.0)
        kwargs.setdefault("names", NAMES.get)
        notifier = Notifier(kwargs.pop("token", tg.token), kwargs.pop("chat_id", CHAT), **kwargs)
        made.append(notifier)
        return notifier

    yield make
    for notifier in made:  # before the server goes away
        notifier.stop(timeout_s=2.0)


def start_commands(
    tg: FakeTelegram, make_notifier: Callable[..., Notifier], controller: FakeController,
    **kwargs: Any,
) -> Notifier:
    """A started notifier with commands whose pending-update drop has happened."""
    kwargs.setdefault("allowed_user_ids", [USER_ID])
    notifier = make_notifier(controls=controller, **kwargs)
    notifier.start()
    assert tg.wait_for(lambda: tg.call_count("deleteWebhook") >= 1, WAIT_S)
    return notifier


def stop_bounded(notifier: Notifier, timeout_s: float, within_s: float | None = None) -> None:
    """Run stop() on another thread; fail if it has not returned within ``within_s`` seconds.

    The bound is a generous deadline for a condition (default: the stop timeout plus 10 s), never
    a measurement of speed.
    """
    returned = threading.Event()

    def run() -> None:
        notifier.stop(timeout_s=timeout_s)
        returned.set()

    threading.Thread(target=run, daemon=True).start()
    deadline = timeout_s + 10 if within_s is None else within_s
    assert returned.wait(deadline), "stop() did not return"


# -- pure formatters ------------------------------------------------------------------------------


def test_fill_text_is_exact() -> None:
    assert format_fill(FILL_BUY) == (
        "📈 매수 체결: 삼성전자(005930) 10주 @ 72,000원\n사유: 골든크로스, 거래량 급증"
    )
    assert format_fill({**FILL_BUY, "reasons": []}) == (
        "📈 매수 체결: 삼성전자(005930) 10주 @ 72,000원"
    )
    assert format_fill({**FILL_SELL, "name": "삼성전자"}) == (
        "📉 매도 체결: 삼성전자(005930) 10주 @ 73,234원\n실현손익: +12,345원"
    )
    # no name anywhere: just the code; a loss is signed
    assert format_fill({**FILL_SELL, "realized_pnl_krw": -500, "reasons": ["손절"]}) == (
        "📉 매도 체결: 005930 10주 @ 73,234원\n사유: 손절\n실현손익: -500원"
    )


def test_names_come_from_the_lookup_when_the_data_has_none() -> None:
    event = format_event("order_filled", "filled", FILL_SELL, NAMES.get)
    assert event is not None
    assert event[1].startswith("📉 매도 체결: 삼성전자(005930) 10주 @ 73,234원")

    def broken(code: str) -> str | None:
        raise KeyError(code)

    event = format_event("order_filled", "filled", FILL_SELL, broken)
    assert event is not None
    assert event[1].startswith("📉 매도 체결: 005930 10주")


@pytest.mark.parametrize(("kind", "message", "data", "alert", "first_line"), EVENTS,
                         ids=[e[0] for e in EVENTS])
def test_each_event_maps_to_its_alert_kind_and_korean_text(
    kind: str, message: str, data: dict[str, Any], alert: str, first_line: str
) -> None:
    result = format_event(kind, message, data, NAMES.get)
    assert result is not None
    assert result[0] == alert
    assert alert in ALERT_KINDS
    assert result[1].split("\n")[0] == first_line


def test_event_details() -> None:
    def text(kind: str, data: dict[str, Any], message: str = "m") -> str:
        result = format_event(kind, message, data, NAMES.get)
        assert result is not None
        return result[1]

    assert text("session_started", EVENTS[0][2]).split("\n")[1] == "전략: ma_cross, rsi"
    assert text("session_started", {"mode": "dry_run", "env": "real"}).startswith(
        "🚀 자동매매 시작 (실전투자, dry_run)")
    market = {"code": "005930", "side": "sell", "qty": 3, "price": None, "order_type": "market"}
    assert format_order_sent(market) == "📤 매도 주문: 005930 3주 @ 시장가"
    again = format_order_sent({**market, "price": 71000, "order_type": "limit", "attempt": 2,
                               "strategy": "rsi", "reasons": ["미체결 재주문"]})
    assert again == ("📤 매도 주문: 005930 3주 @ 71,000원 (지정가, 재주문 2회차)\n"
                     "전략: rsi\n사유: 미체결 재주문")
    assert "전략: ma_cross · 단계: on_bar" in text("strategy_error", EVENTS[6][2], "boom")
    assert "격리됨" in text("strategy_isolated", {"strategy": "ma_cross"})
    for rule, word in [("take_profit", "익절"), ("trailing_stop", "트레일링 스탑"),
                       ("portfolio_stop", "포트폴리오 손실 한도")]:
        assert text("risk_exit", {"rule": rule}).startswith(f"🛡️ {word} 발동")
    assert text("state_changed", {"state": "active"}) == "▶️ 거래 상태: ACTIVE (정상 거래)"
    assert text("state_changed", {"state": "reduce_only"}).startswith("🔻 거래 상태: REDUCE_ONLY")
    report = text("daily_report", {**EVENTS[10][2], "positions": [
        {"code": "005930", "qty": 10, "avg_price": 72000, "price": 73000, "pnl_krw": 10000,
         "pnl_pct": 1.39}]})
    for part in ("평가자산: 10,123,456원", "현금: 5,000,000원", "손익: +123,456원 (+1.23%)",
                 "거래: 3건 · 체결: 5건", "보유 종목: 1개", "• 삼성전자(005930)"):
        assert part in report


def test_reconcile_lists_each_difference_but_not_matches() -> None:
    text = format_reconcile({"ok": False, "differences": [
        {"kind": "matched", "code": "005930", "db_qty": 10, "account_qty": 10},
        {"kind": "closed_outside", "code": "000660", "name": "SK하이닉스", "strategy": "rsi",
         "db_qty": 5, "account_qty": 0},
        {"kind": "qty_adjusted", "code": "035720", "db_qty": 8, "account_qty": 6},
        {"kind": "order_resolved", "code": "005930", "detail": "주문 c-9 체결 확인"},
    ]})
    assert text.split("\n") == [
        "🔄 재시작 대사: 차이 3건",
        "• 외부 청산: SK하이닉스(000660) [rsi] DB 5주 → 계좌 0주",
        "• 수량 조정: 035720 DB 8주 → 계좌 6주",
        "• 주문 정리: 005930 (주문 c-9 체결 확인)",
        "⚠️ 확인 필요",
    ]
    assert format_reconcile({"ok": True, "differences": []}) == "🔄 재시작 대사: 차이 0건 (일치)"


def test_unknown_events_are_ignored_unless_level_error() -> None:
    assert format_event("risk_rejected", "no cash", {"strategy": "x"}) is None
    assert format_event("fetch_failed", "KIS down", {"level": "error"}) == (
        "error", "⚠️ 오류: KIS down")
    assert set(EVENT_ALERT_KINDS.values()) == set(ALERT_KINDS)


def test_money_and_percent_formats() -> None:
    assert format_krw(1234567) == "1,234,567원"
    assert format_krw(72000.4) == "72,000원"
    assert format_krw(None) == "-"
    assert format_signed_krw(12345) == "+12,345원"
    assert format_signed_krw(-12345.0) == "-12,345원"
    assert format_signed_krw(0) == "0원"
    assert format_pct(1.234) == "+1.23%"
    assert format_pct(-0.5) == "-0.50%"


@pytest.mark.parametrize("kind", sorted(EVENT_ALERT_KINDS))
def test_malformed_event_data_never_raises(kind: str) -> None:
    for data in ({}, {"qty": "many", "price": "abc", "reasons": 5, "differences": "x",
                      "positions": [1, None], "strategies": None}):
        result = format_event(kind, "message", data)
        assert result is not None
        assert result[1]


def test_invalid_configuration_is_rejected() -> None:
    with pytest.raises(ValueError, match="token"):
        Notifier("", CHAT)
    with pytest.raises(ValueError, match="chat"):
        Notifier("1:abc", " ")
    with pytest.raises(ValueError, match="unknown alert kinds"):
        Notifier("1:abc", CHAT, alerts={"fills": False})
    with pytest.raises(ValueError, match="positive"):
        Notifier("1:abc", CHAT, max_queue=0)


# -- delivery over HTTP ---------------------------------------------------------------------------


def test_fill_alert_is_delivered_with_the_exact_text(
    tg: FakeTelegram, make_notifier: Callable[..., Notifier]
) -> None:
    notifier = make_notifier()
    notifier.start()
    notifier.on_event(typed("order_filled", "buy 10 005930 @ 72000", FILL_BUY))
    assert tg.wait_for(lambda: notifier.sent_count == 1, WAIT_S)
    [message] = tg.messages
    assert message.chat_id == CHAT
    assert message.text == (
        "📈 매수 체결: 삼성전자(005930) 10주 @ 72,000원\n사유: 골든크로스, 거래량 급증"
    )
    assert (notifier.dropped_count, notifier.failed_count) == (0, 0)


def test_every_alert_kind_is_delivered_in_order(
    tg: FakeTelegram, make_notifier: Callable[..., Notifier]
) -> None:
    notifier = make_notifier()
    notifier.start()
    for kind, message, data, _, _ in EVENTS:
        notifier.on_event(typed(kind, message, data))
    notifier.on_event(  # not alerted, not an error: ignored
        RiskRejected(at=AT, message="debug noise", level="debug", signal_type="buy", reason="x")
    )
    assert notifier.send("직접 보낸 메시지")
    assert tg.wait_for(lambda: notifier.sent_count == len(EVENTS) + 1, WAIT_S)
    firsts = [text.split("\n")[0] for text in tg.texts(CHAT)]
    assert firsts == [e[4] for e in EVENTS] + ["직접 보낸 메시지"]


def test_a_silent_kind_is_sent_without_a_notification_and_off_is_not_sent(
    tg: FakeTelegram, make_notifier: Callable[..., Notifier]
) -> None:
    notifier = make_notifier(alerts={"fill": "silent", "cancel": "off", "order_sent": "on"})
    notifier.start()
    notifier.on_event(typed("order_sent", "buy sent", EVENTS[2][2]))
    notifier.on_event(typed("order_cancelled", "cancelled", EVENTS[4][2]))
    notifier.on_event(typed("order_filled", "filled", FILL_BUY))
    notifier.stop(timeout_s=WAIT_S)
    sends = [c.params for c in tg.calls if c.method == "sendMessage"]
    assert [p["text"].split(":")[0] for p in sends] == ["📤 매수 주문", "📈 매수 체결"]
    assert "disable_notification" not in sends[0]
    assert sends[1]["disable_notification"] is True
    with pytest.raises(ValueError, match=r"telegram.alerts.fill: 'loud'; expected on, silent"):
        Notifier(tg.token, CHAT, alerts={"fill": "loud"})


def test_settings_yaml_takes_silent_alerts_and_refuses_other_words(tmp_path: Path) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text("telegram:\n  alerts:\n    fill: silent\n    cancel: false\n", "utf-8")
    assert load_settings(path).telegram.alerts == {"fill": "silent", "cancel": "off"}
    path.write_text("telegram:\n  alerts:\n    fill: loud\n", "utf-8")
    with pytest.raises(ConfigError, match=r"telegram\.alerts\.fill"):
        load_settings(path)


def test_disabled_kinds_are_not_sent(
    tg: FakeTelegram, make_notifier: Callable[..., Notifier]
) -> None:
    alerts = {kind: False for kind in ALERT_KINDS if kind != "stop"} | {"info": False}
    notifier = make_notifier(alerts=alerts)
    notifier.start()
    for kind, message, data, _, _ in EVENTS:
        if kind != "session_stopped":
            notifier.on_event(typed(kind, message, data))
    notifier.on_event(  # error kind: disabled too
        JobFailed(at=AT, message="boom", level="error", job="quotes", error="boom")
    )
    assert notifier.send("info text") is False
    notifier.on_event(typed("session_stopped", "stopped", {"reason": "끝"}))
    notifier.stop(timeout_s=WAIT_S)  # flushes: anything queued would be sent by now
    assert tg.texts() == ["🛑 자동매매 종료: 끝"]
    assert (notifier.sent_count, notifier.dropped_count, notifier.failed_count) == (1, 0, 0)


def test_long_texts_go_out_in_parts(
    tg: FakeTelegram, make_notifier: Callable[..., Notifier]
) -> None:
    notifier = make_notifier()
    notifier.start()
    text = "\n".join(f"{i:04d} " + "가" * 95 for i in range(120))  # ~12,000 characters
    assert notifier.send(text)
    assert tg.wait_for(lambda: notifier.sent_count == 1, WAIT_S)
    parts = tg.texts()
    assert len(parts) >= 3
    assert all(len(part) <= 4096 for part in parts)
    assert "\n".join(parts) == text


# -- failures never block or raise into the caller ------------------------------------------------


def test_500s_are_retried_with_backoff_then_delivered(
    tg: FakeTelegram, make_notifier: Callable[..., Notifier]
) -> None:
    tg.fail_next(2, status=500, method="sendMessage")
    notifier = make_notifier(retry_attempts=3)
    notifier.start()
    assert notifier.send("재시도 후 전달")
    assert tg.wait_for(lambda: notifier.sent_count == 1, WAIT_S)
    assert tg.call_count("sendMessage") == 3
    assert tg.texts() == ["재시도 후 전달"]
    assert notifier.failed_count == 0


def test_flood_control_retry_after_is_honoured(
    tg: FakeTelegram, make_notifier: Callable[..., Notifier]
) -> None:
    tg.fail_next(1, status=429, method="sendMessage", retry_after=1)
    notifier = make_notifier()
    notifier.start()
    assert notifier.send("천천히")
    assert tg.wait_for(lambda: notifier.sent_count == 1, WAIT_S)
    first, second = [c for c in tg.calls if c.method == "sendMessage"]
    assert second.at - first.at >= 0.9  # waited retry_after, not the 10 ms back-off


def test_persistent_failures_are_counted_logged_and_never_raise(
    tg: FakeTelegram, make_notifier: Callable[..., Notifier], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="notifier")
    tg.fail_next(1000, status=500, method="sendMessage")
    notifier = make_notifier(retry_attempts=3)
    notifier.start()
    assert notifier.send("첫째")
    assert notifier.send("둘째")
    assert tg.wait_for(lambda: notifier.failed_count == 2, WAIT_S)
    assert tg.call_count("sendMessage") == 6  # three attempts each
    assert notifier.sent_count == 0
    assert tg.messages == []
    warnings = [r for r in caplog.records if "not delivered" in r.getMessage()]
    assert len(warnings) == 2


def test_a_rejected_token_fails_once_without_retries(
    tg: FakeTelegram, make_notifier: Callable[..., Notifier]
) -> None:
    notifier = make_notifier(token="123456789:wrong-token", retry_attempts=5)
    notifier.start()
    assert notifier.send("x")
    assert tg.wait_for(lambda: notifier.failed_count == 1, WAIT_S)
    assert tg.unauthorized == 1  # 401 is a client error: not retried
    assert tg.messages == []


def test_send_and_on_event_return_at_once_while_telegram_hangs_and_stop_is_bounded(
    tg: FakeTelegram, make_notifier: Callable[..., Notifier]
) -> None:
    tg.hang(True)
    notifier = make_notifier(send_timeout_s=60.0)
    notifier.start()
    assert notifier.send("in flight")
    assert tg.wait_for(lambda: tg.hanging_now >= 1, WAIT_S)  # the sender is stuck on the wire

    returned = threading.Event()
    results: list[bool] = []

    def caller() -> None:
        results.append(notifier.send("queued"))
        notifier.on_event(typed("order_filled", "filled", FILL_BUY))
        notifier.on_event(typed("strategy_error", "boom", {"strategy": "x", "hook": "on_bar"}))
        returned.set()

    threading.Thread(target=caller, daemon=True).start()
    assert returned.wait(WAIT_S), "send/on_event blocked while Telegram hangs"
    assert results == [True]

    # stop() gives up on the hanging send after its own 1 s timeout: it returns long before the
    # send's 60 s timeout would have expired (the deadline is generous, for a loaded machine).
    stop_bounded(notifier, timeout_s=1.0, within_s=30.0)
    assert not notifier.running
    assert notifier.sent_count == 0
    assert notifier.failed_count == 1  # the one cut off on the wire
    assert notifier.dropped_count == 3  # still queued at the deadline
    assert notifier.send("after stop") is False
    assert notifier.dropped_count == 4


def test_the_queue_drops_and_counts_messages_beyond_max_queue(
    tg: FakeTelegram, make_notifier: Callable[..., Notifier]
) -> None:
    tg.hang(True)
    notifier = make_notifier(max_queue=3, send_timeout_s=60.0)
    notifier.start()
    assert notifier.send("in flight")
    assert tg.wait_for(lambda: tg.hanging_now >= 1, WAIT_S)
    results = [notifier.send(f"m{i}") for i in range(5)]
    assert results == [True, True, True, False, False]
    assert notifier.dropped_count == 2
    stop_bounded(notifier, timeout_s=0.5)
    assert notifier.dropped_count == 5


def test_stop_flushes_queued_messages_and_is_idempotent(
    tg: FakeTelegram, make_notifier: Callable[..., Notifier]
) -> None:
    notifier = make_notifier()
    notifier.start()
    for i in range(20):
        assert notifier.send(f"메시지 {i}")
    notifier.stop(timeout_s=WAIT_S)
    assert tg.texts() == [f"메시지 {i}" for i in range(20)]
    assert notifier.sent_count == 20
    notifier.stop()
    notifier.stop(timeout_s=0)
    with pytest.raises(RuntimeError, match="cannot be started again"):
        notifier.start()


def test_not_started_notifier_drops_and_stop_is_harmless(
    make_notifier: Callable[..., Notifier],
) -> None:
    notifier = make_notifier()
    assert notifier.send("too early") is False
    notifier.on_event(typed("order_filled", "filled", FILL_BUY))
    assert notifier.dropped_count == 2
    notifier.stop()
    assert not notifier.running


# -- commands -------------------------------------------------------------------------------------


def test_commands_call_the_controller_and_answer_in_korean(
    tg: FakeTelegram, make_notifier: Callable[..., Notifier]
) -> None:
    controller = FakeController()
    notifier = start_commands(tg, make_notifier, controller)
    commands = ["/status", "/positions", "/pnl", "/orders", "/pause", "/resume",
                "/reduce_only", f"/help@{BOT_USERNAME}", "/stop"]
    for command in commands:
        tg.push_command(command, chat_id=CHAT)
    assert tg.wait_for(
        lambda: len(tg.messages) >= 9 and ("request_stop", "telegram") in controller.calls, WAIT_S)
    assert controller.calls == [
        "status", "positions", "pnl", "orders", ("set_state", "halted", "telegram"),
        ("set_state", "active", "telegram"), ("set_state", "reduce_only", "telegram"),
        ("request_stop", "telegram"),
    ]
    notifier.stop(timeout_s=WAIT_S)
    answers = tg.messages
    assert {m.chat_id for m in answers} == {CHAT}
    status, positions, pnl, orders, pause, resume, reduce_only, help_, stop = (
        m.text for m in answers)
    assert status.startswith("📋 자동매매 상태")
    for part in ("모의투자 · live", "ACTIVE", "장: 개장", "다음 일정: 15:30 장 마감",
                 "평가자산: 10,000,000원", "현금: 4,321,000원", "• ma_cross: 활성 · 오늘 거래 2건"):
        assert part in status
    for part in ("• 삼성전자(005930) [ma_cross]", "10주 · 평단 72,000원 · 현재가 73,000원",
                 "손익 +10,000원 (+1.39%)", "손절 70,000원 · 목표 80,000원"):
        assert part in positions
    for part in ("💰 오늘 손익 2025-06-16", "손익: +50,000원 (+0.50%)", "거래: 4건"):
        assert part in pnl
    for part in ("📝 미체결 주문 1건", "• 매수 SK하이닉스(000660) 5주 @ 시장가 (체결 2주)"):
        assert part in orders
    assert "HALTED" in pause
    assert "ACTIVE" in resume
    assert "REDUCE_ONLY" in reduce_only
    assert help_ == HELP_TEXT
    assert stop == "🛑 종료 요청을 받았습니다. 자동매매를 종료합니다."


def test_unknown_commands_and_text_get_the_help_and_other_bots_are_ignored(
    tg: FakeTelegram, make_notifier: Callable[..., Notifier]
) -> None:
    controller = FakeController()
    start_commands(tg, make_notifier, controller)
    tg.push_command("/stop@some_other_bot", chat_id=CHAT)  # meant for another bot
    tg.push_command("/buy 005930", chat_id=CHAT)
    tg.push_command("안녕", chat_id=CHAT)
    assert tg.wait_for(lambda: len(tg.messages) >= 2, WAIT_S)
    tg.push_command("/pnl", chat_id=CHAT)
    assert tg.wait_for(lambda: len(tg.messages) >= 3, WAIT_S)
    assert tg.texts()[:2] == [HELP_TEXT, HELP_TEXT]
    assert controller.calls == ["pnl"]


def test_commands_from_another_chat_are_ignored_and_logged(
    tg: FakeTelegram, make_notifier: Callable[..., Notifier], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="notifier")
    controller = FakeController()
    notifier = start_commands(tg, make_notifier, controller)
    tg.push_command("/stop", chat_id=OTHER_CHAT)
    tg.push_command("/pause", chat_id=-OTHER_CHAT)
    tg.push_command("/status", chat_id=CHAT)  # updates are handled in order: a fence
    assert tg.wait_for(lambda: len(tg.messages) >= 1, WAIT_S)
    notifier.stop(timeout_s=WAIT_S)
    assert controller.calls == ["status"]
    assert [m.chat_id for m in tg.messages] == [CHAT]
    ignored = [r.getMessage() for r in caplog.records
               if r.levelno == logging.WARNING and "unauthorized chat" in r.getMessage()]
    assert len(ignored) == 2
    assert str(OTHER_CHAT) in ignored[0]
    assert str(-OTHER_CHAT) in ignored[1]


def test_a_stop_sent_while_the_bot_was_down_is_not_executed(
    tg: FakeTelegram, make_notifier: Callable[..., Notifier]
) -> None:
    tg.push_command("/stop", chat_id=CHAT)
    tg.push_command("/pause", chat_id=CHAT)
    controller = FakeController()
    start_commands(tg, make_notifier, controller)
    assert tg.pending_updates == 0  # dropped by deleteWebhook(drop_pending_updates=True)
    tg.push_command("/status", chat_id=CHAT)
    assert tg.wait_for(lambda: len(tg.messages) >= 1, WAIT_S)
    assert controller.calls == ["status"]
    assert tg.texts()[0].startswith("📋 자동매매 상태")


def test_a_failing_controller_is_answered_with_an_error_and_polling_goes_on(
    tg: FakeTelegram, make_notifier: Callable[..., Notifier], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="notifier")
    controller = FakeController(fail={"status": RuntimeError("db locked"),
                                      "set_state": ValueError("bad state")})
    start_commands(tg, make_notifier, controller)
    for command in ("/status", "/pause", "/pnl"):
        tg.push_command(command, chat_id=CHAT)
    assert tg.wait_for(lambda: len(tg.messages) >= 3, WAIT_S)
    status, pause, pnl = tg.texts()
    assert status == "⚠️ 명령 처리 실패 (/status): RuntimeError: db locked"
    assert pause == "⚠️ 명령 처리 실패 (/pause): ValueError: bad state"
    assert pnl.startswith("💰 오늘 손익")
    failures = [r for r in caplog.records if r.levelno == logging.ERROR and r.exc_info]
    assert len(failures) == 2


def test_commands_are_off_without_a_controller(
    tg: FakeTelegram, make_notifier: Callable[..., Notifier]
) -> None:
    notifier = make_notifier()  # no controller: alerts only
    notifier.start()
    assert notifier.send("alert")
    assert tg.wait_for(lambda: notifier.sent_count == 1, WAIT_S)
    notifier.stop(timeout_s=WAIT_S)
    assert tg.call_count("getUpdates") == 0
    assert tg.call_count("deleteWebhook") == 0


STRANGER = 555_000_222


def test_a_stranger_in_the_allowed_group_is_refused_and_an_allowed_user_obeyed(
    tg: FakeTelegram, make_notifier: Callable[..., Notifier], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="notifier")
    group = -100_424_242
    controller = FakeController()
    notifier = start_commands(tg, make_notifier, controller, chat_id=group)
    tg.push_command("/stop", chat_id=group, user_id=STRANGER)
    tg.push_command("/pause", chat_id=group, user_id=STRANGER)
    tg.push_command("/status", chat_id=group, user_id=USER_ID)  # handled in order: a fence
    assert tg.wait_for(lambda: len(tg.messages) >= 2, WAIT_S)
    notifier.stop(timeout_s=WAIT_S)
    assert controller.calls == ["status"]
    refusal, status = tg.texts()
    assert "권한이 없습니다" in refusal  # told once, not once per command
    assert status.startswith("📋 자동매매 상태")
    refused = [r.getMessage() for r in caplog.records if "refused telegram" in r.getMessage()]
    assert len(refused) == 2
    assert all(str(STRANGER) in line and str(group) in line for line in refused)
    assert "'/stop'" in refused[0]
    assert "'/pause'" in refused[1]


def test_commands_are_off_without_allowed_users_and_it_is_said_once(
    tg: FakeTelegram, make_notifier: Callable[..., Notifier], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="notifier")
    controller = FakeController()
    notifier = make_notifier(controls=controller)  # no allowed_user_ids
    notifier.start()
    assert notifier.send("alert")
    assert tg.wait_for(lambda: notifier.sent_count == 1, WAIT_S)
    tg.push_command("/stop", chat_id=CHAT)
    notifier.stop(timeout_s=WAIT_S)
    assert controller.calls == []
    assert tg.call_count("getUpdates") == 0
    said = [r for r in caplog.records if "TELEGRAM_ALLOWED_USER_IDS" in r.getMessage()]
    assert len(said) == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [(None, frozenset()), ("", frozenset()), ("123", {123}), (" 1, 22 ,333,", {1, 22, 333})],
)
def test_allowed_user_ids_parse(text: str | None, expected: set[int]) -> None:
    assert parse_user_ids(text) == expected


@pytest.mark.parametrize("text", ["abc", "12,-5", "1;2", "@trader"])
def test_allowed_user_ids_must_be_numeric(text: str) -> None:
    with pytest.raises(ValueError, match=r"TELEGRAM_ALLOWED_USER_IDS: .* is not a numeric"):
        parse_user_ids(text)


# -- the token is a secret ------------------------------------------------------------------------


def test_the_token_never_appears_in_log_records_or_repr(
    tg: FakeTelegram, make_notifier: Callable[..., Notifier], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, every level: httpx, httpcore, telegram, ours
    wrong_token = "987654321:AAwrongSecretValue_zzz"
    controller = FakeController(fail={"pnl": RuntimeError("boom")})
    tg.fail_next(1, status=500, method="sendMessage")
    notifier = start_commands(tg, make_notifier, controller)
    assert notifier.send("hello")
    tg.push_command("/status", chat_id=CHAT)
    tg.push_command("/pnl", chat_id=CHAT)
    tg.push_command("/stop", chat_id=OTHER_CHAT)
    assert tg.wait_for(lambda: len(tg.messages) >= 3, WAIT_S)

    rejected = make_notifier(
        token=wrong_token, controls=FakeController(), allowed_user_ids=[USER_ID]
    )
    rejected.start()
    assert rejected.send("x")
    assert tg.wait_for(lambda: rejected.failed_count == 1 and tg.unauthorized >= 2, WAIT_S)
    for each in (notifier, rejected):
        each.stop(timeout_s=WAIT_S)

    records = caplog.records
    # the capture really saw the libraries that print URLs and errors
    assert any(r.name == "httpx" and "/botREDACTED/sendMessage" in r.getMessage()
               for r in records)
    assert any(r.name.startswith("telegram") for r in records)
    assert any(r.levelno >= logging.WARNING and r.name.startswith("notifier")
               for r in records)
    secrets = [tg.token, tg.token.split(":")[1], wrong_token, wrong_token.split(":")[1]]
    formatter = logging.Formatter()
    for record in records:
        text = formatter.format(record)
        assert not any(secret in text for secret in secrets), record.name
    assert not any(secret in caplog.text for secret in secrets)
    for each in (notifier, rejected):
        assert not any(secret in repr(each) or secret in str(each) for secret in secrets)


def test_the_mask_filter_scrubs_a_token_logged_by_mistake(
    make_notifier: Callable[..., Notifier], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    notifier = make_notifier(token="555:AAmistakeSecret")
    notifier.start()
    logging.getLogger("notifier.app").warning("oops %s", "555:AAmistakeSecret")
    logging.getLogger("httpx").info("url http://x/bot555%3AAAmistakeSecret/getMe")
    messages = [r.getMessage() for r in caplog.records if "oops" in r.getMessage()
                or "url http" in r.getMessage()]
    assert messages == ["oops 55***", "url http://x/bot55***/getMe"]  # two characters at most


# -- the fake server itself -----------------------------------------------------------------------


def test_fake_server_speaks_the_bot_api_subset(tg: FakeTelegram) -> None:
    api = f"{tg.base_url}/bot{tg.token}"
    with httpx.Client(timeout=10) as client:
        assert client.post(f"{tg.base_url}/bot1:wrong/getMe").status_code == 401
        assert client.get(f"{tg.base_url}/nothing").status_code == 404
        me = client.post(f"{api}/getMe").json()
        assert me["ok"] is True
        assert {"id", "is_bot", "first_name", "username"} <= set(me["result"])
        sent = client.post(f"{api}/sendMessage", json={"chat_id": CHAT, "text": "json body"})
        assert sent.json()["result"]["chat"]["id"] == CHAT
        client.post(f"{api}/sendMessage", data={"chat_id": str(CHAT), "text": "123"})
        assert tg.texts(CHAT) == ["json body", "123"]

        first = tg.push_command("/status", chat_id=CHAT)
        # Queued updates come back at once: a long poll of 60 s that waited would trip the
        # client's 10 s timeout instead of answering.
        got = client.post(f"{api}/getUpdates", data={"timeout": "60"}).json()["result"]
        assert [u["update_id"] for u in got] == [first]
        assert got[0]["message"]["text"] == "/status"
        empty = client.post(f"{api}/getUpdates",
                            data={"offset": str(first + 1), "timeout": "1"}).json()
        assert empty == {"ok": True, "result": []}  # answered after its 1 s timeout
        assert tg.pending_updates == 0

        tg.fail_next(1, status=500)
        failed = client.post(f"{api}/getMe")
        assert failed.status_code == 500
        assert failed.json()["ok"] is False


def test_fake_server_releases_long_polls_on_shutdown() -> None:
    done = threading.Event()
    with FakeTelegram() as fake:
        def poll() -> None:
            with httpx.Client(timeout=60) as client, pytest.raises(httpx.HTTPError):
                client.post(f"{fake.base_url}/bot{fake.token}/getUpdates",
                            data={"timeout": "50"})
            done.set()

        thread = threading.Thread(target=poll, daemon=True)
        thread.start()
        assert fake.wait_for(lambda: fake.call_count("getUpdates") == 1, WAIT_S)
    assert done.wait(WAIT_S), "a long poll outlived the server"
    thread.join(WAIT_S)
