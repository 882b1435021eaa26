"""Time helpers: every datetime in kis-trader is tz-aware Asia/Seoul.

Use :func:`now` (not ``datetime.now()``) so tests and the backtest can move the clock.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

KST = ZoneInfo("Asia/Seoul")


def system_now() -> datetime:
    """Wall-clock time in Asia/Seoul."""
    return datetime.now(KST)


class Clock:
    """A settable clock. ``Clock()`` follows the wall clock until :meth:`set` is called."""

    def __init__(self, source: Callable[[], datetime] = system_now):
        self._source = source
        self._fixed: datetime | None = None

    def __call__(self) -> datetime:
        return self._fixed if self._fixed is not None else self._source()

    def set(self, when: datetime) -> None:
        """Freeze the clock at ``when`` (must be tz-aware)."""
        if when.tzinfo is None:
            raise ValueError("clock time must be tz-aware")
        self._fixed = when


_default_clock = Clock()


def now() -> datetime:
    """Current time (Asia/Seoul) of the process clock."""
    return _default_clock()
