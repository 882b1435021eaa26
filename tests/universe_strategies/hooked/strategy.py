"""Buys every code of its universe while flat; sells a position after ``hold_bars`` bars."""

from __future__ import annotations

from datetime import date

from framework.bars import Bars
from framework.types import Signal, SignalType
from strategies.base import BaseStrategy


class Picker(BaseStrategy):
    numpy_bars = True  # reads the numpy Bars window (data.time, data.last)

    seen: dict[str, int]
    decided: list[tuple[date, str, tuple[str, ...]]]

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

    def select_universe(self, day: date, data: dict) -> list[str]:  # type: ignore[override]
        self.hook_calls = [*getattr(self, "hook_calls", []),
                           (day, max((f.index[-1].date() for f in data.values() if len(f)),
                                     default=None))]
        picked = []
        for code, frame in sorted(data.items()):
            closes = frame["close"].tail(5)
            if len(closes) == 5 and closes.iloc[-1] > closes.mean():
                picked.append(code)
        return picked
