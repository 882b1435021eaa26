"""Buys every code its ``select_universe`` picks while flat; sells after ``hold_bars`` bars."""

from __future__ import annotations

from datetime import date

from tests.universe_picks import HoldBars


class Picker(HoldBars):
    def select_universe(self, day: date, data: dict) -> list[str]:  # type: ignore[override]
        """The codes whose last close is above the mean of their last 5 closes."""
        self.hook_calls = [*getattr(self, "hook_calls", []),
                           (day, max((f.index[-1].date() for f in data.values() if len(f)),
                                     default=None))]
        picked = []
        for code, frame in sorted(data.items()):
            closes = frame["close"].tail(5)
            if len(closes) == 5 and closes.iloc[-1] > closes.mean():
                picked.append(code)
        return picked
