"""Where the engine writes down what happens: orders, fills, positions, events.

``Journal`` is the small protocol the engine talks to. A fill is written with
:meth:`Journal.fill_applied`: the order's new state, the fill row, the position and the
cash movement in one transaction (all or nothing; the same fill twice is a no-op), so a
crash between writes cannot leave an order "filled" without its fill. A write that fails
raises :class:`StorageError`; the engine then leaves the fill un-applied in memory too, and
the next poll derives it again. :class:`MemoryJournal` keeps
everything in lists (the backtest, which writes the whole run to the database at its end);
:class:`DatabaseJournal` writes through to a :class:`db.repository.Repository` at once
(live trading, where the database is the source of truth).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from framework.errors import KisTraderError
from framework.events import Event
from framework.types import Fill, Order

logger = logging.getLogger(__name__)


class StorageError(KisTraderError):
    """The database could not be written (disk full, locked, gone): nothing was stored."""


class PositionRecord(Protocol):
    strategy: str
    stock_code: str
    qty: int
    cost_basis_krw: int
    opened_at: datetime | None
    stop_loss: float | None
    target_price: float | None
    reasons: tuple[str, ...]
    metadata: dict[str, Any]
    realized_pnl_krw: int
    peak_price: float | None

    @property
    def avg_price(self) -> float: ...


class Journal(Protocol):
    """What the engine records. Every method must return quickly and never raise for I/O
    reasons the engine could not act on (implementations log and re-raise only bugs)."""

    def order(self, order: Order, note: str = "") -> None: ...

    def fill(self, strategy: str, fill: Fill) -> None: ...

    def fill_applied(
        self,
        order: Order,
        note: str,
        fill: Fill,
        position: PositionRecord,
        closed_at: datetime | None,
        cash_delta_krw: int,
    ) -> bool:
        """Write one fill with everything it changes, atomically: ``order`` (its new
        state, history ``note``), the fill, ``position`` (closed at ``closed_at`` if not
        ``None``) and the cash ledger (``cash_delta_krw``, KRW, negative for a buy).
        ``False`` if the fill was already stored (nothing written). Raises
        :class:`StorageError` when nothing could be written."""
        ...

    def position(self, position: PositionRecord, closed_at: datetime | None = None) -> None: ...

    def adjustment(
        self, strategy: str, stock_code: str, qty: int, price: float, reason: str, at: datetime
    ) -> None:
        """Journal shares that appeared (``qty`` > 0) or vanished (< 0) in the account
        without a fill, at ``price`` KRW per share, with the ``reason``."""
        ...

    def save_state(self, name: str, state: dict[str, Any]) -> None:
        """Persist a JSON-able dict under ``name`` (replaces the stored one)."""
        ...

    def load_state(self, name: str) -> dict[str, Any]:
        """The dict stored under ``name``; empty if none."""
        ...

    def event(self, event: Event) -> None:
        """Write one engine event (the engine passes only events whose type is
        ``journaled``): stored under ``event.kind`` with its time, level, message and
        :meth:`~framework.events.Event.data`."""
        ...


@dataclass
class MemoryJournal:
    """Keeps the run in memory (latest state of each order, every fill, every event)."""

    orders: dict[str, Order] = field(default_factory=dict)
    history: list[tuple[str, str, datetime | None, str]] = field(default_factory=list)
    fills: list[tuple[str, Fill]] = field(default_factory=list)
    closed_positions: list[tuple[dict[str, Any], datetime]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    def order(self, order: Order, note: str = "") -> None:
        self.orders[order.client_order_id] = order
        # _value_ is .value without the enum descriptor (three entries per order)
        self.history.append((order.client_order_id, order.status._value_, order.updated_at, note))

    states: dict[str, dict[str, Any]] = field(default_factory=dict)
    adjustments: list[dict[str, Any]] = field(default_factory=list)

    def fill(self, strategy: str, fill: Fill) -> None:
        self.fills.append((strategy, fill))

    def fill_applied(
        self,
        order: Order,
        note: str,
        fill: Fill,
        position: PositionRecord,
        closed_at: datetime | None,
        cash_delta_krw: int,
    ) -> bool:
        # order(), fill() and position() inline: once per fill of a backtest
        cid = order.client_order_id
        self.orders[cid] = order
        self.history.append((cid, order.status._value_, order.updated_at, note))
        self.fills.append((order.strategy, fill))
        if closed_at is not None:
            self.closed_positions.append((position_fields(position), closed_at))
        return True

    def position(self, position: PositionRecord, closed_at: datetime | None = None) -> None:
        if closed_at is not None:
            self.closed_positions.append((position_fields(position), closed_at))

    def adjustment(
        self, strategy: str, stock_code: str, qty: int, price: float, reason: str, at: datetime
    ) -> None:
        self.adjustments.append(
            {"strategy": strategy, "code": stock_code, "qty": qty, "price": price,
             "reason": reason, "at": at}
        )

    def save_state(self, name: str, state: dict[str, Any]) -> None:
        self.states[name] = dict(state)

    def load_state(self, name: str) -> dict[str, Any]:
        return dict(self.states.get(name, {}))

    def event(self, event: Event) -> None:
        self.events.append(
            {
                "kind": event.kind,
                "message": event.message,
                "at": event.at,
                "level": event.level,
                "data": event.data(),
            }
        )


def position_fields(position: PositionRecord) -> dict[str, Any]:
    """Keyword arguments of ``Repository.save_position`` for a position."""
    return {
        "strategy": position.strategy,
        "stock_code": position.stock_code,
        "qty": position.qty,
        "avg_price": position.avg_price,
        "cost_basis_krw": position.cost_basis_krw,
        "opened_at": position.opened_at,
        "stop_loss": position.stop_loss,
        "target_price": position.target_price,
        "reasons": tuple(position.reasons),
        "metadata": dict(position.metadata),
        "realized_pnl_krw": position.realized_pnl_krw,
        "peak_price": position.peak_price,
    }


class DatabaseJournal:
    """Writes every record through to the repository at once (live and dry-run).

    Every write that fails for a database reason (``sqlalchemy.exc.SQLAlchemyError``,
    ``OSError``) raises :class:`StorageError`; nothing half-written stays behind.
    """

    def __init__(self, repository: Any, run_id: str):
        self.repository = repository
        self.run_id = run_id

    def _guard(self, what: str, call: Any, *args: Any, **kwargs: Any) -> Any:
        from sqlalchemy.exc import SQLAlchemyError

        try:
            return call(*args, **kwargs)
        except (SQLAlchemyError, OSError) as exc:
            raise StorageError(f"database not writable ({what}): {exc}") from exc

    def order(self, order: Order, note: str = "") -> None:
        self._guard("order", self.repository.save_order, self.run_id, order, note=note)

    def fill(self, strategy: str, fill: Fill) -> None:
        self._guard("fill", self.repository.save_fill, self.run_id, fill, strategy)

    def fill_applied(
        self,
        order: Order,
        note: str,
        fill: Fill,
        position: PositionRecord,
        closed_at: datetime | None,
        cash_delta_krw: int,
    ) -> bool:
        return bool(
            self._guard(
                "fill",
                self.repository.record_fill,
                self.run_id,
                order=order,
                note=note,
                fill=fill,
                position={
                    **position_fields(position),
                    "status": "closed" if closed_at is not None else "holding",
                    "closed_at": closed_at,
                },
                cash_delta_krw=cash_delta_krw,
            )
        )

    def position(self, position: PositionRecord, closed_at: datetime | None = None) -> None:
        fields = position_fields(position)
        self._guard(
            "position",
            self.repository.save_position,
            self.run_id,
            status="closed" if closed_at is not None else "holding",
            closed_at=closed_at,
            **fields,
        )

    def adjustment(
        self, strategy: str, stock_code: str, qty: int, price: float, reason: str, at: datetime
    ) -> None:
        self._guard(
            "adjustment",
            self.repository.record_adjustment,
            self.run_id,
            strategy=strategy,
            stock_code=stock_code,
            qty=qty,
            price=price,
            reason=reason,
            at=at,
        )

    def save_state(self, name: str, state: dict[str, Any]) -> None:
        self._guard("state", self.repository.save_state, self.run_id, name, state)

    def load_state(self, name: str) -> dict[str, Any]:
        return dict(self._guard("state", self.repository.load_state, self.run_id, name))

    def event(self, event: Event) -> None:
        self._guard(
            "event",
            self.repository.log_event,
            event.kind,
            event.message,
            run_id=self.run_id,
            level=event.level,
            data=event.data(),
            at=event.at,
        )
