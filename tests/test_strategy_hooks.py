"""What a strategy is told and what it may touch: order outcomes reach
``on_order_cancelled`` / ``on_order_rejected``; ``on_init`` hands read-only views."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from api.paper import PaperBroker
from core.engine import build_engine, paper_account
from core.journal import MemoryJournal
from core.order_manager import OrderPolicy
from core.trader import Trader
from framework.bars import Bars
from framework.errors import OrderRejectedError
from framework.events import Event, OrderCancelled, OrderRejected, OrderSubmitted
from framework.types import Order, OrderRequest, Signal, SignalType
from framework.views import AccountView, MarketDataView, OrdersView
from strategies.base import BaseStrategy
from strategies.config import StrategyConfig
from tests.fakes.clock import KST, FakeClock
from utils.fees import FeeModel

CODE = "005930"
T0 = datetime(2025, 6, 16, 9, 30, tzinfo=KST)
CASH = 10_000_000
FEES = FeeModel()


class Watcher(BaseStrategy):
    """Records its hooks and what ``on_init`` gave it."""

    def __init__(self, config: StrategyConfig) -> None:
        super().__init__(config)
        self.cancelled: list[Order] = []
        self.rejected: list[Order] = []
        self.given: tuple[Any, ...] = ()

    def on_init(self, broker: Any, data_provider: Any, orders: Any) -> bool:
        self.given = (broker, data_provider, orders)
        return super().on_init(broker, data_provider, orders)

    def generate_signal(self, stock_code: str, data: Bars, timeframe: str) -> Signal | None:
        return None

    def on_order_cancelled(self, order: Order) -> None:
        self.cancelled.append(order)

    def on_order_rejected(self, order: Order) -> None:
        self.rejected.append(order)


class Refusing(PaperBroker):
    """A paper account whose broker refuses every order."""

    def submit_order(self, request: OrderRequest) -> str:
        raise OrderRejectedError("주문 거부: 테스트")


def engine(
    broker_cls: type[PaperBroker] = PaperBroker,
) -> tuple[FakeClock, PaperBroker, Trader, Watcher, list[Event]]:
    clock = FakeClock(T0)
    strategy = Watcher(StrategyConfig(name="w", universe=(CODE,)))
    funds, paper = paper_account(CASH, FEES, [strategy], clock=clock)
    broker = paper
    if broker_cls is not PaperBroker:
        broker = broker_cls(CASH, FEES, clock=clock, buying_power=paper.buying_power)
    events: list[Event] = []
    trader = build_engine(
        [strategy],
        broker=broker,
        executor=broker,
        data_provider=None,  # type: ignore[arg-type]  # never asked for bars here
        journal=MemoryJournal(),
        fees=FEES,
        clock=clock,
        order_prefix="T",
        funds=funds,
        order_policy=OrderPolicy(buy_timeout_s=60, sell_timeout_s=30, max_replacements=0),
        subscribers=[events.append],
    )
    trader.start()
    broker.process_quote(CODE, clock(), 70_000)
    trader.update_price(CODE, 70_000.0)
    return clock, broker, trader, strategy, events


def limit_buy(trader: Trader, limit: int, qty: int = 10) -> Order | None:
    slot = trader.slots["w"]
    return trader.handle_signal(
        slot, Signal(SignalType.BUY, CODE, confidence=100.0, qty=qty, limit_price=limit)
    )


def test_on_init_gets_read_only_views_that_cannot_place_orders() -> None:
    _, broker, trader, strategy, _ = engine()
    account, market, orders = strategy.given
    assert isinstance(account, AccountView)
    assert isinstance(market, MarketDataView)
    assert isinstance(orders, OrdersView)
    for view in strategy.given:
        assert not hasattr(view, "submit_order")
        assert not hasattr(view, "cancel_order")
    assert account.get_balance().cash_krw == broker.cash_krw
    order = limit_buy(trader, 69_000)
    assert order is not None
    [seen] = orders.open(CODE)
    assert seen.client_order_id == order.client_order_id
    seen.qty = 1  # a copy: the engine's order is untouched
    assert trader.open_orders()[0].qty == 10
    assert orders.get("nobody") is None


def test_a_timed_out_order_reaches_on_order_cancelled_and_is_published() -> None:
    clock, _, trader, strategy, events = engine()
    order = limit_buy(trader, 69_000)  # below the market: it rests
    assert order is not None
    clock.advance(61)
    assert trader.manage_timeouts() == 1
    trader.poll_orders()
    [cancelled] = strategy.cancelled
    assert cancelled.client_order_id == order.client_order_id
    assert cancelled.remaining_qty == 10
    [event] = [e for e in events if isinstance(e, OrderCancelled)]
    assert (event.reason, event.unfilled_qty, event.strategy) == ("timeout", 10, "w")
    assert trader.cash_krw == CASH  # the reservation went back


def test_a_refused_order_reaches_on_order_rejected_and_is_published() -> None:
    _, _, trader, strategy, events = engine(Refusing)
    order = limit_buy(trader, 69_000)
    assert order is not None
    [rejected] = strategy.rejected
    assert rejected.client_order_id == order.client_order_id
    assert "테스트" in rejected.message
    [event] = [e for e in events if isinstance(e, OrderRejected)]
    assert event.client_order_id == order.client_order_id
    assert not [e for e in events if isinstance(e, OrderSubmitted)]
    assert strategy.cancelled == []


def test_a_failing_hook_is_fenced() -> None:
    _, _, trader, strategy, events = engine(Refusing)

    def boom(order: Order) -> None:
        raise RuntimeError("strategy bug")

    strategy.on_order_rejected = boom  # type: ignore[method-assign]
    limit_buy(trader, 69_000)
    assert trader.slots["w"].errors == 1
    assert [e.kind for e in events if e.kind == "strategy_error"] == ["strategy_error"]


@pytest.mark.parametrize("limit", [69_000, 69_500])
def test_the_paper_account_fills_within_the_engines_buying_power(limit: int) -> None:
    clock, broker, trader, _, _ = engine()
    order = limit_buy(trader, limit, qty=100)
    assert order is not None
    broker.process_quote(CODE, clock.advance(1), 68_000)
    trader.poll_orders()
    assert order.filled_qty == 100
    assert trader.cash_krw == broker.cash_krw


def test_hooks_set_on_the_instance_are_called_like_overridden_ones() -> None:
    _, _, trader, strategy, _ = engine()
    calls: list[str] = []
    strategy.on_market_open = lambda: calls.append("open")  # type: ignore[method-assign]
    strategy.on_market_close = lambda: calls.append("close")  # type: ignore[method-assign]
    trader.market_open()
    trader.market_close()
    assert calls == ["open", "close"]
