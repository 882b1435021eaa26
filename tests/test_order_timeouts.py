"""Order timeouts and re-placement (``Trader.manage_timeouts`` → cancel → ``poll_orders`` →
re-placement) over ``PaperBroker`` with a clock the test moves, and the grace period of
``OrderManager.resolve_unknown``."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd
import pytest

from api.paper import PaperBroker
from core.fund_manager import FundManager
from core.journal import MemoryJournal
from core.order_manager import OrderManager, OrderPolicy
from core.portfolio import Portfolio
from core.risk import RiskManager, TradingState
from core.trader import StrategySlot, Trader
from framework.bars import Bars
from framework.errors import (
    OrderRejectedError,
    TransientBrokerError,
    UnknownOrderOutcomeError,
)
from framework.events import Event
from framework.executor import OrderExecutor, OrderState
from framework.types import (
    Order,
    OrderRequest,
    OrderSide,
    OrderStatus,
    OrderType,
    Signal,
    SignalType,
)
from strategies.base import BaseStrategy
from strategies.config import StrategyConfig
from tests.fakes.clock import KST, FakeClock
from utils.fees import FeeModel
from utils.ticks import is_valid_tick

CODE = "005930"
OTHER = "000660"
T0 = datetime(2025, 6, 16, 9, 30, tzinfo=KST)
POLICY = OrderPolicy(buy_timeout_s=60, sell_timeout_s=30, max_replacements=2)
FEES = FeeModel()


class Scripted(BaseStrategy):
    """Answers ``generate_signal`` with whatever the test put in ``answer``."""

    answer: Signal | None = None

    def generate_signal(self, stock_code: str, data: Bars, timeframe: str) -> Signal | None:
        return self.answer


class ThinBook(PaperBroker):
    """A paper broker that fills at most ``depth`` shares of an order per quote; the rest
    of the order keeps resting (a partial fill)."""

    depth = 4

    def _try_fill(self, order: Any, when: datetime, open_: int, high: int, low: int) -> Any:
        excess = max(0, order.remaining - self.depth)
        order.cancelled_qty += excess  # hide the excess from the parent's fill
        try:
            fill = super()._try_fill(order, when, open_, high, low)
        finally:
            order.cancelled_qty -= excess
        if fill is not None and order.remaining > 0:  # reopen: the rest keeps resting
            order.status = OrderStatus.SUBMITTED
            order.message = ""
            self._pending.setdefault(order.request.stock_code, []).append(order)
        return fill


@dataclass
class Rig:
    clock: FakeClock
    broker: PaperBroker
    trader: Trader
    journal: MemoryJournal
    events: list[Event] = field(default_factory=list)

    @property
    def slot(self) -> StrategySlot:
        return self.trader.slots["s1"]

    @property
    def funds(self) -> FundManager:
        return self.trader._funds

    def quote(self, price: int, code: str = CODE, after: float = 1.0) -> None:
        self.clock.advance(after)
        self.broker.process_quote(code, self.clock(), price)
        self.trader.update_price(code, float(price))
        self.trader.poll_orders(code)

    def signal(self, kind: SignalType, code: str = CODE, **kw: Any) -> Order:
        order = self.trader.handle_signal(self.slot, Signal(kind, code, confidence=100.0, **kw))
        assert order is not None
        return order

    def evaluate(self, signal: Signal) -> None:
        strategy = self.slot.strategy
        assert isinstance(strategy, Scripted)
        strategy.answer = signal
        frame = pd.DataFrame(
            {"open": [1.0], "high": [1.0], "low": [1.0], "close": [1.0], "volume": [1.0]},
            index=pd.DatetimeIndex([pd.Timestamp(T0)]),
        )
        window = self.trader.build_window(self.slot, signal.stock_code, frame)
        self.trader.evaluate(self.slot, signal.stock_code, window)

    def tick(self, seconds: float) -> tuple[int, list[Order]]:
        """``seconds`` later: poll, send timeout cancels, poll again (the live fills job
        twice). Returns the cancels sent and the orders created meanwhile."""
        before = set(self.trader._orders.orders)
        self.clock.advance(seconds)
        self.trader.poll_orders()
        sent = self.trader.manage_timeouts()
        self.trader.poll_orders()
        new = [o for cid, o in self.trader._orders.orders.items() if cid not in before]
        return sent, new

    def orders(self, side: OrderSide | None = None, code: str = CODE) -> list[Order]:
        return [
            o
            for o in self.trader._orders.orders.values()
            if (side is None or o.side is side) and o.stock_code == code
        ]

    def broker_status(self, order: Order) -> OrderStatus:
        assert order.broker_order_id is not None
        return self.broker.get_order(order.broker_order_id).status

    def event_messages(self, kind: str) -> list[str]:
        return [e.message for e in self.events if e.kind == kind]

    def event_data(self, kind: str) -> list[dict[str, Any]]:
        return [e.data() for e in self.events if e.kind == kind]


def make_rig(
    cash: int = 10_000_000,
    policy: OrderPolicy = POLICY,
    broker_cls: type[PaperBroker] = PaperBroker,
) -> Rig:
    clock = FakeClock(T0)
    journal = MemoryJournal()
    broker = broker_cls(cash, FEES, clock=clock)
    cfg = StrategyConfig(
        name="s1",
        universe=(CODE, OTHER),
        risk_management={"max_position_size": 1.0, "max_daily_trades": 10},
    )
    events: list[Event] = []
    trader = Trader(
        [Scripted(cfg)],
        broker=broker,
        executor=broker,
        data_provider=None,  # type: ignore[arg-type]  # never asked for data here
        funds=FundManager(cash),
        orders=OrderManager(broker, journal, clock, "T"),
        risk=RiskManager(),
        portfolio=Portfolio(),
        journal=journal,
        fees=FEES,
        clock=clock,
        order_policy=policy,
        subscribers=[events.append],
    )
    broker.buying_power = lambda req: trader.buying_power_for(req.client_order_id)
    trader.start()
    return Rig(clock, broker, trader, journal, events)


def resting_buy(rig: Rig, limit: int = 9_500, qty: int = 10, price: int = 10_000) -> Order:
    """A limit buy below the market: it rests."""
    rig.quote(price)
    order = rig.signal(SignalType.BUY, limit_price=limit, qty=qty)
    assert (order.order_type, order.status) == (OrderType.LIMIT, OrderStatus.SUBMITTED)
    return order


def cost(qty: int, price: int) -> int:
    return math.ceil(qty * price * (1.0 + FEES.commission_rate_f))


# ================================================================== buy timeout and cancel


def test_a_resting_limit_buy_is_cancelled_after_the_buy_timeout_and_not_before():
    rig = make_rig()
    order = resting_buy(rig)

    assert rig.tick(59.9) == (0, [])
    assert order.status is OrderStatus.SUBMITTED
    assert rig.broker_status(order) is OrderStatus.SUBMITTED

    rig.clock.advance(0.1)  # 60 s after the order was created
    assert rig.trader.manage_timeouts() == 1
    assert rig.broker_status(order) is OrderStatus.CANCELLED
    assert rig.trader.manage_timeouts() == 0  # one cancel per order
    [message] = rig.event_messages("order_timeout")
    assert order.client_order_id in message


def test_no_timeout_without_a_policy():
    rig = make_rig(policy=OrderPolicy())
    order = resting_buy(rig)
    assert rig.tick(3_600) == (0, [])
    assert order.status is OrderStatus.SUBMITTED


# ========================================================================== re-placement


def test_timed_out_buy_is_re_placed_at_the_current_price_on_the_tick_grid():
    rig = make_rig()
    order = resting_buy(rig)
    rig.trader.update_price(CODE, 10_012.0)  # off the 10-won grid of this band

    sent, [new] = rig.tick(60)

    assert sent == 1
    assert order.status is OrderStatus.CANCELLED
    assert new.replaces == order.client_order_id
    assert new.attempt == 1
    assert (new.side, new.order_type, new.qty) == (OrderSide.BUY, OrderType.LIMIT, 10)
    assert new.price == 10_020  # a buy rounds up onto the grid, to get filled
    assert new.price is not None
    assert is_valid_tick(new.price)
    assert new.status is OrderStatus.SUBMITTED
    [cancelled] = rig.event_data("order_cancelled")
    assert cancelled["client_order_id"] == order.client_order_id
    assert cancelled["reason"] == "timeout"
    # the reservation of the old order went back; the new one has its own
    [reservation] = rig.funds.reservations()
    assert reservation.amount_krw == cost(10, 10_020)


def test_a_re_placement_does_not_count_as_a_new_trade():
    rig = make_rig()
    resting_buy(rig)
    assert (rig.slot.trades_today, rig.trader._risk.trades_today) == (1, 1)
    rig.tick(60)
    rig.tick(60)
    assert [o.attempt for o in rig.orders(OrderSide.BUY)] == [0, 1, 2]
    assert (rig.slot.trades_today, rig.trader._risk.trades_today) == (1, 1)


def test_the_re_placement_after_a_partial_fill_is_for_the_unfilled_rest():
    rig = make_rig(broker_cls=ThinBook)
    order = resting_buy(rig, limit=9_500, qty=10)
    rig.quote(9_500)  # 4 of 10 fill; the rest keeps resting
    assert (order.status, order.filled_qty) == (OrderStatus.PARTIALLY_FILLED, 4)
    rig.quote(9_800)  # above the limit: nothing more

    _, [new] = rig.tick(58)  # 60 s after creation

    assert order.status is OrderStatus.CANCELLED
    assert order.filled_qty == 4
    assert new.replaces == order.client_order_id
    assert (new.qty, new.price, new.attempt) == (6, 9_800, 1)
    assert rig.trader._portfolio.qty("s1", CODE) == 4
    [reservation] = rig.funds.reservations()
    assert reservation.amount_krw == cost(6, 9_800)


def test_the_re_placement_is_sized_to_the_free_cash_and_never_reserves_more():
    rig = make_rig(cash=150_000)
    rig.quote(100_000, OTHER)
    order = resting_buy(rig, limit=9_500, qty=5)
    rig.clock.advance(30)
    rig.signal(SignalType.BUY, OTHER, limit_price=90_000, qty=1)  # holds 90,014 KRW
    other_reserved = cost(1, 90_000)
    assert rig.funds.reserved_krw == other_reserved + cost(5, 9_500)
    rig.trader.update_price(CODE, 12_000.0)  # 5 shares would now need 60,009 KRW

    _, [new] = rig.tick(30)

    assert new.replaces == order.client_order_id
    free_before = 150_000 - other_reserved  # 59,986 KRW once the old reservation went
    assert new.qty == FEES.max_affordable_qty(free_before, 12_000) == 4
    assert rig.funds.reserved_krw == other_reserved + cost(4, 12_000)
    assert rig.funds.reserved_krw <= rig.funds.cash_krw
    rig.quote(12_000)
    assert new.status is OrderStatus.FILLED
    assert rig.broker.cash_krw >= 0
    assert rig.funds.cash_krw == rig.broker.cash_krw


def test_no_re_placement_when_no_share_is_affordable():
    rig = make_rig(cash=100_000)
    order = resting_buy(rig, limit=9_500, qty=10)
    rig.trader.update_price(CODE, 200_000.0)
    _, new = rig.tick(60)
    assert order.status is OrderStatus.CANCELLED
    assert new == []
    assert rig.event_messages("order_not_replaced")
    assert rig.funds.reserved_krw == 0


def test_at_most_max_replacements_re_placements_happen():
    rig = make_rig()
    first = resting_buy(rig)
    _, [second] = rig.tick(60)
    _, [third] = rig.tick(60)
    _, none = rig.tick(60)

    assert none == []
    assert [o.attempt for o in (first, second, third)] == [0, 1, 2]
    assert third.replaces == second.client_order_id
    assert all(o.status is OrderStatus.CANCELLED for o in (first, second, third))
    assert rig.trader.open_orders() == []
    assert rig.funds.reserved_krw == 0
    [message] = rig.event_messages("order_not_replaced")
    assert "replacements used up" in message
    assert rig.tick(600) == (0, [])


def test_max_replacements_zero_cancels_without_re_placing():
    rig = make_rig(policy=OrderPolicy(buy_timeout_s=60, max_replacements=0))
    order = resting_buy(rig)
    sent, new = rig.tick(60)
    assert (sent, new) == (1, [])
    assert order.status is OrderStatus.CANCELLED


@pytest.mark.parametrize("kind", [SignalType.HOLD, SignalType.SELL, SignalType.STRONG_SELL])
def test_no_re_placement_when_the_latest_signal_since_the_order_is_hold_or_the_other_side(
    kind: SignalType,
):
    rig = make_rig()
    rig.quote(10_000)
    rig.evaluate(Signal(SignalType.BUY, CODE, confidence=100.0, qty=10, limit_price=9_500))
    [order] = rig.orders(OrderSide.BUY)
    rig.clock.advance(10)
    rig.evaluate(Signal(kind, CODE))  # the strategy changed its mind

    sent, new = rig.tick(50)

    assert (sent, new) == (1, [])
    assert order.status is OrderStatus.CANCELLED
    [message] = rig.event_messages("order_not_replaced")
    assert "no longer holds" in message
    assert rig.funds.reserved_krw == 0


@pytest.mark.parametrize("kind", [SignalType.BUY, SignalType.STRONG_BUY])
def test_re_placement_when_the_latest_signal_is_still_the_same_side(kind: SignalType):
    rig = make_rig()
    rig.quote(10_000)
    rig.evaluate(Signal(SignalType.BUY, CODE, confidence=100.0, qty=10, limit_price=9_500))
    [order] = rig.orders(OrderSide.BUY)
    rig.clock.advance(10)
    rig.evaluate(Signal(SignalType.HOLD, CODE))
    rig.clock.advance(10)
    rig.evaluate(Signal(kind, CODE, confidence=100.0))  # refused (order open), still wanted

    _, [new] = rig.tick(40)

    assert new.replaces == order.client_order_id


def test_no_re_placement_when_halted():
    rig = make_rig()
    order = resting_buy(rig)
    rig.trader._risk.set_state(TradingState.HALTED)
    sent, new = rig.tick(60)
    assert (sent, new) == (1, [])  # the stale order is still cancelled
    assert order.status is OrderStatus.CANCELLED
    assert "halted" in rig.event_messages("order_not_replaced")[0]
    assert rig.funds.reserved_krw == 0


def hold_and_offer(rig: Rig, qty: int = 10) -> Order:
    """Hold ``qty`` shares bought at 10,000 and offer them with a limit sell at 11,000."""
    rig.quote(10_000)
    rig.signal(SignalType.BUY, qty=qty)
    rig.quote(10_000)
    assert rig.trader._portfolio.qty("s1", CODE) == qty
    sell = rig.signal(SignalType.SELL, limit_price=11_000)
    assert (sell.order_type, sell.status) == (OrderType.LIMIT, OrderStatus.SUBMITTED)
    return sell


def test_reduce_only_re_places_a_sell_but_not_a_buy():
    rig = make_rig()
    buy = resting_buy(rig, price=10_000)
    sell_rig = make_rig()
    sell = hold_and_offer(sell_rig)
    for r in (rig, sell_rig):
        r.trader._risk.set_state(TradingState.REDUCE_ONLY)

    assert rig.tick(60)[1] == []
    assert buy.status is OrderStatus.CANCELLED
    assert "reduce_only" in rig.event_messages("order_not_replaced")[0]

    _, [new_sell] = sell_rig.tick(30)
    assert new_sell.replaces == sell.client_order_id
    assert (new_sell.side, new_sell.qty) == (OrderSide.SELL, 10)


# ============================================================================ sell timeout


def test_a_resting_sell_times_out_after_its_own_timeout():
    rig = make_rig()
    sell = hold_and_offer(rig)

    assert rig.tick(29.9) == (0, [])
    assert sell.status is OrderStatus.SUBMITTED
    rig.trader.update_price(CODE, 10_017.0)
    sent, [new] = rig.tick(0.1)

    assert sent == 1
    assert sell.status is OrderStatus.CANCELLED
    assert new.replaces == sell.client_order_id
    assert new.attempt == 1
    assert (new.side, new.order_type, new.qty) == (OrderSide.SELL, OrderType.LIMIT, 10)
    assert new.price == 10_010  # a sell rounds down onto the grid
    assert rig.funds.reservations() == []  # a sell reserves no cash


def test_a_buy_placed_with_a_sell_is_cancelled_only_at_the_buy_timeout():
    rig = make_rig()
    rig.quote(100_000, OTHER)
    sell = hold_and_offer(rig)
    buy = rig.signal(SignalType.BUY, OTHER, limit_price=90_000, qty=1)  # same instant
    assert buy.created_at == sell.created_at

    assert rig.tick(30)[0] == 1
    assert sell.status is OrderStatus.CANCELLED
    assert buy.status is OrderStatus.SUBMITTED
    rig.tick(29.9)
    assert buy.status is OrderStatus.SUBMITTED
    rig.tick(0.1)
    assert buy.status is OrderStatus.CANCELLED


# ============================================================ unknown outcome grace period


class LostSubmit(OrderExecutor):
    """Every submit times out (unknown outcome). ``find_order`` answers by ``mode``:
    ``"error"`` raises a broker error, ``"missing"`` answers "no such order"."""

    def __init__(self) -> None:
        self.mode = "missing"
        self.lookups = 0

    def submit_order(self, request: OrderRequest) -> str:
        raise UnknownOrderOutcomeError("read timeout")

    def cancel_order(self, broker_order_id: str, stock_code: str, qty: int | None = None) -> None:
        raise OrderRejectedError(f"unknown order {broker_order_id}")

    def get_order(self, broker_order_id: str) -> OrderState:
        raise OrderRejectedError(f"unknown order {broker_order_id}")

    def find_order(self, client_order_id: str) -> OrderState | None:
        self.lookups += 1
        if self.mode == "error":
            raise TransientBrokerError("HTTP 500")
        return None


def unknown_order(mode: str, grace_s: float = 60) -> tuple[OrderManager, LostSubmit, FakeClock]:
    executor = LostSubmit()
    executor.mode = mode
    clock = FakeClock(T0)
    om = OrderManager(executor, MemoryJournal(), clock, "U", unknown_grace_s=grace_s)
    order = om.create(
        strategy="s1",
        stock_code=CODE,
        side=OrderSide.BUY,
        order_type=OrderType.LIMIT,
        qty=10,
        price=9_500,
    )
    om.submit(order)
    assert order.status is OrderStatus.UNKNOWN
    return om, executor, clock


def the_order(om: OrderManager) -> Order:
    [order] = om.orders.values()
    return order


def test_unknown_order_stays_unknown_while_lookups_fail():
    om, executor, clock = unknown_order("error")
    order = the_order(om)
    for _ in range(20):  # ten minutes of failing lookups
        clock.advance(30)
        assert om.resolve_unknown(order) == []
        assert order.status is OrderStatus.UNKNOWN
    assert executor.lookups == 21
    assert order in om.open_orders()


def test_unknown_order_is_rejected_after_not_found_answers_for_the_grace_period():
    om, _, clock = unknown_order("missing")  # first "not found" at submit time
    order = the_order(om)
    clock.advance(59.9)
    om.resolve_unknown(order)
    assert order.status is OrderStatus.UNKNOWN
    clock.advance(0.1)
    om.resolve_unknown(order)
    assert order.status is OrderStatus.REJECTED
    assert "no such order" in order.message
    assert om.open_orders() == []


def test_the_grace_period_starts_with_the_first_not_found_answer_not_with_failed_lookups():
    om, executor, clock = unknown_order("error")
    order = the_order(om)
    clock.advance(600)
    om.resolve_unknown(order)
    executor.mode = "missing"
    clock.advance(1)
    om.resolve_unknown(order)  # the first real answer
    clock.advance(59)
    om.resolve_unknown(order)
    assert order.status is OrderStatus.UNKNOWN
    clock.advance(1)
    om.resolve_unknown(order)
    assert order.status is OrderStatus.REJECTED


def test_unknown_order_found_later_is_adopted_not_rejected():
    om, executor, clock = unknown_order("missing")
    order = the_order(om)
    clock.advance(59)
    om.resolve_unknown(order)
    found = OrderState("B9", OrderStatus.SUBMITTED, qty=10, filled_qty=0)
    executor.find_order = lambda _cid: found  # type: ignore[method-assign]
    clock.advance(10)
    om.resolve_unknown(order)
    assert order.status is OrderStatus.SUBMITTED
    assert order.broker_order_id == "B9"


class LostPaper(PaperBroker):
    """A paper broker whose answer to every buy submit is lost; lookups fail first."""

    lookup_fails = True

    def submit_order(self, request: OrderRequest) -> str:
        if request.side is OrderSide.BUY:
            raise UnknownOrderOutcomeError("read timeout")
        return super().submit_order(request)

    def find_order(self, client_order_id: str) -> OrderState | None:
        if self.lookup_fails:
            raise TransientBrokerError("HTTP 500")
        return super().find_order(client_order_id)


def test_an_unknown_buy_keeps_its_reservation_until_rejected_then_frees_it():
    rig = make_rig(broker_cls=LostPaper)
    broker = rig.broker
    assert isinstance(broker, LostPaper)
    rig.quote(10_000)
    order = rig.signal(SignalType.BUY, limit_price=9_500, qty=10)
    assert order.status is OrderStatus.UNKNOWN
    assert rig.funds.reserved_krw == cost(10, 9_500)

    for _ in range(10):  # failed lookups: still unknown, still reserved, never re-sent
        rig.tick(60)
        assert order.status is OrderStatus.UNKNOWN
    assert rig.funds.reserved_krw == cost(10, 9_500)
    assert len(rig.orders(OrderSide.BUY)) == 1

    broker.lookup_fails = False
    rig.tick(1)
    assert order.status is OrderStatus.UNKNOWN
    rig.tick(60)
    assert order.status is OrderStatus.REJECTED
    assert rig.funds.reserved_krw == 0
    assert not rig.trader._orders.has_open("s1", CODE)
