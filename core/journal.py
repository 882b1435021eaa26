"""Where the engine writes down what happens: orders, fills, positions, events.

``Journal`` is the small protocol the engine talks to. :class:`MemoryJournal` keeps
everything in lists (the backtest, which writes the whole run to the database at its end);
:class:`DatabaseJournal` writes through to a :class:`db.repository.Repository` at once
(live trading, where the database is the source of truth).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from framework.types import Fill, Order

logger = logging.getLogger(__name__)


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

    def position(self, position: PositionRecord, closed_at: datetime | None = None) -> None: ...

    def event(
        self,
        kind: str,
        message: str,
        *,
        at: datetime,
        level: str = "info",
        data: dict[str, Any] | None = None,
    ) -> None: ...


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
        self.history.append((order.client_order_id, order.status.value, order.updated_at, note))

    def fill(self, strategy: str, fill: Fill) -> None:
        self.fills.append((strategy, fill))

    def position(self, position: PositionRecord, closed_at: datetime | None = None) -> None:
        if closed_at is not None:
            self.closed_positions.append((position_fields(position), closed_at))

    def event(
        self,
        kind: str,
        message: str,
        *,
        at: datetime,
        level: str = "info",
        data: dict[str, Any] | None = None,
    ) -> None:
        self.events.append(
            {"kind": kind, "message": message, "at": at, "level": level, "data": data or {}}
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
    """Writes every record through to the repository at once (live and dry-run)."""

    def __init__(self, repository: Any, run_id: str):
        self.repository = repository
        self.run_id = run_id

    def order(self, order: Order, note: str = "") -> None:
        self.repository.save_order(self.run_id, order, note=note)

    def fill(self, strategy: str, fill: Fill) -> None:
        self.repository.save_fill(self.run_id, fill, strategy)

    def position(self, position: PositionRecord, closed_at: datetime | None = None) -> None:
        fields = position_fields(position)
        self.repository.save_position(
            self.run_id,
            status="closed" if closed_at is not None else "holding",
            closed_at=closed_at,
            **fields,
        )

    def event(
        self,
        kind: str,
        message: str,
        *,
        at: datetime,
        level: str = "info",
        data: dict[str, Any] | None = None,
    ) -> None:
        self.repository.log_event(kind, message, run_id=self.run_id, level=level, data=data, at=at)
