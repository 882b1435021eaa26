"""A controllable clock shared by the fake KIS and the adapter under test."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

from utils.clock import KST

DEFAULT_START = datetime(2025, 6, 16, 9, 30, tzinfo=KST)
"""A Monday with real data in ``krx/daily_2023_2025`` (the day before the last row)."""


class FakeClock:
    """Tz-aware KST time that moves only when told. ``clock()`` returns ``now()``."""

    def __init__(self, start: datetime = DEFAULT_START) -> None:
        if start.tzinfo is None:
            raise ValueError("FakeClock needs a tz-aware start time")
        self._now = start.astimezone(KST)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    __call__ = now

    def advance(self, seconds: float = 0, *, minutes: float = 0, hours: float = 0,
                days: float = 0) -> datetime:
        """Move forward; returns the new time."""
        delta = timedelta(seconds=seconds, minutes=minutes, hours=hours, days=days)
        if delta < timedelta(0):
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._now += delta
            return self._now

    def set(self, when: datetime) -> None:
        """Jump to ``when`` (tz-aware)."""
        if when.tzinfo is None:
            raise ValueError("tz-aware datetime required")
        with self._lock:
            self._now = when.astimezone(KST)
