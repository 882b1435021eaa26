"""Alembic migrations run from code: bring a database to the head revision.

:func:`upgrade_schema` is what :func:`db.engine.create_schema` (and so every
``Repository(create=True)``) calls. It is configured in code (no ``alembic.ini`` needed) and
never touches logging: Alembic's ``fileConfig`` runs only for the ``alembic`` command line
(see ``db/migrations/env.py``), so the application's logging set-up is left alone.

- Already at head: one short read (``alembic_version``) and nothing else.
- Empty database: every revision runs (``0001_initial`` creates the tables).
- A database made by the old ``Base.metadata.create_all`` (tables present, no
  ``alembic_version``): stamped ``0001_initial`` (that schema, exactly), then upgraded.

The whole upgrade is one transaction holding a lock, so two processes starting together
neither run a migration twice nor see half of one: SQLite takes the write lock with
``BEGIN IMMEDIATE``; PostgreSQL (transactional DDL) takes a transaction-scoped advisory lock.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection, Engine, inspect, text

from db.engine import SQLITE_BEGIN_OPTION

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
BASELINE_REVISION = "0001_initial"
"""The revision whose schema ``Base.metadata.create_all`` produced before migrations."""
BASELINE_TABLES = frozenset(
    {
        "runs",
        "strategies",
        "orders",
        "order_status_history",
        "fills",
        "positions",
        "equity_snapshots",
        "events",
    }
)
_PG_LOCK_KEY = 0x6B69735F6D6967  # "kis_mig": pg_advisory_xact_lock key of the upgrade


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic :class:`~alembic.config.Config` for ``db/migrations`` built in code.

    With ``connection``, ``env.py`` runs the migrations on it (inside the caller's
    transaction) instead of opening its own engine, and skips the logging set-up.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@lru_cache(maxsize=1)
def head_revision() -> str:
    """The head revision id of ``db/migrations`` (read from the scripts once per process).

    Raises ``alembic.util.exc.CommandError`` if the scripts have several heads.
    """
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migration scripts in {MIGRATIONS_DIR}")
    return head


def _revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def current_revision(engine: Engine) -> str | None:
    """The revision stored in ``alembic_version``, or ``None`` if the table is absent.

    A database made by the old ``create_all`` (tables, no ``alembic_version``) also gives
    ``None``. Raises ``sqlalchemy.exc.OperationalError`` if the database cannot be reached.
    """
    with engine.connect() as conn:
        return _revision(conn)


def upgrade_schema(engine: Engine) -> str:
    """Upgrade the database of ``engine`` to the head revision; return that revision.

    Cheap when already at head (one read, no lock). Otherwise, in one locked transaction:
    a pre-migration database (all tables of ``0001_initial`` present, no
    ``alembic_version``) is stamped ``0001_initial``, then every pending revision runs.
    Data is kept. Any error rolls the whole upgrade back.

    Raises
    ------
    RuntimeError
        Without ``alembic_version``, only some of the ``0001_initial`` tables exist (not a
        database this project created: nothing is changed), or the database is at a
        revision these scripts do not know (made by a newer version of the program).
    sqlalchemy.exc.SQLAlchemyError
        The database cannot be reached or a migration statement failed.
    """
    head = head_revision()
    if current_revision(engine) == head:
        return head

    locked = engine.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
    with locked.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        before = _revision(conn)  # again, under the lock: another process may have run it
        if before == head:
            return head
        if before is not None:
            try:
                ScriptDirectory.from_config(alembic_config()).get_revision(before)
            except CommandError as exc:
                raise RuntimeError(
                    f"database is at revision {before!r}, unknown to this program "
                    f"(head {head!r}): was it made by a newer version?"
                ) from exc
        config = alembic_config(conn)
        if before is None:
            present = BASELINE_TABLES & set(inspect(conn).get_table_names())
            if present == BASELINE_TABLES:
                logger.info("stamping pre-migration schema as %s", BASELINE_REVISION)
                command.stamp(config, BASELINE_REVISION)
            elif present:
                raise RuntimeError(
                    f"tables {sorted(present)} exist without alembic_version and "
                    f"{sorted(BASELINE_TABLES - present)} are missing: not a kis-trader schema"
                )
        command.upgrade(config, "head")
        after = _revision(conn)
    logger.info(
        "database %s upgraded from %s to %s",
        engine.url.render_as_string(hide_password=True),
        before,
        after,
    )
    if after is None:  # pragma: no cover - upgrade to head always writes a version
        raise RuntimeError("upgrade finished without a revision")
    return after
