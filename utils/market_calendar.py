"""The KRX trading calendar: which days trade and when the regular session opens and closes.

Built on ``exchange_calendars`` (``XKRX``: weekends, public holidays, the year-end closing
day), plus the two late openings KRX announces every year that ``XKRX`` does not carry:

* the first trading day of the year opens at 10:00 (closing time unchanged, 15:30);
* the day of the college entrance exam (수능) opens at 10:00 and closes at 16:30
  (dates in :data:`CSAT_DAYS`; add a new year's date there or through ``extra_late_opens``).

Which days the exchange opens comes first from KIS itself when synced: ``chk-holiday``
(CTCA0903R, real accounts; :func:`api.kis_screen_api.fetch_market_days`) answers
``opnd_yn`` per day, and the answers are cached in ``<state dir>/krx_days.json``
(:func:`read_day_cache` / :func:`write_day_cache`). A synced day overrides ``XKRX``: a day
KRX closes that ``XKRX`` does not know (a temporary holiday declared late, or an election
day an older ``exchange_calendars`` lacks, such as 2026-06-03) is closed, and a
synced open day trades with the hand-kept times above. Days without sync data fall back to
``XKRX`` and the hand rules.

All times are tz-aware ``Asia/Seoul``. Building the ``XKRX`` calendar takes a few seconds,
so it is built once per process (:func:`krx_calendar`, which reads the cache).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path

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
REGULAR_OPEN = time(9, 0)
REGULAR_CLOSE = time(15, 30)
DAY_CACHE_NAME = "krx_days.json"

logger = logging.getLogger(__name__)


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

    def __init__(self, extra_late_opens: Mapping[date, tuple[time, time]] | None = None,
                 synced: Mapping[date, bool] | None = None):
        self._cal = _xkrx()
        self._overrides = dict(extra_late_opens or {})
        self._synced: dict[date, bool] = dict(synced or {})
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

    def update_sync(self, days: Mapping[date, bool]) -> None:
        """Merge KIS's answers (day → exchange open) over ``XKRX``."""
        merged = dict(self._synced)
        merged.update(days)
        self._synced = merged

    @property
    def synced_days(self) -> Mapping[date, bool]:
        return dict(self._synced)

    def _xkrx_session(self, day: date) -> bool:
        return bool(self._cal.is_session(pd.Timestamp(day)))

    def is_trading_day(self, day: date) -> bool:
        synced = self._synced.get(day)
        if synced is not None:
            return synced
        self._check_range(day)
        return self._xkrx_session(day)

    def session(self, day: date) -> Session | None:
        """The session of ``day``, or ``None`` when the market is closed that day."""
        if not self.is_trading_day(day):
            return None
        ts = pd.Timestamp(day)
        if self._cal.first_session.date() <= day <= self.last_day and self._xkrx_session(day):
            opens = self._cal.session_open(ts).tz_convert(KST).to_pydatetime()
            closes = self._cal.session_close(ts).tz_convert(KST).to_pydatetime()
        else:  # open by KIS's word, unknown to XKRX: the regular times
            opens, closes = _at(day, REGULAR_OPEN), _at(day, REGULAR_CLOSE)
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
        count = len(self._cal.sessions_in_range(pd.Timestamp(first), pd.Timestamp(last)))
        for day, open_ in self._synced.items():
            if first <= day <= last and open_ != self._xkrx_session(day):
                count += 1 if open_ else -1
        return count

    def _check_range(self, day: date) -> None:
        first, last = self._cal.first_session.date(), self._cal.last_session.date()
        if not first <= day <= last:
            raise ValueError(f"{day} is outside the KRX calendar ({first} to {last})")


def _at(day: date, t: time) -> datetime:
    return datetime.combine(day, t, tzinfo=KST)


def day_cache_path() -> Path:
    """``<state dir>/krx_days.json`` (:func:`utils.state.state_dir`)."""
    from utils.state import state_dir

    return state_dir() / DAY_CACHE_NAME


def read_day_cache(path: Path | None = None) -> dict[date, bool]:
    """Synced days (day → open) from the cache file; ``{}`` when it is missing. A broken
    file is reported with one warning and ignored (the calendar falls back to ``XKRX``)."""
    path = path or day_cache_path()
    if not path.is_file():
        return {}
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return {date.fromisoformat(k): bool(v) for k, v in raw["days"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        logger.warning("%s: unreadable holiday cache (%s); using XKRX and the hand rules",
                       path, exc)
        return {}


def write_day_cache(days: Mapping[date, bool], path: Path | None = None) -> Path:
    """Merge ``days`` into the cache file, atomically; returns its path."""
    path = path or day_cache_path()
    merged = read_day_cache(path)
    merged.update(days)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"source": "KIS chk-holiday CTCA0903R opnd_yn",
            "days": {d.isoformat(): merged[d] for d in sorted(merged)}}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(body, fh, indent=0)
    os.replace(tmp, path)
    return path


@functools.lru_cache(maxsize=1)
def krx_calendar() -> KRXCalendar:
    """The process-wide :class:`KRXCalendar` (built once) with the cached sync data."""
    return KRXCalendar(synced=read_day_cache())


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
