"""OrderManager lifecycle against a small scripted OrderExecutor (no mocks, no patching)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest

from api.paper import PaperBroker
from core.journal import MemoryJournal
from core.order_manager import OrderManager
from framework.errors import (
    CircuitOpenError,
    OrderRejectedError,
    TransientBrokerError,
    UnknownOrderOutcomeError,
)
from framework.executor import OrderExecutor, OrderState
from framework.types import Fill, Order, OrderRequest, OrderSide, OrderStatus, OrderType
from utils.clock import KST, Clock

T0 = datetime(2024, 6, 3, 9, 0, tzinfo=KST)
CODE = "005930"


@dataclass
class SubmitCall:
    request: OrderRequest
    journaled_status: str | None  # status the journal held for this order at call time
    journal_history: list[tuple[str, str]]  # (client id, status) rows written before the call


@dataclass
class FakeExecutor(OrderExecutor):
    """Answers ``submit_order`` from a script; ``find_order`` from ``known`` (client id →
    state). Records what the journal held at each submit."""

    journal: MemoryJournal
    answers: list[str | BaseException] = field(default_factory=list)
    known: dict[str, OrderState] = field(default_factory=dict)
    lookup_error: BaseException | None = None
    cancel_error: BaseException | None = None
    submits: list[SubmitCall] = field(default_factory=list)
    lookups: list[str] = field(default_factory=list)
    cancels: list[tuple[str, str, int | None]] = field(default_factory=list)

    def submit_order(self, request: OrderRequest) -> str:
        held = self.journal.orders.get(request.client_order_id)
        self.submits.append(
            SubmitCall(
                request=request,
                journaled_status=None if held is None else held.status.value,
                journal_history=[(cid, status) for cid, status, _, _ in self.journal.history],
            )
        )
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def cancel_order(self, broker_order_id: str, stock_code: str, qty: int | None = None) -> None:
        self.cancels.append((broker_order_id, stock_code, qty))
        if self.cancel_error is not None:
            raise self.cancel_error

    def get_order(self, broker_order_id: str) -> OrderState:
        for state in self.known.values():
            if state.broker_order_id == broker_order_id:
                return state
        raise OrderRejectedError(f"unknown order {broker_order_id}")

    def find_order(self, client_order_id: str) -> OrderState | None:
        self.lookups.append(client_order_id)
        if self.lookup_error is not None:
            raise self.lookup_error
        return self.known.get(client_order_id)


def make(*answers: str | BaseException) -> tuple[OrderManager, FakeExecutor, MemoryJournal]:
    journal = MemoryJournal()
    executor = FakeExecutor(journal, list(answers))
    clock = Clock()
    clock.set(T0)
    return OrderManager(executor, journal, clock, "S1"), executor, journal


def new_order(
    om: OrderManager, qty: int = 10, price: int | None = None, side: OrderSide = OrderSide.BUY
) -> Order:
    return om.create(
        strategy="s1",
        stock_code=CODE,
        side=side,
        order_type=OrderType.MARKET if price is None else OrderType.LIMIT,
        qty=qty,
        price=price,
    )


def fill(order: Order, fill_id: str, qty: int, price: int, minute: int = 1, **fees: int) -> Fill:
    return Fill(
        fill_id=fill_id,
        client_order_id=order.client_order_id,
        stock_code=order.stock_code,
        side=order.side,
        qty=qty,
        price=price,
        time=T0 + timedelta(minutes=minute),
        broker_order_id="B1",
        **fees,
    )


def state(order: Order, status: OrderStatus, *fills: Fill, broker_id: str = "B1") -> OrderState:
    return OrderState(
        broker_order_id=broker_id,
        status=status,
        qty=order.qty,
        filled_qty=sum(f.qty for f in fills),
        fills=fills,
        client_order_id=order.client_order_id,
    )


def statuses(journal: MemoryJournal, cid: str) -> list[str]:
    return [status for c, status, _, _ in journal.history if c == cid]


# --- create / submit ---------------------------------------------------------------------


def test_order_is_journaled_pending_new_before_submit_is_called():
    om, executor, journal = make("B1")
    order = new_order(om, qty=10, price=72_300)

    assert executor.submits == []  # create never sends
    assert statuses(journal, order.client_order_id) == ["pending_new"]

    om.submit(order)

    (call,) = executor.submits
    assert call.journaled_status == "pending_new"
    assert call.journal_history == [(order.client_order_id, "pending_new")]
    assert call.request == OrderRequest(
        order.client_order_id, CODE, OrderSide.BUY, OrderType.LIMIT, 10, 72_300
    )
    assert order.status is OrderStatus.SUBMITTED
    assert order.broker_order_id == "B1"
    assert statuses(journal, order.client_order_id) == ["pending_new", "submitted"]
    assert om.open_orders() == [order]
    assert om.has_open("s1", CODE)


def test_client_order_ids_are_unique_and_prefixed():
    om, _, _ = make()
    ids = [new_order(om).client_order_id for _ in range(3)]
    assert ids == ["S1-0000001", "S1-0000002", "S1-0000003"]


def test_rejection_is_final_rejected():
    om, executor, journal = make(OrderRejectedError("price out of range"))
    order = new_order(om)

    om.submit(order)

    assert order.status is OrderStatus.REJECTED
    assert order.broker_order_id is None
    assert "price out of range" in order.message
    assert statuses(journal, order.client_order_id) == ["pending_new", "rejected"]
    assert om.open_orders() == []
    assert executor.lookups == []  # a clear refusal needs no lookup


@pytest.mark.parametrize("error", [CircuitOpenError("open"), TransientBrokerError("down")])
def test_not_sent_is_rejected_without_lookup(error: Exception):
    om, executor, _ = make(error)
    order = new_order(om)
    om.submit(order)
    assert order.status is OrderStatus.REJECTED
    assert executor.lookups == []
    assert len(executor.submits) == 1


# --- unknown outcome ------------------------------------------------------------------------


def test_unknown_outcome_found_at_broker_becomes_submitted_then_fills_apply():
    om, executor, journal = make(UnknownOrderOutcomeError("read timeout"))
    order = new_order(om, qty=10)
    f1 = fill(order, "F1", 4, 72_300, commission_krw=43)
    executor.known[order.client_order_id] = state(order, OrderStatus.PARTIALLY_FILLED, f1)

    om.submit(order)

    assert len(executor.submits) == 1  # never re-sent
    assert executor.lookups == [order.client_order_id]
    assert statuses(journal, order.client_order_id) == [
        "pending_new", "unknown", "submitted", "partially_filled",
    ]
    assert order.broker_order_id == "B1"
    assert order.status is OrderStatus.PARTIALLY_FILLED
    assert (order.filled_qty, order.filled_amount_krw, order.commission_krw) == (4, 289_200, 43)
    assert order in om.open_orders()


def test_unknown_outcome_found_filled_ends_filled():
    om, executor, journal = make(UnknownOrderOutcomeError("read timeout"))
    order = new_order(om, qty=10)
    f1 = fill(order, "F1", 10, 72_300)
    executor.known[order.client_order_id] = state(order, OrderStatus.FILLED, f1)

    om.submit(order)

    assert order.status is OrderStatus.FILLED
    assert (order.filled_qty, order.avg_fill_price) == (10, 72_300)
    assert statuses(journal, order.client_order_id)[-1] == "filled"
    assert om.open_orders() == []


def test_unknown_outcome_not_found_stays_unknown_until_it_shows_up():
    om, executor, journal = make(UnknownOrderOutcomeError("read timeout"))
    order = new_order(om, qty=10)

    om.submit(order)

    assert order.status is OrderStatus.UNKNOWN
    assert order.broker_order_id is None
    assert order in om.open_orders()  # still tracked, not given up
    assert statuses(journal, order.client_order_id) == ["pending_new", "unknown"]

    assert om.resolve_unknown(order) == []  # the broker list still lags
    assert order.status is OrderStatus.UNKNOWN

    executor.known[order.client_order_id] = state(order, OrderStatus.SUBMITTED, broker_id="B7")
    assert om.resolve_unknown(order) == []
    assert order.status is OrderStatus.SUBMITTED
    assert order.broker_order_id == "B7"
    assert len(executor.submits) == 1
    assert executor.lookups == [order.client_order_id] * 3


def test_failed_lookup_keeps_the_order_unknown():
    om, executor, _ = make(UnknownOrderOutcomeError("read timeout"))
    executor.lookup_error = TransientBrokerError("5xx")
    order = new_order(om)
    om.submit(order)
    assert order.status is OrderStatus.UNKNOWN
    assert len(executor.submits) == 1


def test_give_up_marks_rejected():
    om, _, _ = make(UnknownOrderOutcomeError("read timeout"))
    order = new_order(om)
    om.submit(order)
    om.give_up(order, "never reached the broker")
    assert order.status is OrderStatus.REJECTED
    assert om.open_orders() == []


# --- fills ------------------------------------------------------------------------------------


def test_partial_then_full_fill_with_weighted_average_price():
    om, _, journal = make("B1")
    order = new_order(om, qty=10, side=OrderSide.SELL)
    om.submit(order)
    f1 = fill(order, "F1", 3, 72_300, 1, commission_krw=32, tax_krw=390)
    f2 = fill(order, "F2", 7, 72_500, 2, commission_krw=76, tax_krw=913)

    new = om.apply_state(order, state(order, OrderStatus.PARTIALLY_FILLED, f1))
    assert new == [f1]
    assert order.status is OrderStatus.PARTIALLY_FILLED
    assert (order.filled_qty, order.remaining_qty, order.avg_fill_price) == (3, 7, 72_300)

    new = om.apply_state(order, state(order, OrderStatus.FILLED, f1, f2))
    assert new == [f2]
    assert order.status is OrderStatus.FILLED
    assert order.filled_qty == 10
    assert order.filled_amount_krw == 216_900 + 507_500
    assert order.avg_fill_price == pytest.approx(72_440)  # 724,400 / 10
    assert (order.commission_krw, order.tax_krw) == (108, 1_303)
    assert order.updated_at == f2.time
    assert statuses(journal, order.client_order_id) == [
        "pending_new", "submitted", "partially_filled", "filled",
    ]
    assert om.open_orders() == []


def test_each_partial_fill_is_journaled():
    om, _, journal = make("B1")
    order = new_order(om, qty=10)
    om.submit(order)
    fills = [fill(order, f"F{i}", 2, 72_300 + 100 * i, i) for i in range(1, 6)]
    for i in range(1, 6):
        om.apply_state(order, state(order, OrderStatus.PARTIALLY_FILLED, *fills[:i]))
    assert statuses(journal, order.client_order_id) == (
        ["pending_new", "submitted"] + ["partially_filled"] * 4 + ["filled"]
    )
    assert order.avg_fill_price == pytest.approx(72_600)  # mean of 72,400 … 72,800


def test_broker_filled_with_fewer_shares_cancels_the_rest():
    om, _, journal = make("B1")
    order = new_order(om, qty=10)
    om.submit(order)
    f1 = fill(order, "F1", 6, 72_300)

    new = om.apply_state(order, state(order, OrderStatus.FILLED, f1))

    assert new == [f1]
    assert order.status is OrderStatus.CANCELLED
    assert (order.filled_qty, order.remaining_qty) == (6, 4)
    assert statuses(journal, order.client_order_id)[-1] == "cancelled"
    assert om.open_orders() == []


def test_broker_cancel_without_fills():
    om, _, _ = make("B1")
    order = new_order(om)
    om.submit(order)
    assert om.apply_state(order, state(order, OrderStatus.CANCELLED)) == []
    assert order.status is OrderStatus.CANCELLED
    assert order.filled_qty == 0


def test_duplicate_fill_is_applied_once():
    om, _, journal = make("B1")
    order = new_order(om, qty=10)
    om.submit(order)
    f1 = fill(order, "F1", 4, 72_300, commission_krw=43)
    om.apply_state(order, state(order, OrderStatus.PARTIALLY_FILLED, f1))
    history = list(journal.history)

    assert om.apply_state(order, state(order, OrderStatus.PARTIALLY_FILLED, f1)) == []
    assert om.apply_fill(order, f1) is False

    assert (order.filled_qty, order.filled_amount_krw, order.commission_krw) == (4, 289_200, 43)
    assert order.status is OrderStatus.PARTIALLY_FILLED
    assert journal.history == history


def test_overfill_is_refused_and_reported():
    om, _, journal = make("B1")
    order = new_order(om, qty=10)
    om.submit(order)
    om.apply_fill(order, fill(order, "F1", 8, 72_300))

    assert om.apply_fill(order, fill(order, "F2", 3, 72_300)) is False

    assert (order.filled_qty, order.status) == (8, OrderStatus.PARTIALLY_FILLED)
    (event,) = journal.events
    assert (event["kind"], event["level"]) == ("overfill_refused", "error")
    assert om.apply_fill(order, fill(order, "F3", 2, 72_400)) is True
    assert order.status is OrderStatus.FILLED


def test_zero_quantity_fill_is_refused():
    om, _, _ = make("B1")
    order = new_order(om, qty=10)
    om.submit(order)
    zero = Fill("F0", order.client_order_id, CODE, OrderSide.BUY, 0, 72_300, T0)
    assert om.apply_fill(order, zero) is False
    assert order.filled_qty == 0


def test_late_fill_after_cancel_keeps_the_order_final():
    om, _, _ = make("B1")
    order = new_order(om, qty=10)
    om.submit(order)
    f1 = fill(order, "F1", 3, 72_300, 1)
    om.apply_state(order, state(order, OrderStatus.CANCELLED, f1))
    assert order.status is OrderStatus.CANCELLED

    assert om.apply_fill(order, fill(order, "F2", 2, 72_300, 2)) is True  # money moved

    assert order.filled_qty == 5
    assert order.filled_amount_krw == 5 * 72_300
    assert order.status is OrderStatus.CANCELLED
    assert om.open_orders() == []
    assert om.apply_fill(order, fill(order, "F2", 2, 72_300, 2)) is False  # still deduplicated


# --- cancel -----------------------------------------------------------------------------------


def test_cancel_asks_broker_for_the_remaining_qty():
    om, executor, _ = make("B1")
    order = new_order(om, qty=10)
    om.submit(order)
    om.apply_fill(order, fill(order, "F1", 4, 72_300))

    assert om.cancel(order) is True
    assert executor.cancels == [("B1", CODE, 6)]


def test_cancel_refused_by_broker_returns_false():
    om, executor, _ = make("B1")
    executor.cancel_error = OrderRejectedError("already filled")
    order = new_order(om)
    om.submit(order)
    assert om.cancel(order) is False


def test_cancel_of_final_or_unsent_order_does_not_call_broker():
    om, executor, _ = make(OrderRejectedError("no"))
    rejected = new_order(om)
    om.submit(rejected)
    pending = new_order(om)
    assert om.cancel(rejected) is False
    assert om.cancel(pending) is False
    assert executor.cancels == []


# --- with the paper broker as executor ------------------------------------------------------


def test_lifecycle_against_paper_broker():
    clock = Clock()
    clock.set(T0)
    broker = PaperBroker(1_000_000, clock=clock)
    journal = MemoryJournal()
    om = OrderManager(broker, journal, clock, "S1")
    order = om.create(
        strategy="s1", stock_code=CODE, side=OrderSide.BUY, order_type=OrderType.MARKET,
        qty=20, price=None,
    )
    om.submit(order)
    assert order.status is OrderStatus.SUBMITTED
    assert order.broker_order_id is not None

    broker.process_bar(CODE, T0 + timedelta(days=1), 72_300, 72_300, 72_300, 72_300)
    new = om.apply_state(order, broker.get_order(order.broker_order_id))

    # 13 shares fit in 1,000,000 (939,900 + 140); the paper broker cuts the rest
    assert [f.qty for f in new] == [13]
    assert order.status is OrderStatus.CANCELLED
    assert (order.filled_qty, order.avg_fill_price, order.commission_krw) == (13, 72_300, 140)
    assert om.apply_state(order, broker.get_order(order.broker_order_id)) == []


def test_cancel_through_paper_broker_ends_cancelled():
    clock = Clock()
    clock.set(T0)
    broker = PaperBroker(1_000_000, clock=clock)
    om = OrderManager(broker, MemoryJournal(), clock, "S1")
    order = om.create(
        strategy="s1", stock_code=CODE, side=OrderSide.BUY, order_type=OrderType.LIMIT,
        qty=10, price=70_000,
    )
    om.submit(order)
    assert order.broker_order_id is not None

    assert om.cancel(order) is True
    om.apply_state(order, broker.get_order(order.broker_order_id))

    assert order.status is OrderStatus.CANCELLED
    assert om.cancel(order) is False  # final: not sent again
    assert broker.process_bar(CODE, T0 + timedelta(days=1), 69_000, 69_000, 69_000, 69_000) == []


def test_partial_cancel_through_paper_broker_ends_cancelled_with_the_filled_part():
    clock = Clock()
    clock.set(T0)
    broker = PaperBroker(1_000_000, clock=clock)
    om = OrderManager(broker, MemoryJournal(), clock, "S1")
    order = om.create(
        strategy="s1", stock_code=CODE, side=OrderSide.BUY, order_type=OrderType.LIMIT,
        qty=10, price=70_000,
    )
    om.submit(order)
    assert order.broker_order_id is not None
    broker.cancel_order(order.broker_order_id, CODE, 4)

    broker.process_bar(CODE, T0 + timedelta(days=1), 70_000, 70_000, 70_000, 70_000)
    new = om.apply_state(order, broker.get_order(order.broker_order_id))

    assert [(f.qty, f.price) for f in new] == [(6, 70_000)]
    assert order.status is OrderStatus.CANCELLED  # 4 of 10 never filled
    assert (order.filled_qty, order.commission_krw) == (6, 63)  # 420,000 × 0.00015


def test_an_order_is_never_submitted_twice():
    om, executor, _ = make("B1")
    order = new_order(om, qty=10)
    om.submit(order)
    with pytest.raises(ValueError, match="only a new order is sent"):
        om.submit(order)
    assert len(executor.submits) == 1
