"""Plain SMA cross: buy when SMA(fast) crosses above SMA(slow), sell when it crosses below.

The smallest useful strategy; a template for new ones and the reference the engine's
results are checked against. Buys carry confidence 100 (the full per-stock size); sells exit
the whole position.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from framework.bars import Bars
from framework.indicators import sma
from framework.types import Signal, SignalType
from strategies.base import BaseStrategy


class SmaCrossParameters(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    fast: int = Field(10, ge=1)
    slow: int = Field(30, ge=2)

    @model_validator(mode="after")
    def _order(self) -> SmaCrossParameters:
        if self.fast >= self.slow:
            raise ValueError("fast must be smaller than slow")
        return self


class SmaCrossStrategy(BaseStrategy):
    Parameters = SmaCrossParameters
    numpy_bars = True  # the fast path: reads its indicator columns from the numpy window

    def indicators(self, bars: pd.DataFrame) -> dict[str, pd.Series]:
        p: SmaCrossParameters = self.params
        return {"fast": sma(bars["close"], p.fast), "slow": sma(bars["close"], p.slow)}

    def signal_bars(self, data: Bars) -> np.ndarray:
        """The cross bars (up or down): on every other bar :meth:`generate_signal` returns
        ``None`` (NaN compares False, as there)."""
        fast, slow = data["fast"], data["slow"]
        mask = np.zeros(len(data), dtype=bool)
        f0, f1, s0, s1 = fast[:-1], fast[1:], slow[:-1], slow[1:]
        mask[1:] = ((f0 <= s0) & (f1 > s1)) | ((f0 >= s0) & (f1 < s1))
        return mask

    def generate_signal(self, stock_code: str, data: Bars, timeframe: str) -> Signal | None:
        if len(data) < 2:
            return None
        fast, slow = data["fast"], data["slow"]
        f0, f1, s0, s1 = fast[-2], fast[-1], slow[-2], slow[-1]
        if f0 <= s0 and f1 > s1:  # NaN compares False: no signal during warm-up
            if self.get_position(stock_code) is None:
                return Signal(
                    SignalType.BUY, stock_code, confidence=100.0, reasons=self._reasons[0]
                )
        elif f0 >= s0 and f1 < s1 and self.get_position(stock_code) is not None:
            return Signal(SignalType.SELL, stock_code, confidence=100.0, reasons=self._reasons[1])
        return None

    @functools.cached_property
    def _reasons(self) -> tuple[tuple[str], tuple[str]]:
        """The reasons of a buy and of a sell (the same on every signal: built once)."""
        p: SmaCrossParameters = self.params
        return (
            (f"SMA{p.fast} crossed above SMA{p.slow}",),
            (f"SMA{p.fast} crossed below SMA{p.slow}",),
        )
