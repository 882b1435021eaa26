"""The account lease: one holder at a time, a named refusal, take-over of a dead holder,
a live holder on another host respected, heartbeats, PostgreSQL advisory locks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, text, update

from core.lease import AccountLease, LeaseHeldError, _pg_key, state_dir
from db.engine import make_engine
from db.models import AccountLeaseRow
from db.repository import Repository
from utils.clock import system_now

KEY = "live-virtual-0123456789"
REPO = Path(__file__).resolve().parent.parent
WAIT_S = 60.0


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_db_url")
    else:
        url = f"sqlite:///{tmp_path / 'lease.db'}"
    repo = Repository(url)  # migrated
    try:
        yield repo.engine
    finally:
        repo.close()


def wait_for_dead_session(engine: Engine) -> None:
    """PostgreSQL frees a killed client's advisory lock once its server process has seen
    the connection close, a moment after the client died: wait (up to WAIT_S) until a
    probe can take and give back the lock."""
    if engine.dialect.name != "postgresql":
        return
    deadline = time.monotonic() + WAIT_S
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        key = {"k": _pg_key(KEY)}
        while not conn.execute(text("SELECT pg_try_advisory_lock(:k)"), key).scalar():
            assert time.monotonic() < deadline, "the killed holder's session never ended"
            time.sleep(0.05)
        conn.execute(text("SELECT pg_advisory_unlock(:k)"), key)


def row(engine: Engine) -> AccountLeaseRow | None:
    t = AccountLeaseRow.__table__
    with engine.connect() as conn:
        return conn.execute(select(t).where(t.c.key == KEY)).first()  # type: ignore[return-value]


def test_the_state_folder_is_fixed_per_user_and_overridable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KIS_TRADER_STATE_DIR", str(tmp_path / "mine"))
    assert state_dir() == tmp_path / "mine"
    monkeypatch.delenv("KIS_TRADER_STATE_DIR")
    default = state_dir()
    assert default.is_absolute()
    assert "kis-trader" in default.parts


def test_a_second_holder_is_refused_with_host_pid_and_since(engine: Engine) -> None:
    first = AccountLease(KEY, engine, what="the live book of this account (virtual)")
    assert first.acquire() is None
    second = AccountLease(KEY, engine, what="the live book of this account (virtual)")
    with pytest.raises(LeaseHeldError) as err:
        second.acquire()
    message = str(err.value)
    assert "\n" not in message
    assert first.holder is not None
    assert f"host {first.host}, pid {os.getpid()}, since " in message
    assert first.holder.since.strftime("%Y-%m-%d %H:%M:%S") in message
    assert err.value.holder is not None
    assert err.value.holder.pid == os.getpid()
    first.release()
    assert second.acquire() is None  # a clean release is no take-over
    released = row(engine)
    assert released is not None
    assert released.released_at is None
    second.release()
    released = row(engine)
    assert released is not None
    assert released.released_at is not None


HOLD = textwrap.dedent(
    """
    import sys, time
    from db.repository import Repository
    from core.lease import AccountLease
    repo = Repository(sys.argv[1])
    lease = AccountLease(sys.argv[2], repo.engine)
    lease.acquire()
    print("held", flush=True)
    time.sleep(600)
    """
)


def test_the_lease_of_a_killed_holder_is_taken_over(engine: Engine) -> None:
    url = engine.url.render_as_string(hide_password=False)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, url, KEY], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LeaseHeldError, match=f"pid {holder.pid}"):
            AccountLease(KEY, engine).acquire()
        holder.send_signal(signal.SIGKILL)  # a crash: no release, the row stays "held"
        holder.wait(timeout=WAIT_S)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    dead = row(engine)
    assert dead is not None
    assert dead.released_at is None
    assert dead.pid == holder.pid
    wait_for_dead_session(engine)
    lease = AccountLease(KEY, engine)
    previous = lease.acquire()
    try:
        assert previous is not None
        assert previous.pid == holder.pid
        now = row(engine)
        assert now is not None
        assert now.pid == os.getpid()
        assert now.released_at is None
    finally:
        lease.release()


def _pretend_other_host(engine: Engine, heartbeat_age_s: float) -> None:
    now = system_now()
    with engine.begin() as conn:
        conn.execute(
            AccountLeaseRow.__table__.insert().values(
                key=KEY,
                host="other-machine",
                pid=4242,
                since=now - timedelta(hours=1),
                heartbeat_at=now - timedelta(seconds=heartbeat_age_s),
                released_at=None,
            )
        )


def test_a_live_holder_on_another_host_is_respected(engine: Engine) -> None:
    _pretend_other_host(engine, heartbeat_age_s=1)
    with pytest.raises(LeaseHeldError, match="host other-machine, pid 4242"):
        AccountLease(KEY, engine, heartbeat_s=15).acquire()
    # the refusal dropped the local lock again: nothing is left held
    _free = AccountLease(KEY, engine, heartbeat_s=15, stale_after_s=0.5)
    with engine.begin() as conn:
        conn.execute(
            update(AccountLeaseRow)
            .where(AccountLeaseRow.key == KEY)
            .values(heartbeat_at=system_now() - timedelta(seconds=5))
        )
    previous = _free.acquire()  # stale now: a dead holder
    try:
        assert previous is not None
        assert previous.host == "other-machine"
    finally:
        _free.release()


def test_heartbeats_advance_and_a_lost_lease_stops_the_holder(engine: Engine) -> None:
    lost = threading.Event()
    reasons: list[str] = []

    def on_lost(reason: str) -> None:
        reasons.append(reason)
        lost.set()

    lease = AccountLease(KEY, engine, heartbeat_s=0.2, on_lost=on_lost)
    lease.acquire()
    try:
        first = row(engine)
        assert first is not None
        deadline = system_now() + timedelta(seconds=WAIT_S)
        while (r := row(engine)) is not None and r.heartbeat_at <= first.heartbeat_at:
            assert system_now() < deadline, "no heartbeat"
            lost.wait(0.05)
        with engine.begin() as conn:  # someone else wrote itself into the row
            conn.execute(
                update(AccountLeaseRow).where(AccountLeaseRow.key == KEY).values(pid=1)
            )
        assert lost.wait(WAIT_S)
        assert "lost" in reasons[0]
    finally:
        lease.release()


def test_leases_of_different_books_are_independent(tmp_path: Path) -> None:
    engine = Repository(f"sqlite:///{tmp_path / 'two.db'}").engine
    live = AccountLease("live-virtual-aaaa", engine)
    dry = AccountLease("dry_run-virtual-aaaa", engine)
    other = AccountLease("live-virtual-bbbb", make_engine(f"sqlite:///{tmp_path / 'x.db'}"))
    Repository(other.engine)  # migrate the second database
    for lease in (live, dry, other):
        assert lease.acquire() is None
    for lease in (live, dry, other):
        lease.release()
