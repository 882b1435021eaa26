"""Fill journal: fills identify themselves and explain every position; a cash ledger; saved
state.

- ``fills.cum_qty`` (BigInteger, nullable): the order's cumulative filled shares after the
  fill. Backfilled as the running sum of each order's fills in insertion order.
- ``fills.kind`` (String(12), not null, server default ``'fill'``) and ``fills.reason``
  (Text, nullable): ``adjustment`` rows journal shares that appeared or vanished in the
  account without a fill, so positions are a projection of this table.
- ``cash_ledger``: one row per cash movement (a fill's cost or proceeds, an account sync).
  Backfilled from the existing fills.
- ``saved_state``: JSON dicts kept across restarts (strategy state, the portfolio stop's
  high-water mark, pending re-placements).

Backfill of positions: for every stock of every book the holding rows of ``positions`` are
compared with the net of the fills per strategy. Shares a strategy's fills explain are that
strategy's (an ``unmanaged`` row that holds them is relabelled); what no fill explains stays
``unmanaged``; a difference that remains is journaled as an ``adjustment`` with the reason
``backfill``. After this the journal replays to the positions the table held (with the
strategies' shares given back to them). SQLite: plain ``ADD COLUMN`` / ``CREATE TABLE``, no
table copy (see 0002).

Revision ID: 0003_fill_journal
Revises: 0002_live_trading
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0003_fill_journal"
down_revision: str | Sequence[str] | None = "0002_live_trading"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.DateTime(timezone=True)
MONEY = sa.BigInteger()
KEY = sa.String(64)
UNMANAGED = "unmanaged"


def upgrade() -> None:
    with op.batch_alter_table("fills") as batch:
        batch.add_column(sa.Column("cum_qty", MONEY, nullable=True))
        batch.add_column(
            sa.Column("kind", sa.String(12), nullable=False, server_default="fill")
        )
        batch.add_column(sa.Column("reason", sa.Text(), nullable=True))
    op.create_table(
        "cash_ledger",
        sa.Column("id", ID, primary_key=True, autoincrement=True, nullable=False),
        sa.Column("run_id", KEY, sa.ForeignKey("runs.run_id"), nullable=False),
        sa.Column("at", TIME, nullable=False),
        sa.Column("kind", sa.String(12), nullable=False),
        sa.Column("amount_krw", MONEY, nullable=False),
        sa.Column("strategy", KEY, nullable=True),
        sa.Column("fill_id", sa.String(128), nullable=True, unique=True),
        sa.Column("reason", sa.Text(), nullable=False),
    )
    op.create_index("ix_cash_ledger_run_id", "cash_ledger", ["run_id"])
    op.create_table(
        "saved_state",
        sa.Column("run_id", KEY, sa.ForeignKey("runs.run_id"), primary_key=True),
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("state", sa.JSON(none_as_null=True), nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
    )
    _backfill(op.get_bind())


def _backfill(bind: sa.Connection) -> None:
    meta = sa.MetaData()
    fills = sa.Table("fills", meta, autoload_with=bind)
    ledger = sa.Table("cash_ledger", meta, autoload_with=bind)
    positions = sa.Table("positions", meta, autoload_with=bind)
    rows = bind.execute(sa.select(fills).order_by(fills.c.id)).mappings().all()
    running: dict[tuple[str, str], int] = defaultdict(int)
    net: dict[tuple[str, str, str], int] = defaultdict(int)
    entries = []
    for r in rows:
        key = (r["run_id"], r["client_order_id"])
        running[key] += int(r["qty"])
        bind.execute(
            fills.update().where(fills.c.id == r["id"]).values(cum_qty=running[key])
        )
        amount = int(r["qty"]) * int(r["price"])
        buy = r["side"] == "buy"
        delta = -(amount + int(r["commission_krw"])) if buy else (
            amount - int(r["commission_krw"]) - int(r["tax_krw"])
        )
        net[(r["run_id"], r["strategy"], r["stock_code"])] += int(r["qty"]) if buy else -int(
            r["qty"]
        )
        entries.append(
            {
                "run_id": r["run_id"],
                "at": r["time"],
                "kind": "fill",
                "amount_krw": delta,
                "strategy": r["strategy"],
                "fill_id": r["fill_id"],
                "reason": "backfill",
            }
        )
    if entries:
        bind.execute(ledger.insert(), entries)
    holding = bind.execute(
        sa.select(positions).where(positions.c.status == "holding")
    ).mappings().all()
    book: dict[tuple[str, str], dict[str, dict[str, object]]] = defaultdict(dict)
    for p in holding:
        book[(p["run_id"], p["stock_code"])][p["strategy"]] = dict(p)
    for (run_id, code), by_strategy in book.items():
        _backfill_stock(bind, fills, positions, run_id, code, by_strategy, net)


def _backfill_stock(
    bind: sa.Connection,
    fills: sa.Table,
    positions: sa.Table,
    run_id: str,
    code: str,
    by_strategy: dict[str, dict[str, object]],
    net: dict[tuple[str, str, str], int],
) -> None:
    table = {s: int(p["qty"]) for s, p in by_strategy.items()}  # type: ignore[call-overload]
    total = sum(table.values())
    owners = {
        s: max(0, n) for (r, s, c), n in net.items() if r == run_id and c == code and s != UNMANAGED
    }
    target = {
        s: max(table.get(s, 0), owners.get(s, 0))
        for s in set(table) | set(owners)
        if s != UNMANAGED
    }
    if sum(target.values()) <= total:  # a strategy keeps every share its fills explain
        target[UNMANAGED] = total - sum(target.values())
    else:  # fewer shares than the fills explain (sold outside): keep the table's labels
        target = dict(table)
    now = datetime.now(UTC)
    for strategy in sorted(set(target) | set(by_strategy)):
        want = target.get(strategy, 0)
        diff = want - net.get((run_id, strategy, code), 0)
        row = by_strategy.get(strategy) or next(iter(by_strategy.values()))
        price = float(row["avg_price"] or 0.0)  # type: ignore[arg-type]
        if diff:
            bind.execute(
                fills.insert().values(
                    fill_id=f"adj-backfill-{run_id}-{strategy}-{code}"[:128],
                    run_id=run_id,
                    client_order_id="",
                    broker_order_id=None,
                    strategy=strategy,
                    stock_code=code,
                    side="buy" if diff > 0 else "sell",
                    qty=abs(diff),
                    price=round(price),
                    commission_krw=0,
                    tax_krw=0,
                    time=row["updated_at"] or now,
                    cum_qty=None,
                    kind="adjustment",
                    reason="backfill: the positions table held shares no fill explained",
                )
            )
        existing = by_strategy.get(strategy)
        if existing is not None and int(existing["qty"]) != want:  # type: ignore[call-overload]
            values: dict[str, object] = {"qty": want}
            if want == 0:
                values.update(status="closed", closed_at=now)
            else:
                values["cost_basis_krw"] = round(price * want)
            bind.execute(positions.update().where(positions.c.id == existing["id"]).values(values))
        elif existing is None and want > 0:
            values = {
                k: v for k, v in row.items() if k not in ("id", "strategy", "qty", "cost_basis_krw")
            }
            bind.execute(
                positions.insert().values(
                    strategy=strategy, qty=want, cost_basis_krw=round(price * want), **values
                )
            )


def downgrade() -> None:
    op.drop_table("saved_state")
    op.drop_index("ix_cash_ledger_run_id", table_name="cash_ledger")
    op.drop_table("cash_ledger")
    op.execute("DELETE FROM fills WHERE kind = 'adjustment'")
    with op.batch_alter_table("fills", recreate="never") as batch:
        batch.drop_column("reason")
        batch.drop_column("kind")
        batch.drop_column("cum_qty")
