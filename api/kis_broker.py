"""``KISBroker``: :class:`Broker` + :class:`DataProvider` + :class:`OrderExecutor` over KIS.

Construction: ``KISBroker(KISSettings.from_env())`` or ``KISBroker.from_env()``; tests pass
``transport=httpx.MockTransport(fake)`` or a ``KIS_BASE_URL`` pointing at a loopback fake,
and a shared fake ``clock``.

Orders are never retried. When :meth:`KISBroker.submit_order` raises
``UnknownOrderOutcomeError``, call :meth:`KISBroker.find_order` with the same client order
id before sending anything else. **Matching rule** (KIS has no client order id field): among
the day's orders from ``inquire-daily-ccld`` (cancel confirmations excluded), the order with
the same code, side, quantity and limit price (``0`` for market orders), an order time
(``ord_tmd``, whole seconds) no earlier than 5 s before the submit started and no later
than 10 min after it, and an order number not already claimed by another client order id
known to this broker. The earliest such order wins. ``None`` means KIS has no such order:
it is then safe to submit again (after the answer could no longer be in flight). The
attempts are kept in memory only; after a restart use :meth:`list_orders` and reconcile.

Fills: KIS reports cumulative quantities per order (``tot_ccld_qty``/``tot_ccld_amt``), not
executions. Each increase seen by :meth:`get_order` becomes one :class:`Fill` with
``fill_id = "<ord_dt>-<odno>-<cumulative qty>"``, price = amount increase / quantity
increase (rounded), and fees estimated with ``commission_rate``/``sell_tax_rate``
(truncated to whole KRW). Treat ``filled_qty`` as the authoritative total.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import httpx
import pandas as pd

from api import kis_account_api, kis_chart_api, kis_market_api, kis_order_api
from api.circuit_breaker import KISCircuitBreaker
from api.kis_auth import Clock, get_logger, kst_now
from api.kis_http import KISClient, KISRateLimiter
from api.kis_schemas import DailyOrderRow, parse_ymd, to_int
from api.kis_settings import KISSettings
from framework.broker import Broker
from framework.data import DataProvider
from framework.errors import DataError, OrderRejectedError, UnknownOrderOutcomeError
from framework.executor import OrderExecutor, OrderState
from framework.types import (
    Balance,
    Fill,
    Holding,
    OrderRequest,
    OrderSide,
    OrderStatus,
    Quote,
    validate_code,
)

log = get_logger(__name__)

MATCH_BEFORE = timedelta(seconds=5)
MATCH_AFTER = timedelta(minutes=10)
BUYING_POWER_REFERENCE_CODE = "005930"


@dataclass(slots=True)
class _Submission:
    request: OrderRequest
    sent_at: datetime
    odno: str | None = None


@dataclass(slots=True)
class _OrderMemo:
    orgno: str = ""
    ord_dt: str = ""
    client_order_id: str | None = None
    seen_qty: int = 0
    seen_amount: int = 0
    fills: list[Fill] = field(default_factory=list)


class KISBroker(Broker, DataProvider, OrderExecutor):
    """The KIS account, market data and order entry behind the framework interfaces.

    Parameters
    ----------
    settings:
        See :class:`api.kis_settings.KISSettings`; ``None`` reads the environment/.env.
    transport:
        Optional httpx transport for the shared client (``httpx.MockTransport`` in tests).
    clock:
        Tz-aware ``now()`` (KST); tests share a fake clock with the fake server.
    breaker:
        Circuit breaker; a new ``KISCircuitBreaker()`` by default. Subscribe to its state
        changes with ``broker.breaker.add_listener(callback)``.
    limiter:
        Rate limiter; by default the app key's process-wide one.
    sleep:
        Sleep between read retries (tests pass a no-op).
    """

    def __init__(
        self,
        settings: KISSettings | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        clock: Clock = kst_now,
        breaker: KISCircuitBreaker | None = None,
        limiter: KISRateLimiter | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings or KISSettings.from_env()
        self.client = KISClient(
            self.settings, transport=transport, clock=clock, breaker=breaker,
            limiter=limiter, sleep=sleep,
        )
        self._clock = clock
        self._lock = threading.RLock()
        self._submissions: dict[str, _Submission] = {}
        self._orders: dict[str, _OrderMemo] = {}

    @classmethod
    def from_env(cls, env_file: str | None = ".env", **kwargs: object) -> KISBroker:
        """``KISBroker(KISSettings.from_env(env_file), **kwargs)``."""
        return cls(KISSettings.from_env(env_file), **kwargs)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"KISBroker(env={self.settings.env!r}, base_url={self.settings.rest_base_url!r})"

    @property
    def breaker(self) -> KISCircuitBreaker:
        return self.client.breaker

    def close(self) -> None:
        """Close the HTTP client."""
        self.client.close()

    def __enter__(self) -> KISBroker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- Broker -----------------------------------------------------------------------
    def get_balance(self) -> Balance:
        """Cash (예수금), orderable cash (주문가능현금) and holdings value, KRW.

        Two reads: ``inquire-balance`` (all pages) and ``inquire-psbl-order``.
        """
        _, summary = kis_account_api.inquire_balance(self.client)
        power = kis_account_api.inquire_buying_power(self.client, BUYING_POWER_REFERENCE_CODE)
        return Balance(
            cash_krw=summary.cash_krw,
            orderable_krw=to_int(power.ord_psbl_cash),
            holdings_value_krw=summary.holdings_value_krw,
        )

    def get_holdings(self) -> list[Holding]:
        """Holdings with a quantity above zero (``inquire-balance``, all pages)."""
        rows, _ = kis_account_api.inquire_balance(self.client)
        holdings = [row.to_holding() for row in rows]
        return [h for h in holdings if h.qty > 0]

    def get_quote(self, stock_code: str) -> Quote:
        """Latest price (``inquire-price`` FHKST01010100). ``DataError`` if unknown."""
        return kis_market_api.inquire_price(self.client, stock_code)

    def get_quotes(self, stock_codes: Iterable[str]) -> dict[str, Quote]:
        return kis_market_api.inquire_prices(self.client, stock_codes)

    def get_buying_power(self, stock_code: str, price_krw: int = 0) -> tuple[int, int]:
        """``(orderable KRW, orderable shares)`` for a buy of ``stock_code`` at ``price_krw``."""
        power = kis_account_api.inquire_buying_power(self.client, stock_code, price_krw)
        return power.orderable_krw, power.orderable_qty

    # --- DataProvider -----------------------------------------------------------------
    def get_daily_bars(
        self, stock_code: str, start: date | None = None, end: date | None = None
    ) -> pd.DataFrame:
        """Daily bars, ``start``..``end`` inclusive (defaults: one year back .. today)."""
        end = end or self._clock().date()
        start = start or end - timedelta(days=365)
        return kis_chart_api.daily_bars(self.client, stock_code, start, end)

    def get_minute_bars(self, stock_code: str, day: date | None = None) -> pd.DataFrame:
        """Today's minute bars. Other days raise ``DataError`` (KIS virtual has none)."""
        today = self._clock().date()
        if day is not None and day != today:
            raise DataError(f"KIS serves minute bars of today only, asked for {day}")
        return kis_chart_api.minute_bars_today(self.client, stock_code)

    # --- OrderExecutor ----------------------------------------------------------------
    def submit_order(self, request: OrderRequest) -> str:
        """Send ``request`` once; return KIS's order number (``ODNO``).

        Raises ``OrderRejectedError``/``InsufficientFundsError`` (refused),
        ``UnknownOrderOutcomeError`` (resolve with :meth:`find_order`), and
        ``TransientBrokerError``/``RateLimitError``/``AuthError``/``CircuitOpenError``
        (not placed).
        """
        with self._lock:
            if request.client_order_id in self._submissions:
                raise OrderRejectedError(
                    f"client order id {request.client_order_id!r} was already submitted; "
                    "use find_order()"
                )
            submission = _Submission(request, self._clock())
            self._submissions[request.client_order_id] = submission
        try:
            ack = kis_order_api.place_cash_order(self.client, request)
        except UnknownOrderOutcomeError:
            log.warning("order %s: outcome unknown; look it up before resending",
                        request.client_order_id)
            raise
        except Exception:
            with self._lock:  # definitely not placed: the id may be used again
                self._submissions.pop(request.client_order_id, None)
            raise
        with self._lock:
            submission.odno = ack.odno
            self._memo(ack.odno, ack.krx_fwdg_ord_orgno, request.client_order_id,
                       submission.sent_at.strftime("%Y%m%d"))
        log.info("order %s sent: %s %s %d @ %s -> %s", request.client_order_id,
                 request.side.value, request.stock_code, request.qty, request.price, ack.odno)
        return ack.odno

    def cancel_order(self, broker_order_id: str, stock_code: str, qty: int | None = None) -> None:
        """Cancel ``qty`` shares (default all unfilled) of an open order (order-rvsecncl,
        ``RVSE_CNCL_DVSN_CD 02``). Passes while the breaker is open. ``OrderRejectedError``
        when nothing is left to cancel."""
        validate_code(stock_code)
        orgno = self._orgno(broker_order_id)
        kis_order_api.cancel_order(self.client, krx_orgno=orgno, odno=broker_order_id, qty=qty)

    def revise_order(
        self, broker_order_id: str, stock_code: str, price: int | None, qty: int | None = None
    ) -> str:
        """Move an open order to ``price`` KRW (``None`` = market); return the new ``ODNO``.

        The original order then shows CANCELLED for its moved remainder.
        """
        validate_code(stock_code)
        orgno = self._orgno(broker_order_id)
        ack = kis_order_api.revise_order(
            self.client, krx_orgno=orgno, odno=broker_order_id, price=price, qty=qty
        )
        with self._lock:
            old = self._orders.get(broker_order_id)
            self._memo(ack.odno, ack.krx_fwdg_ord_orgno or orgno,
                       old.client_order_id if old else None, self._today())
        return ack.odno

    def get_order(self, broker_order_id: str) -> OrderState:
        """Status, quantities and fills of one order (``inquire-daily-ccld`` by ``ODNO``).

        Raises ``BrokerError`` if KIS does not know the order.
        """
        memo = self._orders.get(broker_order_id)
        day = self._day_of(memo)
        rows = kis_account_api.inquire_daily_orders(self.client, day, day, odno=broker_order_id)
        rows = [r for r in rows if r.odno == broker_order_id and not r.is_cancel_record]
        if not rows:
            raise OrderRejectedError(f"KIS has no order {broker_order_id} on {day}")
        return self._state(rows[0])

    def find_order(self, client_order_id: str) -> OrderState | None:
        """Resolve an unknown outcome: see the matching rule in the module docstring."""
        with self._lock:
            submission = self._submissions.get(client_order_id)
            if submission is None:
                return None
            if submission.odno:
                odno = submission.odno
                claimed: set[str] = set()
            else:
                odno = None
                claimed = {s.odno for s in self._submissions.values() if s.odno}
        if odno:
            return self.get_order(odno)
        req = submission.request
        day = submission.sent_at.date()
        rows = kis_account_api.inquire_daily_orders(
            self.client, day, day, stock_code=req.stock_code, side=req.side
        )
        lo, hi = submission.sent_at - MATCH_BEFORE, submission.sent_at + MATCH_AFTER
        candidates = [
            r for r in rows
            if not r.is_cancel_record and r.pdno == req.stock_code and r.side is req.side
            and r.qty == req.qty and r.price_krw == (req.price or 0) and r.odno not in claimed
            and r.ordered_at is not None and lo <= r.ordered_at <= hi
        ]
        if not candidates:
            log.info("order %s: KIS has no matching order", client_order_id)
            return None
        row = min(candidates, key=lambda r: (r.ord_tmd, r.odno))
        with self._lock:
            submission.odno = row.odno
            self._memo(row.odno, row.ord_gno_brno, client_order_id, row.ord_dt)
        log.info("order %s resolved to KIS order %s", client_order_id, row.odno)
        return self._state(row)

    def list_orders(self, day: date | None = None, *, open_only: bool = False) -> list[OrderState]:
        """Every order of ``day`` (default today), or only the open ones."""
        day = day or self._clock().date()
        rows = kis_account_api.inquire_daily_orders(
            self.client, day, day, unfilled_only=open_only
        )
        states = [self._state(r) for r in rows if not r.is_cancel_record]
        return [s for s in states if s.status.is_open] if open_only else states

    # --- internals --------------------------------------------------------------------
    def _today(self) -> str:
        return self._clock().strftime("%Y%m%d")

    def _day_of(self, memo: _OrderMemo | None) -> date:
        if memo and memo.ord_dt:
            return parse_ymd(memo.ord_dt)
        return self._clock().date()

    def _memo(self, odno: str, orgno: str, client_order_id: str | None, ord_dt: str) -> _OrderMemo:
        memo = self._orders.setdefault(odno, _OrderMemo())
        memo.orgno = orgno or memo.orgno
        memo.ord_dt = ord_dt or memo.ord_dt
        memo.client_order_id = client_order_id or memo.client_order_id
        return memo

    def _orgno(self, odno: str) -> str:
        memo = self._orders.get(odno)
        if memo and memo.orgno:
            return memo.orgno
        day = self._day_of(memo)
        rows = kis_account_api.inquire_daily_orders(self.client, day, day, odno=odno)
        for row in rows:
            if row.odno == odno and not row.is_cancel_record:
                with self._lock:
                    self._memo(odno, row.ord_gno_brno, None, row.ord_dt)
                return row.ord_gno_brno
        raise OrderRejectedError(f"KIS has no order {odno} on {day}")

    def _state(self, row: DailyOrderRow) -> OrderState:
        with self._lock:
            memo = self._memo(row.odno, row.ord_gno_brno, None, row.ord_dt)
            filled, amount = row.filled_qty, row.filled_amount_krw
            if filled > memo.seen_qty:
                delta_qty, delta_amount = filled - memo.seen_qty, amount - memo.seen_amount
                price = round(delta_amount / delta_qty)
                gross = price * delta_qty
                tax = int(gross * self.settings.sell_tax_rate) if row.side is OrderSide.SELL else 0
                memo.fills.append(Fill(
                    fill_id=f"{row.ord_dt}-{row.odno}-{filled}",
                    client_order_id=memo.client_order_id or "",
                    stock_code=row.pdno,
                    side=row.side,
                    qty=delta_qty,
                    price=price,
                    time=self._clock(),
                    commission_krw=int(gross * self.settings.commission_rate),
                    tax_krw=tax,
                    broker_order_id=row.odno,
                ))
                memo.seen_qty, memo.seen_amount = filled, amount
            return OrderState(
                broker_order_id=row.odno,
                status=row.status() if row.qty > 0 else OrderStatus.UNKNOWN,
                qty=row.qty,
                filled_qty=filled,
                fills=tuple(memo.fills),
                client_order_id=memo.client_order_id,
            )
