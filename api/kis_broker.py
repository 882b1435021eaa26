"""``KISBroker``: :class:`Broker` + :class:`DataProvider` + :class:`OrderExecutor` over KIS.

Construction: ``KISBroker(KISSettings.from_env())`` or ``KISBroker.from_env()``; tests pass
``transport=httpx.MockTransport(fake)`` or a ``KIS_BASE_URL`` pointing at a loopback fake,
and a shared fake ``clock``.

Orders are never retried. When :meth:`KISBroker.submit_order` raises
``UnknownOrderOutcomeError``, call :meth:`KISBroker.find_order` with the same client order
id before sending anything else. **Matching rule** (KIS has no client order id field), used
by :meth:`KISBroker.match_order` and so by ``find_order``: among the orders of the submit's
day from ``inquire-daily-ccld`` (cancel confirmations excluded), the order with the same
code, side, quantity and limit price (``0`` for market orders), an order time (``ord_tmd``,
whole seconds) no earlier than 5 s before the submit started and no later than 10 min after
it, and an order number neither in the caller's ``claimed`` set nor attributed by this
broker to another client order id. The earliest such order wins. ``None`` means KIS has no
such order: it is then safe to submit again (after the answer could no longer be in flight).

Restart: the per-order memory (client id, fills already reported) lives in this object
only. After a restart, call :meth:`KISBroker.restore_order` for every order the database
holds (broker id, client id, filled shares and KRW so far, order day) and
:meth:`KISBroker.match_order` for every order recorded as ``PENDING_NEW`` without a broker
id; :meth:`KISBroker.list_orders` shows the day's orders for the rest of the reconciliation.

Fills: KIS reports cumulative quantities per order (``tot_ccld_qty``/``tot_ccld_amt``), not
executions. Each increase seen by :meth:`get_order` becomes one :class:`Fill` with
``fill_id = "<ord_dt>-<odno>-<cumulative qty>"``, price = amount increase / quantity
increase (rounded), and fees estimated with ``commission_rate`` and the transaction tax of
the stock's market on the order day's settlement date (:class:`utils.fees.FeeModel`;
``sell_tax_rate`` replaces the dated table with one flat rate), truncated to whole KRW.
Treat ``filled_qty`` as the authoritative total. States carry
``filled_amount_krw`` (``tot_ccld_amt``): :meth:`KISBroker.fill_since` derives the same
fill from the figures the caller has recorded, which is what the engine uses (a fill whose
write failed is derived again on the next poll); :meth:`KISBroker.fill_from_notice` gives a
WebSocket execution notice the same identity. A success answer to an order without an
``ODNO`` is an unknown outcome (resolved by the matching rule below). A restored order
starts from the restored figures; if KIS's cumulative amount at an unchanged quantity
differs from the restored one, KIS's amount becomes the base of the next fill's price (and
a restored amount that would give a price ≤ 0 is replaced by KIS's average price).

Quotes: ``inquire-price`` carries no stock name, so :meth:`KISBroker.get_quote` takes
``Quote.name`` from a per-process cache filled from holdings, order rows and, the first time
a code is quoted, one ``inquire-daily-itemchartprice`` header (``hts_kor_isnm``). A failed
name lookup leaves ``name`` ``None`` and does not fail the quote.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import httpx
import pandas as pd

from api import kis_account_api, kis_chart_api, kis_market_api, kis_order_api
from api.circuit_breaker import KISCircuitBreaker
from api.kis_auth import Clock, get_logger, kst_now
from api.kis_http import KISClient, KISRateLimiter
from api.kis_schemas import KST, DailyOrderRow, parse_ymd, to_int
from api.kis_settings import KISSettings
from framework.broker import Broker
from framework.data import DataProvider
from framework.errors import (
    BrokerError,
    DataError,
    OrderRejectedError,
    UnknownOrderOutcomeError,
)
from framework.executor import ExecutionNotice, OrderExecutor, OrderState
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
from utils.fees import FeeModel

log = get_logger(__name__)

MATCH_BEFORE = timedelta(seconds=5)
MATCH_AFTER = timedelta(minutes=10)
BUYING_POWER_REFERENCE_CODE = "005930"


@dataclass(slots=True)
class _Submission:
    request: OrderRequest
    sent_at: datetime


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
        self._by_client: dict[str, str] = {}
        self._names: dict[str, str] = {}
        self.fees = FeeModel(self.settings.commission_rate, self.settings.sell_tax_rate)
        """Estimates the fees of fills (KIS does not report them per order)."""

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
        """Cash after settlement of today's trades (D+2 예수금), orderable cash (주문가능현금)
        and holdings value, KRW.

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
        with self._lock:
            for h in holdings:
                if h.name:
                    self._names.setdefault(h.stock_code, h.name)
        return [h for h in holdings if h.qty > 0]

    def get_quote(self, stock_code: str) -> Quote:
        """Latest price (``inquire-price`` FHKST01010100), KRW, with the stock's name (see
        the module docstring: one ``inquire-daily-itemchartprice`` FHKST03010100 call the
        first time a code's name is needed). ``DataError`` if the code is unknown."""
        return self._named(kis_market_api.inquire_price(self.client, stock_code))

    def get_quotes(self, stock_codes: Iterable[str]) -> dict[str, Quote]:
        """:meth:`get_quote` for each distinct code (KIS has no batch quote on REST)."""
        quotes = kis_market_api.inquire_prices(self.client, stock_codes)
        return {code: self._named(quote) for code, quote in quotes.items()}

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
        ``UnknownOrderOutcomeError`` (resolve with :meth:`find_order`; also for a success
        answer without an ``ODNO``), and
        ``TransientBrokerError``/``RateLimitError``/``AuthError``/``CircuitOpenError``
        (not placed).
        """
        with self._lock:
            cid = request.client_order_id
            if cid in self._submissions or cid in self._by_client:
                raise OrderRejectedError(
                    f"client order id {cid!r} was already submitted; use find_order()"
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
        if not ack.odno.strip():
            # A success without an order number: KIS may well have the order. Ambiguous,
            # so it is an unknown outcome, resolved through the day's order list.
            log.warning("order %s: acknowledged without an order number; look it up",
                        request.client_order_id)
            raise UnknownOrderOutcomeError(
                f"order {request.client_order_id} acknowledged without an order number (ODNO)"
            )
        with self._lock:
            self._by_client[request.client_order_id] = ack.odno
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
        """Status, quantities and fills of one order (``inquire-daily-ccld`` TTTC0081R /
        VTTC0081R, by ``ODNO``, on the order's day when known, else today).

        Raises ``OrderRejectedError`` if KIS does not know the order.
        """
        memo = self._orders.get(broker_order_id)
        day = self._day_of(memo)
        rows = kis_account_api.inquire_daily_orders(self.client, day, day, odno=broker_order_id)
        rows = [r for r in rows if r.odno == broker_order_id and not r.is_cancel_record]
        if not rows:
            raise OrderRejectedError(f"KIS has no order {broker_order_id} on {day}")
        return self._state(rows[0])

    def find_order(self, client_order_id: str) -> OrderState | None:
        """Resolve an unknown outcome of a submit made by this broker object: the known
        order of ``client_order_id``, else :meth:`match_order` on the submitted request.
        ``None``: no submit of that id is known, or KIS has no matching order."""
        with self._lock:
            odno = self._by_client.get(client_order_id)
            submission = self._submissions.get(client_order_id)
        if odno:
            return self.get_order(odno)
        if submission is None:
            return None
        state = self.match_order(submission.request, submission.sent_at)
        if state is None:
            log.info("order %s: KIS has no matching order", client_order_id)
        else:
            log.info("order %s resolved to KIS order %s", client_order_id, state.broker_order_id)
        return state

    def match_order(
        self, request: OrderRequest, sent_at: datetime, claimed: Collection[str] = ()
    ) -> OrderState | None:
        """Find KIS's order for ``request`` whose submit started at ``sent_at`` (tz-aware;
        its KST day is searched), by the matching rule of the module docstring, with
        ``inquire-daily-ccld`` (TTTC0081R / VTTC0081R) filtered by code and side.

        Order numbers in ``claimed`` are skipped, and so are those this broker already
        attributes to another client order id. The match is registered under
        ``request.client_order_id``: :meth:`get_order`, :meth:`find_order` and the fills
        carry that id. Works after a restart (nothing of the submit need be in memory).
        Returns ``None`` when KIS has no such order.
        """
        if sent_at.tzinfo is None:
            raise ValueError("sent_at must be tz-aware")
        cid = request.client_order_id
        with self._lock:
            taken = set(claimed)
            taken.update(odno for odno, memo in self._orders.items()
                         if memo.client_order_id and memo.client_order_id != cid)
        day = sent_at.astimezone(KST).date()
        rows = kis_account_api.inquire_daily_orders(
            self.client, day, day, stock_code=request.stock_code, side=request.side
        )
        lo, hi = sent_at - MATCH_BEFORE, sent_at + MATCH_AFTER
        candidates = [
            r for r in rows
            if not r.is_cancel_record and r.pdno == request.stock_code
            and r.side is request.side and r.qty == request.qty
            and r.price_krw == (request.price or 0) and r.odno not in taken
            and r.ordered_at is not None and lo <= r.ordered_at <= hi
        ]
        if not candidates:
            return None
        row = min(candidates, key=lambda r: (r.ord_tmd, r.odno))
        with self._lock:
            memo = self._memo(row.odno, row.ord_gno_brno, cid, row.ord_dt)
            memo.client_order_id = cid
            self._by_client[cid] = row.odno
        return self._state(row)

    def restore_order(
        self,
        broker_order_id: str,
        client_order_id: str,
        *,
        filled_qty: int,
        filled_amount_krw: int,
        day: date,
    ) -> None:
        """Seed the memory of KIS order ``broker_order_id`` (``ODNO``) placed on ``day``
        (KST) as ``client_order_id``, with ``filled_qty`` shares already filled for
        ``filled_amount_krw`` KRW in total (the fills the caller has recorded).

        No request is sent. The next :meth:`get_order` reports only fills beyond
        ``filled_qty``, with the usual fill ids, carrying ``client_order_id``; the state's
        ``fills`` then hold only the fills found after the restore. Call it once per order,
        on a fresh broker (after a restart), before polling the order.
        """
        if filled_qty < 0 or filled_amount_krw < 0:
            raise ValueError("restored quantities must not be negative")
        with self._lock:
            memo = self._memo(broker_order_id, "", client_order_id, day.strftime("%Y%m%d"))
            memo.client_order_id = client_order_id
            memo.ord_dt = day.strftime("%Y%m%d")
            memo.seen_qty, memo.seen_amount = filled_qty, filled_amount_krw
            memo.fills.clear()
            self._by_client[client_order_id] = broker_order_id
        log.info("order %s restored as KIS order %s (%d shares, %d KRW filled)",
                 client_order_id, broker_order_id, filled_qty, filled_amount_krw)

    def list_orders(self, day: date | None = None, *, open_only: bool = False) -> list[OrderState]:
        """Every order of ``day`` (default today), or only the open ones, oldest first
        (``inquire-daily-ccld`` TTTC0081R / VTTC0081R, all pages; cancel records left out).

        Fills are reported as by :meth:`get_order`: restore known orders first, or the
        whole cumulative quantity of an order unknown to this broker shows as one fill.
        """
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

    def _named(self, quote: Quote) -> Quote:
        code = quote.stock_code
        if quote.name:
            with self._lock:
                self._names.setdefault(code, quote.name)
            return quote
        with self._lock:
            name = self._names.get(code)
        if name is None:
            try:
                name = kis_chart_api.stock_name(self.client, code)
            except (BrokerError, DataError) as exc:
                log.info("no name for %s: %s", code, exc)
                return quote
            if not name:
                return quote
            with self._lock:
                self._names.setdefault(code, name)
        return dataclasses.replace(quote, name=name)

    def _state(self, row: DailyOrderRow) -> OrderState:
        with self._lock:
            memo = self._memo(row.odno, row.ord_gno_brno, None, row.ord_dt)
            if row.prdt_name and row.pdno:
                self._names.setdefault(row.pdno, row.prdt_name)
            filled, amount = row.filled_qty, row.filled_amount_krw
            if filled > memo.seen_qty:
                memo.fills.append(self._fill(
                    row.ord_dt, row.odno, row.pdno, row.side, memo.client_order_id or "",
                    memo.seen_qty, memo.seen_amount, filled, amount,
                ))
                memo.seen_qty, memo.seen_amount = filled, amount
            elif filled == memo.seen_qty and amount != memo.seen_amount:
                log.info("order %s: KIS's filled amount is %d KRW, %d KRW was restored; "
                         "KIS's figure is used from now on", row.odno, amount, memo.seen_amount)
                memo.seen_amount = amount
            elif filled < memo.seen_qty:
                log.warning("order %s: KIS reports %d shares filled, fewer than the %d known",
                            row.odno, filled, memo.seen_qty)
            return OrderState(
                broker_order_id=row.odno,
                status=row.status() if row.qty > 0 else OrderStatus.UNKNOWN,
                qty=row.qty,
                filled_qty=filled,
                fills=tuple(memo.fills),
                client_order_id=memo.client_order_id,
                stock_code=row.pdno or None,
                side=row.side,
                price=row.limit_price,
                ordered_at=row.ordered_at,
                cancelled_qty=row.cancelled_qty,
                filled_amount_krw=amount,
            )

    def _fill(
        self, ord_dt: str, odno: str, code: str, side: OrderSide, client_order_id: str,
        known_qty: int, known_amount: int, filled: int, amount: int, price: int | None = None,
    ) -> Fill:
        """The fill from ``known_qty`` shares / ``known_amount`` KRW to the cumulative
        ``filled`` / ``amount``: id ``<ord_dt>-<odno>-<filled>``, price the amount's change
        over the quantity's (rounded) unless ``price`` is given, fees estimated."""
        delta_qty = filled - known_qty
        if price is None:
            price = round((amount - known_amount) / delta_qty)
            if price <= 0:  # a recorded amount KIS disagrees with: use KIS's average
                log.warning("order %s: recorded amount %d KRW does not fit KIS's %d KRW",
                            odno, known_amount, amount)
                price = round(amount / filled)
        gross = price * delta_qty
        traded = parse_ymd(ord_dt) if len(ord_dt) == 8 else self._clock().date()
        tax = self.fees.sell_tax(gross, traded, code) if side is OrderSide.SELL else 0
        return Fill(
            fill_id=f"{ord_dt}-{odno}-{filled}",
            client_order_id=client_order_id,
            stock_code=code,
            side=side,
            qty=delta_qty,
            price=price,
            time=self._clock(),
            commission_krw=self.fees.commission(gross),
            tax_krw=tax,
            broker_order_id=odno,
        )

    def fill_since(
        self, state: OrderState, filled_qty: int, filled_amount_krw: int, client_order_id: str
    ) -> Fill | None:
        """The fill that takes an order recorded at ``filled_qty`` shares for
        ``filled_amount_krw`` KRW to ``state``'s ``tot_ccld_qty`` / ``tot_ccld_amt``
        (a :meth:`get_order` state): id ``<ord_dt>-<ODNO>-<tot_ccld_qty>``, price
        ``round(Δ tot_ccld_amt / Δ tot_ccld_qty)`` KRW, commission and tax estimated with
        ``commission_rate`` / ``sell_tax_rate`` (truncated to whole KRW). ``None`` when
        KIS shows no more shares filled than recorded."""
        if state.filled_amount_krw is None or state.filled_qty <= filled_qty:
            return None
        ord_dt = self._ord_dt(state)
        return self._fill(
            ord_dt, state.broker_order_id, state.stock_code or "",
            state.side or OrderSide.BUY, client_order_id, filled_qty, filled_amount_krw,
            state.filled_qty, state.filled_amount_krw,
        )

    def fill_from_notice(
        self, notice: ExecutionNotice, filled_qty: int, client_order_id: str
    ) -> Fill:
        """The fill of one ``H0STCNI0``/``H0STCNI9`` execution notice (see
        :mod:`api.kis_notice`) for an order recorded at ``filled_qty`` shares: id
        ``<ord_dt>-<ODER_NO>-<filled_qty + CNTG_QTY>``, the notice's price, fees as
        :meth:`fill_since` estimates them."""
        with self._lock:
            memo = self._orders.get(notice.broker_order_id)
            ord_dt = memo.ord_dt if memo and memo.ord_dt else ""
        ord_dt = ord_dt or notice.time.astimezone(KST).strftime("%Y%m%d")
        fill = self._fill(
            ord_dt, notice.broker_order_id, notice.stock_code, notice.side, client_order_id,
            filled_qty, 0, filled_qty + notice.qty, 0, price=notice.price,
        )
        return dataclasses.replace(fill, time=notice.time)

    def _ord_dt(self, state: OrderState) -> str:
        with self._lock:
            memo = self._orders.get(state.broker_order_id)
            if memo and memo.ord_dt:
                return memo.ord_dt
        when = state.ordered_at or self._clock()
        return when.astimezone(KST).strftime("%Y%m%d")
