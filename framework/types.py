"""Domain types shared by strategies, the engine and the broker adapters.

Money is in KRW as ``int``; quantities are whole shares as ``int``; rates are fractions
(``0.00015`` = 0.015 %). Datetimes are tz-aware ``Asia/Seoul``. Stock codes are 6-character
KRX codes as ``str`` (``"005930"``).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

INTERFACE_VERSION = 2
"""Version of the strategy API; raised when a hook's signature or context changes."""


def validate_code(code: object) -> str:
    """Return ``code`` if it is a 6-character KRX stock code, else raise ``ValueError``.

    KRX codes are six characters, digits for ordinary shares (``"005930"``); some newer
    issues carry a letter (``"0001A0"``), so letters are allowed but not other symbols.
    """
    if not isinstance(code, str) or len(code) != 6 or not code.isalnum():
        raise ValueError(
            f"stock code must be a 6-character KRX code such as '005930', got {code!r}"
        )
    return code


class SignalType(enum.Enum):
    """What a strategy wants done.

    ``STRONG_BUY`` sizes up to 150 % of the per-symbol limit and goes as a market order;
    ``BUY`` uses the normal size; ``HOLD`` records "judged, no action"; ``SELL`` exits the
    whole position; ``STRONG_SELL`` exits at market at once (urgent alert).
    """

    STRONG_BUY = "strong_buy"
    BUY = "buy"
    HOLD = "hold"
    SELL = "sell"
    STRONG_SELL = "strong_sell"

    @property
    def is_buy(self) -> bool:
        return self in (SignalType.BUY, SignalType.STRONG_BUY)

    @property
    def is_sell(self) -> bool:
        return self in (SignalType.SELL, SignalType.STRONG_SELL)


_NO_METADATA: Mapping[str, Any] = MappingProxyType({})
"""The read-only empty metadata of every signal that carries none (nothing can write it)."""


def _frozen_setters(cls: type) -> tuple[Callable[[Any, Any], None], ...]:
    """The slot setters of a frozen slots dataclass, in field order.

    A frozen instance cannot assign its fields; its generated ``__init__`` goes past that
    with ``object.__setattr__`` per field, which costs about twice a slot's own setter. A
    signal, position view, request or fill (one or more per order) sets its fields
    through these.
    """
    return tuple(getattr(cls, f.name).__set__ for f in dataclasses.fields(cls))


@dataclass(frozen=True, slots=True, init=False)
class Signal:
    """A strategy's decision for one stock at one moment.

    Parameters
    ----------
    signal_type:
        See :class:`SignalType`.
    stock_code:
        6-character KRX code.
    confidence:
        0–100; scales the buy size (see ``core.fund_manager``). ``ValueError`` outside.
    target_price, stop_loss:
        Optional take-profit and stop-loss prices in KRW, stored with the position.
    reasons:
        Human readable reasons, shown in alerts and stored with the order and position.
    metadata:
        Indicator values and anything else worth keeping (JSON-serialisable values);
        kept as a read-only copy (``None``: none).
    qty:
        Optional explicit quantity in shares (sells: part of the position; buys: overrides
        the sizing, still capped by free cash). ``None`` = let the engine size it.
    limit_price:
        Optional limit price in KRW; ``None`` sends a market order.
    """

    signal_type: SignalType
    stock_code: str
    confidence: float = 0.0
    target_price: float | None = None
    stop_loss: float | None = None
    reasons: Sequence[str] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)
    qty: int | None = None
    limit_price: int | None = None

    def __init__(
        self,
        signal_type: SignalType,
        stock_code: str,
        confidence: float = 0.0,
        target_price: float | None = None,
        stop_loss: float | None = None,
        reasons: Sequence[str] = (),
        metadata: Mapping[str, Any] | None = None,
        qty: int | None = None,
        limit_price: int | None = None,
    ) -> None:
        # written by hand (the dataclass's __init__ and __post_init__ set three fields twice):
        # one signal per order; a plain 6-character str code, a float confidence and no
        # metadata (the common case) take the short checks, anything else the full ones.
        # ``metadata=None`` is no metadata, as the default.
        if not isinstance(signal_type, SignalType):
            raise ValueError(f"signal_type must be a SignalType, got {signal_type!r}")
        if not (type(stock_code) is str and len(stock_code) == 6 and stock_code.isalnum()):
            validate_code(stock_code)
        conf = confidence if type(confidence) is float else float(confidence)
        if not 0.0 <= conf <= 100.0:
            raise ValueError(f"confidence must be within 0..100, got {confidence!r}")
        if qty is not None and (not isinstance(qty, int) or qty <= 0):
            raise ValueError(f"qty must be a positive whole number of shares, got {qty!r}")
        if limit_price is not None and (not isinstance(limit_price, int) or limit_price <= 0):
            raise ValueError(f"limit_price must be a positive KRW integer, got {limit_price!r}")
        # frozen: the fields are set once, here, through their slots (_frozen_setters)
        (
            put_type,
            put_code,
            put_conf,
            put_target,
            put_stop,
            put_reasons,
            put_meta,
            put_qty,
            put_limit,
        ) = _SIGNAL_SETTERS
        put_type(self, signal_type)
        put_code(self, stock_code)
        put_conf(self, conf)
        put_target(self, target_price)
        put_stop(self, stop_loss)
        put_reasons(self, tuple(map(str, reasons)))
        put_meta(
            self,
            _NO_METADATA
            if metadata is None or (type(metadata) is dict and not metadata)
            else MappingProxyType(dict(metadata)),
        )
        put_qty(self, qty)
        put_limit(self, limit_price)


_SIGNAL_SETTERS = _frozen_setters(Signal)


class OrderSide(enum.Enum):
    BUY = "buy"
    SELL = "sell"


class OrderType(enum.Enum):
    MARKET = "market"
    LIMIT = "limit"


class OrderStatus(enum.Enum):
    """Life of an order. Final states: FILLED, CANCELLED, REJECTED, EXPIRED.

    ``PENDING_NEW`` is written to the database before the order is sent; ``UNKNOWN`` means a
    submit failed ambiguously and must be resolved by looking the order up.
    """

    PENDING_NEW = "pending_new"
    SUBMITTED = "submitted"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    EXPIRED = "expired"
    UNKNOWN = "unknown"

    # members are singletons compared by identity: an identity hash is C-level, where
    # Enum's hash(name) is a Python call on every `status in {...}` (several per fill)
    __hash__ = object.__hash__

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES

    @property
    def is_open(self) -> bool:
        return self in (OrderStatus.SUBMITTED, OrderStatus.PARTIALLY_FILLED)


FINAL_STATUSES = frozenset(
    {OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED, OrderStatus.EXPIRED}
)
"""The statuses after which an order never changes again (``status in FINAL_STATUSES`` is
:attr:`OrderStatus.is_final` without the property call, for hot paths)."""


@dataclass(frozen=True, slots=True, init=False)
class OrderRequest:
    """What is sent to an :class:`~framework.executor.OrderExecutor`.

    ``price`` is the limit price in KRW (a valid tick) for LIMIT orders and ``None`` for
    MARKET orders. ``qty`` is in shares (> 0).
    """

    client_order_id: str
    stock_code: str
    side: OrderSide
    order_type: OrderType
    qty: int
    price: int | None = None

    def __init__(
        self,
        client_order_id: str,
        stock_code: str,
        side: OrderSide,
        order_type: OrderType,
        qty: int,
        price: int | None = None,
    ) -> None:
        # written by hand (one request per order sent): the checks first, then each field
        # set once through its slot (_frozen_setters)
        if not (type(stock_code) is str and len(stock_code) == 6 and stock_code.isalnum()):
            validate_code(stock_code)
        if not isinstance(qty, int) or qty <= 0:
            raise ValueError(f"qty must be a positive int, got {qty!r}")
        if order_type is OrderType.LIMIT and (price is None or price <= 0):
            raise ValueError("a LIMIT order needs a positive price")
        if order_type is OrderType.MARKET and price is not None:
            raise ValueError("a MARKET order carries no price")
        put_cid, put_code, put_side, put_type, put_qty, put_price = _REQUEST_SETTERS
        put_cid(self, client_order_id)
        put_code(self, stock_code)
        put_side(self, side)
        put_type(self, order_type)
        put_qty(self, qty)
        put_price(self, price)


_REQUEST_SETTERS = _frozen_setters(OrderRequest)


@dataclass(slots=True)
class Order:
    """An order as the engine tracks it (mutable; strategies receive copies).

    ``avg_fill_price`` is the quantity-weighted mean of fill prices (KRW, float because a mean
    of integer prices is not an integer). ``commission_krw`` and ``tax_krw`` sum over fills.
    """

    client_order_id: str
    strategy: str
    stock_code: str
    side: OrderSide
    order_type: OrderType
    qty: int
    price: int | None
    status: OrderStatus = OrderStatus.PENDING_NEW
    filled_qty: int = 0
    avg_fill_price: float = 0.0
    filled_amount_krw: int = 0
    commission_krw: int = 0
    tax_krw: int = 0
    broker_order_id: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    reasons: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)
    signal_type: SignalType | None = None
    message: str = ""
    replaces: str | None = None
    """Client order id of the timed-out order this one re-places (``None``: an original)."""
    attempt: int = 0
    """0 for an original order, n for its n-th re-placement after a timeout."""

    @property
    def remaining_qty(self) -> int:
        return self.qty - self.filled_qty

    def copy(self) -> Order:
        """A detached copy, safe to hand to strategy code."""
        # positional construction: several times cheaper than dataclasses.replace (hot path)
        copied = Order(*[getattr(self, name) for name in _ORDER_FIELDS])
        copied.metadata = dict(self.metadata)
        return copied

    def to_request(self) -> OrderRequest:
        # positional, in OrderRequest's field order (once per order sent)
        return OrderRequest(
            self.client_order_id,
            self.stock_code,
            self.side,
            self.order_type,
            self.qty,
            self.price,
        )


_ORDER_FIELDS = tuple(f.name for f in dataclasses.fields(Order))


@dataclass(frozen=True, slots=True, init=False)
class Fill:
    """One execution. ``price`` in KRW, ``qty`` in shares, fees in KRW (already truncated).

    ``fill_id`` is unique per execution; applying the same fill twice changes nothing.
    """

    fill_id: str
    client_order_id: str
    stock_code: str
    side: OrderSide
    qty: int
    price: int
    time: datetime
    commission_krw: int = 0
    tax_krw: int = 0
    broker_order_id: str | None = None

    def __init__(
        self,
        fill_id: str,
        client_order_id: str,
        stock_code: str,
        side: OrderSide,
        qty: int,
        price: int,
        time: datetime,
        commission_krw: int = 0,
        tax_krw: int = 0,
        broker_order_id: str | None = None,
    ) -> None:
        # written by hand (one fill per execution): each field set once through its slot
        # (_frozen_setters)
        (
            put_id,
            put_cid,
            put_code,
            put_side,
            put_qty,
            put_price,
            put_time,
            put_commission,
            put_tax,
            put_broker_id,
        ) = _FILL_SETTERS
        put_id(self, fill_id)
        put_cid(self, client_order_id)
        put_code(self, stock_code)
        put_side(self, side)
        put_qty(self, qty)
        put_price(self, price)
        put_time(self, time)
        put_commission(self, commission_krw)
        put_tax(self, tax_krw)
        put_broker_id(self, broker_order_id)

    @property
    def amount_krw(self) -> int:
        return self.qty * self.price

    @property
    def cash_delta_krw(self) -> int:
        """Change of cash caused by this fill (negative for a buy)."""
        if self.side is OrderSide.BUY:
            return -(self.amount_krw + self.commission_krw)
        return self.amount_krw - self.commission_krw - self.tax_krw


_FILL_SETTERS = _frozen_setters(Fill)


@dataclass(frozen=True, slots=True)
class Holding:
    """Shares of one stock held in the account. ``avg_price`` in KRW per share."""

    stock_code: str
    qty: int
    avg_price: float
    name: str = ""
    current_price: int | None = None


@dataclass(frozen=True, slots=True)
class Balance:
    """Account cash position in KRW.

    ``cash_krw`` is the deposit once every trade so far settles (D+2); ``orderable_krw`` what
    can be spent on a new buy now (cash minus what open buy orders hold);
    ``holdings_value_krw`` the market value of the holdings; ``total_equity_krw`` cash plus
    holdings value.
    """

    cash_krw: int
    orderable_krw: int
    holdings_value_krw: int = 0

    @property
    def total_equity_krw(self) -> int:
        return self.cash_krw + self.holdings_value_krw


@dataclass(frozen=True, slots=True)
class Quote:
    """Latest price of one stock. Prices in KRW, ``volume`` in shares traded today."""

    stock_code: str
    price: int
    time: datetime
    open: int | None = None
    high: int | None = None
    low: int | None = None
    volume: int | None = None
    prev_close: int | None = None
    name: str | None = None
    """The stock's Korean name (``삼성전자``) when the source gives it."""


@dataclass(frozen=True, slots=True, init=False)
class PositionView:
    """Read-only view of a strategy's position in one stock, handed to strategy code.

    ``avg_price`` is the cost per share in KRW (fees excluded); ``opened_at`` the time of the
    first fill of the position. ``metadata=None`` is no metadata (an empty dict), as the
    default.
    """

    stock_code: str
    qty: int
    avg_price: float
    opened_at: datetime | None = None
    stop_loss: float | None = None
    target_price: float | None = None
    reasons: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __init__(
        self,
        stock_code: str,
        qty: int,
        avg_price: float,
        opened_at: datetime | None = None,
        stop_loss: float | None = None,
        target_price: float | None = None,
        reasons: tuple[str, ...] = (),
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        # written by hand, as Signal's: each field set once through its slot
        # (_frozen_setters); a view is built each time a strategy asks for a position
        put_code, put_qty, put_avg, put_opened, put_stop, put_target, put_reasons, put_meta = (
            _VIEW_SETTERS
        )
        put_code(self, stock_code)
        put_qty(self, qty)
        put_avg(self, avg_price)
        put_opened(self, opened_at)
        put_stop(self, stop_loss)
        put_target(self, target_price)
        put_reasons(self, reasons)
        put_meta(self, {} if metadata is None else metadata)

    def unrealized_pct(self, price: float) -> float:
        """Return of ``price`` over the average price, in percent."""
        if self.avg_price <= 0:
            return 0.0
        return (price / self.avg_price - 1.0) * 100.0


_VIEW_SETTERS = _frozen_setters(PositionView)
