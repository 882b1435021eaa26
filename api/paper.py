"""``PaperBroker``: a simulated account for backtests and dry runs.

Implements :class:`~framework.broker.Broker` and :class:`~framework.executor.OrderExecutor`.

Fill rules (also in README.md):

* An order is never filled on the bar it was placed on. The next bar of its stock fills it.
* MARKET buy/sell: at that bar's open, moved ``slippage_ticks`` ticks against the trader.
* LIMIT buy: when the bar's low ≤ limit, at ``min(open, limit)``; LIMIT sell: when the bar's
  high ≥ limit, at ``max(open, limit)``. Limit prices off the tick grid of the stock's market
  on the order's date are rounded (buys down, sells up) when the order is accepted; prices of
  the bars are used as they are (split-adjusted history is not on the grid). Limit orders
  rest until filled or cancelled.
* Buying power is held as KIS holds it: a limit buy holds ``qty × limit`` plus commission, a
  market buy ``qty × upper-limit price`` (상한가 over the base price a quote gave, else over
  the last price, which in a backtest is the previous close; :mod:`utils.ticks`) plus
  commission, so a market buy is refused (``InsufficientFundsError``) when that exceeds the
  orderable cash even if the fill would fit; the difference comes back at the fill.
* A buy whose cost at the fill price exceeds the cash it may use is cut to the whole shares
  that cash affords; the unfilled rest is cancelled. Cash never goes negative.
* Commission on both sides and the sell-side transaction tax (by settlement date and market)
  are truncated to the won (:mod:`utils.fees`).
* A bar locked at the daily price limit (high = low at the limit from the previous close,
  ±30 % since 2015-06-15, ±15 % before) fills no buy at the upper limit and no sell at the
  lower limit: nobody sells into a locked limit-up, nobody buys a locked limit-down.
* Orders are day orders (as at KIS): :meth:`PaperBroker.expire_session` expires, at a
  session's close, every order still resting that the session's bars could have filled.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from framework.broker import Broker
from framework.errors import DataError, InsufficientFundsError, OrderRejectedError
from framework.executor import OrderExecutor, OrderState
from framework.types import (
    Balance,
    Fill,
    Holding,
    OrderRequest,
    OrderSide,
    OrderStatus,
    OrderType,
    Quote,
)
from utils.clock import system_now
from utils.fees import FeeModel
from utils.ticks import Direction, add_ticks, price_limit_pct, round_to_tick, upper_limit_price

_LIMIT_TOLERANCE = 0.99
"""A locked bar within 1 % of the computed limit counts (the limit is rounded to a tick)."""


@dataclass
class _PaperOrder:
    request: OrderRequest
    broker_order_id: str
    created_at: datetime
    limit_price: int | None
    status: OrderStatus = OrderStatus.SUBMITTED
    filled_qty: int = 0
    cancelled_qty: int = 0
    fills: list[Fill] = field(default_factory=list)
    message: str = ""
    session_day: date | None = None  # the session it rests in: the day of its first bar
    _state: tuple[tuple[OrderStatus, int, int], OrderState] | None = field(
        default=None, repr=False, compare=False
    )
    """The last :meth:`state` and what it was built from (a resting order is read on
    every bar of its stock and mostly has not changed)."""

    @property
    def remaining(self) -> int:
        return self.request.qty - self.cancelled_qty - self.filled_qty

    def state(self) -> OrderState:
        """``qty`` excludes partially cancelled shares; ``cancelled_qty`` counts them plus
        the remainder of an order closed as CANCELLED/EXPIRED."""
        # every change of an order changes its status, filled or cancelled shares (a fill
        # has at least one share): the same three give the same state
        key = (self.status, self.filled_qty, self.cancelled_qty)
        cached = self._state
        if cached is not None and cached[0] == key:
            return cached[1]
        req = self.request
        closed = self.status is OrderStatus.CANCELLED or self.status is OrderStatus.EXPIRED
        state = OrderState(  # positional (the field order of OrderState): hot path
            self.broker_order_id,
            self.status,
            req.qty - self.cancelled_qty,
            self.filled_qty,
            tuple(self.fills),
            req.client_order_id,
            req.stock_code,
            req.side,
            self.limit_price,
            self.created_at,
            self.cancelled_qty + (self.remaining if closed else 0),
        )
        self._state = (key, state)
        return state


class PaperBroker(Broker, OrderExecutor):
    """Simulated cash and holdings with KRX fees, tick rounding and optional slippage.

    Parameters
    ----------
    cash_krw:
        Starting cash in KRW (≥ 0).
    fees:
        :class:`~utils.fees.FeeModel` (default: 0.015 % commission, dated sell tax).
    slippage_ticks:
        Ticks by which market orders fill worse than the open (0 = at the open).
    clock:
        Returns the current tz-aware time (order timestamps).
    buying_power:
        Optional ``f(request) -> KRW``: the cash a buy may use when it fills (the engine
        passes its free cash plus the order's reservation). Default: all cash.
    id_prefix:
        Put after ``P`` / ``PF`` in every order and fill id (``P{prefix}000000001``). A
        backtest leaves it empty (ids repeat from run to run); a dry run that continues a
        book from the database passes a prefix unique to the process, so its ids never
        collide with the ids of an earlier process that are already stored.
    """

    def __init__(
        self,
        cash_krw: int,
        fees: FeeModel | None = None,
        slippage_ticks: int = 0,
        clock: Callable[[], datetime] = system_now,
        buying_power: Callable[[OrderRequest], int] | None = None,
        id_prefix: str = "",
    ):
        if cash_krw < 0:
            raise ValueError("starting cash must not be negative")
        if slippage_ticks < 0:
            raise ValueError("slippage_ticks must be ≥ 0")
        self.cash_krw = int(cash_krw)
        self.fees = fees or FeeModel()
        self.slippage_ticks = slippage_ticks
        self.clock = clock
        self.buying_power = buying_power
        self._holdings: dict[str, list[int]] = {}  # code -> [qty, cost_krw]
        self._last_price: dict[str, int] = {}
        self._base_price: dict[str, int] = {}
        self._orders: dict[str, _PaperOrder] = {}
        self._by_client: dict[str, str] = {}
        self._pending: dict[str, list[_PaperOrder]] = {}
        self._ids = itertools.count(1)
        self._fill_ids = itertools.count(1)
        self.id_prefix = id_prefix

    # --- Broker ------------------------------------------------------------------------
    def get_balance(self) -> Balance:
        return Balance(
            cash_krw=self.cash_krw,
            orderable_krw=self.orderable_krw(),
            holdings_value_krw=self.holdings_value_krw(),
        )

    def orderable_krw(self) -> int:
        """Cash not held by open buys (KRW): limit buys at their limit, market buys at the
        upper-limit price, commission included."""
        held = 0
        for orders in self._pending.values():
            for o in orders:
                if o.request.side is OrderSide.BUY:
                    held += self._held_for(o.request.stock_code, o.remaining, o.limit_price)
        return max(0, self.cash_krw - held)

    def _held_for(self, code: str, qty: int, limit: int | None) -> int:
        if limit is not None:
            price = limit
        else:
            base = self._base_price.get(code) or self._last_price.get(code)
            price = upper_limit_price(base, **self._rules(code)) if base else 0
        amount = qty * price
        return amount + self.fees.commission(amount)

    def _rules(self, code: str) -> dict[str, Any]:
        """Keyword arguments of :mod:`utils.ticks` for ``code`` today (date and market)."""
        return {"on": self.clock().date(), "market": self.fees.market(code)}

    def get_holdings(self) -> list[Holding]:
        return [
            Holding(code, qty, cost / qty, current_price=self._last_price.get(code))
            for code, (qty, cost) in sorted(self._holdings.items())
            if qty > 0
        ]

    def get_quote(self, stock_code: str) -> Quote:
        if stock_code not in self._last_price:
            raise DataError(f"no price seen yet for {stock_code}")
        return Quote(stock_code, self._last_price[stock_code], self.clock())

    def holdings_value_krw(self) -> int:
        """Holdings marked to the last seen price of each stock (KRW)."""
        return sum(qty * self._last_price.get(code, 0) for code, (qty, _) in self._holdings.items())

    def holding_qty(self, stock_code: str) -> int:
        h = self._holdings.get(stock_code)
        return h[0] if h else 0

    # --- OrderExecutor -------------------------------------------------------------------
    def submit_order(self, request: OrderRequest) -> str:
        """Accept an order; it fills on a later bar/quote. ``OrderRejectedError`` if invalid."""
        code = request.stock_code
        pending = self._pending.get(code)
        limit = None
        if request.order_type is OrderType.LIMIT:
            assert request.price is not None  # noqa: S101 - guaranteed by OrderRequest
            side: Direction = "down" if request.side is OrderSide.BUY else "up"
            limit = round_to_tick(request.price, side, **self._rules(code))
        if request.side is OrderSide.SELL:
            free_qty = self.holding_qty(code)
            if pending:
                free_qty -= sum(o.remaining for o in pending if o.request.side is OrderSide.SELL)
            if request.qty > free_qty:
                raise OrderRejectedError(
                    f"sell {request.qty} {code}: only {free_qty} shares free to sell"
                )
        elif limit is not None or code in self._last_price:
            need, orderable = self._held_for(code, request.qty, limit), self.orderable_krw()
            if need > orderable:
                at = f"@ {limit:,}" if limit is not None else "at market (held at the upper limit)"
                raise InsufficientFundsError(
                    f"buy {request.qty} {code} {at}: needs {need:,} KRW, "
                    f"orderable {orderable:,} KRW"
                )
        if request.client_order_id in self._by_client:
            raise OrderRejectedError(f"duplicate client order id {request.client_order_id}")
        # zero-padded by zfill: a third of the instructions of a ":09d" format spec
        broker_id = f"P{self.id_prefix}{str(next(self._ids)).zfill(9)}"
        order = _PaperOrder(request, broker_id, self.clock(), limit)
        self._orders[broker_id] = order
        self._by_client[request.client_order_id] = broker_id
        if pending is None:
            self._pending[code] = [order]
        else:
            pending.append(order)
        return broker_id

    def cancel_order(self, broker_order_id: str, stock_code: str, qty: int | None = None) -> None:
        order = self._orders.get(broker_order_id)
        if order is None:
            raise OrderRejectedError(f"unknown order {broker_order_id}")
        if order.status.is_final:
            raise OrderRejectedError(f"order {broker_order_id} is already {order.status.value}")
        if qty is not None and 0 < qty < order.remaining:  # partial cancel: the rest rests
            order.cancelled_qty += qty
            order.message = f"{qty} shares cancelled"
            return
        self._close(order, OrderStatus.CANCELLED, "cancelled")

    def get_order(self, broker_order_id: str) -> OrderState:
        try:
            return self._orders[broker_order_id].state()
        except KeyError:
            raise OrderRejectedError(f"unknown order {broker_order_id}") from None

    def fills_of(self, broker_order_id: str) -> tuple[OrderStatus, list[Fill]]:
        """The status of an order and every fill it had so far, in order: what
        :meth:`get_order` reports of them, without building the ``OrderState`` (the
        engine's poll of a paper order, once per fill). The list is the order's own: read
        it, never change it. ``OrderRejectedError`` for an unknown id."""
        order = self._orders.get(broker_order_id)
        if order is None:
            raise OrderRejectedError(f"unknown order {broker_order_id}")
        return order.status, order.fills

    def find_order(self, client_order_id: str) -> OrderState | None:
        broker_id = self._by_client.get(client_order_id)
        return None if broker_id is None else self._orders[broker_id].state()

    def list_orders(self, day: date | None = None, *, open_only: bool = False) -> list[OrderState]:
        """Orders accepted on ``day`` (default: the clock's today), in submit order; with
        ``open_only`` only those still resting."""
        day = day or self.clock().date()
        states = [o.state() for o in self._orders.values() if o.created_at.date() == day]
        return [s for s in states if s.status.is_open] if open_only else states

    def has_pending(self, stock_code: str) -> bool:
        return bool(self._pending.get(stock_code))

    # --- simulation ----------------------------------------------------------------------
    def seed(self, cash_krw: int, holdings: dict[str, tuple[int, int]]) -> None:
        """Start from a known account (a dry-run restarted from its book): ``cash_krw`` and
        code → (shares, cost in KRW). Raises ``ValueError`` for negative figures or when
        orders were already accepted."""
        if self._orders:
            raise ValueError("seed the paper account before any order")
        if cash_krw < 0 or any(q < 0 or c < 0 for q, c in holdings.values()):
            raise ValueError("cash, shares and costs must not be negative")
        self.cash_krw = int(cash_krw)
        self._holdings = {code: [int(q), int(c)] for code, (q, c) in holdings.items() if q > 0}

    def mark(self, stock_code: str, price: int, base_krw: int | None = None) -> None:
        """Record the latest price of a stock (used for quotes and holdings value) and, when
        known, today's base price (previous close) that market buys are held over."""
        self._last_price[stock_code] = price
        if base_krw:
            self._base_price[stock_code] = int(base_krw)

    def process_bar(
        self,
        stock_code: str,
        when: datetime,
        open_: int,
        high: int,
        low: int,
        close: int,
        *,
        limit_check: bool = True,
    ) -> list[Fill]:
        """Fill the stock's resting orders against one bar, then mark it to the close.

        Orders accepted before this bar fill according to the module's fill rules. Returns the
        fills in the order they happened.
        """
        fills: list[Fill] = []
        pending = self._pending.get(stock_code)
        if pending:
            # only a bar without a range can be locked (locked_side answers None otherwise)
            locked = (
                self.locked_side(stock_code, when, high, low)
                if limit_check and high == low
                else None
            )
            for order in list(pending):
                if order.created_at >= when:
                    continue
                if order.session_day is None:
                    order.session_day = when.date()
                if order.request.side is locked:
                    continue
                fill = self._try_fill(order, when, open_, high, low)
                if fill is not None:
                    fills.append(fill)
        self._last_price[stock_code] = close
        return fills

    def locked_side(
        self, stock_code: str, when: datetime, high: int, low: int
    ) -> OrderSide | None:
        """The side that cannot fill on a bar locked at the daily limit against the last
        price seen (call it before the bar is processed): BUY at limit-up, SELL at
        limit-down; ``None`` for a bar with a range or without a previous price."""
        prev = self._last_price.get(stock_code)
        if high != low or not prev:
            return None
        limit = price_limit_pct(when.date()) / 100.0
        if high >= prev * (1.0 + limit) * _LIMIT_TOLERANCE:
            return OrderSide.BUY
        if low <= prev * (1.0 - limit) / _LIMIT_TOLERANCE:
            return OrderSide.SELL
        return None

    def fill_at(self, broker_order_id: str, when: datetime, price: int) -> Fill | None:
        """Fill a resting market order now at ``price`` (KRW; a protective exit triggered
        inside the current bar, at its level or the open). Slippage applies as at an open.
        Returns the fill, or ``None`` when the order is not resting."""
        order = self._orders.get(broker_order_id)
        if order is None or order.status.is_final:
            return None
        if order.session_day is None:
            order.session_day = when.date()
        return self._try_fill(order, when, price, price, price)

    def expire_session(self, day: date) -> list[str]:
        """Expire the orders resting in the session of ``day`` (day orders end at its
        close); an order placed after the session's last bar rests into the next session.
        Returns the broker order ids expired."""
        expired = []
        for orders in list(self._pending.values()):
            for order in list(orders):
                if order.session_day is not None and order.session_day <= day:
                    self._close(order, OrderStatus.EXPIRED, f"day order expired at the {day} close")
                    expired.append(order.broker_order_id)
        return expired

    def process_quote(
        self, stock_code: str, when: datetime, price: int, base_krw: int | None = None
    ) -> list[Fill]:
        """Dry-run: fill resting orders against a live price, as a one-price bar;
        ``base_krw`` is the quote's base price (previous close), when it has one."""
        if base_krw:
            self._base_price[stock_code] = int(base_krw)
        return self.process_bar(stock_code, when, price, price, price, price, limit_check=False)

    def _fill_price(self, order: _PaperOrder, open_: int, high: int, low: int) -> int | None:
        side = order.request.side
        if order.limit_price is None:
            if not self.slippage_ticks:
                return open_
            ticks = self.slippage_ticks if side is OrderSide.BUY else -self.slippage_ticks
            return max(1, add_ticks(open_, ticks, **self._rules(order.request.stock_code)))
        if side is OrderSide.BUY:
            return min(open_, order.limit_price) if low <= order.limit_price else None
        return max(open_, order.limit_price) if high >= order.limit_price else None

    def _try_fill(
        self, order: _PaperOrder, when: datetime, open_: int, high: int, low: int
    ) -> Fill | None:
        if order.limit_price is None and not self.slippage_ticks:
            price: int | None = open_  # a market order at the open (_fill_price, inline)
        else:
            price = self._fill_price(order, open_, high, low)
        if price is None:
            return None
        req = order.request
        wanted = qty = order.remaining
        commission = tax = 0
        if req.side is OrderSide.BUY:
            cash = (
                self.cash_krw
                if self.buying_power is None
                else min(self.cash_krw, self.buying_power(req))
            )
            amount = qty * price
            commission = self.fees.commission(amount) if amount > 0 else 0
            # max_affordable_qty only when the whole order does not fit (or nothing could)
            if qty <= 0 or price <= 0 or amount + commission > cash:
                qty = min(qty, self.fees.max_affordable_qty(cash, price))
                if qty <= 0:
                    self._close(order, OrderStatus.CANCELLED, f"not enough cash at {price:,} KRW")
                    return None
                amount = qty * price
                commission = self.fees.commission(amount)
            self.cash_krw -= amount + commission
            h = self._holdings.setdefault(req.stock_code, [0, 0])
            h[0] += qty
            h[1] += amount
        else:
            h = self._holdings[req.stock_code]
            amount = qty * price
            commission = self.fees.commission(amount)
            tax = self.fees.sell_tax(amount, when.date(), req.stock_code)
            cost_out = h[1] * qty // h[0] if qty < h[0] else h[1]
            h[0] -= qty
            h[1] -= cost_out
            if h[0] == 0:
                del self._holdings[req.stock_code]
            self.cash_krw += amount - commission - tax
        if self.cash_krw < 0:  # impossible by construction; guard the invariant loudly
            raise RuntimeError(f"paper cash went negative: {self.cash_krw}")
        fill = Fill(  # positional (the field order of Fill): once per fill
            f"PF{self.id_prefix}{str(next(self._fill_ids)).zfill(9)}",  # fill_id
            req.client_order_id,
            req.stock_code,
            req.side,
            qty,
            price,
            when,  # time
            commission,  # commission_krw
            tax,  # tax_krw
            order.broker_order_id,
        )
        order.fills.append(fill)
        order.filled_qty += qty
        if qty == wanted:  # nothing left (remaining, without a second call)
            self._close(order, OrderStatus.FILLED, "filled")
        else:
            self._close(order, OrderStatus.CANCELLED, f"cut to {order.filled_qty} shares by cash")
        return fill

    def _close(self, order: _PaperOrder, status: OrderStatus, message: str) -> None:
        order.status = status
        order.message = message
        code = order.request.stock_code
        pending = self._pending.get(code)
        if not pending:
            return
        if len(pending) == 1 and pending[0] is order:  # the stock's only resting order
            del self._pending[code]
        elif order in pending:
            pending.remove(order)
            if not pending:
                del self._pending[code]
