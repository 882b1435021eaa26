"""Overtrading controls, usable from rule configs *and* from plain Python strategies.

Four controls (see the design notes on overtrading):

* :class:`Cooldown` — no new entry in a stock for a while after selling it;
* :class:`DailyTradeLimit` — at most *n* filled orders per stock (or in total) per day;
* :class:`ReentryFilter` — a second entry within a window needs a stronger signal: a larger
  breakout over the recent high and/or a larger volume surge;
* :class:`PartialTakeProfit` — sell part of the position at a first target, then buy back
  once the price rises a further step above that sale.

Each class keeps its own small state by stock code and is fed by the strategy
(``on_exit``, ``on_fill``...). The rule components in ``conditions.py`` use the same pure
functions (:func:`cooldown_elapsed`, :func:`stronger_entry_ok`) on the
:class:`~strategies.rules.context.ExecutionContext` instead.

Example in a Python strategy::

    self.cooldown = Cooldown(seconds=3600)
    ...
    if position is None and not self.cooldown.allows(code, data.time):
        return None
    ...
    def on_order_filled(self, order):
        if order.side is OrderSide.SELL and self.get_position(order.stock_code) is None:
            self.cooldown.on_exit(order.stock_code, order.updated_at)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd


def cooldown_elapsed(last_exit_at: datetime | None, now: datetime, *, seconds: float | None = None,
                     bars_since_exit: int | None = None, bars: int | None = None) -> bool:
    """True when no exit happened yet, or the cooldown after it is over.

    ``seconds``: wall-clock cooldown (``now - last_exit_at >= seconds``); ``bars``: the
    number of bars that must have passed (``bars_since_exit >= bars``). When both are given
    both must hold. Worked example: exit at 10:00, ``seconds=1800`` → allowed from 10:30.
    """
    if last_exit_at is None:
        return True
    if seconds is not None and now - last_exit_at < timedelta(seconds=seconds):
        return False
    return not (bars is not None and (bars_since_exit is None or bars_since_exit < bars))


def bars_since(index: pd.DatetimeIndex, when: datetime) -> int:
    """Bars of ``index`` (ascending, tz-aware) strictly after ``when``."""
    return int(len(index) - index.searchsorted(pd.Timestamp(when), side="right"))


def breakout_pct(close: np.ndarray, high: np.ndarray, lookback: int) -> float:
    """Current close over the highest high of the previous ``lookback`` bars, in % (−inf
    without enough history). Example: highs max 10,000, close 10,300 → 3.0."""
    if len(close) < lookback + 1 or lookback < 1:
        return -math.inf
    ref = float(np.max(high[-lookback - 1:-1]))
    return (float(close[-1]) / ref - 1.0) * 100.0 if ref > 0 else -math.inf


def volume_ratio(volume: np.ndarray, lookback: int) -> float:
    """Current volume over the mean of the previous ``lookback`` bars (0 without history)."""
    if len(volume) < lookback + 1 or lookback < 1:
        return 0.0
    mean = float(np.mean(volume[-lookback - 1:-1]))
    return float(volume[-1]) / mean if mean > 0 else 0.0


def stronger_entry_ok(close: np.ndarray, high: np.ndarray, volume: np.ndarray, *,
                      min_breakout_pct: float | None, min_volume_ratio: float | None,
                      lookback: int) -> bool:
    """True when the current bar is a strong enough signal for a re-entry.

    Needs ``breakout_pct(...) >= min_breakout_pct`` and ``volume_ratio(...) >=
    min_volume_ratio`` for each threshold that is set (``None`` = not required).
    """
    if min_breakout_pct is not None and breakout_pct(close, high, lookback) < min_breakout_pct:
        return False
    return not (min_volume_ratio is not None
                and volume_ratio(volume, lookback) < min_volume_ratio)


@dataclass
class Cooldown:
    """No entry in a stock for ``seconds`` after its last full exit (state by stock code)."""

    seconds: float
    last_exit_at: dict[str, datetime] = field(default_factory=dict)

    def on_exit(self, code: str, when: datetime) -> None:
        """Record a full exit of ``code`` at ``when`` (tz-aware)."""
        self.last_exit_at[code] = when

    def allows(self, code: str, now: datetime) -> bool:
        """True when ``code`` may be entered at ``now``."""
        return cooldown_elapsed(self.last_exit_at.get(code), now, seconds=self.seconds)


@dataclass
class DailyTradeLimit:
    """At most ``max_trades`` filled orders per stock per day (``per_stock=False``: in total)."""

    max_trades: int
    per_stock: bool = True
    day: date | None = None
    counts: dict[str, int] = field(default_factory=dict)

    def _roll(self, now: datetime) -> None:
        if self.day != now.date():
            self.day = now.date()
            self.counts.clear()

    def on_trade(self, code: str, now: datetime) -> None:
        """Count one filled order of ``code`` at ``now``."""
        self._roll(now)
        key = code if self.per_stock else "*"
        self.counts[key] = self.counts.get(key, 0) + 1

    def allows(self, code: str, now: datetime) -> bool:
        """True while fewer than ``max_trades`` orders were filled today."""
        self._roll(now)
        return self.counts.get(code if self.per_stock else "*", 0) < self.max_trades


@dataclass
class ReentryFilter:
    """An entry within ``window_s`` seconds of the previous entry needs a stronger signal.

    ``window_s=None`` means "on the same calendar day". The stronger signal is a close at
    least ``min_breakout_pct`` % above the highest high of the previous ``lookback`` bars
    and/or volume at least ``min_volume_ratio`` × their mean volume.
    """

    min_breakout_pct: float | None = 2.0
    min_volume_ratio: float | None = 2.0
    lookback: int = 20
    window_s: float | None = None
    last_entry_at: dict[str, datetime] = field(default_factory=dict)

    def on_entry(self, code: str, when: datetime) -> None:
        self.last_entry_at[code] = when

    def is_reentry(self, code: str, now: datetime) -> bool:
        return is_recent(self.last_entry_at.get(code), now, self.window_s)

    def allows(self, code: str, now: datetime, close: np.ndarray, high: np.ndarray,
               volume: np.ndarray) -> bool:
        """True for a first entry, or a re-entry whose bar is strong enough."""
        if not self.is_reentry(code, now):
            return True
        return stronger_entry_ok(close, high, volume, min_breakout_pct=self.min_breakout_pct,
                                 min_volume_ratio=self.min_volume_ratio, lookback=self.lookback)


def is_recent(previous: datetime | None, now: datetime, window_s: float | None) -> bool:
    """True when ``previous`` is within ``window_s`` seconds before ``now`` (``None``: the
    same calendar day in ``now``'s time zone)."""
    if previous is None:
        return False
    if window_s is None:
        return previous.astimezone(now.tzinfo).date() == now.date()
    return now - previous < timedelta(seconds=window_s)


@dataclass
class PartialTakeProfit:
    """Sell ``sell_pct`` % of the position at ``take_profit_pct`` % over the average price,
    then buy back when the price is ``reentry_pct`` % above that partial sale.

    :meth:`decide` returns ``"sell_part"``, ``"rebuy"`` or ``None``; call
    :meth:`on_partial_sell` / :meth:`on_rebuy` when the orders fill and :meth:`reset` after
    a full exit. Example: average 10,000, ``take_profit_pct=5`` → sell part at ≥ 10,500;
    sold at 10,500, ``reentry_pct=3`` → rebuy at ≥ 10,815.
    """

    take_profit_pct: float = 5.0
    sell_pct: float = 50.0
    reentry_pct: float = 3.0
    sold_at: dict[str, float] = field(default_factory=dict)

    def decide(self, code: str, price: float, avg_price: float | None) -> str | None:
        if avg_price is None or avg_price <= 0:
            return None
        sold = self.sold_at.get(code)
        if sold is None:
            return "sell_part" if (price / avg_price - 1) * 100 >= self.take_profit_pct else None
        return "rebuy" if (price / sold - 1) * 100 >= self.reentry_pct else None

    def sell_qty(self, held_qty: int) -> int:
        """Shares to sell: ``sell_pct`` % of ``held_qty`` rounded down, at least 1."""
        return partial_qty(held_qty, self.sell_pct)

    def on_partial_sell(self, code: str, price: float) -> None:
        self.sold_at[code] = price

    def on_rebuy(self, code: str) -> None:
        self.sold_at.pop(code, None)

    def reset(self, code: str) -> None:
        self.sold_at.pop(code, None)


def partial_qty(held_qty: int, pct: float) -> int:
    """``pct`` % of ``held_qty`` shares, rounded down but at least 1 (0 when nothing held).

    Example: 7 shares, 50 % → 3 shares; 1 share, 50 % → 1 share.
    """
    if held_qty <= 0:
        return 0
    return min(held_qty, max(1, math.floor(held_qty * pct / 100.0)))
