"""Engine creation: which database, and the SQLite settings that make it safe to share.

``database_url()`` picks the URL (argument > ``DATABASE_URL`` > ``kis_trader.db`` in the
current directory); ``make_engine()`` builds the engine; ``create_schema()`` brings the schema
to the newest Alembic revision (``db/migrations``, run from code by :mod:`db.migrate`).

SQLite transactions
-------------------
Python's ``sqlite3`` (3.11) begins a transaction only at the first INSERT/UPDATE, so a
``SELECT`` that decides an update would run outside it. :func:`make_engine` therefore turns
the driver's transaction handling off and emits ``BEGIN`` itself (the recipe in the
SQLAlchemy SQLite documentation). A connection whose execution options carry
``{SQLITE_BEGIN_OPTION: "IMMEDIATE"}`` starts with ``BEGIN IMMEDIATE``: it takes the write
lock at once (waiting up to the busy timeout), so read-modify-write transactions from
several threads or processes are serialised instead of failing with "database is locked".
Readers use plain ``BEGIN`` and, thanks to WAL, never block writers.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool

logger = logging.getLogger(__name__)

DEFAULT_DB_FILE = "kis_trader.db"
SQLITE_BEGIN_OPTION = "kis_sqlite_begin"
"""Execution option naming the SQLite ``BEGIN`` mode: ``"DEFERRED"`` (default),
``"IMMEDIATE"`` or ``"EXCLUSIVE"``."""

_BEGIN_MODES = frozenset({"DEFERRED", "IMMEDIATE", "EXCLUSIVE"})


def database_url(explicit: str | None = None) -> str:
    """Return the database URL to use.

    Order: ``explicit`` if given and not empty, else the environment variable
    ``DATABASE_URL``, else ``sqlite:///<cwd>/kis_trader.db`` (absolute, so a later
    ``chdir`` does not move the database). A ``postgres://`` URL (Heroku style) is
    rewritten to ``postgresql://``, which SQLAlchemy requires.
    """
    url = (explicit or "").strip() or os.environ.get("DATABASE_URL", "").strip()
    if not url:
        return f"sqlite:///{Path.cwd() / DEFAULT_DB_FILE}"
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    return url


def make_engine(
    url: str | None = None, *, busy_timeout_s: float = 30.0, echo: bool = False, **kwargs: Any
) -> Engine:
    """Create an :class:`~sqlalchemy.Engine` for ``url`` (see :func:`database_url`).

    SQLite files get ``journal_mode=WAL`` (readers do not block the writer),
    ``foreign_keys=ON`` and ``busy_timeout`` (a writer waits up to ``busy_timeout_s``
    seconds for the lock instead of failing), plus SQLAlchemy-controlled ``BEGIN`` (module
    docstring). ``sqlite://`` in memory uses one shared connection (tests only; not for
    concurrent use). Other back ends (PostgreSQL) get ``pool_pre_ping`` so a connection
    dropped by the server is replaced. Extra ``kwargs`` go to ``create_engine``.

    Raises
    ------
    sqlalchemy.exc.ArgumentError
        The URL cannot be parsed.
    ModuleNotFoundError
        The driver for the URL (e.g. ``psycopg``) is not installed.
    """
    url = database_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        kwargs.setdefault("pool_pre_ping", True)
        return create_engine(url, echo=echo, **kwargs)

    connect_args = dict(kwargs.pop("connect_args", {}))
    connect_args.setdefault("timeout", busy_timeout_s)
    in_memory = parsed.database in (None, "", ":memory:") or "mode=memory" in url
    if in_memory:
        connect_args.setdefault("check_same_thread", False)
        kwargs.setdefault("poolclass", StaticPool)
    engine = create_engine(url, echo=echo, connect_args=connect_args, **kwargs)
    _install_sqlite_hooks(engine, busy_timeout_ms=int(busy_timeout_s * 1000), wal=not in_memory)
    return engine


def _install_sqlite_hooks(engine: Engine, *, busy_timeout_ms: int, wal: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy (not the sqlite3 module) emit BEGIN; see the module docstring.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # the busy timeout first: switching a new file to WAL needs a lock that several
            # processes starting together contend for
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            if wal:
                _set_wal(cursor, busy_timeout_ms / 1000.0)
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = str(conn.get_execution_options().get(SQLITE_BEGIN_OPTION, "DEFERRED")).upper()
        if mode not in _BEGIN_MODES:
            raise ValueError(f"{SQLITE_BEGIN_OPTION} must be one of {sorted(_BEGIN_MODES)}")
        conn.exec_driver_sql(f"BEGIN {mode}")


def _set_wal(cursor: Any, timeout_s: float) -> None:
    """``PRAGMA journal_mode=WAL``, retried while another connection holds the file: SQLite
    answers "database is locked" at once (without its busy handler) when two connections
    change the journal mode of a new file together."""
    deadline = time.monotonic() + timeout_s
    delay_s = 0.01
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(delay_s)
            delay_s = min(delay_s * 2, 0.5)


def create_schema(engine: Engine) -> str:
    """Bring the database to the newest schema by running the Alembic migrations; return the
    revision (see :func:`db.migrate.upgrade_schema`).

    An empty database gets every table; one made by the old ``Base.metadata.create_all`` is
    adopted (stamped ``0001_initial``) and upgraded with its data kept; one already at head
    costs a single read of ``alembic_version``. Raises ``RuntimeError`` for a database of
    unknown origin or revision and ``sqlalchemy.exc.SQLAlchemyError`` if it cannot be reached.
    """
    from db.migrate import upgrade_schema  # db.migrate imports this module

    revision = upgrade_schema(engine)
    logger.debug("schema at %s on %s", revision, engine.url.render_as_string(hide_password=True))
    return revision
