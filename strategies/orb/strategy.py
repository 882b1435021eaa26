"""Opening-range breakout (ORB) on 1-minute bars.

Each day, per stock: the opening range is the high and low of the first ``range_minutes``
minute bars (09:00 onwards). After it, the first completed minute bar that closes above the
range's high on a volume of at least ``volume_factor`` times the range's average minute
volume is a buy, before ``last_entry``. The stop loss is the other side of the range (its
low), sent with the signal; ``exit_at_close`` sells what is left at the close. One entry per
stock and day.

Called with ``timeframe == "minute"`` on every completed minute bar (live: from the trade
ticks; backtest: the minute files). ``data`` may hold earlier days (the backtest's window):
the strategy looks at today's bars only.
"""

from __future__ import annotations

from datetime import time
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from framework.bars import Bars
from framework.types import Signal, SignalType
from strategies.base import BaseStrategy


class OrbParameters(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    range_minutes: int = Field(15, ge=1, le=120)
    volume_factor: float = Field(1.5, ge=0)
    last_entry: time = time(14, 30)
    min_range_pct: float = Field(0.002, ge=0, lt=0.3)

    @field_validator("last_entry", mode="before")
    @classmethod
    def _hhmm(cls, value: object) -> object:
        if isinstance(value, int) and not isinstance(value, bool):  # YAML 1.1 reads 14:30 as 870
            return time(value // 60, value % 60)
        if isinstance(value, str):
            return time.fromisoformat(value.strip())
        return value


class OrbStrategy(BaseStrategy):
    Parameters = OrbParameters

    numpy_bars = True  # reads the numpy Bars window (data.high[...], data.last(...))

    def __init__(self, config: Any):
        super().__init__(config)
        self._entered: dict[str, object] = {}

    def generate_signal(self, stock_code: str, data: Bars, timeframe: str) -> Signal | None:
        if timeframe != "minute" or len(data) == 0:
            return None
        p: OrbParameters = self.params
        index = data.index
        now = index[-1]
        day = now.normalize()
        first = int(index.searchsorted(day))
        today = len(data) - first
        if today <= p.range_minutes:
            return Signal(SignalType.HOLD, stock_code)
        range_end = first + p.range_minutes
        if index[range_end - 1] >= day + pd.Timedelta(hours=9, minutes=p.range_minutes):
            return Signal(SignalType.HOLD, stock_code)  # the range is not the opening's
        if self._entered.get(stock_code) == day or self.get_position(stock_code) is not None:
            return Signal(SignalType.HOLD, stock_code)
        if now.time() >= p.last_entry:
            return Signal(SignalType.HOLD, stock_code)
        high = data.high[first:range_end]
        low = data.low[first:range_end]
        volume = data.volume[first:range_end]
        top, bottom = float(np.max(high)), float(np.min(low))
        if top <= 0 or (top - bottom) / top < p.min_range_pct:
            return Signal(SignalType.HOLD, stock_code)
        close, vol = data.last("close"), data.last("volume")
        # only the first bar beyond the range counts: earlier closes above it mean a late chase
        after = data.close[range_end:-1]
        if after.size and float(np.max(after)) > top:
            return Signal(SignalType.HOLD, stock_code)
        if close <= top or vol < p.volume_factor * float(np.mean(volume)):
            return Signal(SignalType.HOLD, stock_code)
        self._entered[stock_code] = day
        return Signal(
            SignalType.BUY,
            stock_code,
            confidence=100.0,
            stop_loss=bottom,
            reasons=(f"close {close:,.0f} above the {p.range_minutes}-minute range "
                     f"{bottom:,.0f}-{top:,.0f} on {vol:,.0f} shares",),
            metadata={"range_high": top, "range_low": bottom},
        )
