"""Shared fixtures: the real market data directory, strategy configs and PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from config.settings import data_root

PG_URL_ENV = "KIS_TRADER_TEST_PG_URL"
REQUIRE_PG_ENV = "KIS_TRADER_REQUIRE_PG"


@pytest.fixture(autouse=True)
def _state_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Lease files of every test in a folder of its own, never the user's state folder
    (bots started by a test inherit it through the environment)."""
    folder = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("KIS_TRADER_STATE_DIR", str(folder))
    return folder


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Root of the shared real market data (``KIS_TRADER_DATA_DIR`` or ../shared/data)."""
    root = data_root()
    if not (root / "krx").is_dir():
        pytest.fail(f"market data not found at {root}; set KIS_TRADER_DATA_DIR")
    return root


@pytest.fixture(scope="session")
def krx_long(data_dir: Path) -> Path:
    return data_dir / "krx" / "daily_2000_2024"


@pytest.fixture(scope="session")
def krx_recent(data_dir: Path) -> Path:
    return data_dir / "krx" / "daily_2023_2025"


# ------------------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="session")
def pg_url() -> str:
    """Admin URL of a real PostgreSQL server (``KIS_TRADER_TEST_PG_URL``), e.g.
    ``postgresql+psycopg://user:pass@127.0.0.1:55432/db``; its role needs ``CREATEDB``.

    Unset: the test is skipped, or fails if ``KIS_TRADER_REQUIRE_PG=1`` (CI, where
    ``.ci/run`` starts a server). Tests should not use this database itself but a fresh one
    from :func:`pg_db_url` / :func:`pg_fresh_database`.
    """
    url = os.environ.get(PG_URL_ENV, "").strip()
    if not url:
        message = f"{PG_URL_ENV} is not set: no PostgreSQL server to test against"
        if os.environ.get(REQUIRE_PG_ENV, "").strip() == "1":
            pytest.fail(f"{message}, but {REQUIRE_PG_ENV}=1")
        pytest.skip(message)
    if make_url(url).get_backend_name() != "postgresql":
        pytest.fail(f"{PG_URL_ENV} must be a postgresql:// URL")
    return url


@pytest.fixture(scope="session")
def pg_admin_engine(pg_url: str) -> Iterator[Engine]:
    """Autocommit engine on the :func:`pg_url` database, for CREATE/DROP DATABASE."""
    engine = create_engine(pg_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    yield engine
    engine.dispose()


@contextmanager
def _fresh_database(admin: Engine, admin_url: str) -> Iterator[str]:
    name = f"kis_test_{uuid.uuid4().hex[:16]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:  # FORCE: ends sessions a failed test left open
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def pg_fresh_database(
    pg_admin_engine: Engine, pg_url: str
) -> Callable[[], AbstractContextManager[str]]:
    """Factory: ``with pg_fresh_database() as url:`` gives the URL of a new, empty
    database (uniquely named), dropped on exit. For fixtures of any scope."""
    return partial(_fresh_database, pg_admin_engine, pg_url)


@pytest.fixture
def pg_db_url(pg_fresh_database: Callable[[], AbstractContextManager[str]]) -> Iterator[str]:
    """URL of an empty PostgreSQL database of this test only (dropped afterwards)."""
    with pg_fresh_database() as url:
        yield url
