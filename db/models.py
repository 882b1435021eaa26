"""SQLAlchemy 2 declarative models: the database is the source of truth.

Portable to SQLite (default file ``kis_trader.db``) and PostgreSQL (``DATABASE_URL``). The
schema metadata is :data:`Base.metadata` (Alembic's ``target_metadata``).

Conventions
-----------
- Money is integer KRW in ``BigInteger`` columns (``*_krw``, order and fill prices);
  quantities are whole shares in ``BigInteger``. ``BigInteger`` holds up to 9.2e18, so
  10^13 KRW (10 trillion won) round-trips exactly on both back ends.
- Average prices (``orders.avg_fill_price``, ``positions.avg_price``) and the strategy's
  ``stop_loss`` / ``target_price`` are ``Double`` (float64): the framework types carry them
  as ``float`` (a quantity-weighted mean of integer prices is not an integer) and they are
  never summed as money; the exact money is ``filled_amount_krw`` / ``cost_basis_krw``.
  ``Numeric`` would hand back ``Decimal`` and, on SQLite, is stored as a float anyway
  (SQLAlchemy warns about that), so it would buy nothing but conversions. A float64 keeps
  15 significant digits: 71,234.5678 KRW round-trips exactly to the 4th decimal.
- Times use :class:`TZDateTime`: tz-aware in, stored as UTC, returned in ``Asia/Seoul``
  (SQLite has no time-zone type, so a plain ``DateTime(timezone=True)`` would drop the
  offset and return naive values).
- JSON columns use :class:`sqlalchemy.JSON` (TEXT on SQLite, JSON on PostgreSQL).
- The schema changes only through the Alembic revisions in ``db/migrations`` (run at
  start-up by :func:`db.engine.create_schema`): a column added here needs a revision too
  (``tests/test_db_migrations.py`` compares the migrated schema with this metadata).
- Enums are stored as their ``.value`` strings (``"pending_new"``, ``"buy"``) in plain
  ``String`` columns, so a new enum member needs no migration.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from utils.clock import KST

RUN_MODES = ("backtest", "live", "dry_run")
POSITION_STATUSES = ("holding", "closed")

# Surrogate keys: BIGINT on PostgreSQL; on SQLite only "INTEGER PRIMARY KEY" is an
# auto-incrementing rowid alias (which is 64-bit there anyway).
_ID = BigInteger().with_variant(Integer(), "sqlite")


class TZDateTime(TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` that stores UTC and returns ``Asia/Seoul``.

    Binding a naive datetime raises ``ValueError`` (wrapped by SQLAlchemy in
    ``StatementError``): a time without a zone is ambiguous. SQLite returns the stored UTC
    wall time naive; it is marked UTC and converted. PostgreSQL ``timestamptz`` returns an
    aware value in the session zone; it is converted as well.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: pass a tz-aware (Asia/Seoul) time")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(KST)


class Base(DeclarativeBase):
    """Declarative base; ``Base.metadata`` is the whole schema."""

    type_annotation_map = {  # noqa: RUF012 - SQLAlchemy reads this class attribute
        datetime: TZDateTime(),
        int: BigInteger(),
        float: Double(),
        str: String(64),
        dict[str, Any]: JSON(none_as_null=True),
        list[str]: JSON(none_as_null=True),
    }


class RunRow(Base):
    """One backtest, live or dry-run session. ``run_id`` is a uuid4 hex (32 chars)."""

    __tablename__ = "runs"
    __table_args__ = (CheckConstraint(f"mode IN {RUN_MODES!r}", name="ck_runs_mode"),)

    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    mode: Mapped[str] = mapped_column(String(16), index=True)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    config: Mapped[dict[str, Any]]
    summary: Mapped[dict[str, Any] | None]


class StrategyRow(Base):
    """Registered strategy and its last validated configuration."""

    __tablename__ = "strategies"

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    enabled: Mapped[bool] = mapped_column(Boolean)
    config: Mapped[dict[str, Any]]
    updated_at: Mapped[datetime]


class OrderRow(Base):
    """An order by client order id; written (``pending_new``) before it is sent."""

    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.run_id"), index=True)
    client_order_id: Mapped[str] = mapped_column(unique=True)
    broker_order_id: Mapped[str | None] = mapped_column(index=True)
    strategy: Mapped[str] = mapped_column(index=True)
    stock_code: Mapped[str] = mapped_column(String(12))
    side: Mapped[str] = mapped_column(String(8))
    order_type: Mapped[str] = mapped_column(String(8))
    qty: Mapped[int]
    price: Mapped[int | None]
    status: Mapped[str] = mapped_column(String(20), index=True)
    filled_qty: Mapped[int] = mapped_column(default=0)
    avg_fill_price: Mapped[float] = mapped_column(default=0.0)
    filled_amount_krw: Mapped[int] = mapped_column(default=0)
    commission_krw: Mapped[int] = mapped_column(default=0)
    tax_krw: Mapped[int] = mapped_column(default=0)
    signal_type: Mapped[str | None] = mapped_column(String(16))
    reasons: Mapped[list[str]]
    meta: Mapped[dict[str, Any]] = mapped_column("metadata")
    message: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    replaces: Mapped[str | None] = mapped_column(String(64))
    """Client order id of the timed-out order this one re-places; ``None`` for an original."""
    attempt: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """0 for an original order, n for its n-th re-placement after a timeout."""


class OrderStatusRow(Base):
    """One status an order went through, in insertion (``id``) order."""

    __tablename__ = "order_status_history"

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    order_id: Mapped[int] = mapped_column(
        _ID, ForeignKey("orders.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(20))
    at: Mapped[datetime]
    note: Mapped[str] = mapped_column(Text, default="")


class FillRow(Base):
    """One execution; ``fill_id`` is unique so a duplicate report is stored once.

    ``client_order_id`` is not a foreign key: reconciliation may find broker fills of
    orders this database never saw.
    """

    __tablename__ = "fills"

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    fill_id: Mapped[str] = mapped_column(String(128), unique=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.run_id"), index=True)
    client_order_id: Mapped[str] = mapped_column(index=True)
    broker_order_id: Mapped[str | None]
    strategy: Mapped[str]
    stock_code: Mapped[str] = mapped_column(String(12))
    side: Mapped[str] = mapped_column(String(8))
    qty: Mapped[int]
    price: Mapped[int]
    commission_krw: Mapped[int] = mapped_column(default=0)
    tax_krw: Mapped[int] = mapped_column(default=0)
    time: Mapped[datetime] = mapped_column(index=True)
    cum_qty: Mapped[int | None]
    """The order's cumulative filled shares after this fill (with ``broker_order_id``, the
    fill's identity); ``NULL`` for an adjustment."""
    kind: Mapped[str] = mapped_column(String(12), default="fill", server_default="fill")
    """``fill`` (an execution) or ``adjustment`` (shares that appeared or vanished in the
    account without a fill; ``qty`` signed by ``side``, no cash moved)."""
    reason: Mapped[str | None] = mapped_column(Text)
    """Why an adjustment was made; ``NULL`` for a fill."""


class CashLedgerRow(Base):
    """One movement of the book's cash (KRW, negative = out): a fill's cost or proceeds
    (``fill_id`` set), or a correction to the account's figure (``kind`` ``sync``)."""

    __tablename__ = "cash_ledger"

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.run_id"), index=True)
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(12))
    amount_krw: Mapped[int]
    strategy: Mapped[str | None]
    fill_id: Mapped[str | None] = mapped_column(String(128), unique=True)
    reason: Mapped[str] = mapped_column(Text, default="")


class StateRow(Base):
    """A JSON-able dict kept across restarts: a strategy's own state (``strategy:<name>``)
    or the engine's (``engine:<what>``); key (run_id, name)."""

    __tablename__ = "saved_state"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.run_id"), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    state: Mapped[dict[str, Any]]
    updated_at: Mapped[datetime]


class PositionRow(Base):
    """A strategy's position in one stock: one ``holding`` row while open, then ``closed``.

    The partial unique index keeps at most one ``holding`` row per (run, strategy, code) on
    SQLite and PostgreSQL (both support ``CREATE UNIQUE INDEX ... WHERE``); the repository
    also updates the holding row instead of inserting a second one.
    """

    __tablename__ = "positions"
    __table_args__ = (
        CheckConstraint(f"status IN {POSITION_STATUSES!r}", name="ck_positions_status"),
        Index(
            "uq_positions_holding",
            "run_id",
            "strategy",
            "stock_code",
            unique=True,
            sqlite_where=text("status = 'holding'"),
            postgresql_where=text("status = 'holding'"),
        ),
        Index("ix_positions_lookup", "run_id", "strategy", "stock_code", "status"),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.run_id"))
    strategy: Mapped[str]
    stock_code: Mapped[str] = mapped_column(String(12))
    qty: Mapped[int]
    avg_price: Mapped[float]
    cost_basis_krw: Mapped[int]
    stop_loss: Mapped[float | None]
    target_price: Mapped[float | None]
    reasons: Mapped[list[str]]
    meta: Mapped[dict[str, Any]] = mapped_column("metadata")
    status: Mapped[str] = mapped_column(String(8), index=True)
    opened_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]
    realized_pnl_krw: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[datetime]
    peak_price: Mapped[float | None]
    """Highest price (KRW per share) since entry, for a trailing stop; ``None`` if unknown."""


class EquitySnapshotRow(Base):
    """Cash, holdings value and equity (all KRW) of a run at one time; key (run_id, at)."""

    __tablename__ = "equity_snapshots"
    # SQLite: cluster the rows on the primary key instead of a hidden rowid plus a second
    # index on (run_id, at) - half the file size and faster bulk inserts. Ignored elsewhere.
    __table_args__ = {"sqlite_with_rowid": False}  # noqa: RUF012

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.run_id"), primary_key=True)
    at: Mapped[datetime] = mapped_column(primary_key=True)
    cash_krw: Mapped[int]
    holdings_value_krw: Mapped[int]
    equity_krw: Mapped[int]


class EventRow(Base):
    """Event log entry (alerts, reconciliation differences, errors)."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.run_id"), index=True)
    at: Mapped[datetime] = mapped_column(index=True)
    kind: Mapped[str] = mapped_column(String(64), index=True)
    level: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any] | None]


class AccountLeaseRow(Base):
    """Who trades a book now: one row per lease key (:mod:`core.lease`), refreshed by the
    holder's heartbeat; ``released_at`` is set by a clean stop (``NULL`` while held or
    after a crash)."""

    __tablename__ = "account_leases"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int]
    since: Mapped[datetime]
    heartbeat_at: Mapped[datetime]
    released_at: Mapped[datetime | None]
