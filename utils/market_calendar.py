"""The KRX trading calendar: which days trade and when the regular session opens and closes.

Built on ``exchange_calendars`` (``XKRX``: weekends, public holidays, the year-end closing
day), plus the two late openings KRX announces every year that ``XKRX`` does not carry:

* the first trading day of the year opens at 10:00 (closing time unchanged, 15:30);
* the day of the college entrance exam (수능) opens at 10:00 and closes at 16:30
  (dates in :data:`CSAT_DAYS`; add a new year's date there or through ``extra_late_opens``).

All times are tz-aware ``Asia/Seoul``. Building the ``XKRX`` calendar takes a few seconds,
so it is built once per process (:func:`krx_calendar`).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

import exchange_calendars as xcals
import pandas as pd

from utils.clock import KST

CSAT_DAYS: tuple[date, ...] = (
    date(2020, 12, 3),
    date(2021, 11, 18),
    date(2022, 11, 17),
    date(2023, 11, 16),
    date(2024, 11, 14),
    date(2025, 11, 13),
    date(2026, 11, 19),
)
"""Days of the 대학수학능력시험: the market opens at 10:00 and closes at 16:30."""

LATE_OPEN = time(10, 0)
CSAT_CLOSE = time(16, 30)


@dataclass(frozen=True)
class Session:
    """One trading day's regular session (tz Asia/Seoul)."""

    day: date
    open: datetime
    close: datetime

    def contains(self, when: datetime) -> bool:
        return self.open <= when < self.close


@functools.lru_cache(maxsize=1)
def _xkrx() -> xcals.ExchangeCalendar:
    with warnings.catch_warnings():
        # exchange_calendars 4.13 reads Series.values of tz-aware times, which pandas 3
        # deprecates (the values are used as UTC, as intended); not ours to fix here
        warnings.filterwarnings("ignore", message="Series.values returning an ndarray")
        return xcals.get_calendar("XKRX", start="2015-01-01")


class KRXCalendar:
    """Trading days and session times of the Korea Exchange.

    ``extra_late_opens``: day → (open, close) overriding a session's times (for a late
    opening announced after this release). Raises ``ValueError`` for a day outside the
    calendar's range (2015 to about a year ahead of today).
    """

    def __init__(self, extra_late_opens: Mapping[date, tuple[time, time]] | None = None):
        self._cal = _xkrx()
        self._overrides = dict(extra_late_opens or {})
        first_days = {}
        sessions = self._cal.sessions
        for year in sorted({d.year for d in sessions}):
            in_year = sessions[sessions.year == year]
            if len(in_year):
                first_days[year] = in_year[0].date()
        self._first_day_of_year = first_days

    @property
    def last_day(self) -> date:
        return self._cal.last_session.date()

    def is_trading_day(self, day: date) -> bool:
        self._check_range(day)
        return bool(self._cal.is_session(pd.Timestamp(day)))

    def session(self, day: date) -> Session | None:
        """The session of ``day``, or ``None`` when the market is closed that day."""
        if not self.is_trading_day(day):
            return None
        ts = pd.Timestamp(day)
        opens = self._cal.session_open(ts).tz_convert(KST).to_pydatetime()
        closes = self._cal.session_close(ts).tz_convert(KST).to_pydatetime()
        if day in self._overrides:
            o, c = self._overrides[day]
            opens, closes = _at(day, o), _at(day, c)
        elif day in CSAT_DAYS:
            opens, closes = _at(day, LATE_OPEN), _at(day, CSAT_CLOSE)
        elif self._first_day_of_year.get(day.year) == day:
            opens = _at(day, LATE_OPEN)
        return Session(day, opens, closes)

    def next_session(self, after: datetime) -> Session:
        """The first session whose close is after ``after`` (today's if still open or not
        yet open). Raises ``ValueError`` past the end of the calendar."""
        day = after.astimezone(KST).date()
        while True:
            session = self.session(day)
            if session is not None and session.close > after:
                return session
            day += timedelta(days=1)

    def is_open(self, when: datetime) -> bool:
        session = self.session(when.astimezone(KST).date())
        return session is not None and session.contains(when)

    def sessions_between(self, first: date, last: date) -> int:
        """Number of trading days from ``first`` to ``last``, both included (0 if
        ``last`` is before ``first``)."""
        if last < first:
            return 0
        self._check_range(first)
        self._check_range(last)
        return len(self._cal.sessions_in_range(pd.Timestamp(first), pd.Timestamp(last)))

    def _check_range(self, day: date) -> None:
        first, last = self._cal.first_session.date(), self._cal.last_session.date()
        if not first <= day <= last:
            raise ValueError(f"{day} is outside the KRX calendar ({first} to {last})")


def _at(day: date, t: time) -> datetime:
    return datetime.combine(day, t, tzinfo=KST)


@functools.lru_cache(maxsize=1)
def krx_calendar() -> KRXCalendar:
    """The process-wide :class:`KRXCalendar` (built once)."""
    return KRXCalendar()


@functools.lru_cache(maxsize=1)
def _xkrx_history() -> xcals.ExchangeCalendar:
    """``XKRX`` from 1990 (for settlement dates of old trades); built on first use."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Series.values returning an ndarray")
        return xcals.get_calendar("XKRX", start="1990-01-01")


def settlement_date(trade_date: date, sessions: int = 2) -> date:
    """The day a trade of ``trade_date`` settles: the ``sessions``-th KRX session after it
    (T+2). A trade on Friday 2024-12-27 settles on 2025-01-02 (12-31 is the year-end
    closing day, 01-01 a holiday). Outside the calendar's range (before 1990, more than a
    year ahead) weekdays are counted instead."""
    cal = _xkrx_history()
    ts = pd.Timestamp(trade_date)
    sessions_index = cal.sessions
    if sessions_index[0] <= ts and ts + pd.Timedelta(days=31) <= sessions_index[-1]:
        after = int(sessions_index.searchsorted(ts, side="right"))
        return sessions_index[after + sessions - 1].date()
    day = trade_date
    for _ in range(sessions):
        day += timedelta(days=1)
        while day.weekday() >= 5:
            day += timedelta(days=1)
    return day
