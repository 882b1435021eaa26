"""Pre-trade risk checks.

Every signal that would place an order passes :meth:`RiskManager.check_signal` and every
order :meth:`RiskManager.check_order`. A refusal is a reason string (recorded as a
``risk_rejected`` event), never an exception in the trading loop.

Checks: the trading state (``ACTIVE``; ``REDUCE_ONLY`` allows exits only; ``HALTED`` allows
nothing new), the strategy's ``max_daily_trades`` and the global ``max_trades_per_day``, one
open order per strategy and stock at a time, sells only of shares the strategy holds, a
cooldown after a sell before the same strategy buys the same stock again, the daily loss lock
(no new buys once equity is ``daily_loss_limit_pct`` below the day's starting equity), and
global caps on order amount (KRW) and quantity (shares).

Exits, the same rules live and in the backtest: stop loss, take profit and trailing stop of
each position — :func:`exit_trigger` on every live quote, :func:`bar_exit` against each bar's
range in the backtest — and the portfolio stop (:meth:`RiskManager.portfolio_stop_hit`: equity
``portfolio_stop_pct`` below its high-water mark → sell everything, then ``HALTED``). The
stop level is the higher of the stop loss and the trailing stop (highest price since entry ×
(1 − pct); the entry fill price on the entry bar). All percentages are fractions (``0.05`` =
5 %).
"""

from __future__ import annotations

import enum
import math
import threading
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Protocol

import numpy as np

from framework.types import OrderSide, Signal, SignalType
from strategies.config import RiskManagement
from utils.ticks import Market, round_to_tick


class TradingState(enum.Enum):
    ACTIVE = "active"
    REDUCE_ONLY = "reduce_only"
    HALTED = "halted"


@dataclass(frozen=True)
class RiskLimits:
    """Global limits (``None`` = no limit). Amounts KRW, quantities shares, times seconds."""

    max_order_amount_krw: int | None = None
    max_order_qty: int | None = None
    max_trades_per_day: int | None = None
    cooldown_s: float = 0.0
    daily_loss_limit_pct: float | None = None
    portfolio_stop_pct: float | None = None
    max_positions: int | None = None


class ExitLevels(Protocol):
    """What :func:`exit_trigger` reads of a position."""

    qty: int
    stop_loss: float | None
    target_price: float | None
    peak_price: float | None

    @property
    def avg_price(self) -> float: ...


@dataclass(frozen=True)
class ExitPolicy:
    """Exit rules of one strategy (fractions of the average price; ``None`` = off).

    An absolute ``stop_loss`` / ``target_price`` set on the position (from the strategy's
    signal) wins over the percentage.
    """

    stop_loss_pct: float | None = None
    take_profit_pct: float | None = None
    trailing_stop_pct: float | None = None
    max_holding_days: int | None = None
    exit_at_close: bool = False

    @classmethod
    def of(cls, risk: RiskManagement) -> ExitPolicy:
        return cls(
            risk.stop_loss_pct,
            risk.take_profit_pct,
            risk.trailing_stop_pct,
            risk.max_holding_days,
            risk.exit_at_close,
        )


@dataclass(frozen=True)
class ExitTrigger:
    """A protective exit that fired: ``rule`` is ``stop_loss``, ``take_profit``,
    ``trailing_stop``, ``time_cut``, ``exit_at_close`` or ``portfolio_stop``; ``price`` the
    price (KRW) it fired at (on a bar: the fill price), ``level`` the level it crossed."""

    rule: str
    price: float
    level: float

    @property
    def reason(self) -> str:
        if self.rule == "time_cut":
            return f"time_cut: held {self.level:.0f} sessions"
        if self.rule == "manual":
            return f"sold by hand at about {self.price:,.0f}"
        if self.rule == "exit_at_close":
            return f"exit_at_close: price {self.price:,.0f} at the session's close"
        return f"{self.rule}: price {self.price:,.0f} crossed {self.level:,.0f}"


def stop_level(position: ExitLevels, policy: ExitPolicy) -> float | None:
    """Stop-loss price (KRW) of ``position`` or ``None``."""
    if position.stop_loss is not None:
        return position.stop_loss
    if policy.stop_loss_pct is None or position.avg_price <= 0:
        return None
    return position.avg_price * (1.0 - policy.stop_loss_pct)


def trail_level(position: ExitLevels, policy: ExitPolicy) -> float | None:
    """Trailing-stop price (KRW): ``peak_price × (1 − trailing_stop_pct)`` or ``None``."""
    peak = position.peak_price
    if policy.trailing_stop_pct is None or peak is None or peak <= 0:
        return None
    return peak * (1.0 - policy.trailing_stop_pct)


def target_level(position: ExitLevels, policy: ExitPolicy) -> float | None:
    """Take-profit price (KRW) of ``position`` or ``None``."""
    if position.target_price is not None:
        return position.target_price
    if policy.take_profit_pct is None or position.avg_price <= 0:
        return None
    return position.avg_price * (1.0 + policy.take_profit_pct)


def _stop(position: ExitLevels, policy: ExitPolicy) -> tuple[str, float] | None:
    """The stop that applies: the higher of the stop loss and the trailing stop."""
    stop, trail = stop_level(position, policy), trail_level(position, policy)
    if trail is not None and (stop is None or trail > stop):
        return "trailing_stop", trail
    return ("stop_loss", stop) if stop is not None else None


def exit_trigger(position: ExitLevels, price: float, policy: ExitPolicy) -> ExitTrigger | None:
    """The exit a live ``price`` (KRW, > 0) triggers for ``position``, if any.

    The stop (the higher of stop loss and trailing stop, see the module docstring) wins over
    the take profit. ``peak_price`` (the highest price since entry) is kept by the caller.
    """
    if position.qty <= 0 or not price > 0:
        return None
    stop = _stop(position, policy)
    if stop is not None and price <= stop[1]:
        return ExitTrigger(stop[0], price, stop[1])
    target = target_level(position, policy)
    if target is not None and price >= target:
        return ExitTrigger("take_profit", price, target)
    return None


def exit_band(position: ExitLevels, policy: ExitPolicy) -> tuple[float, float]:
    """``(stop, target)`` in KRW: a bar whose open and low stay above ``stop`` and whose open
    and high stay below ``target`` triggers no :func:`bar_exit` for ``position`` (``-inf`` /
    ``inf`` for a rule that is off). Worked number: average 10,000 KRW, stop 5 %, target
    10 % → (9,500, 11,000)."""
    stop = _stop(position, policy)
    target = target_level(position, policy)
    return (
        stop[1] if stop is not None else -math.inf,
        target if target is not None else math.inf,
    )


def bar_exit(
    position: ExitLevels,
    policy: ExitPolicy,
    open_: float,
    high: float,
    low: float,
    *,
    on: date | None = None,
    market: Market = Market.KOSPI,
) -> ExitTrigger | None:
    """The exit one bar triggers for a long ``position``, with its fill price (KRW).

    ``peak_price`` must be the highest high *before* this bar (the entry fill price on the
    entry bar). In the order prices happen within the bar:

    1. the open at or below the stop → stop at the open;
    2. the open at or above the target → take profit at the open;
    3. the low reaches the stop → stop at the level rounded *down* to a valid tick
       (with both levels inside the bar, the stop wins);
    4. the high reaches the target → take profit at the level rounded *up* to a tick.

    Only computed levels are rounded, with the tick table of ``on`` and ``market``
    (:func:`utils.ticks.round_to_tick`); a price from the data (the open) is used as it is.
    Worked number: average 10,000 KRW, ``stop_loss_pct`` 0.05 → level 9,500; a bar
    open 9,800 low 9,420 exits at 9,500; a bar opening at 9,300 exits at 9,300.
    """
    if position.qty <= 0 or not open_ > 0:
        return None
    stop = _stop(position, policy)
    target = target_level(position, policy)
    if stop is not None and open_ <= stop[1]:
        return ExitTrigger(stop[0], open_, stop[1])
    if target is not None and open_ >= target:
        return ExitTrigger("take_profit", open_, target)
    if stop is not None and low <= stop[1]:
        level = round_to_tick(stop[1], "down", on=on, market=market)
        return ExitTrigger(stop[0], float(level), stop[1])
    if target is not None and high >= target:
        return ExitTrigger(
            "take_profit", float(round_to_tick(target, "up", on=on, market=market)), target
        )
    return None


class RiskManager:
    """Holds the trading state and applies the checks. Thread-safe state switch.

    ``clock`` gives the current time for the cooldown; the day's figures (trade count,
    starting equity for the daily loss lock) restart with :meth:`start_day`.
    """

    def __init__(self, limits: RiskLimits | None = None):
        self.limits = limits or RiskLimits()
        self._state = TradingState.ACTIVE
        self._lock = threading.Lock()
        self._last_sell: dict[tuple[str, str], datetime] = {}
        self.day: date | None = None
        self.day_start_equity_krw: int | None = None
        self.peak_equity_krw: int | None = None
        self.trades_today = 0
        self.daily_loss_locked = False

    @property
    def state(self) -> TradingState:
        return self._state

    def set_state(self, state: TradingState) -> None:
        with self._lock:
            self._state = state

    # --- day figures -------------------------------------------------------------------
    def start_day(self, day: date, equity_krw: int) -> None:
        """Reset the day's trade count and loss lock; ``equity_krw`` is the day's start."""
        with self._lock:
            if self.day == day:
                return
            self.day = day
            self.day_start_equity_krw = int(equity_krw)
            self.trades_today = 0
            self.daily_loss_locked = False
            if self.peak_equity_krw is None or equity_krw > self.peak_equity_krw:
                self.peak_equity_krw = int(equity_krw)

    def record_trade(self) -> None:
        with self._lock:
            self.trades_today += 1

    def record_sell(self, strategy: str, stock_code: str, at: datetime) -> None:
        """Start the cooldown of (strategy, stock) at ``at``."""
        with self._lock:
            self._last_sell[(strategy, stock_code)] = at

    def cooldown_until(self, strategy: str, stock_code: str) -> datetime | None:
        last = self._last_sell.get((strategy, stock_code))
        if last is None or self.limits.cooldown_s <= 0:
            return None
        return last + timedelta(seconds=self.limits.cooldown_s)

    def update_equity(self, equity_krw: int) -> bool:
        """Track the equity; returns True when the daily loss lock engages now."""
        with self._lock:
            if self.peak_equity_krw is None or equity_krw > self.peak_equity_krw:
                self.peak_equity_krw = int(equity_krw)
            limit = self.limits.daily_loss_limit_pct
            start = self.day_start_equity_krw
            if self.daily_loss_locked or limit is None or not start:
                return False
            if equity_krw <= start * (1.0 - limit):
                self.daily_loss_locked = True
                return True
            return False

    def first_limit_hit(
        self, equity_krw: np.ndarray | list[int], opens: list[int], before_krw: int
    ) -> int:
        """Index of the first of a run of equity marks at which the daily loss lock engages
        or the portfolio stop fires, ``len(equity_krw)`` when neither does; changes nothing.

        ``equity_krw`` (int64 array or list of int, KRW) are the marks in time order, one
        per bar, with nothing traded in between; ``opens`` the indices (ascending) of the
        bars that open a trading day, whose starting equity is the mark before it
        (``before_krw`` for bar 0), as :meth:`start_day` takes it. The answer is the bar at
        which marking one by one with :meth:`start_day`, :meth:`update_equity` and
        :meth:`portfolio_stop_hit` would first act. Worked number: peak 1,000,000,
        ``portfolio_stop_pct`` 0.1, marks [950,000, 899,000] → 1 (899,000 ≤ 900,000).
        """
        m = len(equity_krw)
        limit, pct = self.limits.daily_loss_limit_pct, self.limits.portfolio_stop_pct
        if m == 0 or (limit is None and pct is None):
            return m
        if isinstance(equity_krw, list):  # a short run: builtins beat numpy's call costs
            low, high = min(equity_krw), max(equity_krw)
        else:
            low, high = int(equity_krw.min()), int(equity_krw.max())
        if opens and opens[0] == 0:
            high = max(high, before_krw)
        stop_quiet, lock_quiet = self._quiet_limits(low, high)
        if stop_quiet and lock_quiet:
            return m
        equity_krw = np.asarray(equity_krw, dtype=np.int64)
        prev = np.empty(m, dtype=np.int64)  # each bar's day-start equity, if it opens a day
        prev[0] = before_krw
        prev[1:] = equity_krw[:-1]
        new_day = np.zeros(m, dtype=bool)
        new_day[opens] = True
        hit = np.zeros(m, dtype=bool)
        if not stop_quiet:
            seen = np.where(new_day, np.maximum(prev, equity_krw), equity_krw)
            peak = np.maximum.accumulate(seen)
            if self.peak_equity_krw is not None:
                peak = np.maximum(peak, self.peak_equity_krw)
            hit |= (peak != 0) & (equity_krw <= peak * (1.0 - pct))  # type: ignore[operator]
        if not lock_quiet:
            # the day's start of each bar: the current day's until the first new day
            start = np.full(m, self.day_start_equity_krw or 0, dtype=np.int64)
            live = np.full(m, not self.daily_loss_locked)
            if opens:
                at = np.asarray(opens)
                which = np.searchsorted(at, np.arange(m), side="right") - 1
                later = which >= 0
                start[later] = prev[at[which[later]]]
                live[later] = True
            hit |= live & (start != 0) & (equity_krw <= start * (1.0 - limit))  # type: ignore[operator]
        return int(np.argmax(hit)) if hit.any() else m

    def marks_quiet(self, low_krw: int, high_krw: int) -> bool:
        """Whether a run of equity marks between ``low_krw`` and ``high_krw`` (KRW; with
        the starting equity of any day the run opens among them) can neither engage the
        daily loss lock nor fire the portfolio stop: :meth:`first_limit_hit` would give the
        run's length. Changes nothing."""
        stop_quiet, lock_quiet = self._quiet_limits(low_krw, high_krw)
        return stop_quiet and lock_quiet

    def _quiet_limits(self, low: int, high: int) -> tuple[bool, bool]:
        """(the portfolio stop, the daily loss lock) cannot act on marks from ``low`` to
        ``high``: no peak or day start above the highest mark, so the lowest tells at once."""
        limit, pct = self.limits.daily_loss_limit_pct, self.limits.portfolio_stop_pct
        stop_quiet = (
            pct is None
            or self._state is TradingState.HALTED
            or low > max(high, self.peak_equity_krw or 0) * (1.0 - pct)
        )
        lock_quiet = limit is None or low > max(high, self.day_start_equity_krw or 0) * (
            1.0 - limit
        )
        return stop_quiet, lock_quiet

    def pass_marks(self, high_krw: int) -> None:
        """Take ``high_krw`` (the highest of a run of marks :meth:`first_limit_hit` found
        quiet) into the high-water mark, as :meth:`update_equity` on each would."""
        with self._lock:
            if self.peak_equity_krw is None or high_krw > self.peak_equity_krw:
                self.peak_equity_krw = int(high_krw)

    def portfolio_stop_hit(self, equity_krw: int) -> bool:
        """True when equity is ``portfolio_stop_pct`` or more below its high-water mark."""
        pct = self.limits.portfolio_stop_pct
        peak = self.peak_equity_krw
        if pct is None or not peak:
            return False
        return equity_krw <= peak * (1.0 - pct)

    def check_signal(
        self,
        signal: Signal,
        risk: RiskManagement,
        *,
        trades_today: int,
        has_open_order: bool,
        position_qty: int,
        strategy: str = "",
        now: datetime | None = None,
        strategy_positions: int = 0,
        total_positions: int = 0,
    ) -> str | None:
        """Reason to refuse acting on ``signal``, or ``None`` when it may proceed.

        ``strategy_positions`` / ``total_positions``: stocks held (or being bought) by the
        strategy and by all strategies, for ``max_positions``; a buy adding to a stock
        already held is not a new position.
        """
        state = self._state
        if state is TradingState.HALTED:
            return "trading is halted"
        kind = signal.signal_type
        if state is TradingState.REDUCE_ONLY and kind.is_buy:
            return "reduce-only: no new buys"
        if has_open_order:
            return "an order for this stock is still open"
        if kind is SignalType.SELL or kind is SignalType.STRONG_SELL:  # is_sell, no property
            if position_qty <= 0:
                return "no position to sell"
            return None
        if trades_today >= risk.max_daily_trades:
            return f"max_daily_trades {risk.max_daily_trades} reached"
        limits = self.limits
        if limits.max_trades_per_day is not None and self.trades_today >= limits.max_trades_per_day:
            return f"max_trades_per_day {limits.max_trades_per_day} reached"
        if self.daily_loss_locked:
            pct = limits.daily_loss_limit_pct or 0.0
            return f"daily loss lock: equity {pct:.1%} below the day's start"
        if limits.cooldown_s > 0:  # else there is no cooldown to look up
            until = self.cooldown_until(strategy, signal.stock_code)
            if until is not None and now is not None and now < until:
                return f"cooldown after a sell until {until:%Y-%m-%d %H:%M:%S}"
        if position_qty <= 0:
            if risk.max_positions is not None and strategy_positions >= risk.max_positions:
                return f"max_positions {risk.max_positions} of the strategy reached"
            if limits.max_positions is not None and total_positions >= limits.max_positions:
                return f"max_positions {limits.max_positions} reached"
        return None

    def check_order(self, side: OrderSide, qty: int, price_krw: float) -> str | None:
        """Reason to refuse an order of ``qty`` shares at about ``price_krw``, or ``None``."""
        if qty <= 0:
            return "quantity is zero"
        limits = self.limits
        if side is OrderSide.BUY:
            if limits.max_order_qty is not None and qty > limits.max_order_qty:
                return f"qty {qty} above max_order_qty {limits.max_order_qty}"
            amount = qty * price_krw
            if limits.max_order_amount_krw is not None and amount > limits.max_order_amount_krw:
                cap = limits.max_order_amount_krw
                return f"amount {amount:,.0f} KRW above max_order_amount {cap:,}"
        return None
