"""Restart reconciliation: the database's book against the broker's account, before trading.

Steps (:func:`reconcile`):

1. **Rebuild** the positions of the book (``run_id``) per strategy from the fill journal
   (fills and journaled adjustments, in the order written): positions are a projection of
   it, so a strategy's shares are never re-labelled ``unmanaged`` while the database knows
   whose they are. The positions table gives each position its exits, reasons and peak;
   shares it holds that no fill explains (written before the journal existed) are
   journaled as adjustments (:func:`rebuild_positions`).
2. **Restore the orders** that are not final, *and* those whose recorded fills do not add
   up to their filled quantity (their figures are set to the fills' and they are looked up
   again), plus today's final orders (a late fill can still show up).
3. **Resolve every open order** with the broker. An order with a broker id is read back and
   the fills that happened while the bot was down are applied once (a fill's identity is
   its order and cumulative quantity). An order written down but never confirmed
   (``PENDING_NEW`` or ``UNKNOWN``: the process died around the send) is looked up in the
   day's order list by code, side, quantity, price and time
   (:meth:`~framework.executor.OrderExecutor.match_order`); found → adopted and tracked,
   not found → ``REJECTED`` ("never reached the broker"). Nothing is re-sent. Then the
   day's order list is read once more and every fill of a known order not recorded yet
   (a late fill of a cancelled order) is applied.
3. **Compare holdings** per stock (sum over strategies) with the account:

   ==================  ==============================================================
   matched             restored with its strategy, entry, stop loss and take profit
   adopted             in the account only: an ``unmanaged`` position with the exit
                       rules of ``live.unmanaged`` in settings
   closed_outside      in the database only: closed (sold outside the bot)
   qty_adjusted        quantities differ: the book is set to the account's quantity
                       (a surplus goes to ``unmanaged``; a shortfall is taken from
                       ``unmanaged`` first, then from the newest positions)
   ==================  ==============================================================

   Each of these changes is journaled as an adjustment with its reason, so the next
   rebuild gives the same book.

4. **Cash** is taken from the account (the engine's cash pool starts there).

Every difference is journaled as a ``reconcile`` event and returned in the
:class:`ReconcileReport`; the caller alerts it. A broker error on the way raises
:class:`ReconcileError`: trading must not start on a book that could not be checked.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from core.journal import StorageError
from core.portfolio import Portfolio, Position
from core.trader import UNMANAGED, Trader
from framework.errors import BrokerError, KisTraderError
from framework.events import Reconciled, ReconcileDifference
from framework.types import Fill, Holding, Order, OrderSide, OrderStatus

logger = logging.getLogger(__name__)


class ReconcileError(KisTraderError):
    """Reconciliation could not complete; trading must not start."""


@dataclass
class Difference:
    """One finding of the reconciliation. Quantities in shares."""

    kind: str  # matched | adopted | closed_outside | qty_adjusted | order_resolved | rebuilt
    code: str
    strategy: str | None = None
    db_qty: int | None = None
    account_qty: int | None = None
    detail: str = ""
    name: str | None = None


@dataclass
class ReconcileReport:
    """What reconciliation found and did. ``ok`` is False only with ``error`` set."""

    at: datetime
    ok: bool = True
    error: str | None = None
    positions_restored: int = 0
    orders_restored: int = 0
    fills_applied: int = 0
    cash_krw: int = 0
    differences: list[Difference] = field(default_factory=list)

    @property
    def changes(self) -> list[Difference]:
        """The differences that changed the book (everything but ``matched``)."""
        return [d for d in self.differences if d.kind != "matched"]

    def as_data(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "error": self.error,
            "positions_restored": self.positions_restored,
            "orders_restored": self.orders_restored,
            "fills_applied": self.fills_applied,
            "cash_krw": self.cash_krw,
            "differences": [asdict(d) for d in self.differences],
        }

    def format(self) -> str:
        """Plain-text summary for the terminal."""
        lines = [
            f"reconciliation at {self.at:%Y-%m-%d %H:%M:%S %Z}: "
            + ("ok" if self.ok else f"FAILED: {self.error}"),
            f"  positions restored from the database: {self.positions_restored}",
            f"  open orders restored: {self.orders_restored}, "
            f"fills applied while down: {self.fills_applied}",
            f"  cash (account): {self.cash_krw:,} KRW",
        ]
        if not self.differences:
            lines.append("  no holdings in the database or the account")
        for d in self.differences:
            who = f" [{d.strategy}]" if d.strategy else ""
            qty = ""
            if d.db_qty is not None or d.account_qty is not None:
                qty = f" db {d.db_qty if d.db_qty is not None else '-'}"
                qty += f" / account {d.account_qty if d.account_qty is not None else '-'}"
            detail = f": {d.detail}" if d.detail else ""
            lines.append(f"  {d.kind:<15} {d.code}{who}{qty}{detail}")
        return "\n".join(lines)


def _position_from_row(row: dict[str, Any]) -> Position:
    qty = int(row["qty"])
    cost = int(row["cost_basis_krw"])
    return Position(
        strategy=row["strategy"],
        stock_code=row["stock_code"],
        qty=qty,
        cost_basis_krw=cost,
        opened_at=row["opened_at"],
        stop_loss=row["stop_loss"],
        target_price=row["target_price"],
        reasons=tuple(row["reasons"]),
        metadata=dict(row["metadata"]),
        peak_price=row.get("peak_price"),
        bought_qty=qty,
        buy_amount_krw=cost,
        realized_pnl_krw=int(row.get("realized_pnl_krw") or 0),
    )


def reconcile(
    trader: Trader,
    repository: Any,
    run_id: str,
    *,
    names: dict[str, str] | None = None,
) -> ReconcileReport:
    """Restore the book ``run_id`` into ``trader`` and reconcile it with the broker.

    ``trader`` must be freshly built (empty portfolio and order book). Returns the report;
    raises :class:`ReconcileError` when the broker or the database cannot be read.
    """
    now = trader.clock()
    report = ReconcileReport(at=now)
    names = names or {}
    try:
        _restore(trader, repository, run_id, report)
        _resolve_orders(trader, report)
        holdings = trader.account_holdings()
        balance = trader.account_balance()
    except (BrokerError, ReconcileError, StorageError) as exc:
        what = "cannot read the account" if isinstance(exc, BrokerError) else "book"
        report.ok, report.error = False, f"{what}: {exc}"
        raise ReconcileError(report.error) from exc
    for h in holdings:
        if h.name:
            names.setdefault(h.stock_code, h.name)
    _compare_holdings(trader, holdings, report, names)
    trader.sync_cash(balance.cash_krw)
    report.cash_krw = balance.cash_krw
    for d in report.changes:
        trader.publish(
            ReconcileDifference(
                at=now,
                message=f"{d.kind} {d.code}"
                + (f" [{d.strategy}]" if d.strategy else "")
                + f": {d.detail}",
                level="warning",
                strategy=d.strategy,
                code=d.code,
                change=d.kind,
                db_qty=d.db_qty,
                account_qty=d.account_qty,
                detail=d.detail,
                name=d.name,
            )
        )
    data = report.as_data()
    trader.publish(
        Reconciled(
            at=now,
            message=f"reconciled: {len(report.changes)} difference(s), "
            f"{report.positions_restored} position(s), {report.orders_restored} open order(s)",
            ok=report.ok,
            error=report.error,
            positions_restored=report.positions_restored,
            orders_restored=report.orders_restored,
            fills_applied=report.fills_applied,
            cash_krw=report.cash_krw,
            differences=tuple(data["differences"]),
        )
    )
    return report


def _restore(trader: Trader, repository: Any, run_id: str, report: ReconcileReport) -> None:
    report.positions_restored += rebuild_positions(trader, repository, run_id, report)
    totals = repository.get_order_fill_totals(run_id)
    fill_ids = repository.get_fill_ids(run_id)
    orders = {o.client_order_id: o for o in repository.get_open_orders(run_id)}
    start_of_day = trader.clock().replace(hour=0, minute=0, second=0, microsecond=0)
    todays = repository.get_orders_since(run_id, start_of_day)
    frame = repository.get_orders(run_id)
    for row in frame.itertuples():
        cid = str(row.client_order_id)
        if cid in orders or totals.get(cid, (0, 0, 0, 0))[0] == int(row.filled_qty):
            continue
        order = repository.get_order(cid)
        if order is not None and order.broker_order_id:
            orders[cid] = _reopened(order, totals.get(cid, (0, 0, 0, 0)), report)
    for order in todays:
        orders.setdefault(order.client_order_id, order)
    for order in orders.values():
        if not order.status.is_final:
            _match_recorded(order, totals.get(order.client_order_id, (0, 0, 0, 0)))
            report.orders_restored += 1
        trader.restore_order(order, fill_ids)
    trader.load_engine_state()


def _match_recorded(order: Order, total: tuple[int, int, int, int]) -> None:
    """Give an order the figures of its recorded fills (the fills are the truth)."""
    qty, amount, commission, tax = total
    order.filled_qty, order.filled_amount_krw = qty, amount
    order.commission_krw, order.tax_krw = commission, tax
    order.avg_fill_price = amount / qty if qty else 0.0


def _reopened(order: Order, total: tuple[int, int, int, int], report: ReconcileReport) -> Order:
    """An order whose recorded fills do not add up to its filled quantity: set to its fills
    and tracked again, so the broker's figures complete it."""
    recorded = order.filled_qty
    _match_recorded(order, total)
    order.status = OrderStatus.PARTIALLY_FILLED if order.filled_qty else OrderStatus.SUBMITTED
    report.differences.append(
        Difference(
            "order_resolved",
            order.stock_code,
            order.strategy,
            detail=f"{order.client_order_id} showed {recorded} filled but its fills add up to "
            f"{order.filled_qty}: looked up again",
        )
    )
    return order


def rebuild_positions(
    trader: Trader, repository: Any, run_id: str, report: ReconcileReport | None = None
) -> int:
    """Rebuild every strategy's positions of ``run_id`` into ``trader`` from the fill
    journal; returns how many are open. See the module docstring (step 1)."""
    projection = Portfolio()
    for row in repository.get_fill_journal(run_id):
        _replay(projection, row)
    table = repository.get_positions(run_id, status="holding")
    rows = {(r["strategy"], r["stock_code"]): r for r in table}
    codes = {r["stock_code"] for r in table} | {p.stock_code for p in projection.positions()}
    now = trader.clock()
    for code in sorted(codes):
        _settle_labels(trader, projection, rows, code, now, report)
    count = 0
    for pos in projection.positions():
        row = rows.get((pos.strategy, pos.stock_code))
        if row is not None:
            pos.stop_loss, pos.target_price = row["stop_loss"], row["target_price"]
            pos.reasons = tuple(row["reasons"]) or pos.reasons
            pos.metadata = dict(row["metadata"]) or pos.metadata
            pos.peak_price = row.get("peak_price") or pos.peak_price
            pos.opened_at = row["opened_at"] or pos.opened_at
        trader.restore_position(pos)
        if row is None or int(row["qty"]) != pos.qty:
            trader.record_position(pos)
        count += 1
    for (strategy, code), row in rows.items():
        if projection.get(strategy, code) is None and int(row["qty"]) > 0:
            gone = _position_from_row(row)
            gone.qty, gone.cost_basis_krw = 0, 0
            trader.record_position(gone, closed_at=now)
    return count


def _replay(projection: Portfolio, row: dict[str, Any]) -> None:
    fill = Fill(
        fill_id=row["fill_id"],
        client_order_id=row["client_order_id"],
        stock_code=row["stock_code"],
        side=OrderSide(row["side"]),
        qty=int(row["qty"]),
        price=int(row["price"]),
        time=row["time"],
        commission_krw=int(row["commission_krw"]),
        tax_krw=int(row["tax_krw"]),
        broker_order_id=row["broker_order_id"],
    )
    held = projection.qty(row["strategy"], row["stock_code"])
    if fill.side is OrderSide.SELL and fill.qty > held:
        logger.warning("journal sells %s of %s %s held %s", fill.qty, row["strategy"],
                       fill.stock_code, held)
        if held == 0:
            return
        fill = dataclasses.replace(fill, qty=held)
    projection.apply_fill(row["strategy"], fill)
    projection.round_trips.clear()


def _settle_labels(
    trader: Trader,
    projection: Portfolio,
    rows: dict[tuple[str, str], dict[str, Any]],
    code: str,
    now: datetime,
    report: ReconcileReport | None,
) -> None:
    """Make the projection of ``code`` hold what the positions table holds, keeping every
    share a strategy's fills explain with that strategy; the rest is journaled."""
    table = {s: int(r["qty"]) for (s, c), r in rows.items() if c == code}
    explained = {
        p.strategy: p.qty for p in projection.positions() if p.stock_code == code
    }
    if not table or table == {s: q for s, q in explained.items() if q}:
        return  # the journal explains the table (or the table knows nothing of the code)
    total = sum(table.values())
    target = {
        s: max(table.get(s, 0), explained.get(s, 0))
        for s in set(table) | set(explained)
        if s != UNMANAGED
    }
    if sum(target.values()) <= total:
        target[UNMANAGED] = total - sum(target.values())
    else:  # fewer shares than the fills explain: the table's labels stand
        target = dict(table)
    for strategy in sorted(set(target) | set(explained)):
        diff = target.get(strategy, 0) - explained.get(strategy, 0)
        if diff == 0:
            continue
        row = rows.get((strategy, code)) or next(r for (s, c), r in rows.items() if c == code)
        price = float(row["avg_price"] or 0.0)
        reason = "the positions table held shares the fill journal did not explain"
        trader.record_adjustment(strategy, code, diff, price, reason, now)
        _replay(
            projection,
            {
                "fill_id": "adjustment", "client_order_id": "", "stock_code": code,
                "side": "buy" if diff > 0 else "sell", "qty": abs(diff),
                "price": round(price), "time": row["opened_at"] or now, "commission_krw": 0,
                "tax_krw": 0, "broker_order_id": None, "strategy": strategy,
            },
        )
        if report is not None and target.get(strategy, 0) != table.get(strategy, 0):
            report.differences.append(  # shares given back to the strategy whose fills they are
                Difference(
                    "rebuilt", code, strategy, table.get(strategy, 0), None,
                    f"{target.get(strategy, 0)} shares by the fill journal",
                )
            )


def _resolve_orders(trader: Trader, report: ReconcileReport) -> None:
    claimed = {o.broker_order_id for o in trader.known_orders() if o.broker_order_id}
    for order in trader.open_orders():
        if order.broker_order_id is None:
            _match_unsent(trader, order, claimed, report)
    fills = trader.poll_orders(book_cash=False)  # every open order now has a broker id
    report.fills_applied += len(fills)
    with trader.cash_from_account():
        report.fills_applied += len(trader.reread_fills(trader.clock().date()))


def _match_unsent(trader: Trader, order: Order, claimed: set[str], report: ReconcileReport) -> None:
    sent_at = order.created_at or trader.clock()
    state = trader.match_at_broker(order, sent_at, claimed)
    if state is None:
        trader.give_up_order(order, "never reached the broker (restart)")
        report.differences.append(
            Difference(
                "order_resolved",
                order.stock_code,
                order.strategy,
                detail=f"{order.client_order_id} was not sent before the restart: rejected",
            )
        )
        return
    claimed.add(state.broker_order_id)
    with trader.cash_from_account():  # the fills found are booked by the trader
        fills = trader.adopt_order(order, state, f"found at broker as {state.broker_order_id}")
    report.fills_applied += len(fills)
    if order.status.is_final:
        trader.finalise(order)
    report.differences.append(
        Difference(
            "order_resolved",
            order.stock_code,
            order.strategy,
            detail=f"{order.client_order_id} found at the broker as {state.broker_order_id} "
            f"({order.status.value}, {order.filled_qty}/{order.qty} filled)",
        )
    )


def _compare_holdings(
    trader: Trader, holdings: list[Holding], report: ReconcileReport, names: dict[str, str]
) -> None:
    account = {h.stock_code: h for h in holdings if h.qty > 0}
    book: dict[str, list[Position]] = {}
    for pos in trader.positions():
        book.setdefault(pos.stock_code, []).append(pos)
    now = trader.clock()
    for code in sorted(set(account) | set(book)):
        held = account.get(code)
        positions = book.get(code, [])
        db_qty = sum(p.qty for p in positions)
        acct_qty = held.qty if held else 0
        name = names.get(code) or (held.name if held else None) or None
        if db_qty == acct_qty:
            for p in positions:
                report.differences.append(
                    Difference("matched", code, p.strategy, p.qty, acct_qty, name=name)
                )
            continue
        if not positions and held is not None:
            pos = _unmanaged(trader, code, held.qty, held.avg_price, now)
            report.differences.append(
                Difference(
                    "adopted",
                    code,
                    UNMANAGED,
                    0,
                    acct_qty,
                    f"held in the account at {held.avg_price:,.0f} KRW: managed with the "
                    "default stop loss / take profit",
                    name,
                )
            )
            trader.record_position(pos)
            continue
        if acct_qty == 0:
            for p in positions:
                report.differences.append(
                    Difference(
                        "closed_outside", code, p.strategy, p.qty, 0, "not in the account", name
                    )
                )
                _set_qty(trader, p, 0, now)
            continue
        report.differences.append(
            Difference(
                "qty_adjusted",
                code,
                None,
                db_qty,
                acct_qty,
                f"book set to the account's {acct_qty} shares",
                name,
            )
        )
        if acct_qty > db_qty:
            avg = held.avg_price if held else 0.0
            existing = trader.position(UNMANAGED, code)
            if existing is not None:
                _set_qty(trader, existing, existing.qty + acct_qty - db_qty, now, avg)
            else:
                trader.record_position(_unmanaged(trader, code, acct_qty - db_qty, avg, now))
            continue
        shortfall = db_qty - acct_qty
        ordered = sorted(
            positions,
            key=lambda p: (
                p.strategy != UNMANAGED,
                -(p.opened_at.timestamp() if p.opened_at else 0.0),
            ),
        )
        for p in ordered:
            if shortfall <= 0:
                break
            cut = min(p.qty, shortfall)
            shortfall -= cut
            _set_qty(trader, p, p.qty - cut, now)


def _unmanaged(trader: Trader, code: str, qty: int, avg_price: float, now: datetime) -> Position:
    pos = Position(
        strategy=UNMANAGED,
        stock_code=code,
        qty=qty,
        cost_basis_krw=round(qty * avg_price),
        opened_at=now,
        reasons=("adopted from the account at restart",),
        bought_qty=qty,
        buy_amount_krw=round(qty * avg_price),
    )
    trader.restore_position(pos)
    trader.record_adjustment(
        UNMANAGED, code, qty, avg_price, "held in the account, no fill explains it", now
    )
    return pos


def _set_qty(
    trader: Trader, pos: Position, qty: int, now: datetime, avg_price: float | None = None
) -> None:
    """Set a position's quantity to ``qty`` (0 closes it), keeping its average price; the
    change is journaled as an adjustment."""
    avg = pos.avg_price if avg_price is None or pos.qty else avg_price
    if qty != pos.qty:
        trader.record_adjustment(
            pos.strategy, pos.stock_code, qty - pos.qty, avg,
            "the account holds a different quantity (restart)", now,
        )
    if qty > pos.qty and avg_price is not None:
        pos.cost_basis_krw += round((qty - pos.qty) * avg_price)
    else:
        pos.cost_basis_krw = round(avg * qty)
    pos.qty = qty
    trader.record_position(pos, closed_at=now if qty == 0 else None)
