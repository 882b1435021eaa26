"""Alembic migrations (``db/migrations``) on a real SQLite file and a real PostgreSQL database.

The migrated schema must equal ``Base.metadata`` (Alembic's ``compare_metadata`` finds no
difference), ``0001_initial`` must equal what the old ``Base.metadata.create_all`` made, and
a database made that way is adopted (stamped ``0001_initial``) and upgraded with its data
kept. ``[postgresql]`` tests need ``KIS_TRADER_TEST_PG_URL`` (see ``tests/conftest.py``).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, UniqueConstraint, inspect, text
from sqlalchemy.engine import make_url

import db.migrate
from db.engine import create_schema, make_engine
from db.migrate import (
    BASELINE_REVISION,
    alembic_config,
    current_revision,
    head_revision,
    upgrade_schema,
)
from db.models import Base
from db.repository import Repository
from framework.types import Order, OrderSide, OrderStatus, OrderType
from utils.clock import KST

T0 = datetime(2024, 3, 4, 9, 0, tzinfo=KST)
REPO_ROOT = Path(__file__).resolve().parent.parent
HEAD = "0004_account_leases"
BACKENDS = ("sqlite", "postgresql")

# Columns the models gained after 0001_initial, by table. A database made by the old
# create_all is today's create_all minus these (a later revision adding columns adds here).
ADDED_AFTER_BASELINE = {
    "positions": ("peak_price",),
    "orders": ("replaces", "attempt"),
    "fills": ("cum_qty", "kind", "reason"),
}
TABLES_AFTER_BASELINE = ("cash_ledger", "saved_state", "account_leases")

NewDb = Callable[[], tuple[str, Engine]]


@pytest.fixture(params=BACKENDS)
def new_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NewDb]:
    """Factory of empty databases ``(url, engine)`` of one back end: SQLite files in
    ``tmp_path`` or fresh PostgreSQL databases; engines disposed, databases dropped after."""
    fresh_pg = (
        request.getfixturevalue("pg_fresh_database") if request.param == "postgresql" else None
    )
    engines: list[Engine] = []
    with ExitStack() as stack:

        def make() -> tuple[str, Engine]:
            if fresh_pg is None:
                url = f"sqlite:///{tmp_path / f'db{len(engines)}.db'}"
            else:
                url = stack.enter_context(fresh_pg())
            engine = make_engine(url)
            engines.append(engine)
            return url, engine

        try:
            yield make
        finally:
            for engine in engines:
                engine.dispose()


def make_pre_migration_schema(engine: Engine) -> None:
    """What ``Base.metadata.create_all`` made before migrations existed (no
    ``alembic_version``)."""
    Base.metadata.create_all(engine)
    with engine.begin() as conn:
        for table in TABLES_AFTER_BASELINE:
            conn.execute(text(f"DROP TABLE {table}"))
        for table, columns in ADDED_AFTER_BASELINE.items():
            for column in columns:
                conn.execute(text(f"ALTER TABLE {table} DROP COLUMN {column}"))


def schema_of(engine: Engine) -> dict[str, Any]:
    """Everything reflection tells about the tables (not ``alembic_version``), comparable."""
    insp = inspect(engine)
    dialect = engine.dialect
    out: dict[str, Any] = {}
    for table in sorted(set(insp.get_table_names()) - {"alembic_version"}):
        out[table] = {
            "columns": [
                (c["name"], c["type"].compile(dialect=dialect), c["nullable"], c.get("default"))
                for c in insp.get_columns(table)
            ],
            "pk": insp.get_pk_constraint(table)["constrained_columns"],
            "fks": sorted(
                (
                    str(fk["name"]),
                    tuple(fk["constrained_columns"]),
                    fk["referred_table"],
                    tuple(fk["referred_columns"]),
                    fk["options"].get("ondelete"),
                )
                for fk in insp.get_foreign_keys(table)
            ),
            "uniques": sorted(
                (str(u["name"]), tuple(u["column_names"]))
                for u in insp.get_unique_constraints(table)
            ),
            "indexes": sorted(
                (
                    ix["name"],
                    tuple(ix["column_names"]),
                    bool(ix["unique"]),
                    str(
                        ix.get("dialect_options", {}).get(f"{dialect.name}_where")
                    ),  # partial index
                )
                for ix in insp.get_indexes(table)
            ),
            "checks": sorted((c["name"], c["sqltext"]) for c in insp.get_check_constraints(table)),
            "options": insp.get_table_options(table),
        }
    return out


def differences(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        return list(compare_metadata(ctx, Base.metadata))


def _order(cid: str) -> Order:
    return Order(
        client_order_id=cid,
        strategy="momentum",
        stock_code="005930",
        side=OrderSide.BUY,
        order_type=OrderType.LIMIT,
        qty=10,
        price=71_000,
        created_at=T0,
        updated_at=T0,
    )


# ---------------------------------------------------------------------------- schema


def test_upgrade_of_an_empty_database_gives_the_models_schema(new_db):
    _, engine = new_db()
    assert current_revision(engine) is None

    assert upgrade_schema(engine) == HEAD == head_revision()

    assert current_revision(engine) == HEAD
    assert differences(engine) == []
    insp = inspect(engine)
    assert set(insp.get_table_names()) == set(Base.metadata.tables) | {"alembic_version"}
    for name, table in Base.metadata.tables.items():
        assert [c["name"] for c in insp.get_columns(name)] == [c.name for c in table.columns]
        indexes = {  # PostgreSQL also lists the index behind each UNIQUE constraint
            ix["name"] for ix in insp.get_indexes(name) if "duplicates_constraint" not in ix
        }
        assert indexes == {ix.name for ix in table.indexes}
        assert {tuple(u["column_names"]) for u in insp.get_unique_constraints(name)} == {
            tuple(c.name for c in u.columns)
            for u in table.constraints
            if isinstance(u, UniqueConstraint)
        }
    positions = schema_of(engine)["positions"]
    [holding] = [ix for ix in positions["indexes"] if ix[0] == "uq_positions_holding"]
    assert holding[1:3] == (("run_id", "strategy", "stock_code"), True)
    assert "holding" in holding[3]  # partial: WHERE status = 'holding'
    assert [c[0] for c in positions["checks"]] == ["ck_positions_status"]
    if engine.dialect.name == "sqlite":
        assert insp.get_table_options("equity_snapshots") == {"sqlite_with_rowid": False}


def test_0001_initial_is_the_schema_create_all_made(new_db):
    _, migrated = new_db()
    _, legacy = new_db()
    with migrated.begin() as conn:
        command.upgrade(alembic_config(conn), BASELINE_REVISION)
    make_pre_migration_schema(legacy)

    assert current_revision(migrated) == BASELINE_REVISION
    assert schema_of(migrated) == schema_of(legacy)


def test_pre_migration_database_is_adopted_with_its_data_kept(new_db):
    url, engine = new_db()
    make_pre_migration_schema(engine)
    with engine.begin() as conn:  # rows as the old program wrote them (plain SQL)
        conn.execute(
            text(
                "INSERT INTO runs (run_id, mode, started_at, config) "
                "VALUES ('old', 'live', :t, '{\"cash\": 1000}')"
            ),
            {"t": T0},
        )
        conn.execute(
            text(
                "INSERT INTO orders (run_id, client_order_id, strategy, stock_code, side, "
                "order_type, qty, price, status, filled_qty, avg_fill_price, "
                "filled_amount_krw, commission_krw, tax_krw, reasons, metadata, message, "
                "created_at, updated_at) VALUES ('old', 'o-old', 'momentum', '005930', 'buy', "
                "'limit', 10, 71000, 'submitted', 0, 0.0, 0, 0, 0, '[]', '{}', '', :t, :t)"
            ),
            {"t": T0},
        )
        order_id = conn.execute(text("SELECT id FROM orders")).scalar_one()
        for status in ("pending_new", "submitted"):
            conn.execute(
                text(
                    "INSERT INTO order_status_history (order_id, status, at, note) "
                    "VALUES (:o, :s, :t, '')"
                ),
                {"o": order_id, "s": status, "t": T0},
            )
        conn.execute(
            text(
                "INSERT INTO positions (run_id, strategy, stock_code, qty, avg_price, "
                "cost_basis_krw, reasons, metadata, status, opened_at, realized_pnl_krw, "
                "updated_at) VALUES ('old', 'momentum', '005930', 4, 71000.0, 284042, '[]', "
                "'{}', 'holding', :t, 0, :t)"
            ),
            {"t": T0},
        )
        conn.execute(
            text(
                "INSERT INTO equity_snapshots (run_id, at, cash_krw, holdings_value_krw, "
                "equity_krw) VALUES ('old', :t, 715958, 284000, 999958)"
            ),
            {"t": T0},
        )
    assert current_revision(engine) is None

    repo = Repository(url)  # create=True: what live trading and the backtest do
    try:
        assert current_revision(engine) == HEAD
        assert differences(engine) == []
        order = repo.get_order("o-old")
        assert order is not None
        assert (order.status, order.replaces, order.attempt) == (OrderStatus.SUBMITTED, None, 0)
        assert [h[0] for h in repo.get_order_history("o-old")] == [
            OrderStatus.PENDING_NEW,
            OrderStatus.SUBMITTED,
        ]
        [pos] = repo.get_positions("old")
        assert (pos["qty"], pos["cost_basis_krw"], pos["peak_price"]) == (4, 284_042, None)
        assert repo.get_last_equity("old") == {
            "at": T0,
            "cash_krw": 715_958,
            "holdings_value_krw": 284_000,
            "equity_krw": 999_958,
        }
        assert repo.get_run("old")["config"] == {"cash": 1000}
        before = schema_of(engine)
    finally:
        repo.close()

    # twice: a no-op
    assert upgrade_schema(engine) == HEAD
    again = Repository(url)
    try:
        assert schema_of(engine) == before
        assert len(again.get_order_history("o-old")) == 2
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
    finally:
        again.close()


def test_at_head_nothing_runs(new_db, monkeypatch):
    url, engine = new_db()
    assert create_schema(engine) == HEAD

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("a migration command ran on a database at head")

    monkeypatch.setattr(db.migrate.command, "upgrade", refuse)
    monkeypatch.setattr(db.migrate.command, "stamp", refuse)
    assert create_schema(engine) == HEAD
    Repository(url).close()


def test_downgrade_keeps_order_history_and_upgrades_again(new_db):
    url, engine = new_db()
    repo = Repository(url, clock=lambda: T0)
    try:
        run_id = repo.create_run("live", {}, T0)
        order = _order("o-1")
        repo.save_order(run_id, order)
        order.status, order.attempt, order.replaces = OrderStatus.SUBMITTED, 1, "o-0"
        order.updated_at = T0 + timedelta(seconds=1)
        repo.save_order(run_id, order)
    finally:
        repo.close()

    with engine.begin() as conn:  # a table copy of orders would cascade-delete the history
        command.downgrade(alembic_config(conn), BASELINE_REVISION)
    assert current_revision(engine) == BASELINE_REVISION
    assert "attempt" not in {c["name"] for c in inspect(engine).get_columns("orders")}
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM order_status_history")).scalar() == 2

    repo = Repository(url)
    try:
        stored = repo.get_order("o-1")
        assert stored is not None
        assert (stored.status, stored.attempt, stored.replaces) == (
            OrderStatus.SUBMITTED,
            0,
            None,
        )
        assert len(repo.get_order_history("o-1")) == 2
    finally:
        repo.close()
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}


def test_concurrent_start_ups_migrate_once(new_db):
    url, _ = new_db()
    results: list[str] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def start() -> None:
        engine = make_engine(url)
        try:
            barrier.wait()
            results.append(upgrade_schema(engine))
        except BaseException as exc:
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=start) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()

    assert errors == []
    assert results == [HEAD] * 4
    check = make_engine(url)
    try:
        assert differences(check) == []
    finally:
        check.dispose()


def test_unknown_databases_are_refused_untouched(new_db):
    _, partial = new_db()
    with partial.begin() as conn:
        conn.execute(text("CREATE TABLE runs (run_id VARCHAR(64) PRIMARY KEY)"))
    with pytest.raises(RuntimeError, match="not a kis-trader schema"):
        upgrade_schema(partial)
    assert set(inspect(partial).get_table_names()) == {"runs"}

    _, newer = new_db()
    upgrade_schema(newer)
    with newer.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099_future'"))
    with pytest.raises(RuntimeError, match="0099_future"):
        upgrade_schema(newer)


def test_logging_configuration_is_left_alone(new_db, caplog):
    _, engine = new_db()
    root = logging.getLogger()
    app = logging.getLogger("kis_trader_app")
    handlers, level = list(root.handlers), root.level
    with caplog.at_level(logging.INFO, logger="db.migrate"):
        upgrade_schema(engine)
    assert root.handlers == handlers
    assert root.level == level
    assert not app.disabled
    assert not logging.getLogger("db.repository").disabled
    assert any(f"upgraded from None to {HEAD}" in r.getMessage() for r in caplog.records)
    password = engine.url.password
    if password:
        assert all(str(password) not in r.getMessage() for r in caplog.records)


def test_alembic_command_line_uses_database_url(new_db):
    url, engine = new_db()
    env = {**os.environ, "DATABASE_URL": url}

    def alembic(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "alembic", *args],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    upgraded = alembic("upgrade", "head")
    assert upgraded.returncode == 0, upgraded.stderr
    assert current_revision(engine) == HEAD
    checked = alembic("check")  # autogenerate: models and migrations agree
    assert checked.returncode == 0, checked.stderr
    assert "No new upgrade operations detected" in checked.stdout + checked.stderr
    password = make_url(url).password
    if password:
        assert str(password) not in upgraded.stdout + upgraded.stderr
