"""Positions per strategy and stock, built from fills, and closed round trips.

A position opens with the first buy fill while flat and closes when sells bring it back to
zero; that span is one *round trip* (a row of ``trades.csv``). Cost basis is integer KRW
(``Σ qty × price`` of buys, commission excluded, reduced pro rata by sells); ``avg_price`` is
``cost_basis / qty``. Round-trip P&L is net of commission and tax::

    pnl_krw = Σ sell (amount − commission − tax) − Σ buy (amount + commission)
    return_pct = pnl_krw / Σ buy (amount + commission) × 100
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from framework.errors import KisTraderError
from framework.types import Fill, OrderSide, PositionView


@dataclass
class Position:
    """A strategy's open position in one stock (engine-owned, mutable)."""

    strategy: str
    stock_code: str
    qty: int = 0
    cost_basis_krw: int = 0
    opened_at: datetime | None = None
    stop_loss: float | None = None
    target_price: float | None = None
    reasons: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    peak_price: float | None = None
    """Highest price seen since entry (KRW), for the trailing stop."""
    # round-trip accumulators
    bought_qty: int = 0
    buy_amount_krw: int = 0
    buy_fees_krw: int = 0
    sold_qty: int = 0
    sell_amount_krw: int = 0
    sell_fees_krw: int = 0
    exit_reasons: tuple[str, ...] = ()
    realized_pnl_krw: int = 0

    @property
    def avg_price(self) -> float:
        """Cost per held share (KRW); for a closed position, the mean entry price."""
        if self.qty:
            return self.cost_basis_krw / self.qty
        return self.buy_amount_krw / self.bought_qty if self.bought_qty else 0.0

    def view(self) -> PositionView:
        """A read-only snapshot for strategy code (its metadata a copy)."""
        return PositionView(  # positional, in PositionView's field order: once per ask
            self.stock_code,
            self.qty,
            self.avg_price,
            self.opened_at,
            self.stop_loss,
            self.target_price,
            self.reasons,
            dict(self.metadata),
        )


@dataclass(frozen=True)
class RoundTrip:
    """One closed position: entry to full exit. Prices are quantity-weighted means (KRW)."""

    strategy: str
    stock_code: str
    entry_time: datetime
    exit_time: datetime
    entry_price: float
    exit_price: float
    qty: int
    pnl_krw: int
    return_pct: float
    fees_krw: int
    reasons: tuple[str, ...]
    exit_reasons: tuple[str, ...]


class OverfillError(KisTraderError):
    """A sell fill for more shares than the strategy holds."""


class Portfolio:
    """All strategies' positions; applies fills and records round trips."""

    def __init__(self) -> None:
        self._positions: dict[tuple[str, str], Position] = {}
        self.round_trips: list[RoundTrip] = []

    def get(self, strategy: str, stock_code: str) -> Position | None:
        pos = self._positions.get((strategy, stock_code))
        return pos if pos is not None and pos.qty > 0 else None

    def positions(self, strategy: str | None = None) -> list[Position]:
        if strategy is None:  # asked on every visited bar and quiet stretch of a backtest
            return [p for p in self._positions.values() if p.qty > 0]
        return [p for (s, _), p in self._positions.items() if p.qty > 0 and s == strategy]

    def market_value(self, prices: Mapping[str, float]) -> float:
        """Every held position's shares × its price in ``prices`` (KRW; the average cost
        where no price is known), summed in :meth:`positions` order."""
        value = 0.0
        for p in self._positions.values():
            if p.qty > 0:
                price = prices.get(p.stock_code)  # the average cost only where it is needed
                value += p.qty * (p.avg_price if price is None else price)
        return value

    def qty(self, strategy: str, stock_code: str) -> int:
        pos = self._positions.get((strategy, stock_code))
        return pos.qty if pos else 0

    def invested_krw(self, strategy: str) -> int:
        """Cost basis of the strategy's open positions (KRW)."""
        total = 0  # positions() filtered inline: asked before every buy
        for (s, _), p in self._positions.items():
            if s == strategy and p.qty > 0:
                total += p.cost_basis_krw
        return total

    def restore(self, position: Position) -> None:
        """Put back a position read from the database (restart)."""
        self._positions[(position.strategy, position.stock_code)] = position

    def checkpoint(self, strategy: str, stock_code: str) -> tuple[Position | None, int]:
        """A copy of the position and the round-trip count, for :meth:`rollback`."""
        pos = self._positions.get((strategy, stock_code))
        if pos is None:
            return None, len(self.round_trips)
        saved = Position.__new__(Position)  # copy.copy without its generic machinery
        saved.__dict__.update(pos.__dict__)  # metadata is shared: apply_fill replaces it
        return saved, len(self.round_trips)

    def rollback(
        self, strategy: str, stock_code: str, mark: tuple[Position | None, int]
    ) -> None:
        """Undo the fills applied to (``strategy``, ``stock_code``) since ``mark``."""
        pos, trips = mark
        if pos is None:
            self._positions.pop((strategy, stock_code), None)
        else:
            self._positions[(strategy, stock_code)] = pos
        del self.round_trips[trips:]

    def apply_fill(
        self,
        strategy: str,
        fill: Fill,
        *,
        reasons: tuple[str, ...] = (),
        stop_loss: float | None = None,
        target_price: float | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> tuple[Position, RoundTrip | None]:
        """Apply one fill; returns the position and, if it closed, the round trip."""
        key = (strategy, fill.stock_code)
        pos = self._positions.get(key)
        qty = fill.qty
        amount = qty * fill.price  # fill.amount_krw
        if fill.side is OrderSide.BUY:
            if pos is None or pos.qty == 0:
                pos = Position(strategy, fill.stock_code, opened_at=fill.time, reasons=reasons)
                self._positions[key] = pos
            pos.qty += qty
            pos.cost_basis_krw += amount
            pos.bought_qty += qty
            pos.buy_amount_krw += amount
            pos.buy_fees_krw += fill.commission_krw
            if stop_loss is not None:
                pos.stop_loss = stop_loss
            if target_price is not None:
                pos.target_price = target_price
            if metadata:  # a new dict, never updated in place (checkpoint shares the old)
                pos.metadata = {**pos.metadata, **metadata}
            return pos, None
        if pos is None or qty > pos.qty:
            held = pos.qty if pos else 0
            raise OverfillError(
                f"{strategy}: sell fill of {qty} {fill.stock_code} but holds {held}"
            )
        cost_out = pos.cost_basis_krw if qty == pos.qty else pos.cost_basis_krw * qty // pos.qty
        pos.qty -= qty
        pos.cost_basis_krw -= cost_out
        pos.sold_qty += qty
        pos.sell_amount_krw += amount
        pos.sell_fees_krw += fill.commission_krw + fill.tax_krw
        if reasons:
            pos.exit_reasons = reasons
        if pos.qty > 0:
            return pos, None
        buy_cost = pos.buy_amount_krw + pos.buy_fees_krw
        pnl = pos.sell_amount_krw - pos.sell_fees_krw - buy_cost
        # the frozen __init__ sets each of the 12 fields through object.__setattr__; the
        # instance's dict filled at once is the same record (once per round trip)
        trip = object.__new__(RoundTrip)
        vars(trip).update(
            strategy=strategy,
            stock_code=fill.stock_code,
            entry_time=pos.opened_at or fill.time,
            exit_time=fill.time,
            entry_price=pos.buy_amount_krw / pos.bought_qty,
            exit_price=pos.sell_amount_krw / pos.sold_qty,
            qty=pos.bought_qty,
            pnl_krw=pnl,
            return_pct=pnl / buy_cost * 100.0 if buy_cost else 0.0,
            fees_krw=pos.buy_fees_krw + pos.sell_fees_krw,
            reasons=pos.reasons,
            exit_reasons=pos.exit_reasons,
        )
        pos.realized_pnl_krw = pnl
        self.round_trips.append(trip)
        del self._positions[key]
        return pos, trip
