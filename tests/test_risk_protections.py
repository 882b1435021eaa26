"""Protective exits and pre-trade risk checks: ``core.risk`` on its own, then through a
``Trader`` over ``PaperBroker`` (fills from ``process_quote``) with a clock the test moves."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.paper import PaperBroker
from core.fund_manager import FundManager
from core.journal import MemoryJournal
from core.order_manager import OrderManager, OrderPolicy
from core.portfolio import Portfolio, Position
from core.risk import (
    ExitPolicy,
    RiskLimits,
    RiskManager,
    TradingState,
    exit_trigger,
    stop_level,
    target_level,
)
from core.trader import UNMANAGED, StrategySlot, Trader
from framework.bars import Bars
from framework.types import Order, OrderSide, OrderStatus, OrderType, Signal, SignalType
from strategies.base import BaseStrategy
from strategies.config import RiskManagement, StrategyConfig
from tests.fakes.clock import KST, FakeClock
from utils.fees import FeeModel

CODE = "005930"
OTHER = "000660"
T0 = datetime(2025, 6, 16, 9, 30, tzinfo=KST)


# ============================================================================ exit_trigger


@dataclass
class Pos:
    """The fields :func:`exit_trigger` reads of a position."""

    qty: int
    avg_price: float
    stop_loss: float | None = None
    target_price: float | None = None
    peak_price: float | None = None


STOP5 = ExitPolicy(stop_loss_pct=0.05)
TP10 = ExitPolicy(take_profit_pct=0.10)
TRAIL5 = ExitPolicy(trailing_stop_pct=0.05)


def rule(position: Pos, price: float, policy: ExitPolicy) -> str | None:
    trigger = exit_trigger(position, price, policy)
    return None if trigger is None else trigger.rule


def test_stop_loss_from_the_percentage_fires_at_and_below_the_level():
    pos = Pos(qty=10, avg_price=10_000)
    assert rule(pos, 9_501, STOP5) is None
    trigger = exit_trigger(pos, 9_500, STOP5)
    assert trigger is not None
    assert (trigger.rule, trigger.price, trigger.level) == ("stop_loss", 9_500, 9_500)
    assert rule(pos, 8_000, STOP5) == "stop_loss"
    assert "stop_loss" in trigger.reason


def test_absolute_stop_loss_on_the_position_wins_over_the_percentage():
    below = Pos(qty=10, avg_price=10_000, stop_loss=9_000)
    assert rule(below, 9_400, STOP5) is None  # the 5 % level (9,500) is not used
    trigger = exit_trigger(below, 9_000, STOP5)
    assert trigger is not None
    assert (trigger.rule, trigger.level) == ("stop_loss", 9_000)

    above = Pos(qty=10, avg_price=10_000, stop_loss=9_800)
    trigger = exit_trigger(above, 9_700, STOP5)
    assert trigger is not None
    assert (trigger.rule, trigger.level) == ("stop_loss", 9_800)
    # the absolute stop works with no percentage configured at all
    assert rule(above, 9_800, ExitPolicy()) == "stop_loss"


def test_take_profit_from_the_percentage_fires_at_and_above_the_level():
    pos = Pos(qty=10, avg_price=10_000)
    assert rule(pos, 10_999, TP10) is None
    trigger = exit_trigger(pos, 11_000, TP10)
    assert trigger is not None
    assert (trigger.rule, trigger.level) == ("take_profit", pytest.approx(11_000))
    assert rule(pos, 15_000, TP10) == "take_profit"


def test_absolute_target_price_on_the_position_wins_over_the_percentage():
    lower = Pos(qty=10, avg_price=10_000, target_price=10_500)
    trigger = exit_trigger(lower, 10_500, TP10)
    assert trigger is not None
    assert (trigger.rule, trigger.level) == ("take_profit", 10_500)

    higher = Pos(qty=10, avg_price=10_000, target_price=12_000)
    assert rule(higher, 11_500, TP10) is None  # the 10 % level (11,000) is not used
    assert rule(higher, 12_000, TP10) == "take_profit"


def test_trailing_stop_fires_below_the_peak_once_armed():
    pos = Pos(qty=10, avg_price=10_000, peak_price=12_000)
    assert rule(pos, 11_401, TRAIL5) is None
    trigger = exit_trigger(pos, 11_400, TRAIL5)
    assert trigger is not None
    assert (trigger.rule, trigger.level) == ("trailing_stop", pytest.approx(11_400))


def test_trailing_stop_trails_from_the_entry_price_and_needs_a_peak():
    # the peak starts at the entry fill price: a position that never rose is trailed from it
    entry = Pos(qty=10, avg_price=10_000, peak_price=10_000)
    assert rule(entry, 9_501, TRAIL5) is None
    assert rule(entry, 9_500, TRAIL5) == "trailing_stop"
    assert rule(Pos(qty=10, avg_price=10_000, peak_price=None), 8_000, TRAIL5) is None


def test_the_higher_of_stop_loss_and_trailing_stop_applies():
    # stop 9,500 and trail 95 % of 10,200 = 9,690: the trail is higher, it fires at 9,690
    pos = Pos(qty=10, avg_price=10_000, peak_price=10_200)
    both = ExitPolicy(stop_loss_pct=0.05, trailing_stop_pct=0.05)
    assert rule(pos, 9_691, both) is None
    trigger = exit_trigger(pos, 9_400, both)
    assert trigger is not None
    assert (trigger.rule, trigger.level) == ("trailing_stop", pytest.approx(9_690))
    # a peak still near the entry: the stop loss (9,500) is above the trail (95 % of 9,900)
    low_peak = Pos(qty=10, avg_price=10_000, peak_price=9_900)
    assert rule(low_peak, 9_400, both) == "stop_loss"
    # an absolute stop above the target: both crossed, the stop wins
    odd = Pos(qty=10, avg_price=10_000, stop_loss=12_000, target_price=11_000)
    assert rule(odd, 11_500, ExitPolicy()) == "stop_loss"


def test_trailing_stop_takes_precedence_over_take_profit():
    # target 11,000 and trail 90 % of 13,000 = 11,700 both crossed at 11,500
    pos = Pos(qty=10, avg_price=10_000, peak_price=13_000)
    policy = ExitPolicy(take_profit_pct=0.10, trailing_stop_pct=0.10)
    assert rule(pos, 11_500, policy) == "trailing_stop"


ALL = ExitPolicy(stop_loss_pct=0.05, take_profit_pct=0.10, trailing_stop_pct=0.05)


@pytest.mark.parametrize("qty", [0, -5])
def test_no_exit_for_a_position_without_shares(qty: int):
    pos = Pos(qty=qty, avg_price=10_000, peak_price=12_000)
    for price in (1.0, 9_000.0, 11_400.0, 50_000.0):
        assert exit_trigger(pos, price, ALL) is None


@pytest.mark.parametrize("price", [0.0, -1.0, -9_000.0, math.nan])
def test_no_exit_for_a_price_that_is_not_positive(price: float):
    pos = Pos(qty=10, avg_price=10_000, stop_loss=9_000, target_price=1.0, peak_price=12_000)
    assert exit_trigger(pos, price, ALL) is None


def test_percentage_levels_need_a_positive_average_price():
    pos = Pos(qty=10, avg_price=0.0)
    assert stop_level(pos, ALL) is None
    assert target_level(pos, ALL) is None
    assert exit_trigger(pos, 5_000, ALL) is None


prices = st.floats(min_value=1.0, max_value=5_000_000.0, allow_nan=False)
maybe_price = st.none() | prices
fraction = st.none() | st.floats(min_value=0.001, max_value=0.99)
profit = st.none() | st.floats(min_value=0.001, max_value=5.0)


@settings(max_examples=400, deadline=None)
@given(
    avg=prices,
    peak=maybe_price,
    price=prices,
    stop_abs=maybe_price,
    target_abs=maybe_price,
    sl=fraction,
    tp=profit,
    trail=fraction,
    qty=st.integers(min_value=1, max_value=10_000),
)
def test_exit_trigger_property_fires_exactly_when_a_level_is_crossed(
    avg: float,
    peak: float | None,
    price: float,
    stop_abs: float | None,
    target_abs: float | None,
    sl: float | None,
    tp: float | None,
    trail: float | None,
    qty: int,
):
    pos = Pos(qty, avg, stop_loss=stop_abs, target_price=target_abs, peak_price=peak)
    policy = ExitPolicy(stop_loss_pct=sl, take_profit_pct=tp, trailing_stop_pct=trail)
    stop = stop_abs if stop_abs is not None else (None if sl is None else avg * (1 - sl))
    target = target_abs if target_abs is not None else (None if tp is None else avg * (1 + tp))
    trail_level = peak * (1 - trail) if peak is not None and trail is not None else None
    # the higher of the two stop levels applies
    use_trail = trail_level is not None and (stop is None or trail_level > stop)
    level = trail_level if use_trail else stop

    stop_hit = not use_trail and level is not None and price <= level
    trail_hit = use_trail and level is not None and price <= level
    target_hit = target is not None and price >= target

    trigger = exit_trigger(pos, price, policy)
    if trigger is None:
        assert not stop_hit
        assert not trail_hit
        assert not target_hit
        return
    assert trigger.price == price
    if trigger.rule == "stop_loss":
        assert stop is not None
        assert not use_trail
        assert trigger.level == pytest.approx(stop)
        assert price <= trigger.level
    elif trigger.rule == "trailing_stop":
        assert use_trail
        assert trail_level is not None
        assert trigger.level == pytest.approx(trail_level)
        assert price <= trigger.level < peak  # type: ignore[operator]
    else:
        assert trigger.rule == "take_profit"
        assert not stop_hit
        assert not trail_hit
        assert target is not None
        assert trigger.level == pytest.approx(target)
        assert price >= trigger.level
    # the first crossed level in precedence order is the one reported
    expected = "stop_loss" if stop_hit else "trailing_stop" if trail_hit else "take_profit"
    assert trigger.rule == expected


@settings(max_examples=100, deadline=None)
@given(avg=prices, peak=maybe_price, stop_abs=maybe_price, target_abs=maybe_price)
def test_exit_trigger_property_never_fires_on_nan_or_non_positive_price(
    avg: float, peak: float | None, stop_abs: float | None, target_abs: float | None
):
    pos = Pos(10, avg, stop_loss=stop_abs, target_price=target_abs, peak_price=peak)
    for price in (math.nan, 0.0, -avg):
        assert exit_trigger(pos, price, ALL) is None


# ============================================================================= RiskManager

RISK = RiskManagement(max_daily_trades=5)


def buy(code: str = CODE) -> Signal:
    return Signal(SignalType.BUY, code, confidence=100.0)


def sell(code: str = CODE) -> Signal:
    return Signal(SignalType.SELL, code)


def check(
    rm: RiskManager,
    signal: Signal,
    *,
    risk: RiskManagement = RISK,
    trades_today: int = 0,
    held: int = 10,
    strategy: str = "s1",
    now: datetime = T0,
) -> str | None:
    return rm.check_signal(
        signal,
        risk,
        trades_today=trades_today,
        has_open_order=False,
        position_qty=held,
        strategy=strategy,
        now=now,
    )


def test_active_state_allows_buys_and_sells():
    rm = RiskManager()
    assert rm.state is TradingState.ACTIVE
    assert check(rm, buy()) is None
    assert check(rm, sell()) is None


def test_halted_refuses_buys_and_sells():
    rm = RiskManager()
    rm.set_state(TradingState.HALTED)
    for kind in SignalType:
        if kind is SignalType.HOLD:
            continue
        reason = check(rm, Signal(kind, CODE, confidence=100.0))
        assert reason is not None
        assert "halted" in reason


def test_reduce_only_refuses_buys_but_lets_sells_through():
    rm = RiskManager()
    rm.set_state(TradingState.REDUCE_ONLY)
    for kind in (SignalType.BUY, SignalType.STRONG_BUY):
        reason = check(rm, Signal(kind, CODE, confidence=100.0))
        assert reason is not None
        assert "reduce-only" in reason
    assert check(rm, sell()) is None
    assert check(rm, Signal(SignalType.STRONG_SELL, CODE)) is None


def test_a_sell_needs_a_position_and_no_open_order():
    rm = RiskManager()
    assert check(rm, sell(), held=0) == "no position to sell"
    reason = rm.check_signal(sell(), RISK, trades_today=0, has_open_order=True, position_qty=10)
    assert reason is not None
    assert "still open" in reason


def test_set_state_from_another_thread_is_seen_by_the_checks():
    rm = RiskManager()
    assert check(rm, buy()) is None
    ready = threading.Barrier(2)

    def controller() -> None:
        ready.wait()
        rm.set_state(TradingState.HALTED)

    thread = threading.Thread(target=controller)
    thread.start()
    ready.wait()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert rm.state is TradingState.HALTED
    reason = check(rm, buy())
    assert reason is not None
    assert "halted" in reason


def test_global_max_trades_per_day_refuses_buys_once_reached():
    rm = RiskManager(RiskLimits(max_trades_per_day=2))
    rm.record_trade()
    assert check(rm, buy()) is None
    rm.record_trade()
    reason = check(rm, buy())
    assert reason is not None
    assert "max_trades_per_day 2" in reason
    assert check(rm, sell()) is None  # a limit on trades never traps a position
    rm.start_day(date(2025, 6, 17), 10_000_000)
    assert rm.trades_today == 0
    assert check(rm, buy()) is None


def test_strategy_max_daily_trades_refuses_buys_once_reached():
    rm = RiskManager()
    risk = RiskManagement(max_daily_trades=2)
    assert check(rm, buy(), risk=risk, trades_today=1) is None
    reason = check(rm, buy(), risk=risk, trades_today=2)
    assert reason is not None
    assert "max_daily_trades 2" in reason
    assert check(rm, sell(), risk=risk, trades_today=2) is None


def test_cooldown_after_a_sell_refuses_a_buy_of_the_same_strategy_and_stock():
    rm = RiskManager(RiskLimits(cooldown_s=300))
    rm.record_sell("s1", CODE, T0)
    assert rm.cooldown_until("s1", CODE) == T0 + timedelta(seconds=300)
    reason = check(rm, buy(), now=T0 + timedelta(seconds=299))
    assert reason is not None
    assert "cooldown" in reason
    assert check(rm, buy(), now=T0 + timedelta(seconds=300)) is None
    assert check(rm, buy(), now=T0 + timedelta(hours=1)) is None


def test_cooldown_is_per_strategy_and_stock():
    rm = RiskManager(RiskLimits(cooldown_s=300))
    rm.record_sell("s1", CODE, T0)
    soon = T0 + timedelta(seconds=10)
    assert check(rm, buy(), strategy="s1", now=soon) is not None
    assert check(rm, buy(), strategy="s2", now=soon) is None
    assert check(rm, buy(OTHER), strategy="s1", now=soon) is None


def test_no_cooldown_when_cooldown_s_is_zero():
    rm = RiskManager(RiskLimits(cooldown_s=0))
    rm.record_sell("s1", CODE, T0)
    assert rm.cooldown_until("s1", CODE) is None
    assert check(rm, buy(), now=T0) is None


DAY1 = date(2025, 6, 16)
DAY2 = date(2025, 6, 17)


def test_daily_loss_lock_engages_once_equity_falls_to_the_limit():
    rm = RiskManager(RiskLimits(daily_loss_limit_pct=0.02))
    rm.start_day(DAY1, 10_000_000)
    assert rm.update_equity(9_800_001) is False
    assert not rm.daily_loss_locked
    assert check(rm, buy()) is None
    assert rm.update_equity(9_800_000) is True  # exactly 2 % down
    assert rm.daily_loss_locked
    reason = check(rm, buy())
    assert reason is not None
    assert "daily loss lock" in reason
    assert check(rm, sell()) is None  # exits stay possible
    assert rm.update_equity(9_000_000) is False  # engages once, reported once
    assert rm.update_equity(10_500_000) is False  # a recovery does not unlock the day
    assert rm.daily_loss_locked


def test_daily_loss_lock_resets_on_a_new_day_but_not_on_the_same_day():
    rm = RiskManager(RiskLimits(daily_loss_limit_pct=0.02))
    rm.start_day(DAY1, 10_000_000)
    rm.record_trade()
    rm.update_equity(9_700_000)
    assert rm.daily_loss_locked

    rm.start_day(DAY1, 9_700_000)  # same day again (a restart): nothing resets
    assert rm.daily_loss_locked
    assert rm.day_start_equity_krw == 10_000_000
    assert rm.trades_today == 1

    rm.start_day(DAY2, 9_700_000)
    assert not rm.daily_loss_locked
    assert rm.day_start_equity_krw == 9_700_000
    assert rm.trades_today == 0
    assert check(rm, buy()) is None
    # the new day's limit is measured from the new start
    assert rm.update_equity(9_506_001) is False
    assert rm.update_equity(9_506_000) is True


def test_no_daily_loss_lock_without_a_limit_or_a_day_start():
    rm = RiskManager(RiskLimits())
    rm.start_day(DAY1, 10_000_000)
    assert rm.update_equity(1) is False
    limited = RiskManager(RiskLimits(daily_loss_limit_pct=0.02))
    assert limited.update_equity(1) is False  # start_day never called
    assert not limited.daily_loss_locked


def test_portfolio_stop_is_measured_against_the_high_water_mark():
    rm = RiskManager(RiskLimits(portfolio_stop_pct=0.10))
    rm.start_day(DAY1, 10_000_000)
    assert not rm.portfolio_stop_hit(9_000_001)
    assert rm.portfolio_stop_hit(9_000_000)
    rm.update_equity(12_000_000)  # new high-water mark
    assert rm.peak_equity_krw == 12_000_000
    assert not rm.portfolio_stop_hit(10_800_001)
    assert rm.portfolio_stop_hit(10_800_000)  # above the day's start, 10 % below the peak
    rm.update_equity(11_000_000)  # a lower equity does not lower the mark
    rm.start_day(DAY2, 11_000_000)
    assert rm.peak_equity_krw == 12_000_000
    assert rm.portfolio_stop_hit(10_800_000)


def test_no_portfolio_stop_without_a_limit_or_a_mark():
    assert not RiskManager(RiskLimits()).portfolio_stop_hit(1)
    rm = RiskManager(RiskLimits(portfolio_stop_pct=0.10))
    assert not rm.portfolio_stop_hit(1)  # no equity seen yet


def test_check_order_caps_the_amount_of_a_buy():
    rm = RiskManager(RiskLimits(max_order_amount_krw=1_000_000))
    assert rm.check_order(OrderSide.BUY, 10, 100_000) is None  # exactly the cap
    reason = rm.check_order(OrderSide.BUY, 11, 100_000)
    assert reason is not None
    assert "max_order_amount" in reason
    assert rm.check_order(OrderSide.BUY, 1, 1_000_001) is not None


def test_check_order_caps_the_quantity_of_a_buy():
    rm = RiskManager(RiskLimits(max_order_qty=50))
    assert rm.check_order(OrderSide.BUY, 50, 1_000) is None
    reason = rm.check_order(OrderSide.BUY, 51, 1_000)
    assert reason is not None
    assert "max_order_qty 50" in reason


def test_check_order_refuses_zero_shares_and_never_caps_a_sell():
    rm = RiskManager(RiskLimits(max_order_amount_krw=1_000_000, max_order_qty=50))
    assert rm.check_order(OrderSide.BUY, 0, 1_000) == "quantity is zero"
    assert rm.check_order(OrderSide.SELL, 0, 1_000) == "quantity is zero"
    # exits of a position bought over several days must not be blocked by the caps
    assert rm.check_order(OrderSide.SELL, 1_000, 100_000) is None


# ============================================================ Trader over PaperBroker


class Scripted(BaseStrategy):
    """Answers ``generate_signal`` with whatever the test put in ``answer``."""

    answer: Signal | None = None

    def generate_signal(self, stock_code: str, data: Bars, timeframe: str) -> Signal | None:
        return self.answer


def strategy(name: str = "s1", **risk: Any) -> Scripted:
    cfg = {"max_position_size": 1.0, "max_daily_trades": 10, **risk}
    return Scripted(StrategyConfig(name=name, universe=(CODE, OTHER), risk_management=cfg))


@dataclass
class Rig:
    clock: FakeClock
    broker: PaperBroker
    trader: Trader
    journal: MemoryJournal
    events: list[str] = field(default_factory=list)

    @property
    def risk(self) -> RiskManager:
        return self.trader._risk

    def slot(self, name: str = "s1") -> StrategySlot:
        return self.trader.slots[name]

    def quote(self, price: int, code: str = CODE, after: float = 1.0) -> None:
        """A live price ``after`` seconds later: the paper broker fills what rests, the
        trader marks the price and polls the stock's orders."""
        self.clock.advance(after)
        self.broker.process_quote(code, self.clock(), price)
        self.trader.update_price(code, float(price))
        self.trader.poll_orders(code)

    def signal(self, kind: SignalType, code: str = CODE, name: str = "s1", **kw: Any) -> Order:
        order = self.trader.handle_signal(
            self.slot(name), Signal(kind, code, confidence=100.0, **kw)
        )
        assert order is not None
        return order

    def hold(self, qty: int, price: int, code: str = CODE, name: str = "s1") -> Position:
        """Buy ``qty`` at market and fill it at ``price``."""
        self.quote(price, code)
        order = self.signal(SignalType.BUY, code, name, qty=qty)
        self.quote(price, code)
        assert order.status is OrderStatus.FILLED
        pos = self.trader.position(name, code)
        assert pos is not None
        assert pos.qty == qty
        return pos

    def orders(self, side: OrderSide | None = None, code: str | None = None) -> list[Order]:
        return [
            o
            for o in self.trader._orders.orders.values()
            if (side is None or o.side is side) and (code is None or o.stock_code == code)
        ]

    def broker_status(self, order: Order) -> OrderStatus:
        assert order.broker_order_id is not None
        return self.broker.get_order(order.broker_order_id).status


def make_rig(
    *strategies: BaseStrategy,
    cash: int = 10_000_000,
    policy: OrderPolicy | None = None,
    default_exits: ExitPolicy | None = None,
    limits: RiskLimits | None = None,
    holdings: dict[str, tuple[int, int]] | None = None,
    broker_cls: type[PaperBroker] = PaperBroker,
) -> Rig:
    clock = FakeClock(T0)
    fees = FeeModel()
    journal = MemoryJournal()
    broker = broker_cls(cash, fees, clock=clock)
    if holdings:
        broker.seed(cash, holdings)
    strategies = strategies or (strategy(),)
    funds = FundManager(cash, {s.name: 1.0 for s in strategies})
    events: list[str] = []
    trader = Trader(
        strategies,
        broker=broker,
        executor=broker,
        data_provider=None,  # type: ignore[arg-type]  # never asked for data here
        funds=funds,
        orders=OrderManager(broker, journal, clock, "T"),
        risk=RiskManager(limits),
        portfolio=Portfolio(),
        journal=journal,
        fees=fees,
        clock=clock,
        order_policy=policy,
        default_exits=default_exits,
        subscribers=[lambda event: events.append(event.kind)],
    )
    broker.buying_power = lambda req: trader.buying_power_for(req.client_order_id)
    trader.start()
    return Rig(clock, broker, trader, journal, events)


def test_stop_loss_sells_the_position_with_one_market_order_naming_the_rule():
    rig = make_rig(strategy(stop_loss_pct=0.05, take_profit_pct=0.5))
    rig.hold(10, 10_000)
    rig.quote(9_600)
    assert rig.trader.check_exits(CODE) == []
    rig.quote(9_400)

    sent = rig.trader.check_exits(CODE)

    assert len(sent) == 1
    exit_order = sent[0]
    assert (exit_order.side, exit_order.order_type) == (OrderSide.SELL, OrderType.MARKET)
    assert exit_order.qty == 10
    assert exit_order.price is None
    assert exit_order.status is OrderStatus.SUBMITTED
    assert any("stop_loss" in r for r in exit_order.reasons)
    assert exit_order.metadata["exit_rule"] == "stop_loss"
    assert "risk_exit" in rig.events
    rig.quote(9_300)
    assert exit_order.status is OrderStatus.FILLED
    assert rig.trader.position("s1", CODE) is None
    trip = rig.trader.round_trips()[-1]
    assert any("stop_loss" in r for r in trip.exit_reasons)


def test_a_second_check_while_the_exit_is_open_sends_nothing_and_keeps_the_exit():
    rig = make_rig(strategy(stop_loss_pct=0.05))
    rig.hold(10, 10_000)
    rig.quote(9_400)
    [exit_order] = rig.trader.check_exits(CODE)

    rig.clock.advance(1)
    assert rig.trader.check_exits(CODE) == []
    rig.trader.poll_orders()
    assert rig.trader.check_exits(CODE) == []

    # the exit already sent is left working, not cancelled by the later checks
    assert exit_order.status is OrderStatus.SUBMITTED
    assert rig.broker_status(exit_order) is OrderStatus.SUBMITTED
    assert len(rig.orders(OrderSide.SELL)) == 1
    rig.quote(9_300)
    assert exit_order.status is OrderStatus.FILLED
    assert rig.broker.holding_qty(CODE) == 0


def test_halted_blocks_the_protective_exit():
    rig = make_rig(strategy(stop_loss_pct=0.05))
    rig.hold(10, 10_000)
    rig.risk.set_state(TradingState.HALTED)
    rig.quote(9_000)
    assert rig.trader.check_exits(CODE) == []
    assert rig.orders(OrderSide.SELL) == []
    pos = rig.trader.position("s1", CODE)
    assert pos is not None
    assert pos.qty == 10


def test_reduce_only_does_not_block_the_protective_exit():
    rig = make_rig(strategy(stop_loss_pct=0.05))
    rig.hold(10, 10_000)
    rig.risk.set_state(TradingState.REDUCE_ONLY)
    rig.quote(9_000)
    [exit_order] = rig.trader.check_exits(CODE)
    assert exit_order.side is OrderSide.SELL
    assert exit_order.qty == 10


def test_take_profit_and_trailing_stop_exit_through_the_trader():
    rig = make_rig(
        strategy("tp", stop_loss_pct=0.05, take_profit_pct=0.10),
        strategy("trail", stop_loss_pct=0.05, take_profit_pct=1.0, trailing_stop_pct=0.05),
    )
    rig.hold(10, 10_000, name="tp")
    rig.hold(10, 10_000, name="trail")
    rig.quote(10_800)
    assert rig.trader.check_exits(CODE) == []
    rig.quote(11_000)
    [tp] = rig.trader.check_exits(CODE)
    assert tp.strategy == "tp"
    assert tp.metadata["exit_rule"] == "take_profit"
    rig.quote(12_000)  # fills the take profit; the trailing position's peak is 12,000
    rig.trader.check_exits(CODE)
    rig.quote(11_410)
    assert rig.trader.check_exits(CODE) == []
    rig.quote(11_400)  # 95 % of the 12,000 peak
    [trail] = rig.trader.check_exits(CODE)
    assert trail.strategy == "trail"
    assert trail.metadata["exit_rule"] == "trailing_stop"


def test_an_open_buy_is_cancelled_first_and_the_exit_follows_once_the_cancel_is_confirmed():
    rig = make_rig(
        strategy(stop_loss_pct=0.05),
        policy=OrderPolicy(buy_timeout_s=60, max_replacements=2),
    )
    rig.hold(10, 10_000)
    rig.quote(9_800)
    add = rig.signal(SignalType.BUY, limit_price=9_000, qty=5)  # rests below the market
    assert add.order_type is OrderType.LIMIT
    assert add.status is OrderStatus.SUBMITTED
    rig.quote(9_400)  # below the 9,500 stop, above the limit

    assert rig.trader.check_exits(CODE) == []  # waits for the buy to go
    assert rig.broker_status(add) is OrderStatus.CANCELLED
    assert rig.orders(OrderSide.SELL) == []
    assert rig.trader.check_exits(CODE) == []  # still not confirmed: still waiting

    rig.clock.advance(61)  # the buy has also outlived its timeout meanwhile
    rig.trader.poll_orders()
    rig.trader.manage_timeouts()
    rig.trader.poll_orders()
    assert add.status is OrderStatus.CANCELLED

    [exit_order] = rig.trader.check_exits(CODE)
    assert exit_order.side is OrderSide.SELL
    assert exit_order.qty == 10
    # the buy cancelled for the exit is never re-placed
    assert len(rig.orders(OrderSide.BUY)) == 2
    assert rig.trader.open_orders() == [exit_order]
    assert rig.trader._funds.reserved_krw == 0


class DeferredCancelBroker(PaperBroker):
    """A paper broker whose cancels are accepted at once but confirmed only later (as a
    real exchange does): the order keeps resting until :meth:`confirm_cancels`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cancel_requests: list[str] = []

    def cancel_order(self, broker_order_id: str, stock_code: str, qty: int | None = None) -> None:
        if self.get_order(broker_order_id).status.is_final:
            super().cancel_order(broker_order_id, stock_code, qty)  # raises: too late
        self.cancel_requests.append(broker_order_id)

    def confirm_cancels(self) -> None:
        for broker_id in dict.fromkeys(self.cancel_requests):
            if not self.get_order(broker_id).status.is_final:
                super().cancel_order(broker_id, "")
        self.cancel_requests.clear()


def test_a_buy_cancelled_for_an_exit_is_not_timed_out_and_re_placed_meanwhile():
    rig = make_rig(
        strategy(stop_loss_pct=0.05),
        policy=OrderPolicy(buy_timeout_s=60, max_replacements=2),
        broker_cls=DeferredCancelBroker,
    )
    broker = rig.broker
    assert isinstance(broker, DeferredCancelBroker)
    rig.hold(10, 10_000)
    rig.quote(9_800)
    add = rig.signal(SignalType.BUY, limit_price=9_000, qty=5)
    rig.quote(9_400)
    assert rig.trader.check_exits(CODE) == []  # cancel of the buy requested for the exit
    assert len(broker.cancel_requests) == 1

    rig.clock.advance(60)  # the buy outlives its timeout before the cancel is confirmed
    rig.trader.poll_orders()
    assert rig.trader.manage_timeouts() == 0  # already being cancelled, for the exit
    broker.confirm_cancels()
    rig.trader.poll_orders()
    assert add.status is OrderStatus.CANCELLED

    assert len(rig.orders(OrderSide.BUY)) == 2  # not re-placed
    [exit_order] = rig.trader.check_exits(CODE)
    assert exit_order.side is OrderSide.SELL
    assert exit_order.qty == 10


def test_a_buy_whose_timeout_cancel_is_pending_is_not_re_placed_once_an_exit_needs_it_gone():
    rig = make_rig(
        strategy(stop_loss_pct=0.05),
        policy=OrderPolicy(buy_timeout_s=60, max_replacements=2),
        broker_cls=DeferredCancelBroker,
    )
    broker = rig.broker
    assert isinstance(broker, DeferredCancelBroker)
    rig.hold(10, 10_000)
    rig.quote(9_800)
    add = rig.signal(SignalType.BUY, limit_price=9_000, qty=5)
    rig.clock.advance(60)
    assert rig.trader.manage_timeouts() == 1  # cancel accepted, not confirmed
    rig.quote(9_400)
    assert rig.trader.check_exits(CODE) == []  # the exit waits for that cancel

    broker.confirm_cancels()
    rig.trader.poll_orders()

    assert add.status is OrderStatus.CANCELLED
    assert len(rig.orders(OrderSide.BUY)) == 2  # the timed-out buy is not re-placed
    [exit_order] = rig.trader.check_exits(CODE)
    assert exit_order.qty == 10


def test_exit_all_sells_every_position_and_cancels_open_buys():
    rig = make_rig(strategy("s1"), strategy("s2"))
    rig.hold(10, 10_000, CODE, "s1")
    rig.hold(5, 10_000, CODE, "s2")
    rig.hold(3, 100_000, OTHER, "s1")
    rig.quote(10_000)
    rig.quote(100_000, OTHER)
    lone_buy = rig.signal(SignalType.BUY, OTHER, "s2", limit_price=90_000, qty=2)
    add = rig.signal(SignalType.BUY, CODE, "s1", limit_price=9_000, qty=4)

    sent = rig.trader.exit_all("portfolio_stop")

    assert rig.broker_status(lone_buy) is OrderStatus.CANCELLED
    assert rig.broker_status(add) is OrderStatus.CANCELLED
    sold = {(o.strategy, o.stock_code): o.qty for o in sent}
    assert sold == {("s1", CODE): 10, ("s2", CODE): 5, ("s1", OTHER): 3}
    assert all(o.side is OrderSide.SELL and o.order_type is OrderType.MARKET for o in sent)
    assert all(any("portfolio_stop" in r for r in o.reasons) for o in sent)
    rig.risk.set_state(TradingState.HALTED)  # as the live session does right after
    rig.quote(9_900)
    rig.quote(99_000, OTHER)
    assert rig.trader.positions() == []
    assert rig.broker.get_holdings() == []
    assert rig.trader.open_orders() == []


def test_exit_all_sells_a_position_whose_open_sell_must_be_cancelled_first_even_when_halted():
    rig = make_rig()
    rig.hold(10, 10_000)
    rig.quote(10_000)
    working = rig.signal(SignalType.SELL, limit_price=12_000)  # the strategy's own exit

    assert rig.trader.exit_all("portfolio_stop") == []  # the shares are locked by it
    assert rig.broker_status(working) is OrderStatus.CANCELLED
    rig.risk.set_state(TradingState.HALTED)
    rig.quote(9_000)  # the cancel is confirmed by this poll

    [liquidation] = rig.trader.check_exits(CODE)
    assert liquidation.qty == 10
    assert liquidation.metadata["exit_rule"] == "portfolio_stop"
    assert rig.trader.check_exits(CODE) == []
    rig.quote(9_000)
    assert rig.trader.positions() == []


def test_exit_all_follows_up_once_a_late_cancel_confirmation_arrives_even_when_halted():
    rig = make_rig(broker_cls=DeferredCancelBroker)
    broker = rig.broker
    assert isinstance(broker, DeferredCancelBroker)
    rig.hold(10, 10_000)
    rig.quote(10_000)
    add = rig.signal(SignalType.BUY, limit_price=9_000, qty=4)

    assert rig.trader.exit_all("portfolio_stop") == []  # the buy is not gone yet
    rig.risk.set_state(TradingState.HALTED)
    rig.quote(9_500)
    assert rig.trader.check_exits(CODE) == []  # still waiting for the confirmation
    broker.confirm_cancels()
    rig.quote(9_400)
    assert add.status is OrderStatus.CANCELLED

    [liquidation] = rig.trader.check_exits(CODE)
    assert liquidation.qty == 10
    rig.quote(9_400)
    assert rig.trader.positions() == []
    # once done, HALTED blocks ordinary exits again
    rig.risk.set_state(TradingState.ACTIVE)
    rig.hold(3, 9_400)
    rig.risk.set_state(TradingState.HALTED)
    rig.quote(1_000)
    assert rig.trader.check_exits(CODE) == []


def test_an_unmanaged_position_uses_the_default_exits():
    rig = make_rig(
        strategy(stop_loss_pct=0.05),
        default_exits=ExitPolicy(stop_loss_pct=0.03),
        holdings={CODE: (7, 70_000)},
    )
    rig.trader._portfolio.restore(
        Position(
            UNMANAGED,
            CODE,
            qty=7,
            cost_basis_krw=70_000,
            opened_at=T0,
            bought_qty=7,
            buy_amount_krw=70_000,
        )
    )
    rig.hold(10, 10_000)  # the strategy's own position, stop at 5 %
    rig.quote(9_700)

    sent = rig.trader.check_exits(CODE)

    assert [(o.strategy, o.qty) for o in sent] == [(UNMANAGED, 7)]
    assert sent[0].metadata["exit_rule"] == "stop_loss"
    assert rig.trader.exit_policy(UNMANAGED) == ExitPolicy(stop_loss_pct=0.03)
    rig.quote(9_650)
    assert rig.trader.position(UNMANAGED, CODE) is None
    assert rig.trader._portfolio.qty("s1", CODE) == 10


def test_no_exit_without_a_known_price():
    rig = make_rig(strategy(stop_loss_pct=0.05))
    rig.hold(10, 10_000)
    assert rig.trader.check_exits(OTHER) == []


@settings(max_examples=300, deadline=None)
@given(
    peak=st.integers(1_000_000, 2_000_000),
    start=st.integers(1_000_000, 2_000_000),
    marks=st.lists(st.integers(500_000, 2_500_000), min_size=1, max_size=30),
    locked=st.booleans(),
    halted=st.booleans(),
    limit=st.sampled_from([None, 0.01, 0.05]),
    pct=st.sampled_from([None, 0.1, 0.3]),
)
def test_marks_found_quiet_are_quiet_when_marked_one_by_one(
    peak: int,
    start: int,
    marks: list[int],
    locked: bool,
    halted: bool,
    limit: float | None,
    pct: float | None,
) -> None:
    def manager() -> RiskManager:
        risk = RiskManager(RiskLimits(daily_loss_limit_pct=limit, portfolio_stop_pct=pct))
        risk.peak_equity_krw = peak
        risk.start_day(date(2024, 1, 2), start)
        risk.peak_equity_krw = max(peak, start)
        risk.daily_loss_locked = locked
        if halted:
            risk.set_state(TradingState.HALTED)
        return risk

    risk = manager()
    acted = [
        risk.update_equity(equity)
        or (risk.state is not TradingState.HALTED and risk.portfolio_stop_hit(equity))
        for equity in marks
    ]
    first = acted.index(True) if any(acted) else len(marks)
    assert manager().first_limit_hit(marks, [], 0) == first
    if manager().marks_quiet(min(marks), max(marks)):
        assert not any(acted)
