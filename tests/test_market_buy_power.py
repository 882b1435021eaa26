"""A market buy is sized and reserved at the upper-limit price, as KIS holds its buying power.

KIS holds ``qty × 상한가`` (base price × 1.3 on the tick) plus commission for a market buy and
refuses it when that exceeds the orderable cash, even if the fill would fit. The engine sizes
the buy so that this never happens, and the fill gives the difference back.
"""

from __future__ import annotations

from datetime import datetime

import pytest

from api.paper import PaperBroker
from core.fund_manager import FundManager
from core.journal import MemoryJournal
from core.order_manager import OrderManager
from core.portfolio import Portfolio
from core.risk import RiskManager
from core.trader import Trader
from framework.bars import Bars
from framework.types import OrderStatus, OrderType, Signal, SignalType
from strategies.base import BaseStrategy
from strategies.config import StrategyConfig
from tests.fakes.clock import KST, FakeClock
from utils.fees import FeeModel

CODE = "005930"
T0 = datetime(2025, 6, 16, 9, 30, tzinfo=KST)
CASH = 1_000_000


class Idle(BaseStrategy):
    def generate_signal(self, stock_code: str, data: Bars, timeframe: str) -> Signal | None:
        return None


def rig() -> tuple[FakeClock, PaperBroker, Trader]:
    clock = FakeClock(T0)
    fees = FeeModel()
    broker = PaperBroker(CASH, fees, clock=clock)
    cfg = StrategyConfig(name="s", universe=(CODE,), risk_management={"max_position_size": 1.0})
    journal = MemoryJournal()
    trader = Trader(
        [Idle(cfg)],
        broker=broker,
        executor=broker,
        data_provider=None,  # type: ignore[arg-type]  # never asked for data here
        funds=FundManager(CASH),
        orders=OrderManager(broker, journal, clock, "T"),
        risk=RiskManager(),
        portfolio=Portfolio(),
        journal=journal,
        fees=fees,
        clock=clock,
    )
    broker.buying_power = lambda req: trader.buying_power_for(req.client_order_id)
    trader.start()
    return clock, broker, trader


def cost(qty: int, price: int) -> int:
    """Amount plus 0.015 % commission truncated to the won."""
    return qty * price + qty * price * 15 // 100_000


def most_that_fit(cash: int, price: int) -> int:
    qty = cash // price
    while cost(qty, price) > cash:
        qty -= 1
    return qty


@pytest.mark.parametrize(
    ("price", "base", "upper"),
    [
        (50_000, None, 65_000),  # backtest: the last close is the next session's base
        (50_000, 60_000, 78_000),  # live: down 17 % today, KIS holds 130 % of yesterday's close
        (50_000, 40_000, 52_000),  # live: up 25 % today
    ],
)
def test_a_market_buy_fits_at_the_upper_limit_price(price: int, base: int | None, upper: int):
    clock, broker, trader = rig()
    broker.mark(CODE, price, base_krw=base)  # the quote's price and base, as in a dry run
    trader.update_price(CODE, float(price), base_krw=base)
    order = trader.handle_signal(trader.slots["s"], Signal(SignalType.BUY, CODE, confidence=100))
    assert order is not None
    assert order.order_type is OrderType.MARKET
    qty = min(most_that_fit(CASH, price), most_that_fit(CASH, upper))
    assert order.qty == qty
    assert cost(order.qty, upper) <= CASH  # KIS would hold this much: it fits
    assert trader._funds.free_krw >= 0
    clock.advance(60)
    broker.process_quote(CODE, clock(), price)
    trader.poll_orders(CODE)
    assert broker.get_order(order.broker_order_id or "").status is OrderStatus.FILLED
    assert trader.cash_krw == broker.cash_krw == CASH - cost(qty, price)
    assert trader._funds.reserved_krw == 0  # the difference came back


def test_a_limit_buy_is_sized_at_its_limit():
    _, broker, trader = rig()
    broker.mark(CODE, 50_000)
    trader.update_price(CODE, 50_000.0)
    signal = Signal(SignalType.BUY, CODE, confidence=100, limit_price=50_000)
    order = trader.handle_signal(trader.slots["s"], signal)
    assert order is not None
    assert order.order_type is OrderType.LIMIT
    assert order.qty == most_that_fit(CASH, 50_000)
