"""Repository: every read and write of the trading database goes through here.

Thread-safe: each call opens its own session from a ``sessionmaker`` and keeps the
transaction short; nothing returned is an ORM row (plain values, framework dataclasses,
dicts or DataFrames). On SQLite every write transaction starts with ``BEGIN IMMEDIATE``
(see :mod:`db.engine`), so concurrent read-modify-write calls are serialised. On PostgreSQL
(``postgresql+psycopg://``) a read-modify-write locks its row (``SELECT ... FOR UPDATE``)
and an insert that loses a race with another writer (unique key) re-reads the winner's row
inside a savepoint, so the result is the same as on SQLite.

Units: money is ``int`` KRW, quantities ``int`` shares, times tz-aware ``Asia/Seoul``. Every
write raises ``ValueError`` for a naive datetime and ``TypeError`` for a money or quantity
that is not a whole number (``10.5`` is refused, never truncated), before touching the
database. Times read back are always ``Asia/Seoul``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar, cast

import numpy as np
import pandas as pd
from sqlalchemy import (
    CursorResult,
    Engine,
    Select,
    String,
    Table,
    insert,
    select,
    type_coerce,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from db.engine import SQLITE_BEGIN_OPTION, create_schema, make_engine
from db.mapping import (
    EQUITY_FRAME_COLUMNS,
    FILL_FRAME_COLUMNS,
    FINAL_STATUSES,
    ORDER_FRAME_COLUMNS,
    aware,
    chunks,
    fill_values,
    frame,
    initial_and_final_status,
    order_values,
    plain,
    row_dict,
    to_order,
    whole,
)
from db.models import (
    KST,
    POSITION_STATUSES,
    RUN_MODES,
    CashLedgerRow,
    EquitySnapshotRow,
    EventRow,
    FillRow,
    OrderRow,
    OrderStatusRow,
    PositionRow,
    RunRow,
    StateRow,
    StrategyRow,
)
from framework.types import Fill, Order, OrderStatus
from utils.clock import now as clock_now

_DIALECT_INSERTS: dict[str, Callable[[Table], Any]] = {
    "sqlite": sqlite.insert,
    "postgresql": postgresql.insert,
}
_FILLS = cast(Table, FillRow.__table__)
_HISTORY = cast(Table, OrderStatusRow.__table__)
_EQUITY = cast(Table, EquitySnapshotRow.__table__)
_RUNS = cast(Table, RunRow.__table__)

_Row = TypeVar("_Row")


def _lock_or_insert(
    session: Session, stmt: Select[Any], make: Callable[[], _Row]
) -> tuple[_Row, bool]:
    """The row of ``stmt`` locked ``FOR UPDATE`` (``(row, False)``), or a new row from
    ``make()`` flushed inside a savepoint (``(row, True)``).

    If the insert violates a unique key because a concurrent transaction inserted the same
    row first (PostgreSQL: both saw none), the savepoint is rolled back and the winner's row
    is read and locked instead. Any other ``IntegrityError`` (e.g. an unknown ``run_id``)
    is raised.
    """
    found = session.scalars(stmt.with_for_update()).one_or_none()
    if found is not None:
        return cast(_Row, found), False
    new = make()
    try:
        with session.begin_nested():
            session.add(new)
    except IntegrityError:
        found = session.scalars(stmt.with_for_update()).one_or_none()
        if found is None:
            raise
        return cast(_Row, found), False
    return new, True


class Repository:
    """Persistence of runs, orders, fills, positions, equity and events.

    Parameters
    ----------
    engine:
        An :class:`~sqlalchemy.Engine` (preferably from :func:`db.engine.make_engine`, which
        sets up SQLite WAL and ``BEGIN IMMEDIATE``), a URL, or ``None`` for
        :func:`db.engine.database_url`.
    create:
        Bring the schema to the newest migration on construction (default ``True``; see
        :func:`db.engine.create_schema`: about a millisecond when already there).
    clock:
        Source of "now" (tz-aware) for times the caller leaves out.
    """

    def __init__(
        self,
        engine: Engine | str | None = None,
        *,
        create: bool = True,
        clock: Callable[[], dt.datetime] = clock_now,
    ) -> None:
        self._owns_engine = not isinstance(engine, Engine)
        self.engine: Engine = make_engine(engine) if not isinstance(engine, Engine) else engine
        if create:
            create_schema(self.engine)
        self._clock = clock
        self._reader = sessionmaker(self.engine, expire_on_commit=False)
        writer_engine = self.engine.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
        self._writer = sessionmaker(writer_engine, expire_on_commit=False)

    def close(self) -> None:
        """Release pooled connections if this repository created the engine."""
        if self._owns_engine:
            self.engine.dispose()

    @contextmanager
    def _write(self) -> Iterator[Session]:
        with self._writer.begin() as session:
            yield session

    def _now(self) -> dt.datetime:
        return aware(self._clock(), "clock()")

    def _insert(self, table: Table) -> Any:
        """Dialect ``INSERT`` with ``ON CONFLICT`` support (SQLite, PostgreSQL)."""
        name = self.engine.dialect.name
        if name not in _DIALECT_INSERTS:
            raise NotImplementedError(f"upserts exist for sqlite and postgresql, not {name}")
        return _DIALECT_INSERTS[name](table)

    # ----------------------------------------------------------------- runs, strategies

    def create_run(
        self,
        mode: str,
        config: Mapping[str, Any],
        started_at: dt.datetime,
        run_id: str | None = None,
    ) -> str:
        """Record a new run and return its id (``uuid4().hex`` unless ``run_id`` is given).

        Raises ``ValueError`` for a mode other than ``'backtest' | 'live' | 'dry_run'`` or a
        naive ``started_at``; ``sqlalchemy.exc.IntegrityError`` if ``run_id`` exists.
        """
        if mode not in RUN_MODES:
            raise ValueError(f"mode must be one of {RUN_MODES}, got {mode!r}")
        run_id = run_id or uuid.uuid4().hex
        row = RunRow(
            run_id=run_id,
            mode=mode,
            started_at=aware(started_at, "started_at"),
            finished_at=None,
            config=plain(config),
            summary=None,
        )
        with self._write() as s:
            s.add(row)
        return run_id

    def ensure_run(
        self, mode: str, config: Mapping[str, Any], started_at: dt.datetime, run_id: str
    ) -> bool:
        """Create the run ``run_id`` if it does not exist; ``True`` if it was created.

        An existing run is left as it is (its mode, config and start time are not changed)
        and ``False`` is returned. Live trading keeps one long-lived ``run_id`` per account,
        so the orders and positions of the run are found again after a restart. Safe
        against a concurrent call with the same id (``INSERT ... ON CONFLICT DO NOTHING``).

        Raises ``ValueError`` for an unknown mode, an empty ``run_id`` or a naive
        ``started_at``; ``TypeError`` if ``config`` is not JSON-serialisable.
        """
        if mode not in RUN_MODES:
            raise ValueError(f"mode must be one of {RUN_MODES}, got {mode!r}")
        if not run_id:
            raise ValueError("run_id must not be empty")
        values = {
            "run_id": run_id,
            "mode": mode,
            "started_at": aware(started_at, "started_at"),
            "finished_at": None,
            "config": plain(config),
            "summary": None,
        }
        stmt = self._insert_new(_RUNS, values, "run_id")
        with self._write() as s:
            # RETURNING, not rowcount: psycopg does not keep an INSERT's rowcount
            return s.execute(stmt).first() is not None

    def finish_run(self, run_id: str, finished_at: dt.datetime, summary: Mapping[str, Any]) -> None:
        """Set a run's end time and summary (JSON). ``KeyError`` if the run does not exist."""
        values = {"finished_at": aware(finished_at, "finished_at"), "summary": plain(summary)}
        with self._write() as s:
            stmt = update(RunRow).where(RunRow.run_id == run_id).values(**values)
            res = cast(CursorResult[Any], s.execute(stmt))
            if res.rowcount == 0:
                raise KeyError(f"no run {run_id!r}")

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        """``{run_id, mode, started_at, finished_at, config, summary}`` or ``None``."""
        with self._reader() as s:
            row = s.get(RunRow, run_id)
            return row_dict(row) if row else None

    def list_runs(self, mode: str | None = None) -> list[dict[str, Any]]:
        """All runs (optionally of one mode) as :meth:`get_run` dicts, oldest first."""
        stmt = select(RunRow).order_by(RunRow.started_at, RunRow.run_id)
        if mode is not None:
            stmt = stmt.where(RunRow.mode == mode)
        with self._reader() as s:
            return [row_dict(r) for r in s.scalars(stmt)]

    def upsert_strategy(self, name: str, enabled: bool, config: Mapping[str, Any]) -> None:
        """Insert or update the strategy ``name`` (enabled flag and config JSON)."""
        now = self._now()
        with self._write() as s:
            row, inserted = _lock_or_insert(
                s,
                select(StrategyRow).where(StrategyRow.name == name),
                lambda: StrategyRow(
                    name=name, enabled=bool(enabled), config=plain(config), updated_at=now
                ),
            )
            if not inserted:
                row.enabled, row.config, row.updated_at = bool(enabled), plain(config), now

    def get_strategies(self) -> list[dict[str, Any]]:
        """``[{id, name, enabled, config, updated_at}]`` ordered by name."""
        with self._reader() as s:
            return [row_dict(r) for r in s.scalars(select(StrategyRow).order_by(StrategyRow.name))]

    # ----------------------------------------------------------------------- orders

    def save_order(self, run_id: str, order: Order, note: str = "") -> None:
        """Insert or update ``order`` by ``client_order_id`` (call before sending and after).

        A status-history row ``(status, at, note)`` is appended on insert and whenever the
        status differs from the stored one; ``at`` is ``order.updated_at`` (else now). Times
        left ``None`` on the order become now (``created_at`` is kept from the first save).
        ``run_id`` is used on insert only: an order stays with the run that created it.
        ``order.replaces`` (client order id of the timed-out order it re-places) and
        ``order.attempt`` (re-placement number, 0 for an original) are stored as well.

        Raises ``ValueError`` for naive times or a negative ``attempt``; ``TypeError`` for
        fractional money or quantities; ``sqlalchemy.exc.IntegrityError`` if the run does
        not exist.
        """
        with self._write() as s:
            self._write_order(s, run_id, order, note)

    def _write_order(
        self, s: Session, run_id: str, order: Order, note: str, *, always: bool = False
    ) -> None:
        now = self._now()
        values = order_values(order, now)
        at = values["updated_at"] if order.updated_at else now
        stmt = select(OrderRow).where(OrderRow.client_order_id == order.client_order_id)
        row, inserted = _lock_or_insert(s, stmt, lambda: OrderRow(run_id=run_id, **values))
        changed = always or inserted or row.status != values["status"]
        if not inserted:
            if order.created_at is None:
                values["created_at"] = row.created_at
            for key, value in values.items():
                setattr(row, key, value)
        if changed:
            s.add(OrderStatusRow(order_id=row.id, status=values["status"], at=at, note=note))

    def save_orders_bulk(self, run_id: str, orders: Iterable[Order]) -> int:
        """Insert many new orders in one transaction (backtest end); return how many.

        Writes two history rows per order: ``pending_new`` at ``created_at`` and the final
        status at ``updated_at`` (one row if the order is still ``pending_new``). Raises
        ``sqlalchemy.exc.IntegrityError`` (nothing written) if a ``client_order_id`` is
        already stored; use :meth:`save_order` for updates.
        """
        now = self._now()
        rows = [{"run_id": run_id, **order_values(o, now)} for o in orders]
        if not rows:
            return 0
        with self._write() as s:
            for chunk in chunks(rows, 5000):
                stmt = insert(OrderRow).returning(OrderRow.id, sort_by_parameter_order=True)
                ids = s.execute(stmt, chunk).scalars().all()
                history = [
                    h
                    for i, r in zip(ids, chunk, strict=True)
                    for h in initial_and_final_status(i, r)
                ]
                s.execute(insert(_HISTORY), history)
        return len(rows)

    def get_order(self, client_order_id: str) -> Order | None:
        """The stored order rebuilt as a framework :class:`Order`, or ``None``."""
        with self._reader() as s:
            stmt = select(OrderRow).where(OrderRow.client_order_id == client_order_id)
            row = s.scalars(stmt).one_or_none()
            return to_order(row) if row else None

    def get_open_orders(self, run_id: str | None = None) -> list[Order]:
        """Orders whose status is not final (incl. ``pending_new`` and ``unknown``, which a
        restart must resolve with the broker), oldest first; all runs if ``run_id`` is None."""
        stmt = select(OrderRow).where(OrderRow.status.not_in(FINAL_STATUSES)).order_by(OrderRow.id)
        if run_id is not None:
            stmt = stmt.where(OrderRow.run_id == run_id)
        with self._reader() as s:
            return [to_order(r) for r in s.scalars(stmt)]

    def get_orders(self, run_id: str) -> pd.DataFrame:
        """A run's orders, one row each in insertion order, columns ``ORDER_FRAME_COLUMNS``.

        Money and quantities int64 (``price`` nullable ``Int64``: market orders have none),
        ``avg_fill_price`` float64, enums as their string values, times tz Asia/Seoul;
        ``replaces`` the re-placed client order id or ``None``, ``attempt`` int64.
        """
        stmt = select(OrderRow).where(OrderRow.run_id == run_id).order_by(OrderRow.id)
        with self._reader() as s:
            records = [row_dict(r) for r in s.scalars(stmt)]
        return frame(
            records,
            ORDER_FRAME_COLUMNS,
            ints=("qty", "filled_qty", "filled_amount_krw", "commission_krw", "tax_krw", "attempt"),
            nullable_ints=("price",),
            floats=("avg_fill_price",),
            times=("created_at", "updated_at"),
        )

    def get_order_history(self, client_order_id: str) -> list[tuple[OrderStatus, dt.datetime, str]]:
        """``[(status, at, note)]`` in the order written; empty if the order is unknown."""
        stmt = (
            select(OrderStatusRow.status, OrderStatusRow.at, OrderStatusRow.note)
            .join(OrderRow, OrderRow.id == OrderStatusRow.order_id)
            .where(OrderRow.client_order_id == client_order_id)
            .order_by(OrderStatusRow.id)
        )
        with self._reader() as s:
            return [(OrderStatus(st), at, note) for st, at, note in s.execute(stmt)]

    # ------------------------------------------------------------------------ fills

    def save_fill(self, run_id: str, fill: Fill, strategy: str) -> bool:
        """Store ``fill`` unless its ``fill_id`` is already stored; ``True`` if inserted."""
        values = fill_values(run_id, fill, strategy)
        stmt = self._insert_new(_FILLS, values, "fill_id")
        with self._write() as s:
            # RETURNING, not rowcount: psycopg does not keep an INSERT's rowcount
            return s.execute(stmt).first() is not None

    def save_fills_bulk(self, run_id: str, items: Iterable[tuple[str, Fill]]) -> None:
        """Store ``(strategy, fill)`` pairs in one transaction, skipping known ``fill_id``s."""
        rows = [fill_values(run_id, fill, strategy) for strategy, fill in items]
        if not rows:
            return
        stmt = self._insert(_FILLS).on_conflict_do_nothing(index_elements=["fill_id"])
        with self._write() as s:
            for chunk in chunks(rows, 10_000):
                s.execute(stmt, chunk)

    def _insert_new(self, table: Table, values: dict[str, Any], key: str) -> Any:
        """``INSERT ... ON CONFLICT (key) DO NOTHING RETURNING key``: a row comes back only
        when it was inserted (RETURNING, not rowcount: psycopg does not keep an INSERT's)."""
        return (
            self._insert(table)
            .values(values)
            .on_conflict_do_nothing(index_elements=[key])
            .returning(table.c[key])
        )

    def record_fill(
        self,
        run_id: str,
        *,
        order: Order,
        note: str,
        fill: Fill,
        position: Mapping[str, Any],
        cash_delta_krw: int,
    ) -> bool:
        """Apply one fill in **one transaction**: the fill row (with ``cum_qty`` =
        ``order.filled_qty``, the order's cumulative filled shares after it), the order's
        new state and a history row (``note``), the position (``position``: the keyword
        arguments of :meth:`save_position` for ``order.strategy``) and a cash-ledger row of
        ``cash_delta_krw`` KRW (negative for a buy).

        Returns ``False`` and writes nothing if ``fill.fill_id`` is already stored (the
        same fill twice is a no-op). Any error rolls everything back. Raises as
        :meth:`save_order` / :meth:`save_position` for bad values.
        """
        values = {**fill_values(run_id, fill, order.strategy), "cum_qty": whole(order.filled_qty)}
        pos = dict(position)
        status = pos.pop("status")
        if status not in POSITION_STATUSES:
            raise ValueError(f"status must be one of {POSITION_STATUSES}, got {status!r}")
        closed_at = pos.pop("closed_at", None)
        strategy, code = pos.pop("strategy"), pos.pop("stock_code")
        opened_at = aware(pos.pop("opened_at") or fill.time, "opened_at")
        pos_values = self._position_values(status=status, closed_at=closed_at, **pos)
        stmt = self._insert_new(_FILLS, values, "fill_id")
        with self._write() as s:
            if s.execute(stmt).first() is None:
                return False
            self._write_order(s, run_id, order, note, always=True)
            self._write_position(s, run_id, strategy, code, opened_at, pos_values)
            s.add(
                CashLedgerRow(
                    run_id=run_id,
                    at=aware(fill.time, "fill.time"),
                    kind="fill",
                    amount_krw=whole(cash_delta_krw),
                    strategy=order.strategy,
                    fill_id=fill.fill_id,
                    reason=note,
                )
            )
        return True

    def record_adjustment(
        self,
        run_id: str,
        *,
        strategy: str,
        stock_code: str,
        qty: int,
        price: float,
        reason: str,
        at: dt.datetime,
    ) -> None:
        """Journal ``qty`` shares (> 0 appeared, < 0 vanished) of ``stock_code`` given to or
        taken from ``strategy`` without a fill, at ``price`` KRW per share, with the
        ``reason`` (a row of kind ``adjustment``; no cash moves). ``ValueError`` for 0."""
        if whole(qty) == 0:
            raise ValueError("an adjustment needs a non-zero quantity")
        row = {
            "fill_id": f"adj-{uuid.uuid4().hex}",
            "run_id": run_id,
            "client_order_id": "",
            "broker_order_id": None,
            "strategy": strategy,
            "stock_code": stock_code,
            "side": "buy" if qty > 0 else "sell",
            "qty": abs(whole(qty)),
            "price": max(0, round(price)),
            "commission_krw": 0,
            "tax_krw": 0,
            "time": aware(at, "at"),
            "cum_qty": None,
            "kind": "adjustment",
            "reason": reason,
        }
        with self._write() as s:
            s.execute(insert(_FILLS).values(row))

    def record_cash(
        self, run_id: str, amount_krw: int, *, kind: str, reason: str, at: dt.datetime
    ) -> None:
        """Append a cash-ledger row of ``amount_krw`` KRW that no fill explains (``kind``
        e.g. ``sync``: the book's cash set to the account's) with the ``reason``."""
        with self._write() as s:
            s.add(
                CashLedgerRow(
                    run_id=run_id,
                    at=aware(at, "at"),
                    kind=kind,
                    amount_krw=whole(amount_krw),
                    strategy=None,
                    fill_id=None,
                    reason=reason,
                )
            )

    def get_cash_ledger(self, run_id: str) -> list[dict[str, Any]]:
        """The run's cash movements oldest first: ``{id, run_id, at, kind, amount_krw,
        strategy, fill_id, reason}`` (KRW, negative = out)."""
        stmt = select(CashLedgerRow).where(CashLedgerRow.run_id == run_id)
        with self._reader() as s:
            return [row_dict(r) for r in s.scalars(stmt.order_by(CashLedgerRow.id))]

    def get_fill_journal(self, run_id: str) -> list[dict[str, Any]]:
        """Every fill and adjustment of the run in the order written, as dicts (all
        columns of ``fills``): positions are rebuilt by replaying it."""
        stmt = select(FillRow).where(FillRow.run_id == run_id).order_by(FillRow.id)
        with self._reader() as s:
            return [row_dict(r) for r in s.scalars(stmt)]

    def get_order_fill_totals(self, run_id: str) -> dict[str, tuple[int, int, int, int]]:
        """Per client order id: ``(shares, KRW amount, commission KRW, tax KRW)`` of its
        recorded fills (adjustments excluded)."""
        out: dict[str, tuple[int, int, int, int]] = {}
        for r in self.get_fill_journal(run_id):
            if r["kind"] != "fill":
                continue
            q, a, c, t = out.get(r["client_order_id"], (0, 0, 0, 0))
            out[r["client_order_id"]] = (
                q + r["qty"], a + r["qty"] * r["price"], c + r["commission_krw"], t + r["tax_krw"]
            )
        return out

    def get_orders_since(self, run_id: str, since: dt.datetime) -> list[Order]:
        """The run's orders created at or after ``since`` (any status), oldest first."""
        stmt = (
            select(OrderRow)
            .where(OrderRow.run_id == run_id, OrderRow.created_at >= aware(since, "since"))
            .order_by(OrderRow.id)
        )
        with self._reader() as s:
            return [to_order(r) for r in s.scalars(stmt)]

    def save_state(self, run_id: str, name: str, state: Mapping[str, Any]) -> None:
        """Store the JSON-able dict ``state`` under ``name`` (replacing it); ``TypeError``
        if it is not JSON-serialisable."""
        data = plain(dict(state))
        with self._write() as s:
            stmt = select(StateRow).where(StateRow.run_id == run_id, StateRow.name == name)
            row, inserted = _lock_or_insert(
                s,
                stmt,
                lambda: StateRow(run_id=run_id, name=name, state=data, updated_at=self._now()),
            )
            if not inserted:
                row.state = data
                row.updated_at = self._now()

    def load_state(self, run_id: str, name: str) -> dict[str, Any]:
        """The dict stored under ``name``; empty if none."""
        stmt = select(StateRow.state).where(StateRow.run_id == run_id, StateRow.name == name)
        with self._reader() as s:
            found = s.execute(stmt).scalar_one_or_none()
        return dict(found or {})

    def get_fills(self, run_id: str) -> pd.DataFrame:
        """A run's fills by time, columns ``FILL_FRAME_COLUMNS``; ``amount_krw = qty * price``
        (int64, fees excluded); money and quantities int64, ``time`` tz Asia/Seoul.
        Adjustments (:meth:`record_adjustment`) are not fills and are left out."""
        stmt = (
            select(FillRow)
            .where(FillRow.run_id == run_id, FillRow.kind == "fill")
            .order_by(FillRow.time, FillRow.id)
        )
        with self._reader() as s:
            records = [row_dict(r) for r in s.scalars(stmt)]
        for r in records:
            r["amount_krw"] = r["qty"] * r["price"]
        return frame(
            records,
            FILL_FRAME_COLUMNS,
            ints=("qty", "price", "amount_krw", "commission_krw", "tax_krw"),
            times=("time",),
        )

    def get_fill_ids(self, run_id: str | None = None) -> set[str]:
        """The stored ``fill_id``s of ``run_id`` (of every run if ``None``).

        After a restart the engine loads them so a fill the broker reports again is applied
        to positions and cash once (:meth:`save_fill` already stores it once).
        """
        stmt = select(FillRow.fill_id)
        if run_id is not None:
            stmt = stmt.where(FillRow.run_id == run_id)
        with self._reader() as s:
            return set(s.scalars(stmt))

    # -------------------------------------------------------------------- positions

    def save_position(
        self,
        run_id: str,
        *,
        strategy: str,
        stock_code: str,
        qty: int,
        avg_price: float,
        cost_basis_krw: int,
        status: str,
        opened_at: dt.datetime,
        closed_at: dt.datetime | None = None,
        stop_loss: float | None = None,
        target_price: float | None = None,
        reasons: Iterable[str] = (),
        metadata: Mapping[str, Any] | None = None,
        realized_pnl_krw: int = 0,
        peak_price: float | None = None,
    ) -> int:
        """Write the strategy's position in ``stock_code``; return the row id.

        If a ``'holding'`` row exists for (run, strategy, code) it is updated (its
        ``opened_at`` kept: the first fill), else a row is inserted. ``status='closed'``
        closes it (``qty`` normally 0; ``closed_at`` required). ``avg_price`` is KRW per
        share excluding fees, ``cost_basis_krw`` what the shares cost including fees,
        ``realized_pnl_krw`` the position's cumulative realised P&L net of fees (replaces
        the stored value). ``stop_loss``, ``target_price`` and ``peak_price`` (the highest
        price since entry, for a trailing stop) are KRW per share or ``None`` and, like the
        other fields, replace the stored values. Raises ``ValueError`` for an unknown
        status, a negative qty, a naive time or a close without ``closed_at``; ``TypeError``
        for fractional ``qty``, ``cost_basis_krw`` or ``realized_pnl_krw``.
        """
        values = self._position_values(
            qty=qty,
            avg_price=avg_price,
            cost_basis_krw=cost_basis_krw,
            status=status,
            closed_at=closed_at,
            stop_loss=stop_loss,
            target_price=target_price,
            reasons=reasons,
            metadata=metadata,
            realized_pnl_krw=realized_pnl_krw,
            peak_price=peak_price,
        )
        opened_at = aware(opened_at, "opened_at")
        with self._write() as s:
            return self._write_position(s, run_id, strategy, stock_code, opened_at, values)

    def _write_position(
        self,
        s: Session,
        run_id: str,
        strategy: str,
        stock_code: str,
        opened_at: dt.datetime,
        values: dict[str, Any],
    ) -> int:
        stmt = select(PositionRow).where(
            PositionRow.run_id == run_id,
            PositionRow.strategy == strategy,
            PositionRow.stock_code == stock_code,
            PositionRow.status == "holding",
        )
        row, inserted = _lock_or_insert(
            s,
            stmt,
            lambda: PositionRow(
                run_id=run_id,
                strategy=strategy,
                stock_code=stock_code,
                opened_at=opened_at,
                **values,
            ),
        )
        if not inserted:
            for key, value in values.items():
                setattr(row, key, value)
        s.flush()
        return int(row.id)

    def _position_values(
        self,
        *,
        qty: int,
        avg_price: float,
        cost_basis_krw: int,
        status: str,
        closed_at: dt.datetime | None = None,
        stop_loss: float | None = None,
        target_price: float | None = None,
        reasons: Iterable[str] = (),
        metadata: Mapping[str, Any] | None = None,
        realized_pnl_krw: int = 0,
        peak_price: float | None = None,
    ) -> dict[str, Any]:
        if status not in POSITION_STATUSES:
            raise ValueError(f"status must be one of {POSITION_STATUSES}, got {status!r}")
        if whole(qty) < 0:
            raise ValueError(f"qty must be >= 0 shares, got {qty!r}")
        if status == "closed" and closed_at is None:
            raise ValueError("closing a position needs closed_at")
        return {
            "qty": whole(qty),
            "avg_price": float(avg_price),
            "cost_basis_krw": whole(cost_basis_krw),
            "status": status,
            "closed_at": aware(closed_at, "closed_at") if closed_at else None,
            "stop_loss": None if stop_loss is None else float(stop_loss),
            "target_price": None if target_price is None else float(target_price),
            "peak_price": None if peak_price is None else float(peak_price),
            "reasons": [str(r) for r in reasons],
            "meta": plain(metadata or {}),
            "realized_pnl_krw": whole(realized_pnl_krw),
            "updated_at": self._now(),
        }

    def get_positions(
        self, run_id: str | None = None, strategy: str | None = None, status: str | None = "holding"
    ) -> list[dict[str, Any]]:
        """Positions as dicts (all columns; ``reasons`` a tuple, ``metadata`` a dict), oldest
        first. ``None`` for a filter means any (``status=None``: holding and closed).

        Keys: ``id, run_id, strategy, stock_code, qty, avg_price, cost_basis_krw, stop_loss,
        target_price, peak_price, reasons, metadata, status, opened_at, closed_at,
        realized_pnl_krw, updated_at`` (prices KRW per share, money int KRW, times
        Asia/Seoul; ``peak_price`` ``None`` when unknown)."""
        stmt = select(PositionRow).order_by(PositionRow.id)
        if run_id is not None:
            stmt = stmt.where(PositionRow.run_id == run_id)
        if strategy is not None:
            stmt = stmt.where(PositionRow.strategy == strategy)
        if status is not None:
            stmt = stmt.where(PositionRow.status == status)
        with self._reader() as s:
            out = [row_dict(r) for r in s.scalars(stmt)]
        for d in out:
            d["reasons"] = tuple(d["reasons"] or ())
            d["metadata"] = dict(d["metadata"] or {})
        return out

    # ----------------------------------------------------------------------- equity

    def save_equity_snapshots(
        self,
        run_id: str,
        rows: Iterable[tuple[dt.datetime, int, int, int]],
        *,
        chunk_size: int = 20_000,
    ) -> int:
        """Store ``(at, cash_krw, holdings_value_krw, equity_krw)`` rows; return how many.

        One transaction, Core ``INSERT ... ON CONFLICT (run_id, at) DO UPDATE`` executed in
        chunks of ``chunk_size`` (the iterable is consumed lazily), so saving the same time
        again overwrites it. ``ValueError`` for a naive ``at``, ``TypeError`` for a
        non-integer amount; either rolls the whole call back (nothing is written).
        """
        base = self._insert(_EQUITY)
        stmt = base.on_conflict_do_update(
            index_elements=["run_id", "at"],
            set_={c: base.excluded[c] for c in EQUITY_FRAME_COLUMNS},
        )
        total = 0
        with self._write() as s:
            conn = s.connection()
            for chunk in chunks(rows, chunk_size):
                params = [
                    {
                        "run_id": run_id,
                        "at": aware(at, "at"),
                        "cash_krw": whole(cash),
                        "holdings_value_krw": whole(held),
                        "equity_krw": whole(eq),
                    }
                    for at, cash, held, eq in chunk
                ]
                conn.execute(stmt, params)
                total += len(params)
        return total

    def get_equity(self, run_id: str) -> pd.DataFrame:
        """Equity curve: index ``at`` (DatetimeIndex tz Asia/Seoul, ascending), int64
        columns ``cash_krw, holdings_value_krw, equity_krw``. Empty frame if none."""
        t = _EQUITY.c
        # Skip TZDateTime's per-row conversion: SQLite returns the stored UTC text, which
        # pandas parses at once (PostgreSQL returns aware datetimes, also handled below).
        stmt = (
            select(type_coerce(t.at, String()).label("at"), *(t[c] for c in EQUITY_FRAME_COLUMNS))
            .where(t.run_id == run_id)
            .order_by(t.at)
        )
        with self._reader() as s:
            rows = s.execute(stmt).all()
        cols = list(zip(*rows, strict=True)) if rows else [(), (), (), ()]
        index = pd.DatetimeIndex(pd.to_datetime(list(cols[0]), utc=True, format="ISO8601"))
        data = {
            c: np.fromiter(cols[i + 1], dtype=np.int64, count=len(rows))
            for i, c in enumerate(EQUITY_FRAME_COLUMNS)
        }
        return pd.DataFrame(data, index=index.tz_convert(KST).rename("at"))

    def get_last_equity(
        self, run_id: str, before: dt.datetime | None = None
    ) -> dict[str, Any] | None:
        """The run's latest equity snapshot at or before ``before`` (the latest of all if
        ``None``): ``{at, cash_krw, holdings_value_krw, equity_krw}`` (``at`` tz Asia/Seoul,
        amounts int KRW), or ``None`` if there is none. ``ValueError`` for a naive
        ``before``. Live trading resumes its cash and equity from it after a restart.
        """
        t = _EQUITY.c
        stmt = select(t.at, *(t[c] for c in EQUITY_FRAME_COLUMNS)).where(t.run_id == run_id)
        if before is not None:
            stmt = stmt.where(t.at <= aware(before, "before"))
        with self._reader() as s:
            row = s.execute(stmt.order_by(t.at.desc()).limit(1)).one_or_none()
        return None if row is None else dict(row._mapping)

    # ----------------------------------------------------------------------- events

    def log_event(
        self,
        kind: str,
        message: str,
        *,
        run_id: str | None = None,
        level: str = "info",
        data: Mapping[str, Any] | None = None,
        at: dt.datetime | None = None,
    ) -> int:
        """Append an event (``level`` e.g. debug/info/warning/error/critical); return its id.
        ``at`` defaults to now; ``data`` must be JSON-serialisable (``TypeError`` if not)."""
        row = EventRow(
            run_id=run_id,
            at=aware(at, "at") if at else self._now(),
            kind=kind,
            level=level,
            message=message,
            data=None if data is None else plain(data),
        )
        with self._write() as s:
            s.add(row)
            s.flush()
            return int(row.id)

    def get_events(
        self, run_id: str | None = None, kind: str | None = None
    ) -> list[dict[str, Any]]:
        """Events as ``{id, run_id, at, kind, level, message, data}`` dicts by time."""
        stmt = select(EventRow).order_by(EventRow.at, EventRow.id)
        if run_id is not None:
            stmt = stmt.where(EventRow.run_id == run_id)
        if kind is not None:
            stmt = stmt.where(EventRow.kind == kind)
        with self._reader() as s:
            return [row_dict(r) for r in s.scalars(stmt)]
