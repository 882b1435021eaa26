"""Typed engine events and their delivery: frozen, JSON-able, one kind each; a failing or
slow subscriber never reaches the publisher."""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from datetime import date, datetime

import pytest

from framework.events import (
    EVENT_TYPES,
    DailyReport,
    Event,
    EventBus,
    OrderFilled,
    OrderSubmitted,
    QueuedSubscriber,
    StrategyError,
)
from framework.types import Order, OrderSide, OrderType
from utils.clock import KST

AT = datetime(2025, 6, 16, 9, 30, tzinfo=KST)
WAIT_S = 30.0


def _order() -> Order:
    return Order(
        client_order_id="sma-005930-1",
        strategy="sma",
        stock_code="005930",
        side=OrderSide.BUY,
        order_type=OrderType.LIMIT,
        qty=10,
        price=70_000,
        reasons=("golden cross",),
    )


def test_every_event_type_has_its_own_kind() -> None:
    kinds = [t.kind for t in EVENT_TYPES]
    assert len(kinds) == len(set(kinds))
    assert "event" not in kinds
    assert "order" not in kinds


def test_events_are_frozen() -> None:
    event = StrategyError(at=AT, message="boom", strategy="sma", hook="on_bar", error="x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.hook = "other"  # type: ignore[misc]


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="tz-aware"):
        StrategyError(at=datetime(2025, 6, 16, 9, 30), message="m", hook="h", error="e")  # noqa: DTZ001


def test_order_event_data_is_json_and_names_its_order() -> None:
    order = _order()
    event = OrderFilled(
        at=AT,
        message="filled",
        **OrderSubmitted.fields_of(order, name="삼성전자"),
        fill_qty=4,
        fill_price=69_900,
        amount_krw=279_600,
        commission_krw=41,
    )
    data = json.loads(json.dumps(event.data()))
    assert data["strategy"] == "sma"
    assert data["code"] == "005930"
    assert data["side"] == "buy"
    assert data["order_type"] == "limit"
    assert data["qty"] == 10
    assert data["fill_qty"] == 4
    assert data["fill_price"] == 69_900
    assert data["reasons"] == ["golden cross"]
    assert "at" not in data
    assert "message" not in data


def test_daily_report_dates_become_iso() -> None:
    event = DailyReport(
        at=AT,
        message="daily report",
        date=date(2025, 6, 16),
        equity_krw=10_000_000,
        cash_krw=1_000_000,
        pnl_krw=-5_000,
        pnl_pct=-0.05,
        trades=2,
        fills=3,
        positions=({"code": "005930", "qty": 10},),
    )
    data = json.loads(json.dumps(event.data()))
    assert data["date"] == "2025-06-16"
    assert data["positions"] == [{"code": "005930", "qty": 10}]


def test_failing_subscriber_is_logged_and_the_others_still_get_the_event(
    caplog: pytest.LogCaptureFixture,
) -> None:
    got: list[Event] = []

    def broken(event: Event) -> None:
        raise RuntimeError("subscriber down")

    bus = EventBus([broken, got.append])
    event = StrategyError(at=AT, message="m", hook="h", error="e")
    with caplog.at_level(logging.ERROR, logger="framework.events"):
        bus.publish(event)
    assert got == [event]
    assert "strategy_error" in caplog.text


def test_unsubscribe_stops_delivery() -> None:
    got: list[Event] = []
    bus = EventBus()
    unsubscribe = bus.subscribe(got.append)
    first = StrategyError(at=AT, message="1", hook="h", error="e")
    bus.publish(first)
    unsubscribe()
    bus.publish(StrategyError(at=AT, message="2", hook="h", error="e"))
    assert got == [first]


def test_a_blocked_queued_subscriber_does_not_block_the_publisher() -> None:
    release = threading.Event()
    got: list[str] = []

    def slow(event: Event) -> None:
        release.wait(WAIT_S)
        got.append(event.message)

    queued = QueuedSubscriber(slow, name="slow", max_queue=3)
    bus = EventBus([queued])
    for i in range(10):  # returns although the subscriber is stuck on the first event
        bus.publish(StrategyError(at=AT, message=str(i), hook="h", error="e"))
    assert queued.dropped >= 10 - 3 - 1  # at most one taken by the thread, three queued
    release.set()
    queued.close(timeout_s=WAIT_S)
    assert got == [str(i) for i in range(len(got))]  # in order, none twice
    assert len(got) + queued.dropped == 10
    assert queued.delivered == len(got)


def test_queued_subscriber_logs_failures_and_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    got: list[str] = []

    def flaky(event: Event) -> None:
        if event.message == "bad":
            raise RuntimeError("network down")
        got.append(event.message)

    queued = QueuedSubscriber(flaky, name="flaky")
    with caplog.at_level(logging.ERROR, logger="framework.events"):
        for message in ("a", "bad", "b"):
            queued(StrategyError(at=AT, message=message, hook="h", error="e"))
        queued.close(timeout_s=WAIT_S)
    assert got == ["a", "b"]
    assert "flaky failed" in caplog.text
    queued(StrategyError(at=AT, message="late", hook="h", error="e"))
    assert queued.dropped == 1
