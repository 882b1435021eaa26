"""``OrderExecutor``: sending, cancelling and looking up orders.

===================================  ========  ============================================
method                               required  returns / raises
===================================  ========  ============================================
``submit_order(request)``            yes       broker order id (str); ``OrderRejectedError``,
                                               ``UnknownOrderOutcomeError`` on ambiguity
``cancel_order(broker_order_id,...)`` yes      ``None``; ``OrderRejectedError`` when too late
``get_order(broker_order_id)``       yes       :class:`OrderState` (status, fills so far)
``find_order(client_order_id)``      no        :class:`OrderState` or ``None``: resolves an
                                               unknown outcome after a failed submit
===================================  ========  ============================================

Implementations never retry a submit on their own: a timeout is an unknown outcome.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

from framework.types import Fill, OrderRequest, OrderStatus


@dataclass(frozen=True, slots=True)
class OrderState:
    """What the broker knows of one order: status, quantities (shares) and its fills."""

    broker_order_id: str
    status: OrderStatus
    qty: int
    filled_qty: int
    fills: tuple[Fill, ...] = ()
    client_order_id: str | None = None


class OrderExecutor(abc.ABC):
    """Order entry. See the module docstring for the method table."""

    @abc.abstractmethod
    def submit_order(self, request: OrderRequest) -> str:
        """Send ``request``; return the broker's order id."""

    @abc.abstractmethod
    def cancel_order(self, broker_order_id: str, stock_code: str, qty: int | None = None) -> None:
        """Cancel ``qty`` shares (default: all that is unfilled) of an open order."""

    @abc.abstractmethod
    def get_order(self, broker_order_id: str) -> OrderState:
        """Current state and fills of an order."""

    def find_order(self, client_order_id: str) -> OrderState | None:
        """Look an order up by the client id it was sent with; ``None`` if the broker has none."""
        return None
