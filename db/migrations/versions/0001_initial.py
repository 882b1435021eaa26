"""Initial schema: the tables ``Base.metadata.create_all`` made before migrations existed.

Runs, strategies, orders with their status history, fills, positions, equity snapshots and
events, exactly as the models of that time (same columns in the same order, same unnamed
unique and foreign-key constraints, same index names), so a database created by
``create_all`` can be stamped at this revision. Written by hand, frozen: it does not import
``db.models`` (later model changes belong in later revisions).

Revision ID: 0001_initial
Revises:
Create Date: 2024-03-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001_initial"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Surrogate keys: BIGSERIAL on PostgreSQL, "INTEGER PRIMARY KEY" (the rowid) on SQLite.
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# Stored in UTC; db.models.TZDateTime converts (SQLite: DATETIME text, PostgreSQL: timestamptz).
TIME = sa.DateTime(timezone=True)
MONEY = sa.BigInteger()  # integer KRW or whole shares
KEY = sa.String(64)


def _id() -> sa.Column[int]:
    return sa.Column("id", ID, primary_key=True, autoincrement=True, nullable=False)


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("run_id", KEY, primary_key=True, nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("started_at", TIME, nullable=False),
        sa.Column("finished_at", TIME, nullable=True),
        sa.Column("config", sa.JSON(none_as_null=True), nullable=False),
        sa.Column("summary", sa.JSON(none_as_null=True), nullable=True),
        sa.CheckConstraint("mode IN ('backtest', 'live', 'dry_run')", name="ck_runs_mode"),
    )
    op.create_index("ix_runs_mode", "runs", ["mode"])

    op.create_table(
        "strategies",
        _id(),
        sa.Column("name", KEY, nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("config", sa.JSON(none_as_null=True), nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.UniqueConstraint("name"),
    )

    op.create_table(
        "equity_snapshots",
        sa.Column("run_id", KEY, sa.ForeignKey("runs.run_id"), primary_key=True, nullable=False),
        sa.Column("at", TIME, primary_key=True, nullable=False),
        sa.Column("cash_krw", MONEY, nullable=False),
        sa.Column("holdings_value_krw", MONEY, nullable=False),
        sa.Column("equity_krw", MONEY, nullable=False),
        sqlite_with_rowid=False,
    )

    op.create_table(
        "events",
        _id(),
        sa.Column("run_id", KEY, sa.ForeignKey("runs.run_id"), nullable=True),
        sa.Column("at", TIME, nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("data", sa.JSON(none_as_null=True), nullable=True),
    )
    op.create_index("ix_events_at", "events", ["at"])
    op.create_index("ix_events_kind", "events", ["kind"])
    op.create_index("ix_events_run_id", "events", ["run_id"])

    op.create_table(
        "fills",
        _id(),
        sa.Column("fill_id", sa.String(128), nullable=False),
        sa.Column("run_id", KEY, sa.ForeignKey("runs.run_id"), nullable=False),
        sa.Column("client_order_id", KEY, nullable=False),
        sa.Column("broker_order_id", KEY, nullable=True),
        sa.Column("strategy", KEY, nullable=False),
        sa.Column("stock_code", sa.String(12), nullable=False),
        sa.Column("side", sa.String(8), nullable=False),
        sa.Column("qty", MONEY, nullable=False),
        sa.Column("price", MONEY, nullable=False),
        sa.Column("commission_krw", MONEY, nullable=False),
        sa.Column("tax_krw", MONEY, nullable=False),
        sa.Column("time", TIME, nullable=False),
        sa.UniqueConstraint("fill_id"),
    )
    op.create_index("ix_fills_client_order_id", "fills", ["client_order_id"])
    op.create_index("ix_fills_run_id", "fills", ["run_id"])
    op.create_index("ix_fills_time", "fills", ["time"])

    op.create_table(
        "orders",
        _id(),
        sa.Column("run_id", KEY, sa.ForeignKey("runs.run_id"), nullable=False),
        sa.Column("client_order_id", KEY, nullable=False),
        sa.Column("broker_order_id", KEY, nullable=True),
        sa.Column("strategy", KEY, nullable=False),
        sa.Column("stock_code", sa.String(12), nullable=False),
        sa.Column("side", sa.String(8), nullable=False),
        sa.Column("order_type", sa.String(8), nullable=False),
        sa.Column("qty", MONEY, nullable=False),
        sa.Column("price", MONEY, nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("filled_qty", MONEY, nullable=False),
        sa.Column("avg_fill_price", sa.Double(), nullable=False),
        sa.Column("filled_amount_krw", MONEY, nullable=False),
        sa.Column("commission_krw", MONEY, nullable=False),
        sa.Column("tax_krw", MONEY, nullable=False),
        sa.Column("signal_type", sa.String(16), nullable=True),
        sa.Column("reasons", sa.JSON(none_as_null=True), nullable=False),
        sa.Column("metadata", sa.JSON(none_as_null=True), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.UniqueConstraint("client_order_id"),
    )
    op.create_index("ix_orders_broker_order_id", "orders", ["broker_order_id"])
    op.create_index("ix_orders_run_id", "orders", ["run_id"])
    op.create_index("ix_orders_status", "orders", ["status"])
    op.create_index("ix_orders_strategy", "orders", ["strategy"])

    op.create_table(
        "positions",
        _id(),
        sa.Column("run_id", KEY, sa.ForeignKey("runs.run_id"), nullable=False),
        sa.Column("strategy", KEY, nullable=False),
        sa.Column("stock_code", sa.String(12), nullable=False),
        sa.Column("qty", MONEY, nullable=False),
        sa.Column("avg_price", sa.Double(), nullable=False),
        sa.Column("cost_basis_krw", MONEY, nullable=False),
        sa.Column("stop_loss", sa.Double(), nullable=True),
        sa.Column("target_price", sa.Double(), nullable=True),
        sa.Column("reasons", sa.JSON(none_as_null=True), nullable=False),
        sa.Column("metadata", sa.JSON(none_as_null=True), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("opened_at", TIME, nullable=False),
        sa.Column("closed_at", TIME, nullable=True),
        sa.Column("realized_pnl_krw", MONEY, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.CheckConstraint("status IN ('holding', 'closed')", name="ck_positions_status"),
    )
    op.create_index(
        "ix_positions_lookup", "positions", ["run_id", "strategy", "stock_code", "status"]
    )
    op.create_index("ix_positions_status", "positions", ["status"])
    # At most one 'holding' row per (run, strategy, code): a partial unique index.
    op.create_index(
        "uq_positions_holding",
        "positions",
        ["run_id", "strategy", "stock_code"],
        unique=True,
        sqlite_where=sa.text("status = 'holding'"),
        postgresql_where=sa.text("status = 'holding'"),
    )

    op.create_table(
        "order_status_history",
        _id(),
        sa.Column("order_id", ID, sa.ForeignKey("orders.id", ondelete="CASCADE"), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("at", TIME, nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
    )
    op.create_index("ix_order_status_history_order_id", "order_status_history", ["order_id"])


def downgrade() -> None:
    op.drop_table("order_status_history")
    op.drop_table("positions")
    op.drop_table("orders")
    op.drop_table("fills")
    op.drop_table("events")
    op.drop_table("equity_snapshots")
    op.drop_table("strategies")
    op.drop_table("runs")
