"""``FundManager``: who may spend which won.

Cash is one pool (the account's), mirrored from fills. Before a buy is sent, the engine
*reserves* its estimated cost for the strategy and stock; a fill *commits* (spends) part of
the reservation; when the order reaches a final state the rest is *released*. The free cash
is ``cash − Σ reservations`` and a reservation is only granted from free cash, so the same
won is never handed out twice. All amounts are integer KRW; every method is thread-safe.

Sizing a buy (``size_buy``)::

    weight  = confidence_weight(confidence) × (1.5 if STRONG_BUY else 1)
    limit   = max_position_size × strategy_equity × weight − value already held in the stock
    budget  = min(limit, strategy free capital, free cash)

An explicit quantity (``Signal.qty``) skips the limit but not the strategy's free capital.
    qty     = floor(budget / (price × (1 + commission_rate)))

``confidence_weight`` maps 90 → 1.0 and 60 → 0.5, linearly (``(c − 30) / 60`` clipped to
[0, 1]); a confidence of 90 or more buys the full limit. Worked example: equity 10,000,000,
max_position_size 0.10, confidence 80 → weight 0.8333 → limit 833,333; at 72,000 KRW with
0.015 % commission, ``qty = floor(833,333 / 72,010.8) = 11`` shares.
"""

from __future__ import annotations

import itertools
import math
import threading
from dataclasses import dataclass

from framework.errors import FundsError

STRONG_BUY_WEIGHT = 1.5


def confidence_weight(confidence: float) -> float:
    """Fraction of the per-stock limit a buy of this confidence (0–100) may use."""
    return min(1.0, max(0.0, (confidence - 30.0) / 60.0))


@dataclass
class Reservation:
    """KRW set aside for one buy order of one strategy and stock."""

    reservation_id: int
    strategy: str
    stock_code: str
    amount_krw: int
    spent_krw: int = 0
    client_order_id: str | None = None
    """The order the reservation pays for, once it is created (:meth:`FundManager.assign`)."""

    @property
    def remaining_krw(self) -> int:
        return max(0, self.amount_krw - self.spent_krw)


class FundManager:
    """Cash pool with reservations per strategy and stock.

    Parameters
    ----------
    cash_krw:
        Cash available at start (KRW).
    allocations:
        Strategy name → fraction of account equity it may have invested (default 1.0 each).
    """

    def __init__(self, cash_krw: int, allocations: dict[str, float] | None = None):
        if cash_krw < 0:
            raise ValueError("cash must not be negative")
        self._cash = int(cash_krw)
        self._allocations = dict(allocations or {})
        self._reservations: dict[int, Reservation] = {}
        self._by_order: dict[str, int] = {}
        self._ids = itertools.count(1)
        self._lock = threading.RLock()

    # --- state -----------------------------------------------------------------------------
    @property
    def cash_krw(self) -> int:
        return self._cash

    @property
    def reserved_krw(self) -> int:
        """KRW held by every reservation (what is left of each, ≥ 0)."""
        with self._lock:
            return self._reserved()

    @property
    def free_krw(self) -> int:
        """Cash not reserved by any open buy (KRW, ≥ 0)."""
        with self._lock:
            return max(0, self._cash - self._reserved())

    def _reserved(self, strategy: str | None = None) -> int:
        """Σ of the reservations' rests (of ``strategy``'s only, if given); the caller
        holds the lock. Most of the time no buy is open: nothing to sum."""
        if not self._reservations:
            return 0
        return sum(
            [
                r.amount_krw - r.spent_krw
                for r in self._reservations.values()
                if r.amount_krw > r.spent_krw and (strategy is None or r.strategy == strategy)
            ]
        )

    def reservations(self) -> list[Reservation]:
        with self._lock:
            return [Reservation(**vars(r)) for r in self._reservations.values()]

    def strategy_reserved_krw(self, strategy: str) -> int:
        with self._lock:
            return self._reserved(strategy)

    def allocation(self, strategy: str) -> float:
        return self._allocations.get(strategy, 1.0)

    def set_allocation(self, strategy: str, fraction: float) -> None:
        if not 0 < fraction <= 1:
            raise ValueError("allocation must be in (0, 1]")
        self._allocations[strategy] = fraction

    # --- sizing ---------------------------------------------------------------------------
    def size_buy(
        self,
        *,
        strategy: str,
        price_krw: float,
        equity_krw: int,
        max_position_size: float,
        commission_rate: float,
        confidence: float,
        strong: bool,
        held_value_krw: int = 0,
        strategy_invested_krw: int = 0,
        strategy_free_krw: int | None = None,
    ) -> int:
        """Shares to buy (≥ 0) per the module's sizing rule, at ``price_krw``;
        ``strategy_free_krw``: what :meth:`strategy_free_krw` gives now, when the caller
        already asked it."""
        if not price_krw > 0 or equity_krw <= 0:
            return 0
        weight = confidence_weight(confidence) * (STRONG_BUY_WEIGHT if strong else 1.0)
        strategy_equity = self.allocation(strategy) * equity_krw
        limit = max_position_size * strategy_equity * weight - held_value_krw
        if strategy_free_krw is None:
            strategy_free_krw = self.strategy_free_krw(strategy, equity_krw, strategy_invested_krw)
        budget = min(limit, strategy_free_krw)
        if budget <= 0:
            return 0
        return max(0, math.floor(budget / (price_krw * (1.0 + commission_rate))))

    def strategy_free_krw(self, strategy: str, equity_krw: int, invested_krw: int) -> int:
        """KRW the strategy may still commit: its allocation of ``equity_krw`` minus what it has
        invested (``invested_krw``, cost basis) and reserved, capped by the free cash."""
        with self._lock:
            own = self._allocations.get(strategy, 1.0) * equity_krw - invested_krw
            if not self._reservations:  # no buy open (the common case): all cash is free
                return max(0, min(int(own), self._cash))
            own -= self._reserved(strategy)
            return max(0, min(int(own), self._cash - self._reserved()))

    # --- reserve / commit / release -----------------------------------------------------
    def reserve(
        self, strategy: str, stock_code: str, amount_krw: int, *, up_to_free: bool = False
    ) -> Reservation:
        """Set ``amount_krw`` aside. ``FundsError`` if it exceeds the free cash, unless
        ``up_to_free`` (a cost estimate rounded up): then the free cash is set aside when it
        is less. ``ValueError`` unless the amount set aside is positive."""
        if amount_krw <= 0:
            raise ValueError(f"reservation must be positive, got {amount_krw}")
        with self._lock:
            free = max(0, self._cash - self._reserved())
            if up_to_free and amount_krw > free:  # the free cash read once, under the lock
                if free <= 0:
                    raise ValueError(f"reservation must be positive, got {free}")
                amount_krw = free
            if amount_krw > free:
                raise FundsError(
                    f"{strategy}/{stock_code}: needs {amount_krw:,} KRW, free {free:,} KRW"
                )
            res = Reservation(next(self._ids), strategy, stock_code, int(amount_krw))
            self._reservations[res.reservation_id] = res
            return Reservation(res.reservation_id, strategy, stock_code, res.amount_krw)

    def assign(self, reservation_id: int, client_order_id: str) -> None:
        """Tie a reservation to the order it pays for (after the order is created)."""
        with self._lock:
            res = self._reservations.get(reservation_id)
            if res is None:
                raise FundsError(f"no reservation {reservation_id} to assign")
            res.client_order_id = client_order_id
            self._by_order[client_order_id] = reservation_id

    def reservation_of(self, client_order_id: str) -> int | None:
        """Id of the reservation of an order (``None``: none, or released)."""
        return self._by_order.get(client_order_id)

    def buying_power_krw(self, client_order_id: str) -> int:
        """KRW a buy order may spend when it fills: its reservation's rest plus free cash
        (what a broker simulation asks before filling a buy)."""
        with self._lock:  # spendable_krw in one pass over the reservations (once per buy fill)
            rid = self._by_order.get(client_order_id)
            own = reserved = 0
            for res in self._reservations.values():
                left = res.amount_krw - res.spent_krw
                if left > 0:
                    reserved += left
                    if res.reservation_id == rid:
                        own = left
            return own + max(0, self._cash - reserved)

    def release_order(self, client_order_id: str) -> int:
        """Drop the reservation of an order that reached a final state; returns the KRW
        that became free again (0 when it had none)."""
        with self._lock:  # release() inline: once per order
            rid = self._by_order.pop(client_order_id, None)
            res = self._reservations.pop(rid, None) if rid is not None else None
            if res is None:
                return 0
            if res.client_order_id is not None:
                self._by_order.pop(res.client_order_id, None)
            return res.remaining_krw

    def spendable_krw(self, reservation_id: int | None) -> int:
        """Cash a buy may spend at its fill: its reservation's rest plus free cash."""
        with self._lock:
            res = self._reservations.get(reservation_id) if reservation_id is not None else None
            return (res.remaining_krw if res else 0) + self.free_krw

    def commit_buy(self, reservation_id: int | None, cost_krw: int) -> None:
        """A buy fill spent ``cost_krw`` (amount + commission) from its reservation.

        Spending beyond the reservation draws on free cash; ``FundsError`` if even that is
        not enough (the fill would double-spend another reservation's won).
        """
        if cost_krw < 0:
            raise ValueError(f"a buy cost must not be negative, got {cost_krw}")
        with self._lock:
            res = self._reservations.get(reservation_id) if reservation_id is not None else None
            # min(cost, res.remaining_krw), the property inline (once per buy fill)
            from_res = max(0, min(cost_krw, res.amount_krw - res.spent_krw)) if res else 0
            extra = cost_krw - from_res
            if extra and extra > self.free_krw:  # free cash is >= 0: nothing to check at 0
                raise FundsError(
                    f"fill costs {cost_krw:,} KRW, reservation {from_res:,} "
                    f"+ free {self.free_krw:,}"
                )
            if res:
                res.spent_krw += from_res
            self._cash -= cost_krw

    def credit(self, amount_krw: int) -> None:
        """Sale proceeds (net of commission and tax) come back to the pool."""
        if amount_krw < 0:
            raise ValueError("credit must not be negative")
        with self._lock:
            self._cash += amount_krw

    def release(self, reservation_id: int | None) -> int:
        """Drop a reservation (order final); returns the KRW that became free again."""
        if reservation_id is None:
            return 0
        with self._lock:
            res = self._reservations.pop(reservation_id, None)
            if res is not None and res.client_order_id is not None:
                self._by_order.pop(res.client_order_id, None)
            return res.remaining_krw if res else 0

    def sync_cash(self, cash_krw: int) -> None:
        """Replace the cash figure with the broker's (after an account sync)."""
        with self._lock:
            self._cash = int(cash_krw)
