"""The trading rule the universe-screen test strategies share: buy every code of the
universe while flat, sell a position after ``hold_bars`` bars (``config.yaml``)."""

from __future__ import annotations

from datetime import date

from framework.bars import Bars
from framework.types import Signal, SignalType
from strategies.base import BaseStrategy


class HoldBars(BaseStrategy):
    numpy_bars = True  # reads the numpy Bars window (data.time, data.last)

    seen: dict[str, int]
    decided: list[tuple[date, str, tuple[str, ...]]]
    """(day, code, the universe that day) of every call, for the tests."""

    def on_market_open(self) -> None:
        if not hasattr(self, "seen"):
            self.seen, self.decided = {}, []

    def generate_signal(self, stock_code: str, data: Bars, timeframe: str) -> Signal | None:
        day = data.time.date()
        self.decided.append((day, stock_code, tuple(self.universe)))
        if self.get_position(stock_code) is None:
            self.seen.pop(stock_code, None)
            return Signal(SignalType.BUY, stock_code, confidence=100.0, reasons=("picked",))
        held = self.seen[stock_code] = self.seen.get(stock_code, 0) + 1
        if held >= self.params["hold_bars"]:
            return Signal(SignalType.SELL, stock_code, confidence=100.0, reasons=("held",))
        return None
