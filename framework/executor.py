"""``OrderExecutor``: sending, cancelling and looking up orders.

======================================  ========  =========================================
method                                  required  returns / raises
======================================  ========  =========================================
``submit_order(request)``               yes       broker order id (str); ``OrderRejectedError``,
                                                  ``UnknownOrderOutcomeError`` on ambiguity
``cancel_order(broker_order_id, ...)``  yes       ``None``; ``OrderRejectedError`` when too late
``get_order(broker_order_id)``          yes       :class:`OrderState` (status, fills so far)
``find_order(client_order_id)``         no        :class:`OrderState` or ``None``: resolves an
                                                  unknown outcome after a failed submit
``match_order(request, sent_at, ...)``  no        :class:`OrderState` or ``None``: finds the
                                                  broker's order for a request whose submit
                                                  answer was lost (also after a restart)
``restore_order(...)``                  no        ``None``: after a restart, tells the executor
                                                  what is already known of an order
``list_orders(day, open_only=...)``     no        the day's orders as :class:`OrderState`
``fill_since(state, qty, amount, cid)`` no        the :class:`Fill` that takes an order from
                                                  the recorded cumulative figures to the
                                                  broker's (brokers reporting running totals)
``fill_from_notice(notice, qty, cid)``  no        the :class:`Fill` of one execution notice
======================================  ========  =========================================

Fill identity. A broker that reports running totals per order (KIS) has no execution id: a
fill is identified by (broker order id, cumulative filled quantity after it). Such an
executor sets :attr:`OrderState.filled_amount_krw` and implements :meth:`fill_since`; the
caller passes the figures it has *recorded* (committed), so a fill whose write failed is
derived again, with the same id, on the next poll.

Implementations never retry a submit on their own: a timeout is an unknown outcome.

Restart (the process died, even by SIGKILL): for every order the database holds as open,
call :meth:`OrderExecutor.restore_order` with its broker id and the fills already recorded,
then poll :meth:`OrderExecutor.get_order` as before: only fills beyond the restored
quantity are reported. For an order recorded as ``PENDING_NEW`` (written before the submit,
no broker id), :meth:`OrderExecutor.match_order` finds it at the broker, or returns
``None`` when the broker never got it.
"""

from __future__ import annotations

import abc
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime

from framework.types import Fill, OrderRequest, OrderSide, OrderStatus


@dataclass(frozen=True, slots=True)
class OrderState:
    """What the broker knows of one order: status, quantities (shares) and its fills.

    ``qty`` is the ordered quantity in shares, ``filled_qty`` the authoritative cumulative
    filled quantity. ``fills`` are the executions this executor has reported for the order
    (after :meth:`OrderExecutor.restore_order`: only those beyond the restored quantity).
    ``stock_code``, ``side``, ``price`` (limit price in KRW, ``None`` for a market order)
    and ``ordered_at`` (tz-aware Asia/Seoul) describe the order when the broker gives them.
    ``cancelled_qty`` is the number of shares cancelled (they will never fill).
    """

    broker_order_id: str
    status: OrderStatus
    qty: int
    filled_qty: int
    fills: tuple[Fill, ...] = ()
    client_order_id: str | None = None
    stock_code: str | None = None
    side: OrderSide | None = None
    price: int | None = None
    ordered_at: datetime | None = None
    cancelled_qty: int = 0
    filled_amount_krw: int | None = None
    """Cumulative KRW of the fills (``qty x price`` summed, fees excluded) when the broker
    reports running totals; ``None`` when it reports executions (``fills``) instead."""


@dataclass(frozen=True, slots=True)
class ExecutionNotice:
    """One execution pushed by the broker (a real-time fill notice): ``qty`` shares of
    order ``broker_order_id`` at ``price`` KRW at ``time`` (tz-aware Asia/Seoul)."""

    broker_order_id: str
    stock_code: str
    side: OrderSide
    qty: int
    price: int
    time: datetime


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

    def match_order(
        self, request: OrderRequest, sent_at: datetime, claimed: Collection[str] = ()
    ) -> OrderState | None:
        """Find the broker's order for ``request``, whose submit started at ``sent_at``
        (tz-aware), among the orders of that day whose broker id is not in ``claimed``.

        A match is registered under ``request.client_order_id`` (its fills carry that id).
        ``None``: the broker has no such order. Default: ``None`` (no lookup possible).
        """
        return None

    def restore_order(
        self,
        broker_order_id: str,
        client_order_id: str,
        *,
        filled_qty: int,
        filled_amount_krw: int,
        day: date,
    ) -> None:
        """Tell the executor, after a restart, that order ``broker_order_id`` (placed on
        ``day``, sent as ``client_order_id``) already has ``filled_qty`` shares filled for
        ``filled_amount_krw`` KRW in total: later :meth:`get_order` calls report only fills
        beyond that. Default: nothing to do (executors that keep no per-order memory).
        """
        return None

    def fill_since(
        self, state: OrderState, filled_qty: int, filled_amount_krw: int, client_order_id: str
    ) -> Fill | None:
        """The fill that takes an order recorded at ``filled_qty`` shares for
        ``filled_amount_krw`` KRW to the cumulative figures of ``state``; ``None`` if the
        broker shows nothing more. Only for states with ``filled_amount_krw`` set.
        Default: ``None``."""
        return None

    def fill_from_notice(
        self, notice: ExecutionNotice, filled_qty: int, client_order_id: str
    ) -> Fill:
        """The fill of ``notice`` for an order recorded at ``filled_qty`` shares (its id is
        the one :meth:`fill_since` gives the same execution). Default:
        ``NotImplementedError``."""
        raise NotImplementedError(f"{type(self).__name__} takes no execution notices")

    def list_orders(self, day: date | None = None, *, open_only: bool = False) -> list[OrderState]:
        """Every order of ``day`` (default: today), or only the open ones.

        Default: ``NotImplementedError`` (the executor cannot list orders).
        """
        raise NotImplementedError(f"{type(self).__name__} cannot list orders")
