"""``OrderManager``: the life of every order, from intent to a final state.

1. :meth:`create` builds the order with a fresh client order id and writes it to the journal
   as ``PENDING_NEW`` — *before* anything is sent (a failed write raises and nothing is
   sent or tracked).
2. :meth:`submit` sends it. Accepted → ``SUBMITTED`` with the broker id. Refused →
   ``REJECTED``. An ambiguous failure (timeout, lost answer, an acknowledgement without an
   order number) → ``UNKNOWN``, then looked up (:meth:`resolve_unknown`); it is never re-sent
   blindly. Fills the lookup finds are applied like any other.
3. :meth:`apply_state` applies what the broker reports (polled in live, read after each bar
   in the backtest): new fills, then the final status (``FILLED``, ``CANCELLED``,
   ``EXPIRED``).

Fill identity: for a broker that reports running totals (KIS) a fill is (broker order id,
cumulative filled shares after it), derived from the order's *recorded* figures
(:meth:`~framework.executor.OrderExecutor.fill_since`); otherwise the executor's
``fill_id`` (each applied once). Every new fill goes to :attr:`OrderManager.fill_handler`
(the ``Trader``), which books it with :meth:`book_fill` and writes it in one transaction; an
order's figures change only when that write succeeded, so a fill that could not be written
is found again on the next poll. Without a handler the order and fill are journaled here.
A notice of one execution (:meth:`apply_notice`) is matched to what is recorded, so the
same execution seen by a notice and a poll applies once.

A cancelled order is kept under watch for ``settle_s`` seconds (:meth:`settling_orders`):
a fill the exchange made before the cancel took effect can still show up and is recorded.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from core.journal import Journal, StorageError
from framework.errors import (
    BrokerError,
    OrderRejectedError,
    UnknownOrderOutcomeError,
)
from framework.events import OverfillRefused
from framework.executor import ExecutionNotice, OrderExecutor, OrderState
from framework.types import (
    FINAL_STATUSES,
    Fill,
    Order,
    OrderSide,
    OrderStatus,
    OrderType,
    Signal,
)

logger = logging.getLogger(__name__)


STOP_KEY = "signal_stop_loss"
TARGET_KEY = "signal_target_price"
NOTICE_AFTER_POLL_S = 120.0
"""A fill notice this much later than the poll that last raised an order's filled quantity
counts from that poll's quantity (see :meth:`OrderManager.apply_notice`)."""
"""Order metadata keys holding the signal's stop-loss and take-profit prices (KRW)."""

_BOOKED = (
    "filled_qty",
    "filled_amount_krw",
    "avg_fill_price",
    "commission_krw",
    "tax_krw",
    "updated_at",
    "status",
    "message",
)
"""The fields of an order :meth:`OrderManager.book_fill` changes."""
_booked_of = operator.attrgetter(*_BOOKED)

FillHandler = Callable[[Order, Fill], None]
"""Books one new fill of an order (``OrderManager.book_fill`` plus everything the fill
changes, written at once); raises ``StorageError`` when nothing could be written."""


@dataclass(frozen=True)
class OrderPolicy:
    """How long an unfilled order may rest, and how often it is re-placed.

    ``buy_timeout_s`` / ``sell_timeout_s``: seconds after which the unfilled rest of an
    order is cancelled (``None`` = never). ``max_replacements``: how many times the rest is
    then re-placed at the current price while the signal still holds (0 = never).
    """

    buy_timeout_s: float | None = None
    sell_timeout_s: float | None = None
    max_replacements: int = 0

    def timeout_s(self, side: OrderSide) -> float | None:
        return self.buy_timeout_s if side is OrderSide.BUY else self.sell_timeout_s


@dataclass
class OrderContext:
    """What the engine keeps about one order besides the order itself.

    ``signal``: the strategy's signal that placed it (for the re-placement);
    ``cancel_requested_at``: when the engine sent its cancel for resting too long (it is
    re-placed once the cancel is confirmed); ``exit_cancel``: cancelled to make way for a
    protective exit (never re-placed); ``awaiting_price``: cancelled after a timeout and
    re-placed once its stock has a price (right after a restart).
    """

    signal: Signal | None = None
    cancel_requested_at: datetime | None = None
    exit_cancel: bool = False
    awaiting_price: bool = False


def _signal_metadata(signal: Signal) -> dict[str, Any]:
    """The metadata an order placed by ``signal`` keeps: the signal's, plus its stop-loss
    and take-profit prices (KRW) so a fill after a restart has them."""
    metadata = dict(signal.metadata)
    if signal.stop_loss is not None:
        metadata[STOP_KEY] = float(signal.stop_loss)
    if signal.target_price is not None:
        metadata[TARGET_KEY] = float(signal.target_price)
    return metadata


class OrderManager:
    """Tracks orders by client id, each with its :class:`OrderContext`. Not thread-safe by
    itself: the Trader serialises calls."""

    def __init__(
        self,
        executor: OrderExecutor,
        journal: Journal,
        clock: Callable[[], datetime],
        id_prefix: str,
        unknown_grace_s: float = 60.0,
        settle_s: float = 300.0,
    ):
        self.executor = executor
        self.settle_s = settle_s
        self.fill_handler: FillHandler | None = None
        self._settling: dict[str, datetime] = {}
        self._noticed: dict[str, list[tuple[str, int, int]]] = {}
        self._polled: dict[str, tuple[datetime, int]] = {}
        """Per order: when a poll last raised its filled quantity, and to what."""
        self.unknown_grace_s = unknown_grace_s
        self._unfound_since: dict[str, datetime] = {}
        self.journal = journal
        self.clock = clock
        self.id_prefix = id_prefix
        self.orders: dict[str, Order] = {}
        self._open: dict[str, Order] = {}
        self._seen_fills: set[str] = set()
        self._seq = itertools.count(1)
        self._context: dict[str, OrderContext] = {}

    # --- per-order context ---------------------------------------------------------------
    def context(self, client_order_id: str) -> OrderContext:
        """The engine's context of an order (created empty on first use)."""
        ctx = self._context.get(client_order_id)
        if ctx is None:
            ctx = self._context[client_order_id] = OrderContext()
        return ctx

    def peek_context(self, client_order_id: str) -> OrderContext | None:
        """The context of an order if it has one (never creates it)."""
        return self._context.get(client_order_id)

    def drop_context(self, client_order_id: str) -> OrderContext:
        """Remove and return an order's context (an empty one if it had none)."""
        return self._context.pop(client_order_id, None) or OrderContext()

    def cancels_requested(self) -> dict[str, datetime]:
        """Client order id → when its timeout cancel was sent, for orders awaiting it."""
        return {
            cid: ctx.cancel_requested_at
            for cid, ctx in self._context.items()
            if ctx.cancel_requested_at is not None
        }

    def awaiting_price(self) -> list[Order]:
        """Timed-out, cancelled orders whose re-placement waits for a price."""
        return [
            self.orders[cid]
            for cid, ctx in self._context.items()
            if ctx.awaiting_price and cid in self.orders
        ]

    # --- queries -----------------------------------------------------------------------
    def open_orders(self, stock_code: str | None = None) -> list[Order]:
        return [o for o in self._open.values() if stock_code is None or o.stock_code == stock_code]

    def to_poll(self, stock_code: str | None = None) -> list[Order]:
        """What a poll reads (of one stock, or all): :meth:`open_orders`, then the
        :meth:`settling_orders` not among them; empty, at once, when nothing is watched."""
        if not self._open and not self._settling:
            return []
        orders = self.open_orders(stock_code)
        if self._settling:
            listed = {o.client_order_id for o in orders}
            orders += [
                o
                for o in self.settling_orders()
                if o.client_order_id not in listed
                and (stock_code is None or o.stock_code == stock_code)
            ]
        return orders

    def watching(self) -> bool:
        """Whether any order is open or a cancelled one is still watched for a late fill
        (:meth:`open_orders` or :meth:`settling_orders` could return something)."""
        return bool(self._open or self._settling)

    def has_open(self, strategy: str, stock_code: str) -> bool:
        """Whether ``strategy`` has an open order for ``stock_code``."""
        for o in self._open.values():  # a loop, not any(): asked before every order
            if o.stock_code == stock_code and o.strategy == strategy:
                return True
        return False

    def restore(self, order: Order, fill_ids: Iterable[str] = ()) -> None:
        """Track an order read back from the database (restart).

        ``fill_ids``: ids of fills already applied (from the database), so a fill the
        broker reports again is applied once. The order's filled figures must be those of
        its recorded fills. An order with a broker id is handed to the executor's
        ``restore_order`` so the broker's cumulative figures continue from them.
        """
        self.orders[order.client_order_id] = order
        self._seen_fills.update(fill_ids)
        if not order.status.is_final:
            self._open[order.client_order_id] = order
            if order.broker_order_id and order.created_at is not None:
                self.executor.restore_order(
                    order.broker_order_id,
                    order.client_order_id,
                    filled_qty=order.filled_qty,
                    filled_amount_krw=order.filled_amount_krw,
                    day=order.created_at.date(),
                )

    def settling_orders(self) -> list[Order]:
        """Cancelled orders still under watch for a late fill (see the module docstring);
        those watched longer than ``settle_s`` are dropped from the watch."""
        now = self.clock()
        out = []
        for cid, since in list(self._settling.items()):
            order = self.orders.get(cid)
            if order is None or (now - since).total_seconds() > self.settle_s:
                del self._settling[cid]
            elif order.broker_order_id:
                out.append(order)
        return out

    def adopt(self, order: Order, state: OrderState, note: str) -> list[Fill]:
        """Attach a broker order found for a ``PENDING_NEW``/``UNKNOWN`` order after a
        restart (matched by code, side, quantity, price and time); returns its new fills."""
        order.broker_order_id = state.broker_order_id
        self._set_status(order, OrderStatus.SUBMITTED, note)
        return self.apply_state(order, state)

    # --- lifecycle ---------------------------------------------------------------------
    def create(
        self,
        *,
        strategy: str,
        stock_code: str,
        side: OrderSide,
        order_type: OrderType,
        qty: int,
        price: int | None,
        signal: Signal | None = None,
        reasons: tuple[str, ...] | None = None,
        replaces: Order | None = None,
    ) -> Order:
        """A new ``PENDING_NEW`` order, journaled before it is sent.

        ``replaces``: the timed-out order this one re-places (its reasons, metadata and
        signal type are carried over and ``attempt`` is one more).
        """
        now = self.clock()
        order = Order(
            f"{self.id_prefix}-{next(self._seq):07d}",
            strategy,
            stock_code,
            side,
            order_type,
            qty,
            price,
        )
        # the rest set on the new order: keyword arguments to Order's 22-field __init__
        # cost about half of building it
        order.created_at = order.updated_at = now
        if signal is not None:
            order.signal_type = signal.signal_type
            if signal.metadata or signal.stop_loss is not None or signal.target_price is not None:
                order.metadata = _signal_metadata(signal)  # else the order's own empty dict
        why = reasons if reasons is not None else signal.reasons if signal is not None else ()
        if why:
            order.reasons = tuple(why)
        if replaces is not None:
            order.replaces = replaces.client_order_id
            order.attempt = replaces.attempt + 1
            order.reasons = order.reasons or replaces.reasons
            order.metadata = dict(order.metadata or replaces.metadata)
            order.signal_type = order.signal_type or replaces.signal_type
        self.journal.order(order, "created")  # raises StorageError: never sent, never tracked
        self.orders[order.client_order_id] = order
        self._open[order.client_order_id] = order
        return order

    def submit(self, order: Order) -> Order:
        """Send a ``PENDING_NEW`` order; returns it in its new state (never raises for the
        broker's answer: a refusal is ``REJECTED``, an ambiguous failure ``UNKNOWN``).

        Raises ``ValueError`` for an order that is not ``PENDING_NEW``: an order is sent once.
        """
        if order.status is not OrderStatus.PENDING_NEW:
            raise ValueError(
                f"{order.client_order_id} is {order.status.value}; only a new order is sent"
            )
        try:
            broker_id = self.executor.submit_order(order.to_request())
        except UnknownOrderOutcomeError as exc:
            self._set_status(order, OrderStatus.UNKNOWN, f"unknown outcome: {exc}")
            try:
                self.resolve_unknown(order)  # fills found go to the fill handler
            except StorageError as err:  # the order is tracked; the next poll books them
                logger.error("fills of %s not written yet: %s", order.client_order_id, err)
            return order
        except OrderRejectedError as exc:
            self._set_status(order, OrderStatus.REJECTED, f"rejected: {exc}")
            return order
        except BrokerError as exc:  # not sent (circuit open, auth...): final, nothing to track
            self._set_status(order, OrderStatus.REJECTED, f"not sent: {exc}")
            return order
        order.broker_order_id = broker_id
        self._set_status(order, OrderStatus.SUBMITTED, f"accepted as {broker_id}")
        return order

    def resolve_unknown(self, order: Order) -> list[Fill]:
        """Look an ``UNKNOWN`` order up by client id; adopt what the broker says.

        Returns the fills found. If the broker has no such order it stays ``UNKNOWN`` for
        the next lookup (the order list can lag) until lookups have answered "no such
        order" for ``unknown_grace_s`` seconds: then it is ``REJECTED`` (never placed), so
        the engine may act again. A lookup that fails (broker error) proves nothing and
        never gives up.
        """
        cid = order.client_order_id
        try:
            state = self.executor.find_order(cid)
        except BrokerError as exc:
            logger.warning("lookup of %s failed: %s", cid, exc)
            return []
        if state is None:
            now = self.clock()
            first = self._unfound_since.setdefault(cid, now)
            if (now - first).total_seconds() >= self.unknown_grace_s:
                self._unfound_since.pop(cid, None)
                self.give_up(
                    order, f"the broker has no such order after {self.unknown_grace_s:.0f} s"
                )
            return []
        self._unfound_since.pop(cid, None)
        order.broker_order_id = state.broker_order_id
        if order.status is OrderStatus.UNKNOWN:
            self._set_status(
                order, OrderStatus.SUBMITTED, f"found at broker as {state.broker_order_id}"
            )
        return self.apply_state(order, state)

    def give_up(self, order: Order, reason: str) -> None:
        """Mark an order that the broker never had as ``REJECTED``."""
        self._set_status(order, OrderStatus.REJECTED, reason)

    def apply_state(self, order: Order, state: OrderState) -> list[Fill]:
        """Apply the broker's view of ``order``; returns the fills not seen before.

        Raises ``StorageError`` (from the fill handler) when a fill could not be written:
        the fills before it are applied, it and the final status are not (next poll)."""
        if state.filled_amount_krw is None:  # executions reported (none yet, or some)
            return self.apply_report(order, state.status, state.fills)
        return self.apply_report(order, state.status, self._new_fills(order, state))

    def apply_report(
        self, order: Order, status: OrderStatus, fills: Sequence[Fill]
    ) -> list[Fill]:
        """:meth:`apply_state` of a broker's ``status`` of ``order`` and the executions
        it reports (``fills``: all so far, or those beyond the recorded figures); the
        same answer and errors, without an ``OrderState``."""
        new_fills = self._apply_fills(order, fills) if fills else []
        cid = order.client_order_id
        if new_fills:
            if order.filled_qty < order.qty:
                self._polled[cid] = (self.clock(), order.filled_qty)
            else:  # filled: no notice can add to it (apply_notice), nothing to remember
                self._polled.pop(cid, None)
        if status in FINAL_STATUSES and order.status not in FINAL_STATUSES:
            final = status
            if final is OrderStatus.FILLED and order.filled_qty < order.qty:
                final = OrderStatus.CANCELLED  # broker cut the order (e.g. cash): rest dropped
            self._set_status(order, final, f"broker: {status.value}")
            if final is OrderStatus.CANCELLED:
                self._settling[cid] = self.clock()
        return new_fills

    def _new_fills(self, order: Order, state: OrderState) -> Sequence[Fill]:
        if state.filled_amount_krw is not None:  # running totals: derive from what is recorded
            fill = self.executor.fill_since(
                state, order.filled_qty, order.filled_amount_krw, order.client_order_id
            )
            return [fill] if fill is not None else []
        return state.fills

    def apply_fill(self, order: Order, fill: Fill) -> bool:
        """Apply one fill pushed by the broker; ``False`` if it was seen already."""
        return bool(self._apply_fills(order, (fill,)))

    def apply_notice(self, order: Order, notice: ExecutionNotice) -> Fill | None:
        """Apply one execution notice of ``order``; returns the new fill, or ``None`` when
        the execution is already recorded (a notice seen twice, or one a poll recorded).

        Matching: notices are counted per order by (time, quantity, price); a repeat is
        ignored. An execution is already recorded while the notices' total stays within
        the order's recorded filled quantity (a poll may have recorded several executions
        as one change); the part beyond it is a new fill at the notice's price, with the
        identity a poll would give it. A notice of an execution later than the last poll
        that raised the order's quantity (its ``HHMMSS`` after the poll's time) counts
        from the poll's quantity, so notices lost while the socket was down do not hide
        the ones after. "Later" means by more than :data:`NOTICE_AFTER_POLL_S` (120 s), so a
        clock of this machine behind the exchange's by up to that much never counts a
        polled execution twice; an execution within the margin is taken by the next poll.
        Raises ``StorageError`` as :meth:`apply_state`.
        """
        key = (notice.time.isoformat(), notice.qty, notice.price)
        seen = self._noticed.setdefault(order.client_order_id, [])
        if key in seen:
            return None
        polled = self._polled.get(order.client_order_id)
        after_poll = (
            polled[0] + timedelta(seconds=NOTICE_AFTER_POLL_S) if polled is not None else None
        )
        if polled is not None and after_poll is not None and notice.time > after_poll:
            after = sum(q for t, q, _ in seen if datetime.fromisoformat(t) > after_poll)
            noticed = polled[1] + after + notice.qty
        else:
            noticed = sum(q for _, q, _ in seen) + notice.qty
        if noticed <= order.filled_qty:
            seen.append(key)
            return None
        extra = min(noticed - order.filled_qty, order.remaining_qty)
        if extra <= 0:
            seen.append(key)
            return None
        part = dataclasses.replace(notice, qty=extra)
        fill = self.executor.fill_from_notice(part, order.filled_qty, order.client_order_id)
        new = self._apply_fills(order, (fill,))
        seen.append(key)
        return new[0] if new else None

    def book_fill(self, order: Order, fill: Fill) -> str:
        """Add ``fill`` to ``order``'s figures and status in memory (no journal); returns
        the history note. The fill handler calls it and then writes everything at once."""
        qty = fill.qty
        total = order.filled_qty + qty
        amount = order.filled_amount_krw + qty * fill.price
        order.filled_amount_krw = amount
        order.avg_fill_price = amount / total
        order.filled_qty = total
        order.commission_krw += fill.commission_krw
        order.tax_krw += fill.tax_krw
        order.updated_at = fill.time
        note = f"fill {qty} @ {fill.price}"
        if order.status in FINAL_STATUSES:  # a late fill of a cancelled order: stays final
            return f"late {note}"
        order.message = note
        if total == order.qty:
            order.status = OrderStatus.FILLED
            self._open.pop(order.client_order_id, None)
        else:
            order.status = OrderStatus.PARTIALLY_FILLED
        return note

    @staticmethod
    def snapshot(order: Order) -> tuple[Any, ...]:
        """What :meth:`book_fill` changes of ``order``, for :meth:`unbook`."""
        return _booked_of(order)

    def unbook(self, order: Order, before: tuple[Any, ...]) -> None:
        """Put ``order`` back as it was at ``before`` (:meth:`snapshot`, taken before
        :meth:`book_fill`) after its write failed."""
        for name, value in zip(_BOOKED, before, strict=True):
            setattr(order, name, value)
        if not order.status.is_final:
            self._open[order.client_order_id] = order

    def _apply_fills(self, order: Order, fills: Iterable[Fill]) -> list[Fill]:
        new: list[Fill] = []
        seen = self._seen_fills
        for fill in fills:
            if fill.fill_id in seen:
                continue
            if fill.qty <= 0 or fill.qty > order.qty - order.filled_qty:  # the remaining qty
                logger.error(
                    "refused fill %s of %s shares for %s (remaining %s)",
                    fill.fill_id,
                    fill.qty,
                    order.client_order_id,
                    order.remaining_qty,
                )
                self.journal.event(
                    OverfillRefused(
                        at=fill.time,
                        message=f"fill {fill.fill_id} of {fill.qty} for {order.client_order_id} "
                        f"with {order.remaining_qty} remaining",
                        level="error",
                        strategy=order.strategy,
                        code=order.stock_code,
                        client_order_id=order.client_order_id,
                        fill_id=fill.fill_id,
                        fill_qty=fill.qty,
                        remaining_qty=order.remaining_qty,
                    )
                )
                continue
            if self.fill_handler is not None:
                self.fill_handler(order, fill)  # raises StorageError: stays un-seen
            else:
                note = self.book_fill(order, fill)
                self.journal.order(order, note)
                self.journal.fill(order.strategy, fill)
            seen.add(fill.fill_id)
            new.append(fill)
        return new

    def cancel(self, order: Order) -> bool:
        """Ask the broker to cancel the unfilled rest; ``False`` if it refused (too late)."""
        if order.status.is_final or order.broker_order_id is None:
            return False
        try:
            self.executor.cancel_order(order.broker_order_id, order.stock_code, order.remaining_qty)
        except OrderRejectedError as exc:
            logger.info("cancel of %s refused: %s", order.client_order_id, exc)
            return False
        return True

    def _set_status(
        self, order: Order, status: OrderStatus, note: str, when: datetime | None = None
    ) -> None:
        changed = order.status is not status
        order.status = status
        order.message = note
        order.updated_at = when or self.clock()
        if status in FINAL_STATUSES:  # membership: is_final is a property call
            self._open.pop(order.client_order_id, None)
        if changed or status is OrderStatus.PARTIALLY_FILLED:
            self.journal.order(order, note)
