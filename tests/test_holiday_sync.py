"""KIS's holiday calendar (chk-holiday) merged over XKRX: cached, and obeyed by the schedule."""

from __future__ import annotations

import logging
import threading
from datetime import date, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from api.kis_broker import KISBroker
from api.kis_screen_api import fetch_market_days, sync_market_days
from config.settings import Settings
from core.live import ScheduledRunner
from framework.errors import ConfigError
from tests.fakes.clock import FakeClock
from tests.fakes.harness import fast_fake, mock_broker
from utils.market_calendar import (
    KST,
    KRXCalendar,
    read_day_cache,
    write_day_cache,
)

ELECTION = date(2026, 6, 3)
# a temporary holiday (임시공휴일) declared after the library's release: only KIS knows it
DECLARED = date(2026, 6, 10)


@pytest.fixture
def real_broker(tmp_path: Path) -> KISBroker:
    fake = fast_fake(env="real", clock=FakeClock(datetime(2026, 6, 1, 8, 0, tzinfo=KST)))
    fake.closed_days = {ELECTION, DECLARED}
    return mock_broker(fake, tmp_path, env="real")


def test_chk_holiday_answers_become_calendar_days(real_broker: KISBroker):
    days = fetch_market_days(real_broker.client, date(2026, 6, 1), days=30)
    assert days[ELECTION] is False
    assert days[date(2026, 6, 2)] is True
    assert days[date(2026, 6, 6)] is False  # a Saturday
    assert max(days) >= date(2026, 6, 30)  # pages on until the days asked for


def test_a_closure_xkrx_does_not_know_is_closed_when_synced(real_broker: KISBroker):
    assert KRXCalendar().is_trading_day(DECLARED)  # the gap the sync closes
    cal = KRXCalendar(synced=fetch_market_days(real_broker.client, date(2026, 6, 1)))
    for closed in (ELECTION, DECLARED):  # known to XKRX or not, KIS's answer holds
        assert not cal.is_trading_day(closed)
        assert cal.session(closed) is None
    assert cal.next_session(datetime(2026, 6, 3, 8, 0, tzinfo=KST)).day == date(2026, 6, 4)
    assert cal.next_session(datetime(2026, 6, 10, 8, 0, tzinfo=KST)).day == date(2026, 6, 11)
    assert cal.sessions_between(date(2026, 6, 1), date(2026, 6, 5)) == 4
    assert cal.sessions_between(date(2026, 6, 8), date(2026, 6, 12)) == 4


def test_late_openings_stay_when_synced():
    cal = KRXCalendar(synced={date(2026, 11, 19): True, date(2026, 11, 18): True})
    csat = cal.session(date(2026, 11, 19))
    assert csat is not None
    assert (csat.open.hour, csat.close.hour, csat.close.minute) == (10, 16, 30)
    normal = cal.session(date(2026, 11, 18))
    assert normal is not None
    assert normal.open.hour == 9


def test_with_sync_data_the_bot_plans_no_trading_on_the_election(
        real_broker: KISBroker, caplog: pytest.LogCaptureFixture):
    sync_market_days(real_broker.client, date(2026, 6, 1))  # cache + process calendar
    assert read_day_cache()[ELECTION] is False
    # a new process reads the cache: the same answer without asking KIS again
    cal = KRXCalendar(synced=read_day_cache())
    ran: list[str] = []
    session: Any = SimpleNamespace(clock=lambda: datetime(2026, 6, 3, 8, 50, tzinfo=KST),
                                   calendar=cal, settings=Settings(), run_job=ran.append,
                                   stop_requested=threading.Event())
    runner = ScheduledRunner(session)
    with caplog.at_level(logging.INFO, logger="core.live"):
        assert runner.plan() == []
    assert runner.scheduler.get_jobs() == []
    assert "next session 2026-06-04 opens at 2026-06-04 09:00 KST" in caplog.text
    assert ran == []


def test_the_virtual_account_says_the_service_is_real_only(tmp_path: Path):
    broker = mock_broker(fast_fake(clock=FakeClock(datetime(2026, 6, 1, 8, 0, tzinfo=KST))),
                         tmp_path)
    with pytest.raises(ConfigError, match="real-account KIS service"):
        fetch_market_days(broker.client, date(2026, 6, 1))


def test_a_broken_cache_is_one_warning_and_ignored(tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture):
    path = tmp_path / "krx_days.json"
    write_day_cache({ELECTION: False}, path)
    write_day_cache({date(2026, 6, 4): True}, path)  # merged, not replaced
    assert read_day_cache(path) == {ELECTION: False, date(2026, 6, 4): True}
    path.write_text("{not json", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="utils.market_calendar"):
        assert read_day_cache(path) == {}
    assert "unreadable holiday cache" in caplog.text
