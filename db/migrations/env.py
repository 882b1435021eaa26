"""Alembic environment: run from code by :mod:`db.migrate`, or by the ``alembic`` command.

From code, ``config.attributes["connection"]`` holds an open connection inside the caller's
transaction; the migrations run on it and logging is left alone (no ``fileConfig``).

From the command line (``alembic upgrade head`` at the repository root, ``alembic.ini``),
the URL is ``-x url=...``, else ``sqlalchemy.url`` of the ini file if set, else
:func:`db.engine.database_url` (``DATABASE_URL`` or ``./kis_trader.db``); the engine comes
from :func:`db.engine.make_engine` (SQLite WAL, foreign keys). Logging follows the ini file.
A database made by the old ``create_all`` (tables, no ``alembic_version``) must first be
stamped there: ``alembic stamp 0001_initial`` (the application does that by itself).
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection

from db.engine import database_url, make_engine
from db.models import Base

config = context.config
target_metadata = Base.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # autogenerate ALTERs through batch mode: SQLite needs it
        compare_type=True,
    )


def _cli_url() -> str:
    explicit = context.get_x_argument(as_dictionary=True).get("url")
    return database_url(explicit or config.get_main_option("sqlalchemy.url"))


def run_migrations_offline() -> None:
    """``alembic upgrade head --sql``: print the SQL instead of running it."""
    context.configure(
        url=_cli_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:  # from db.migrate: the caller owns the transaction
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(_cli_url())
    try:
        with engine.begin() as conn:
            _configure(conn)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if config.config_file_name is not None and "connection" not in config.attributes:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
