"""Built-in triggers. Percentages are in % (``5`` = 5 %), prices in KRW.

Comparison operators (``op``) used by the indicator triggers, on the current bar *t* and
the previous bar *t−1*:

============  ===========================================
``above``     ``x[t] > ref[t]``
``below``     ``x[t] < ref[t]``
``cross_above``  ``x[t−1] <= ref[t−1] and x[t] > ref[t]``
``cross_below``  ``x[t−1] >= ref[t−1] and x[t] < ref[t]``
============  ===========================================

A value that is not available yet (warm-up, ``NaN``) never fires.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import time
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field, field_validator, model_validator

from framework.bars import Bars
from framework.indicators import bollinger, ema, macd, rsi, sma
from strategies.rules.base import Tick, Trigger
from strategies.rules.registry import ComponentParams, register

Op = Literal["above", "below", "cross_above", "cross_below"]


def compare(op: str, cur: float, prev: float, ref_cur: float, ref_prev: float) -> bool:
    """Apply ``op`` (see the module docstring); ``False`` when a needed value is NaN."""
    if math.isnan(cur) or math.isnan(ref_cur):
        return False
    if op == "above":
        return cur > ref_cur
    if op == "below":
        return cur < ref_cur
    if math.isnan(prev) or math.isnan(ref_prev):
        return False
    if op == "cross_above":
        return prev <= ref_prev and cur > ref_cur
    return prev >= ref_prev and cur < ref_cur


def _last2(bars: Bars, name: str) -> tuple[float, float]:
    if len(bars) < 2:
        return float(bars.last(name)) if len(bars) else math.nan, math.nan
    return bars.last(name), bars.last(name, 1)


def _ma(kind: str, values: pd.Series, period: int) -> pd.Series:
    return sma(values, period) if kind == "sma" else ema(values, period)


@register("trigger", "always")
class Always(Trigger):
    """Fires on every tick (use with conditions)."""

    def evaluate(self, tick: Tick) -> bool:
        return True


@register("trigger", "rsi")
class RsiTrigger(Trigger):
    """Wilder RSI(``period``) compared with ``value`` (0–100) by ``op``."""

    class Params(ComponentParams):
        period: int = Field(14, ge=2)
        op: Op = "below"
        value: float = Field(30.0, gt=0, lt=100)

    @property
    def column(self) -> str:
        return f"rsi_{self.params.period}"

    def columns(self, frame: pd.DataFrame) -> Mapping[str, pd.Series]:
        return {self.column: rsi(frame["close"], self.params.period)}

    def evaluate(self, tick: Tick) -> bool:
        cur, prev = _last2(tick.bars, self.column)
        v = self.params.value
        return compare(self.params.op, cur, prev, v, v)


@register("trigger", "ma_cross")
class MaCross(Trigger):
    """Fast moving average crosses the slow one (``up`` = golden, ``down`` = dead cross).

    ``ma``: ``sma`` or ``ema``; periods in bars.
    """

    class Params(ComponentParams):
        ma: Literal["sma", "ema"] = "sma"
        fast: int = Field(5, ge=1)
        slow: int = Field(20, ge=2)
        direction: Literal["up", "down"] = "up"

        @model_validator(mode="after")
        def _order(self) -> MaCross.Params:
            if self.fast >= self.slow:
                raise ValueError("fast must be smaller than slow")
            return self

    def _names(self) -> tuple[str, str]:
        p = self.params
        return f"{p.ma}_{p.fast}", f"{p.ma}_{p.slow}"

    def columns(self, frame: pd.DataFrame) -> Mapping[str, pd.Series]:
        p = self.params
        f, s = self._names()
        return {f: _ma(p.ma, frame["close"], p.fast), s: _ma(p.ma, frame["close"], p.slow)}

    def evaluate(self, tick: Tick) -> bool:
        f, s = self._names()
        fc, fp = _last2(tick.bars, f)
        sc, sp = _last2(tick.bars, s)
        op = "cross_above" if self.params.direction == "up" else "cross_below"
        return compare(op, fc, fp, sc, sp)


@register("trigger", "price_vs_ma")
class PriceVsMa(Trigger):
    """Close compared by ``op`` with the moving average × (1 + ``offset_pct`` / 100)."""

    class Params(ComponentParams):
        ma: Literal["sma", "ema"] = "sma"
        period: int = Field(20, ge=1)
        op: Op = "cross_above"
        offset_pct: float = 0.0

    @property
    def column(self) -> str:
        return f"{self.params.ma}_{self.params.period}"

    def columns(self, frame: pd.DataFrame) -> Mapping[str, pd.Series]:
        return {self.column: _ma(self.params.ma, frame["close"], self.params.period)}

    def evaluate(self, tick: Tick) -> bool:
        k = 1.0 + self.params.offset_pct / 100.0
        mc, mp = _last2(tick.bars, self.column)
        cc, cp = _last2(tick.bars, "close")
        return compare(self.params.op, cc, cp, mc * k, mp * k)


@register("trigger", "macd")
class MacdTrigger(Trigger):
    """A MACD series (``hist``, ``macd`` or ``signal``) compared with ``value`` by ``op``.

    ``series: hist, op: cross_above, value: 0`` is the MACD line crossing above its signal.
    """

    class Params(ComponentParams):
        fast: int = Field(12, ge=1)
        slow: int = Field(26, ge=2)
        signal: int = Field(9, ge=1)
        series: Literal["macd", "signal", "hist"] = "hist"
        op: Op = "cross_above"
        value: float = 0.0

        @model_validator(mode="after")
        def _order(self) -> MacdTrigger.Params:
            if self.fast >= self.slow:
                raise ValueError("fast must be smaller than slow")
            return self

    def _name(self, series: str) -> str:
        p = self.params
        return f"macd_{p.fast}_{p.slow}_{p.signal}_{series}"

    def columns(self, frame: pd.DataFrame) -> Mapping[str, pd.Series]:
        p = self.params
        m = macd(frame["close"], p.fast, p.slow, p.signal)
        return {self._name(s): m[s] for s in ("macd", "signal", "hist")}

    def evaluate(self, tick: Tick) -> bool:
        cur, prev = _last2(tick.bars, self._name(self.params.series))
        v = self.params.value
        return compare(self.params.op, cur, prev, v, v)


@register("trigger", "bollinger")
class BollingerTrigger(Trigger):
    """Close compared by ``op`` with a Bollinger band (``period`` bars, ``k`` × std)."""

    class Params(ComponentParams):
        period: int = Field(20, ge=2)
        k: float = Field(2.0, gt=0)
        band: Literal["lower", "mid", "upper"] = "lower"
        op: Op = "cross_below"

    def _name(self, band: str) -> str:
        return f"bb_{self.params.period}_{self.params.k:g}_{band}"

    def columns(self, frame: pd.DataFrame) -> Mapping[str, pd.Series]:
        b = bollinger(frame["close"], self.params.period, self.params.k)
        return {self._name(band): b[band] for band in ("lower", "mid", "upper")}

    def evaluate(self, tick: Tick) -> bool:
        bc, bp = _last2(tick.bars, self._name(self.params.band))
        cc, cp = _last2(tick.bars, "close")
        return compare(self.params.op, cc, cp, bc, bp)


@register("trigger", "volume_surge")
class VolumeSurge(Trigger):
    """Volume ≥ ``multiplier`` × the mean volume of the previous ``period`` bars."""

    class Params(ComponentParams):
        period: int = Field(20, ge=1)
        multiplier: float = Field(2.0, gt=0)

    @property
    def column(self) -> str:
        return f"volmean_{self.params.period}"

    def columns(self, frame: pd.DataFrame) -> Mapping[str, pd.Series]:
        return {self.column: sma(frame["volume"], self.params.period).shift(1)}

    def evaluate(self, tick: Tick) -> bool:
        mean = tick.bars.last(self.column)
        return mean > 0 and tick.bars.last("volume") >= self.params.multiplier * mean


@register("trigger", "profit_loss")
class ProfitLoss(Trigger):
    """Return of the close over the average price (%) ``above`` / ``below`` ``pct``.

    ``op: above, pct: 5`` fires at +5 % or more; ``op: below, pct: -5`` at −5 % or less
    (bounds inclusive). Never fires when flat.
    """

    class Params(ComponentParams):
        op: Literal["above", "below"] = "above"
        pct: float = 5.0

    def evaluate(self, tick: Tick) -> bool:
        pnl = tick.profit_pct
        if pnl is None:
            return False
        return pnl >= self.params.pct if self.params.op == "above" else pnl <= self.params.pct


class _WindowParams(ComponentParams):
    pct: float = Field(5.0, gt=0)
    window_bars: int | None = Field(None, ge=1)
    window_s: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _one_window(self) -> _WindowParams:
        if (self.window_bars is None) == (self.window_s is None):
            raise ValueError("give exactly one of window_bars (bars) or window_s (seconds)")
        return self


def _window_closes(bars: Bars, window_bars: int | None, window_s: int | None) -> np.ndarray:
    """Closes of the bars before the current one that lie inside the window."""
    n = len(bars)
    if n < 2:
        return np.empty(0)
    close = bars.close
    if window_bars is not None:
        return close[max(0, n - 1 - window_bars): n - 1]
    index = bars.index
    start = index[-1] - pd.Timedelta(seconds=int(window_s or 0))
    first = int(index.searchsorted(start, side="left"))
    return close[first: n - 1]


@register("trigger", "rapid_drop")
class RapidDrop(Trigger):
    """Close ≥ ``pct`` % below the highest close of the window (``window_bars`` bars or
    ``window_s`` seconds before the current bar). Example: highest 10,000, close 9,500 → −5 %.
    """

    Params = _WindowParams

    def evaluate(self, tick: Tick) -> bool:
        ref = _window_closes(tick.bars, self.params.window_bars, self.params.window_s)
        if ref.size == 0:
            return False
        return (tick.price / float(ref.max()) - 1.0) * 100.0 <= -self.params.pct


@register("trigger", "rapid_spike")
class RapidSpike(Trigger):
    """Close ≥ ``pct`` % above the lowest close of the window (bars or seconds)."""

    Params = _WindowParams

    def evaluate(self, tick: Tick) -> bool:
        ref = _window_closes(tick.bars, self.params.window_bars, self.params.window_s)
        if ref.size == 0:
            return False
        return (tick.price / float(ref.min()) - 1.0) * 100.0 >= self.params.pct


@register("trigger", "time_of_day")
class TimeOfDay(Trigger):
    """The current bar's time (Asia/Seoul) is in [``start``, ``end``) — ``"HH:MM"``.

    Daily bars are stamped at 00:00, so use this with minute bars.
    """

    class Params(ComponentParams):
        start: time = time(9, 0)
        end: time = time(15, 30)

        @field_validator("start", "end", mode="before")
        @classmethod
        def _hhmm(cls, value: object) -> object:
            if isinstance(value, int):  # YAML reads 09:30 as a sexagesimal int
                return time(value // 60, value % 60)
            return value

    def evaluate(self, tick: Tick) -> bool:
        t = tick.now.time()
        return self.params.start <= t < self.params.end


@register("trigger", "trailing_stop")
class TrailingStop(Trigger):
    """Close ≥ ``trail_pct`` % below the highest close since the position opened.

    Armed once that peak was ≥ ``activate_profit_pct`` % over the average price, or by the
    ``arm_trailing_stop`` action (whose trail then replaces ``trail_pct``). ``None`` = armed
    only by the action. Example: average 10,000, peak 11,000, trail 4 % → fires ≤ 10,560.
    """

    class Params(ComponentParams):
        trail_pct: float = Field(5.0, gt=0, lt=100)
        activate_profit_pct: float | None = 0.0

    def evaluate(self, tick: Tick) -> bool:
        st, pos = tick.stock, tick.position
        if pos is None or st.peak_price is None:
            return False
        trail = st.trailing_pct
        if trail is None:
            act = self.params.activate_profit_pct
            if act is None or pos.unrealized_pct(st.peak_price) < act:
                return False
            trail = self.params.trail_pct
        return tick.price <= st.peak_price * (1.0 - trail / 100.0)


@register("trigger", "price_vs_last_sell")
class PriceVsLastSell(Trigger):
    """Close ≥ ``pct`` % above the price of this stock's last sell fill (partial or full).

    Used for "partial take profit, then buy back on a further rise".
    """

    class Params(ComponentParams):
        pct: float = 3.0

    def evaluate(self, tick: Tick) -> bool:
        last = tick.stock.last_sell_price
        return last is not None and (tick.price / last - 1.0) * 100.0 >= self.params.pct
