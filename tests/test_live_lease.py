"""One bot per account, with real processes: a second ``python main.py live`` on the same
account and database exits 5 naming the first, which keeps going; a killed bot's lease is
taken over by the next start and journaled."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from db.models import AccountLeaseRow
from db.repository import Repository
from tests.e2e.day import env_for_subprocess, kis_env
from tests.fakes.clock import FakeClock
from tests.fakes.harness import fast_fake
from tests.fakes.kis_server import FakeKISServer
from tests.live_process import WAIT_S, Bot, write_settings
from utils.market_calendar import KST

READY = "trading day_trader"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[dict[str, str], Path, str]]:
    """(environment, settings, database URL) of bots on one account and database."""
    fake = fast_fake(clock=FakeClock(datetime.now(KST)))  # the bots run on the real clock
    with FakeKISServer(fake) as server:
        env = env_for_subprocess(kis_env(server.base_url, tmp_path / "tokens"))
        yield env, write_settings(tmp_path, lease_heartbeat_s=0.5), f"sqlite:///{tmp_path / 'b.db'}"


def live(world: tuple[dict[str, str], Path, str]) -> Bot:
    env, settings, db_url = world
    return Bot(["live", "--strategy", "day_trader", "--db", db_url], env, settings)


def heartbeat(db_url: str) -> tuple[int, datetime, datetime | None]:
    repo = Repository(db_url)
    try:
        t = AccountLeaseRow.__table__
        with repo.engine.connect() as conn:
            row = conn.execute(select(t)).one()
        return int(row.pid), row.heartbeat_at, row.released_at
    finally:
        repo.close()


def test_a_second_bot_on_the_same_account_exits_5_and_the_first_keeps_going(world) -> None:
    db_url = world[2]
    first = live(world)
    second: Bot | None = None
    try:
        first.wait_for(READY)
        second = live(world)
        assert second.wait() == 5, second.tail()
        errors = [line for line in second.lines if line.startswith("error:")]
        assert len(errors) == 1, second.output
        assert f"pid {first.proc.pid}, since " in errors[0]
        assert "host " in errors[0]
        assert "Traceback" not in second.output
        assert READY not in second.output  # it never reconciled nor traded

        pid, beat, released = heartbeat(db_url)
        assert pid == first.proc.pid
        assert released is None
        deadline = datetime.now(KST).timestamp() + WAIT_S
        while heartbeat(db_url)[1] <= beat:  # the first bot's heartbeat goes on
            assert first.proc.poll() is None, first.tail()
            assert datetime.now(KST).timestamp() < deadline, "no heartbeat after the refusal"
            time.sleep(0.2)  # poll interval of the condition
        assert first.proc.poll() is None, first.tail()

        first.proc.send_signal(signal.SIGTERM)
        assert first.wait() == 0, first.tail()
    finally:
        first.close()
        if second is not None:
            second.close()
    assert heartbeat(db_url)[2] is not None  # released by the clean stop
    repo = Repository(db_url)
    try:
        [run] = repo.list_runs("live")
        kinds = [e["kind"] for e in repo.get_events(run_id=run["run_id"])]
    finally:
        repo.close()
    assert kinds.count("session_started") == 1  # the refused bot wrote nothing to the book
    assert "lease_taken_over" not in kinds


def test_the_lease_of_a_killed_bot_is_taken_over_and_journaled(world) -> None:
    db_url = world[2]
    crashed = live(world)
    try:
        crashed.wait_for(READY)
        crashed.proc.send_signal(signal.SIGKILL)  # no clean stop: the row stays "held"
        assert crashed.wait() == -signal.SIGKILL
    finally:
        crashed.close()
    assert heartbeat(db_url)[0] == crashed.proc.pid
    restarted = live(world)
    try:
        restarted.wait_for(READY)
        assert heartbeat(db_url)[0] == restarted.proc.pid
        restarted.proc.send_signal(signal.SIGTERM)
        assert restarted.wait() == 0, restarted.tail()
    finally:
        restarted.close()
    repo = Repository(db_url)
    try:
        [run] = repo.list_runs("live")
        taken = repo.get_events(run_id=run["run_id"], kind="lease_taken_over")
    finally:
        repo.close()
    assert len(taken) == 1
    assert f"pid {crashed.proc.pid}" in taken[0]["message"]
    assert taken[0]["data"]["pid"] == crashed.proc.pid
    assert taken[0]["level"] == "warning"
