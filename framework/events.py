"""Typed engine events and the bus that hands them to subscribers.

Everything the engine reports (orders, fills, protective exits, strategy failures, risk
state, reconciliation, account sync, broker reachability, the daily report …) is one frozen
dataclass below, published on an :class:`EventBus`. Subscribers (the journal, Telegram, a
dashboard) receive every event and pick what they want by type::

    bus = EventBus()
    bus.subscribe(journal_writer)                       # fast, in order, same thread
    alerts = QueuedSubscriber(telegram.on_event, name="telegram")
    bus.subscribe(alerts)                               # does I/O: runs on its own thread

    def on_event(event: Event) -> None:
        match event:
            case OrderFilled(qty=qty, price=price):
                ...
            case StrategyError(hook=hook, error=error):
                ...

Common fields (:class:`Event`): ``at`` (tz-aware, Asia/Seoul), ``message`` (one human
line, English), ``level`` (``debug`` … ``critical``), ``strategy`` and ``code`` (stock code)
where the event concerns one. ``Event.kind`` is the stable name an event is stored under in
the database (``events.kind``); :meth:`Event.data` gives the type-specific fields as a
JSON-able dict (enums as their values, dates in ISO form).

Money is KRW (``int``), quantities are shares (``int``), prices are KRW per share.

Delivery rules: a subscriber that raises is logged and never breaks trading (nor the other
subscribers); a subscriber that does I/O is wrapped in :class:`QueuedSubscriber`, so a slow
network never blocks the engine (when its queue is full the newest events are dropped and
counted).
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import queue
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:
    from framework.types import Order, OrderSide, OrderType

logger = logging.getLogger(__name__)

_Date = date  # the type; ``DailyReport.date`` is also a field name

Level = Literal["debug", "info", "warning", "error", "critical"]
"""Severity of an event (as :mod:`logging` levels, lower case)."""

_BASE_FIELDS = frozenset({"at", "message", "level", "strategy", "code"})


def _plain(value: Any) -> Any:
    """``value`` as JSON-able data: enums by value, dates ISO, tuples and mappings walked."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True, kw_only=True, slots=True)
class Event:
    """Base of every engine event.

    Attributes
    ----------
    at:
        When it happened (tz-aware, Asia/Seoul; the engine's clock, so the bar time in a
        backtest). A naive datetime raises ``ValueError``.
    message:
        One human-readable line (English) for logs and the journal.
    level:
        ``debug``, ``info``, ``warning``, ``error`` or ``critical``.
    strategy:
        Name of the strategy concerned, if any.
    code:
        Stock code concerned (6 digits), if any.
    """

    kind: ClassVar[str] = "event"
    """Stable name under which the event is stored (``events.kind`` column)."""
    journaled: ClassVar[bool] = True
    """Whether the journal writes it to the events table (order lifecycle events are not:
    the orders and fills tables hold them)."""

    at: datetime
    message: str
    level: Level = "info"
    strategy: str | None = None
    code: str | None = None

    def __post_init__(self) -> None:
        if self.at.tzinfo is None:
            raise ValueError(f"{type(self).__name__}.at must be tz-aware, got {self.at!r}")

    def data(self) -> dict[str, Any]:
        """The type-specific fields plus ``strategy`` and ``code`` when set, JSON-able."""
        out: dict[str, Any] = {}
        if self.strategy is not None:
            out["strategy"] = self.strategy
        if self.code is not None:
            out["code"] = self.code
        for f in dataclasses.fields(self):
            if f.name not in _BASE_FIELDS:
                out[f.name] = _plain(getattr(self, f.name))
        return out


# --- orders ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class OrderEvent(Event):
    """An order changed. ``qty`` is the order's size (shares), ``price`` its limit price
    (KRW, ``None`` for a market order), ``attempt`` 0 for the first placement and n for the
    n-th re-placement after a timeout, ``name`` the stock's name when known."""

    kind: ClassVar[str] = "order"
    journaled: ClassVar[bool] = False

    client_order_id: str
    side: OrderSide
    order_type: OrderType
    qty: int
    price: int | None = None
    reasons: tuple[str, ...] = ()
    attempt: int = 0
    name: str | None = None

    @staticmethod
    def fields_of(order: Order, name: str | None = None) -> dict[str, Any]:
        """Keyword arguments of the common order fields taken from ``order``."""
        return {
            "strategy": order.strategy,
            "code": order.stock_code,
            "client_order_id": order.client_order_id,
            "side": order.side,
            "order_type": order.order_type,
            "qty": order.qty,
            "price": order.price,
            "reasons": tuple(order.reasons),
            "attempt": order.attempt,
            "name": name,
        }


@dataclass(frozen=True, kw_only=True, slots=True)
class OrderSubmitted(OrderEvent):
    """The broker accepted the order (it rests, or filled at once)."""

    kind: ClassVar[str] = "order_sent"


@dataclass(frozen=True, kw_only=True, slots=True)
class OrderRejected(OrderEvent):
    """The broker refused the order; ``reason`` is its message."""

    kind: ClassVar[str] = "order_rejected"

    reason: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class OrderFilled(OrderEvent):
    """One fill of the order was booked.

    ``fill_qty`` shares at ``fill_price`` KRW; ``amount_krw`` = fill_qty × fill_price;
    ``commission_krw`` and ``tax_krw`` as the broker charged them; ``realized_pnl_krw`` the
    profit of the round trip this sell closed (``None`` for a buy or a partial close)."""

    kind: ClassVar[str] = "order_filled"

    fill_qty: int
    fill_price: int
    amount_krw: int
    commission_krw: int = 0
    tax_krw: int = 0
    realized_pnl_krw: int | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class OrderCancelled(OrderEvent):
    """The order ended cancelled or expired with ``unfilled_qty`` shares never filled
    (``filled_qty`` were); ``reason`` is ``timeout`` when the engine cancelled it for
    resting too long, else the broker's message."""

    kind: ClassVar[str] = "order_cancelled"

    unfilled_qty: int
    filled_qty: int = 0
    reason: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class OrderTimedOut(Event):
    """An order rested longer than the policy allows: its cancel was sent (the re-placement
    follows when the cancel is confirmed)."""

    kind: ClassVar[str] = "order_timeout"

    client_order_id: str
    attempt: int
    unfilled_qty: int
    timeout_s: float


@dataclass(frozen=True, kw_only=True, slots=True)
class OrderNotReplaced(Event):
    """A timed-out order is not placed again; ``reason`` says why."""

    kind: ClassVar[str] = "order_not_replaced"

    client_order_id: str
    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class OrderPollFailed(Event):
    """Reading an order's state at the broker failed (retried on the next poll)."""

    kind: ClassVar[str] = "order_poll_failed"

    client_order_id: str
    error: str


@dataclass(frozen=True, kw_only=True, slots=True)
class OverfillRefused(Event):
    """A fill larger than the order's remaining quantity was refused (nothing booked)."""

    kind: ClassVar[str] = "overfill_refused"

    client_order_id: str
    fill_id: str
    fill_qty: int
    remaining_qty: int


# --- risk -----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class ProtectiveExit(Event):
    """A protective exit sells a whole position at market: ``rule`` is ``stop_loss``,
    ``take_profit``, ``trailing_stop``, ``time_cut``, ``portfolio_stop`` …; ``price`` the
    price that triggered it and ``trigger_price`` the rule's level (KRW)."""

    kind: ClassVar[str] = "risk_exit"

    rule: str
    price: float | None = None
    trigger_price: float | None = None
    name: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class RiskLimitHit(Event):
    """An account-wide limit was reached at equity ``equity_krw``: ``rule`` is
    ``daily_loss_lock`` (no new buys today) or ``portfolio_stop`` (sell all, halt)."""

    kind: ClassVar[str] = "risk_limit"

    rule: str
    equity_krw: int


@dataclass(frozen=True, kw_only=True, slots=True)
class RiskRejected(Event):
    """A strategy's signal was refused before any order (risk rule, funds, size 0);
    published at ``debug`` level."""

    kind: ClassVar[str] = "risk_rejected"

    signal_type: str
    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class RiskStateChanged(Event):
    """Trading state changed to ``state`` (``active``, ``reduce_only``, ``halted``);
    ``by`` says who or what changed it."""

    kind: ClassVar[str] = "state_changed"

    state: str
    by: str = ""


# --- strategies -----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class StrategyError(Event):
    """A strategy hook raised or returned something unusable; ``hook`` is its name."""

    kind: ClassVar[str] = "strategy_error"

    hook: str
    error: str
    where: str = ""
    """Where in the strategy's code it failed (``file:line``), if known."""


@dataclass(frozen=True, kw_only=True, slots=True)
class StrategyIsolated(Event):
    """A strategy failed ``errors`` times in a row and is called no more (its positions stay
    and are still marked and protected)."""

    kind: ClassVar[str] = "strategy_isolated"

    errors: int
    hook: str = ""
    error: str = ""
    """The last failure (``Type: message``)."""
    where: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class StrategyDisabled(Event):
    """A strategy was switched off (``on_init`` returned False, or by an operator)."""

    kind: ClassVar[str] = "strategy_disabled"

    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class StrategyEnabled(Event):
    """A switched-off strategy was switched on again by an operator."""

    kind: ClassVar[str] = "strategy_enabled"

    by: str = ""


# --- account and reconciliation -------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class ReconcileDifference(Event):
    """One finding of reconciliation: ``change`` is ``matched``, ``adopted``,
    ``closed_outside``, ``qty_adjusted``, ``order_resolved`` or ``rebuilt``; quantities in
    shares."""

    kind: ClassVar[str] = "reconcile_difference"

    change: str
    db_qty: int | None = None
    account_qty: int | None = None
    detail: str = ""
    name: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Reconciled(Event):
    """The book was restored from the database and compared with the account.
    ``differences`` holds each finding as a mapping (keys as :class:`ReconcileDifference`,
    with ``kind`` for its ``change``)."""

    kind: ClassVar[str] = "reconcile"

    ok: bool
    error: str | None
    positions_restored: int
    orders_restored: int
    fills_applied: int
    cash_krw: int
    differences: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class CashSynced(Event):
    """The engine's cash was set to the account's ``account_cash_krw``; ``drift_krw`` is
    account minus book before the change."""

    kind: ClassVar[str] = "cash_synced"

    account_cash_krw: int
    drift_krw: int


@dataclass(frozen=True, kw_only=True, slots=True)
class AccountMismatch(Event):
    """The book and the account disagree about a holding (shares)."""

    kind: ClassVar[str] = "account_mismatch"

    book_qty: int
    account_qty: int


# --- infrastructure -------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class BrokerUnreachable(Event):
    """The broker cannot be reached; jobs are retried with back-off."""

    kind: ClassVar[str] = "broker_unreachable"

    job: str
    error: str


@dataclass(frozen=True, kw_only=True, slots=True)
class BrokerRecovered(Event):
    """The broker answers again after ``failures`` failed jobs."""

    kind: ClassVar[str] = "broker_recovered"

    failures: int


@dataclass(frozen=True, kw_only=True, slots=True)
class CircuitBreakerChanged(Event):
    """The broker client's circuit breaker went from ``old_state`` to ``new_state``
    (``closed``, ``open``, ``half_open``)."""

    kind: ClassVar[str] = "circuit_breaker"

    old_state: str
    new_state: str


@dataclass(frozen=True, kw_only=True, slots=True)
class StorageFailed(Event):
    """The database cannot be written: no new orders until it can (published once)."""

    kind: ClassVar[str] = "storage_error"
    journaled: ClassVar[bool] = False

    error: str


@dataclass(frozen=True, kw_only=True, slots=True)
class StorageRecovered(Event):
    """The database can be written again."""

    kind: ClassVar[str] = "storage_recovered"


@dataclass(frozen=True, kw_only=True, slots=True)
class BadQuote(Event):
    """A quote was unusable and ignored."""

    kind: ClassVar[str] = "bad_quote"


@dataclass(frozen=True, kw_only=True, slots=True)
class DataMissing(Event):
    """Bars could not be had for a stock (it is skipped)."""

    kind: ClassVar[str] = "data_missing"


@dataclass(frozen=True, kw_only=True, slots=True)
class JobFailed(Event):
    """A scheduled job failed (``level`` is ``error`` when it needs attention)."""

    kind: ClassVar[str] = "job_failed"

    job: str
    error: str


@dataclass(frozen=True, kw_only=True, slots=True)
class UniverseNote(Event):
    """Something about a strategy's universe of the day: a screen that failed, came back
    empty or named a bad code, or a real-account screen on the virtual account."""

    kind: ClassVar[str] = "universe"


@dataclass(frozen=True, kw_only=True, slots=True)
class RealtimeChanged(Event):
    """The KIS WebSocket came up (``live``: ``ws_symbols`` by ticks, ``rest_symbols`` on
    REST polling) or went down (prices and fills over REST until it is back)."""

    kind: ClassVar[str] = "realtime"

    live: bool
    ws_symbols: int = 0
    rest_symbols: int = 0


@dataclass(frozen=True, kw_only=True, slots=True)
class EngineWarning(Event):
    """Anything else worth a line in the journal."""

    kind: ClassVar[str] = "warning"


# --- sessions -------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionStarted(Event):
    """A live or dry-run session started: ``mode`` (``live``, ``dry-run``), ``env``
    (``real``, ``virtual``) and the strategies running."""

    kind: ClassVar[str] = "session_started"

    mode: str
    env: str
    strategies: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionStopped(Event):
    """The session stopped for ``reason``."""

    kind: ClassVar[str] = "session_stopped"

    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class DailyReport(Event):
    """The figures of one trading day: equity and cash (KRW), P&L against the day's start
    (KRW and %), orders placed (``trades``), fills, and the positions held at the close
    (one mapping each)."""

    kind: ClassVar[str] = "daily_report"

    date: _Date
    equity_krw: int
    cash_krw: int
    pnl_krw: int
    pnl_pct: float
    trades: int
    fills: int
    positions: tuple[Mapping[str, Any], ...] = ()


EVENT_TYPES: tuple[type[Event], ...] = (
    OrderSubmitted,
    OrderRejected,
    OrderFilled,
    OrderCancelled,
    OrderTimedOut,
    OrderNotReplaced,
    OrderPollFailed,
    OverfillRefused,
    ProtectiveExit,
    RiskLimitHit,
    RiskRejected,
    RiskStateChanged,
    StrategyError,
    StrategyIsolated,
    StrategyDisabled,
    StrategyEnabled,
    ReconcileDifference,
    Reconciled,
    CashSynced,
    AccountMismatch,
    BrokerUnreachable,
    BrokerRecovered,
    CircuitBreakerChanged,
    StorageFailed,
    StorageRecovered,
    BadQuote,
    DataMissing,
    JobFailed,
    EngineWarning,
    SessionStarted,
    SessionStopped,
    DailyReport,
)
"""Every concrete event type (each with its own ``kind``)."""


# --- delivery -------------------------------------------------------------------------------

Subscriber = Callable[[Event], None]
"""Receives every published event; must return quickly (wrap I/O in :class:`QueuedSubscriber`)."""


class EventBus:
    """Hands every published event to every subscriber, in subscription order.

    ``publish`` never raises because of a subscriber: a failing subscriber is logged (with
    the event's kind) and the others still get the event. Safe to use from several threads;
    a subscriber may publish in turn (delivered at once, depth first).
    """

    def __init__(self, subscribers: Iterable[Subscriber] = ()):
        self._lock = threading.Lock()
        self._subscribers: tuple[Subscriber, ...] = tuple(subscribers)

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Add ``subscriber``; returns a function that removes it again."""
        with self._lock:
            self._subscribers = (*self._subscribers, subscriber)

        def unsubscribe() -> None:
            with self._lock:
                subs = list(self._subscribers)
                if subscriber in subs:
                    subs.remove(subscriber)
                self._subscribers = tuple(subs)

        return unsubscribe

    @property
    def subscribers(self) -> tuple[Subscriber, ...]:
        return self._subscribers

    def publish(self, event: Event) -> None:
        """Deliver ``event`` to every subscriber; never raises for a subscriber's failure."""
        for subscriber in self._subscribers:
            try:
                subscriber(event)
            except Exception:  # a subscriber must never break trading
                logger.exception("event subscriber %r failed for %s", subscriber, event.kind)


@dataclass
class QueuedSubscriber:
    """Runs a slow subscriber (network, disk) on its own thread behind a bounded queue.

    Calling it only queues the event (never blocks); when ``max_queue`` events wait, the
    new one is dropped and counted in :attr:`dropped` (logged once per overflow). Failures of
    ``subscriber`` are logged. The thread starts on the first event (or :meth:`start`);
    :meth:`close` delivers what is queued, waiting at most ``timeout_s`` seconds.
    """

    subscriber: Subscriber
    name: str = "events"
    max_queue: int = 10_000
    dropped: int = 0
    delivered: int = 0
    _queue: queue.Queue[Event | None] = field(init=False, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _closed: bool = field(default=False, init=False, repr=False)
    _overflowing: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_queue < 1:
            raise ValueError(f"max_queue must be at least 1, got {self.max_queue}")
        self._queue = queue.Queue(self.max_queue)

    def start(self) -> None:
        """Start the delivery thread (idempotent)."""
        with self._lock:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(
                    target=self._run, name=f"{self.name}-events", daemon=True
                )
                self._thread.start()

    def __call__(self, event: Event) -> None:
        if self._closed:
            self.dropped += 1
            return
        if self._thread is None:
            self.start()
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1
            if not self._overflowing:
                self._overflowing = True
                logger.warning(
                    "%s: %d events waiting; dropping new ones", self.name, self.max_queue
                )
        else:
            self._overflowing = False

    def pending(self) -> int:
        """Events queued and not delivered yet."""
        return self._queue.qsize()

    def close(self, timeout_s: float = 5.0) -> None:
        """Deliver the queued events (for at most ``timeout_s`` seconds) and stop the thread.
        Idempotent; events arriving afterwards are dropped."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        if thread is None:
            return
        try:
            self._queue.put(None, timeout=max(0.0, timeout_s))
        except queue.Full:
            logger.warning("%s: queue still full at close", self.name)
            return
        thread.join(max(0.0, timeout_s))
        if thread.is_alive():
            logger.warning("%s: events not delivered within %.1f s", self.name, timeout_s)

    def _run(self) -> None:
        while True:
            event = self._queue.get()
            if event is None:
                return
            try:
                self.subscriber(event)
            except Exception:
                logger.exception("%s failed for %s", self.name, event.kind)
            else:
                self.delivered += 1
