"""The KRX calendar and the live schedule built on it."""

from __future__ import annotations

import logging
import threading
from datetime import date, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from config.settings import Settings
from core.live import ScheduledRunner, plan_day
from utils.market_calendar import KST, KRXCalendar, krx_calendar


@pytest.fixture(scope="module")
def cal() -> KRXCalendar:
    return krx_calendar()


def kst(*args: int) -> datetime:
    return datetime(*args, tzinfo=KST)


@pytest.mark.parametrize(
    "day",
    [date(2025, 6, 3), date(2025, 6, 6), date(2025, 10, 6), date(2025, 12, 31), date(2025, 6, 14)],
    ids=["election", "memorial-day", "chuseok", "year-end", "saturday"],
)
def test_krx_holidays_have_no_session(cal: KRXCalendar, day: date) -> None:
    assert cal.session(day) is None
    assert not cal.is_trading_day(day)


def test_a_normal_day_trades_from_nine_to_half_past_three(cal: KRXCalendar) -> None:
    s = cal.session(date(2025, 6, 16))
    assert s is not None
    assert (s.open, s.close) == (kst(2025, 6, 16, 9), kst(2025, 6, 16, 15, 30))
    assert cal.is_open(kst(2025, 6, 16, 9))
    assert not cal.is_open(kst(2025, 6, 16, 15, 30))


def test_late_openings_the_exchange_calendar_lacks(cal: KRXCalendar) -> None:
    csat = cal.session(date(2025, 11, 13))
    first = cal.session(date(2025, 1, 2))
    assert csat is not None
    assert first is not None
    assert (csat.open.hour, csat.close.hour, csat.close.minute) == (10, 16, 30)
    assert (first.open.hour, first.close.hour, first.close.minute) == (10, 15, 30)


def test_next_session_after_friday_close_is_monday(cal: KRXCalendar) -> None:
    s = cal.next_session(kst(2025, 6, 13, 16, 0))
    assert s.day == date(2025, 6, 16)
    assert cal.next_session(kst(2025, 6, 16, 10, 0)).day == date(2025, 6, 16)


def test_outside_the_calendar_is_an_error(cal: KRXCalendar) -> None:
    with pytest.raises(ValueError, match="outside the KRX calendar"):
        cal.session(date(2010, 1, 4))


def test_plan_of_a_day_from_before_the_open(cal: KRXCalendar) -> None:
    session = cal.session(date(2025, 6, 16))
    assert session is not None
    jobs = {j.name: j for j in plan_day(session, Settings(), kst(2025, 6, 16, 8, 0))}
    assert set(jobs) == {"open", "quotes", "signals", "fills", "account", "exit_close", "close"}
    assert jobs["open"].first == session.open
    assert jobs["exit_close"].first == session.close - timedelta(seconds=600)
    assert jobs["quotes"].every_s == 10
    assert jobs["quotes"].last == session.close
    assert jobs["close"].first == session.close + timedelta(seconds=300)


def test_a_restart_mid_day_opens_at_once_and_a_finished_day_plans_nothing(
    cal: KRXCalendar,
) -> None:
    session = cal.session(date(2025, 6, 16))
    assert session is not None
    restart = kst(2025, 6, 16, 10, 13, 20)
    jobs = {j.name: j for j in plan_day(session, Settings(), restart)}
    assert jobs["open"].first == restart
    assert jobs["fills"].first == restart
    after_close = plan_day(session, Settings(), kst(2025, 6, 16, 15, 31))
    assert [j.name for j in after_close] == ["close"]
    assert plan_day(session, Settings(), kst(2025, 6, 16, 15, 36)) == []


def _runner(now: datetime, cal: KRXCalendar) -> tuple[ScheduledRunner, list[str]]:
    ran: list[str] = []
    session: Any = SimpleNamespace(
        clock=lambda: now,
        calendar=cal,
        settings=Settings(),
        run_job=ran.append,
        stop_requested=threading.Event(),
    )
    return ScheduledRunner(session), ran


def test_apscheduler_gets_the_day_s_jobs_on_the_calendar(cal: KRXCalendar) -> None:
    # the next real session, so that APScheduler (real time) keeps every job pending
    session = cal.next_session(datetime.now(KST) + timedelta(days=1))
    before_open = session.open - timedelta(minutes=10)
    runner, _ = _runner(before_open, cal)
    runner.scheduler.start(paused=True)
    try:
        planned = runner.plan()
        jobs = {job.id: job for job in runner.scheduler.get_jobs()}
        assert {j.name for j in planned} == set(jobs)
        assert jobs["open"].next_run_time == session.open
        assert jobs["quotes"].next_run_time == session.open
        assert jobs["close"].next_run_time == session.close + timedelta(seconds=300)
        assert jobs["quotes"].trigger.end_date == session.close
    finally:
        runner.scheduler.shutdown(wait=False)


def test_a_day_without_session_plans_nothing_and_says_until_when(
    cal: KRXCalendar, caplog: pytest.LogCaptureFixture
) -> None:
    runner, _ = _runner(kst(2025, 6, 14, 10, 0), cal)  # a Saturday
    with caplog.at_level(logging.INFO, logger="core.live"):
        assert runner.plan() == []
    assert runner.scheduler.get_jobs() == []
    assert "next session 2025-06-16 opens at 2025-06-16 09:00 KST: waiting" in caplog.text
