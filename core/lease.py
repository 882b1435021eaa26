"""One bot per account: the lease a trading process holds on one book.

A ``live`` (or ``reconcile``) process takes the lease of its book — key
``<mode>-<env>-<account hash>`` (:func:`core.live.book_id`) — before it reconciles, and
keeps it until it stops. A second process on the same key gets :class:`LeaseHeldError`
(``python main.py`` exits with status :data:`EXIT_LEASE_HELD`, 5) naming the holder.

The lock itself is one the operating system or the database server drops when the holder
dies, so a crashed bot never blocks the next start:

* PostgreSQL: a session advisory lock (``pg_try_advisory_lock``) on a connection kept open
  for the life of the lease;
* any other database (SQLite): an OS file lock (:mod:`filelock`) on
  ``<state dir>/leases/<key>.lock``, where the state dir is ``KIS_TRADER_STATE_DIR`` or the
  user's state folder (platformdirs: ``~/.local/state/kis-trader`` on Linux) — a fixed
  place per user, so two databases cannot hide two bots on one account from each other.
  Beside it ``<key>.json`` names the holder for the refused process.

Beside the lock, the ``account_leases`` row (host, pid, since, heartbeat) says who holds it
and whether the last holder stopped cleanly (``released_at``). Taking a lease whose row was
never released is a take-over of a dead holder: :meth:`AccountLease.acquire` returns that
holder so the caller journals it. A row of another host whose heartbeat is younger than
``stale_after_s`` counts as held even when the local lock is free (two machines sharing one
PostgreSQL-less setup cannot see each other's file locks).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from sqlalchemy import Connection, Engine, insert, select, text, update

from db.engine import SQLITE_BEGIN_OPTION
from db.models import AccountLeaseRow
from framework.errors import KisTraderError
from utils.clock import KST, system_now
from utils.state import APP_NAME, STATE_DIR_ENV, state_dir

logger = logging.getLogger(__name__)

EXIT_LEASE_HELD = 5
"""Exit status of ``python main.py live`` / ``reconcile`` when another process trades."""
@dataclass(frozen=True)
class Holder:
    """Who holds (or held) a lease: host name, process id, since when (tz-aware)."""

    host: str
    pid: int
    since: datetime
    heartbeat_at: datetime | None = None

    def describe(self) -> str:
        since = self.since.astimezone(KST).strftime("%Y-%m-%d %H:%M:%S %Z")
        return f"host {self.host}, pid {self.pid}, since {since}"

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "pid": self.pid, "since": self.since.isoformat()}


class LeaseHeldError(KisTraderError):
    """Another process holds the lease; ``holder`` says which (``None`` if unknown)."""

    def __init__(self, message: str, holder: Holder | None = None):
        super().__init__(message)
        self.holder = holder


def _pg_key(key: str) -> int:
    """Signed 64-bit advisory-lock key of a lease key."""
    digest = hashlib.sha256(f"{APP_NAME}-lease:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class AccountLease:
    """The lease of one book (see the module docstring).

    Parameters
    ----------
    key:
        Lease key, at most 64 characters (the book id).
    engine:
        The database of the book (its schema migrated: table ``account_leases``).
    what:
        How the refusal names the book, e.g. ``"the live book of this account (virtual)"``.
    clock:
        Tz-aware now.
    heartbeat_s:
        Seconds between heartbeats of the row (default 15).
    stale_after_s:
        A row of another host without a heartbeat for this long is of a dead holder
        (default 4 heartbeats).
    directory:
        Lease-file folder (default ``state_dir() / "leases"``).
    on_lost:
        Called (from the heartbeat thread) when the row shows another holder: this process
        must stop trading.
    """

    def __init__(
        self,
        key: str,
        engine: Engine,
        *,
        what: str = "this book",
        clock: Callable[[], datetime] = system_now,
        heartbeat_s: float = 15.0,
        stale_after_s: float | None = None,
        directory: Path | None = None,
        on_lost: Callable[[str], object] | None = None,
    ):
        if len(key) > 64:
            raise ValueError(f"lease key longer than 64 characters: {key!r}")
        self.key = key
        self.engine = engine
        self.what = what
        self.clock = clock
        self.heartbeat_s = heartbeat_s
        self.stale_after_s = stale_after_s if stale_after_s is not None else 4 * heartbeat_s
        self.directory = directory or state_dir() / "leases"
        self.on_lost = on_lost
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.holder: Holder | None = None
        self._file_lock: FileLock | None = None
        self._pg_conn: Connection | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._writer = engine.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})

    @property
    def held(self) -> bool:
        return self.holder is not None

    @property
    def info_path(self) -> Path:
        return self.directory / f"{self.key}.json"

    # --- acquire / release ---------------------------------------------------------------
    def acquire(self) -> Holder | None:
        """Take the lease; return the dead holder taken over, or ``None``.

        Raises :class:`LeaseHeldError` naming the holder when another process has it.
        """
        if self.held:
            return None
        self._lock()
        try:
            previous = self._claim_row()
        except BaseException:
            self._unlock()
            raise
        self._write_info()
        self._thread = threading.Thread(
            target=self._beat, name=f"lease-heartbeat-{self.key}", daemon=True
        )
        self._thread.start()
        if previous is not None:
            logger.warning("lease %s taken over from a dead holder: %s", self.key, previous)
        return previous

    def release(self) -> None:
        """Give the lease up (idempotent): row marked released, lock dropped."""
        if not self.held:
            return
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=self.heartbeat_s + 5)
        try:
            with self._writer.begin() as conn:
                conn.execute(
                    update(AccountLeaseRow)
                    .where(*self._mine())
                    .values(released_at=self.clock(), heartbeat_at=self.clock())
                )
        except Exception:  # the lock below is what matters; the row is informative
            logger.warning("could not mark lease %s released", self.key, exc_info=True)
        if self._file_lock is not None:
            self.info_path.unlink(missing_ok=True)
        self._unlock()
        self.holder = None

    def __enter__(self) -> AccountLease:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    # --- the lock ------------------------------------------------------------------------
    def _refused(self, holder: Holder | None) -> LeaseHeldError:
        who = holder.describe() if holder else "holder unknown"
        return LeaseHeldError(
            f"another kis-trader process trades {self.what} ({who}); stop it first "
            f"(lease {self.key})",
            holder,
        )

    def _lock(self) -> None:
        if self.engine.dialect.name == "postgresql":
            conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": _pg_key(self.key)})
            if not got.scalar():
                holder = self._row_holder(conn)
                conn.close()
                raise self._refused(holder)
            self._pg_conn = conn
            return
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock = FileLock(self.directory / f"{self.key}.lock", timeout=0, thread_local=False)
        try:
            lock.acquire()
        except Timeout:
            raise self._refused(self._info_holder() or self._row_holder()) from None
        self._file_lock = lock

    def _unlock(self) -> None:
        if self._pg_conn is not None:
            try:
                self._pg_conn.execute(
                    text("SELECT pg_advisory_unlock(:k)"), {"k": _pg_key(self.key)}
                )
            finally:
                self._pg_conn.close()
                self._pg_conn = None
        if self._file_lock is not None:
            self._file_lock.release()
            self._file_lock = None

    # --- the row -------------------------------------------------------------------------
    def _mine(self) -> tuple[Any, ...]:
        t = AccountLeaseRow
        return (t.key == self.key, t.host == self.host, t.pid == self.pid)

    def _row_holder(self, conn: Connection | None = None) -> Holder | None:
        t = AccountLeaseRow.__table__
        stmt = select(t).where(t.c.key == self.key)
        try:
            if conn is not None:
                row = conn.execute(stmt).first()
            else:
                with self.engine.connect() as own:
                    row = own.execute(stmt).first()
        except Exception:  # the refusal still stands without a name
            logger.debug("could not read lease row %s", self.key, exc_info=True)
            return None
        if row is None or row.released_at is not None:
            return None
        return Holder(row.host, int(row.pid), _aware(row.since), _aware(row.heartbeat_at))

    def _info_holder(self) -> Holder | None:
        try:
            data = json.loads(self.info_path.read_text(encoding="utf-8"))
            return Holder(
                str(data["host"]), int(data["pid"]), datetime.fromisoformat(data["since"])
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _claim_row(self) -> Holder | None:
        """With the lock held: write this process into the row; the unreleased previous
        holder (taken over) or ``None``. A live holder on another host refuses."""
        t = AccountLeaseRow.__table__
        now = self.clock()
        with self._writer.begin() as conn:
            row = conn.execute(select(t).where(t.c.key == self.key)).first()
            previous: Holder | None = None
            if row is not None and row.released_at is None:
                previous = Holder(
                    row.host, int(row.pid), _aware(row.since), _aware(row.heartbeat_at)
                )
                age_s = (
                    (now - previous.heartbeat_at).total_seconds() if previous.heartbeat_at else 0
                )
                if previous.host != self.host and age_s < self.stale_after_s:
                    raise self._refused(previous)
            values = {
                "host": self.host,
                "pid": self.pid,
                "since": now,
                "heartbeat_at": now,
                "released_at": None,
            }
            if row is None:
                conn.execute(insert(AccountLeaseRow).values(key=self.key, **values))
            else:
                conn.execute(
                    update(AccountLeaseRow).where(AccountLeaseRow.key == self.key).values(**values)
                )
        self.holder = Holder(self.host, self.pid, now, now)
        return previous

    def _write_info(self) -> None:
        if self._file_lock is None or self.holder is None:
            return
        tmp = self.info_path.with_suffix(f".{self.pid}.tmp")
        tmp.write_text(json.dumps(self.holder.to_json()), encoding="utf-8")
        os.replace(tmp, self.info_path)

    def beat(self) -> bool:
        """One heartbeat; ``False`` when the row names another holder (lease lost)."""
        with self._writer.begin() as conn:
            done = conn.execute(
                update(AccountLeaseRow)
                .where(*self._mine(), AccountLeaseRow.released_at.is_(None))
                .values(heartbeat_at=self.clock())
            )
        return bool(done.rowcount)

    def _beat(self) -> None:
        failing = False
        while not self._stop.wait(self.heartbeat_s):
            try:
                ok = self.beat()
            except Exception as exc:  # a database hiccup: the lock still holds
                if not failing:
                    logger.warning("lease %s heartbeat failed: %s", self.key, exc)
                failing = True
                continue
            failing = False
            if not ok:
                logger.error("lease %s: the row names another holder; stopping", self.key)
                if self.on_lost is not None:
                    self.on_lost(f"lease {self.key} lost to another process")
                return


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=KST)


__all__ = [
    "EXIT_LEASE_HELD",
    "STATE_DIR_ENV",
    "AccountLease",
    "Holder",
    "LeaseHeldError",
    "state_dir",
]
