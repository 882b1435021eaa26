"""A stateful fake of the KIS REST API, usable in-process and over real HTTP on loopback.

``FakeKIS`` is a plain callable app: ``fake(httpx.Request) -> httpx.Response``.

* in-process: ``httpx.Client(transport=fake.transport())`` (``httpx.MockTransport``);
* over HTTP: ``with FakeKISServer(fake) as server: ... server.base_url`` (a
  ``ThreadingHTTPServer`` on ``127.0.0.1``, port chosen by the OS).

What it models (see ``shared/kis/KIS_API_FACTS.md``): ``/oauth2/tokenP`` (24 h tokens, the
same token within 6 h, HTTP 403 ``EGW00133`` on a second request within 60 s), expired
tokens (``EGW00123``, HTTP 500 by default), a strict per-app-key sliding 1 s window
(``EGW00201``, HTTP 500; refused requests do not count), accounts with cash and holdings,
cash orders that rest and fill (auto or by hand, fully or partly), revise/cancel, balance
and daily-ccld paging (20/15 rows a page virtual, 50/100 real) with ``tr_cont`` and
``ctx_area_*`` cursors, daily and minute charts (the stock's Korean name in ``output1``
``hts_kor_isnm``, as KIS gives it; ``inquire-price`` has no name field), tr_ids of the
wrong environment refused (HTTP 500 ``모의투자 TR 이 아닙니다.``), orders outside
09:00–15:30 refused, and faults. Real only: past minute bars (``inquire-time-dailychartprice``
FHKST03010230, 120 rows, a year kept), ``volume-rank`` (FHPST01710000, by volume or
``fake.volume_rank_override``) and ``chk-holiday`` (CTCA0903R, weekends and
``fake.closed_days`` closed).

Control API for tests (all thread-safe): :meth:`FakeKIS.set_price`, :meth:`advance`
(hooks in ``fake.on_clock`` see every move it makes), :meth:`fill_order`,
:meth:`late_fill`, :meth:`end_of_day`, :meth:`inject`, :meth:`set_random_faults`,
:meth:`expire_tokens`,
:meth:`add_account`, :meth:`account`, :meth:`order`, and the counters in ``fake.stats``.

Faults. :meth:`FakeKIS.inject` queues faults for the next matching requests. Kinds:
``http_500`` (an HTML 500 page), ``timeout`` (the connection is held ``hold_s`` seconds and
closed unanswered; in-process: ``httpx.ReadTimeout`` at once), ``drop`` (closed at once),
``malformed_json`` (a cut JSON body, HTTP 200), ``no_odno`` (after processing: a success
answer whose ``ODNO`` is empty), ``token_expired`` (the token the request
carries is expired now and the answer is ``EGW00123``), ``rate_limit`` (HTTP 500
``EGW00201`` as real KIS). Random mode (``FakeKIS(fault_rate=, fault_kinds=, fault_seed=)``
or :meth:`FakeKIS.set_random_faults`): every REST request under ``/uapi/`` (never the token
endpoint) fails with probability ``fault_rate`` with a kind drawn uniformly from
``fault_kinds`` (default ``RANDOM_FAULT_KINDS``; timeouts hold ``fault_hold_s``, 0.2 s). On
the order endpoints (``order-cash``, ``order-rvsecncl``) a drawn answer-losing fault
(``http_500``, ``timeout``, ``drop``, ``malformed_json``) comes *after processing* half of
the time: the order takes effect and its answer is lost, the ambiguous case. ``rate_limit``
and ``token_expired`` are gateway refusals and always come before processing (KIS checks
them before the order reaches the exchange), so a client may rightly treat them as "not
placed". The same seed and the same sequence of requests give the same faults. Fired faults
are counted in ``stats.faults_fired``, per kind in ``stats.faults_by_kind`` and, for those
after processing, in ``stats.faults_after_processing``.

Control API over HTTP, for a bot running in another process (served by
:class:`FakeKISServer` on the same loopback port; :class:`FakeKISControl` is a client):

* ``GET /_fake/clock`` -> ``{"now": iso}``;
* ``POST /_fake/advance`` with ``{"seconds": 90.0}`` (≥ 0) -> ``{"now": iso}``;
* ``POST /_fake/set_price`` with ``{"code": "005930", "price": 72000}`` (``"price": null``
  = back to the data path) -> ``{"code": ..., "price": <current price>, "now": iso}``.

``iso`` is ISO 8601 with the offset (``2025-06-16T09:30:00+09:00``). ``advance`` moves the
shared clock and runs a matching pass, as :meth:`FakeKIS.advance` does; ``set_price`` as
:meth:`FakeKIS.set_price`. Errors: HTTP 400 (bad body), 404 (unknown path or code), 405
(wrong method), each with ``{"error": text}``. These paths never count as KIS requests
(``stats.requests``, ``stats.by_path``), never get faults and ignore the rate limit;
``stats.control_requests`` counts them.

Auto-fill (``auto_fill=True``): during market hours an open order fills whenever it is
marketable at the current price — market orders at the current price, limit buys at
``min(limit, price)``, limit sells at ``max(limit, price)`` — at most ``fill_qty_per_match``
shares per matching pass (``None`` = all). Matching runs after every order, price change
and clock move made through the fake, and before every REST request. It works on the
fake's accounts only, so it is the same whichever client (or process) placed the order.
"""

from __future__ import annotations

import json
import random
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

from . import endpoints as ep
from .account import BUY, SELL, FakeAccount, FakeOrder, Holding
from .clock import FakeClock
from .http_server import FakeDrop, FakeKISServer, FakeTimeout
from .market import FakeMarket

DEFAULT_APP_KEY = "PSFAKEAPPKEY0000000000000000000000000"
DEFAULT_APP_SECRET = "fake-app-secret-" + "x" * 40
DEFAULT_ACCOUNT_NO = "50000000-01"

FAULT_KINDS = ("http_500", "timeout", "drop", "malformed_json", "token_expired", "rate_limit",
               "no_odno")
RANDOM_FAULT_KINDS = ("http_500", "timeout", "rate_limit", "token_expired", "malformed_json")
"""Default kinds of the random fault mode."""
ANSWER_LOST_KINDS = frozenset({"http_500", "timeout", "drop", "malformed_json", "no_odno"})
"""Kinds that may hit an order after it was processed (random mode: half of the time)."""
ORDER_PATHS = ("/order-cash", "/order-rvsecncl")
CONTROL_PREFIX = "/_fake/"
DEFAULT_FAULT_HOLD_S = 0.2


@dataclass
class Fault:
    """One injected fault, fired on the next ``count`` requests whose path contains
    ``path`` (``None`` = any REST path; the token endpoint is matched only by name).

    ``after_processing``: the request takes effect first (an order is placed), then the
    answer is replaced by the fault — the ambiguous case for orders.
    """

    kind: str
    path: str | None = None
    count: int = 1
    after_processing: bool = False
    hold_s: float = 1.0


@dataclass
class FakeStats:
    """Counters of the fake; ``requests``/``by_path`` count KIS requests (not control)."""

    requests: int = 0
    rate_limited: int = 0
    tokens_issued: int = 0
    token_throttled: int = 0
    faults_fired: int = 0
    faults_after_processing: int = 0
    control_requests: int = 0
    by_path: Counter[str] = field(default_factory=Counter)
    faults_by_kind: Counter[str] = field(default_factory=Counter)


def _check_kinds(kinds: Iterable[str]) -> tuple[str, ...]:
    chosen = tuple(kinds)
    if not chosen:
        raise ValueError("at least one fault kind is needed")
    for kind in chosen:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; one of {FAULT_KINDS}")
    return chosen


@dataclass
class _Token:
    app_key: str
    issued_at: datetime
    expires_at: datetime
    revoked: bool = False


Route = Callable[[ep.Ctx], ep.Result]
_TRADING = "/uapi/domestic-stock/v1/trading/"
_QUOTES = "/uapi/domestic-stock/v1/quotations/"


class FakeKIS:
    """The fake KIS app. See the module docstring.

    Parameters
    ----------
    env:
        ``"virtual"`` (default) or ``"real"``: accepted tr_ids, page sizes, default limit.
    clock:
        Shared :class:`FakeClock` (default: 2025-06-16 09:30 KST, a day with real data).
    rate_limit_per_s:
        Requests per app key per rolling second (default 1 virtual / 18 real).
    rate_clock:
        Monotonic seconds for the rate window (default ``time.monotonic``).
    with_default_account:
        Create the account of ``DEFAULT_APP_KEY`` (100,000,000 KRW, no holdings).
    fault_rate, fault_kinds, fault_seed, fault_hold_s:
        Random fault mode (see the module docstring): probability per REST request (0..1),
        the kinds drawn from, the seed of the draws (``None`` = unpredictable) and how long
        a ``timeout`` holds the connection (seconds).
    """

    def __init__(
        self,
        *,
        env: str = "virtual",
        clock: FakeClock | None = None,
        rate_limit_per_s: int | None = None,
        rate_clock: Callable[[], float] = time.monotonic,
        auto_fill: bool = True,
        fill_qty_per_match: int | None = None,
        enforce_market_hours: bool = True,
        expired_token_status: int = 500,
        codes: list[str] | None = None,
        with_default_account: bool = True,
        fault_rate: float = 0.0,
        fault_kinds: Iterable[str] = RANDOM_FAULT_KINDS,
        fault_seed: int | None = None,
        fault_hold_s: float = DEFAULT_FAULT_HOLD_S,
    ) -> None:
        if env not in ("virtual", "real"):
            raise ValueError("env must be 'virtual' or 'real'")
        self.env = env
        self.clock = clock or FakeClock()
        self.market = FakeMarket(self.clock, codes=codes)
        self.rate_limit_per_s = rate_limit_per_s or (18 if env == "real" else 1)
        self.rate_clock = rate_clock
        self.auto_fill = auto_fill
        self.fill_qty_per_match = fill_qty_per_match
        self.enforce_market_hours = enforce_market_hours
        self.expired_token_status = expired_token_status
        self.balance_page_size = 50 if env == "real" else 20
        self.ccld_page_size = 100 if env == "real" else 15
        self.stats = FakeStats()
        self.on_request: list[Callable[[str, str], None]] = []
        """Hooks called with (path, ``"before"`` / ``"after"``) around the processing of
        every KIS request (under the fake's lock): the crash test kills the bot there."""
        self.accounts: dict[str, FakeAccount] = {}
        self.approval_keys: dict[str, str] = {}
        """WebSocket approval keys issued by ``/oauth2/Approval`` -> their app key."""
        self.refuse_approval = False
        self.on_fill: list[Callable[[FakeAccount, FakeOrder, int, int], None]] = []
        """Hooks called with (account, order, qty, price) after every fill (under the
        fake's lock): the fake WebSocket sends fill notices from here."""
        self._tokens: dict[str, _Token] = {}
        self._token_requested_at: dict[str, datetime] = {}
        self._windows: dict[str, deque[float]] = {}
        self.arrivals: dict[str, list[float]] = {}
        """Per app key, the ``rate_clock`` time of every admitted REST request (what the
        strict window counted): the load driver measures the limiter's margin from it."""
        self._faults: list[Fault] = []
        self._lock = threading.RLock()
        self.on_clock: list[Callable[[datetime], None]] = []
        """Hooks called with the new time whenever :meth:`advance` (or ``POST
        /_fake/advance``) moves the clock, before the matching pass (a scripted market)."""
        self.fault_rate = 0.0
        self.fault_kinds: tuple[str, ...] = RANDOM_FAULT_KINDS
        self.fault_hold_s = DEFAULT_FAULT_HOLD_S
        self._fault_rng = random.Random()
        self.set_random_faults(fault_rate, kinds=fault_kinds, seed=fault_seed,
                               hold_s=fault_hold_s)
        v = "V" if env == "virtual" else "T"

        def real_only(tr: str) -> set[str]:
            return {tr} if env == "real" else set()

        self._routes: dict[tuple[str, str], tuple[set[str], Route]] = {
            ("POST", _TRADING + "order-cash"): (
                {v + "TTC0012U", v + "TTC0802U", v + "TTC0011U", v + "TTC0801U"}, self._order_cash),
            ("POST", _TRADING + "order-rvsecncl"): (
                {v + "TTC0013U", v + "TTC0803U"}, lambda c: ep.order_rvsecncl(self, c)),
            ("GET", _TRADING + "inquire-balance"): (
                {v + "TTC8434R"}, lambda c: ep.inquire_balance(self, c)),
            ("GET", _TRADING + "inquire-psbl-order"): (
                {v + "TTC8908R"}, lambda c: ep.inquire_psbl_order(self, c)),
            ("GET", _TRADING + "inquire-daily-ccld"): (
                {v + "TTC0081R", v + "TTC8001R"}, lambda c: ep.inquire_daily_ccld(self, c)),
            ("GET", _TRADING + "inquire-psbl-rvsecncl"): (
                {"TTTC0084R", "TTTC8036R"} if env == "real" else set(),
                lambda c: ep.inquire_psbl_rvsecncl(self, c)),
            ("GET", _QUOTES + "inquire-price"): (
                {"FHKST01010100"}, lambda c: ep.inquire_price(self, c)),
            ("GET", _QUOTES + "inquire-daily-itemchartprice"): (
                {"FHKST03010100"}, lambda c: ep.daily_chart(self, c)),
            ("GET", _QUOTES + "inquire-time-itemchartprice"): (
                {"FHKST03010200"}, lambda c: ep.minute_chart(self, c)),
            ("GET", _QUOTES + "inquire-time-dailychartprice"): (
                real_only("FHKST03010230"), lambda c: ep.minute_history(self, c)),
            ("GET", _QUOTES + "volume-rank"): (
                real_only("FHPST01710000"), lambda c: ep.volume_rank(self, c)),
            ("GET", _QUOTES + "chk-holiday"): (
                real_only("CTCA0903R"), lambda c: ep.chk_holiday(self, c)),
            ("GET", _QUOTES + "search-stock-info"): (
                real_only("CTPF1002R"), lambda c: ep.search_stock_info(self, c)),
            ("GET", _QUOTES + "psearch-title"): (
                real_only("HHKST03900300"), lambda c: ep.psearch_title(self, c)),
            ("GET", _QUOTES + "psearch-result"): (
                real_only("HHKST03900400"), lambda c: ep.psearch_result(self, c)),
        }
        self.volume_rank_override: list[str] | None = None
        """Codes the volume ranking returns in this order (``None``: by volume)."""
        self.closed_days: set[date] = set()
        """Weekdays ``chk-holiday`` reports as closed (``opnd_yn N``)."""
        self.product_info: dict[str, dict[str, str]] = {}
        """Per code, ``search-stock-info`` fields replacing the defaults (a listed KOSPI
        stock): e.g. ``{"scty_grp_id_cd": "EF"}`` for an ETF, ``{"lstg_abol_dt":
        "20240102"}`` for a delisted one; a code only here is a product the market does
        not trade."""
        self.conditions: dict[str, dict[str, list[str]]] = {}
        """HTS user id -> saved condition name -> the codes it finds now (psearch)."""
        if with_default_account:
            self.add_account(DEFAULT_APP_KEY, DEFAULT_APP_SECRET, DEFAULT_ACCOUNT_NO)

    # --- control API ------------------------------------------------------------------
    def add_account(
        self, app_key: str, app_secret: str, account_no: str, *, cash_krw: int = 100_000_000,
        holdings: dict[str, tuple[int, int]] | None = None,
    ) -> FakeAccount:
        """Register an app key with its account; ``holdings`` = code -> (qty, avg price)."""
        with self._lock:
            acct = FakeAccount(app_key, app_secret, account_no, cash_krw)
            acct.on_fill = lambda order, qty, price, a=acct: self._filled(a, order, qty, price)
            for code, (qty, avg) in (holdings or {}).items():
                acct.holdings[code] = Holding(qty, qty * avg)
            self.accounts[app_key] = acct
            return acct

    def _filled(self, acct: FakeAccount, order: FakeOrder, qty: int, price: int) -> None:
        for hook in list(self.on_fill):
            hook(acct, order, qty, price)

    def account(self, app_key: str = DEFAULT_APP_KEY) -> FakeAccount:
        """The live account object (read it under no assumptions of a copy)."""
        return self.accounts[app_key]

    def order(self, odno: str, app_key: str = DEFAULT_APP_KEY) -> FakeOrder:
        with self._lock:
            return self.accounts[app_key].find(odno)

    def set_price(self, code: str, price: int | None) -> None:
        """Override the current price of ``code`` (``None`` = back to the data path); matches."""
        with self._lock:
            self.market.set_price(code, price)
            self.match()

    def advance(self, seconds: float = 0, **kwargs: float) -> datetime:
        """Move the shared clock forward (``minutes=``, ``hours=``, ``days=`` too), call the
        ``on_clock`` hooks with the new time, then match."""
        with self._lock:
            now = self.clock.advance(seconds, **kwargs)
            for hook in list(self.on_clock):
                hook(now)
            self.match()
            return now

    def fill_order(self, odno: str, qty: int | None = None, price: int | None = None,
                   app_key: str = DEFAULT_APP_KEY) -> FakeOrder:
        """Fill ``qty`` shares (default: all remaining) of an open order at ``price``
        (default: its limit, or the current price for a market order)."""
        with self._lock:
            acct = self.accounts[app_key]
            order = acct.find(odno)
            fill_price = price or order.price or self.market.price(order.code)
            acct.apply_fill(order, qty or order.remaining, fill_price)
            return order

    def late_fill(self, odno: str, qty: int, price: int | None = None,
                  app_key: str = DEFAULT_APP_KEY) -> FakeOrder:
        """The exchange filled ``qty`` shares of a cancelled order before the cancel took
        effect: they move from the cancelled to the filled quantity (cash and holdings
        move), as a fill that shows up after the order showed cancelled."""
        with self._lock:
            acct = self.accounts[app_key]
            order = acct.find(odno)
            if qty <= 0 or qty > order.cancelled_qty:
                raise ValueError(f"order {odno} has {order.cancelled_qty} cancelled shares")
            order.cancelled_qty -= qty
            for record in acct.orders:
                if record.cancel_record and record.orgn_odno == odno and record.qty >= qty:
                    record.qty -= qty
                    break
            acct.apply_fill(order, qty, price or order.price or self.market.price(order.code))
            return order

    def end_of_day(self) -> int:
        """Cancel every open order of every account (KIS expires day orders at the close);
        returns how many were cancelled."""
        with self._lock:
            count = 0
            for acct in self.accounts.values():
                for order in acct.open_orders():
                    acct.cancel(order, None, self.clock())
                    count += 1
            return count

    def inject(self, kind: str, *, path: str | None = None, count: int = 1,
               after_processing: bool = False, hold_s: float = 1.0) -> Fault:
        """Queue a fault for the next ``count`` requests whose path contains ``path``
        (kinds: ``http_500``, ``timeout``, ``drop``, ``malformed_json``, ``token_expired``,
        ``rate_limit``; see the module docstring). Injected faults come before the random
        mode's draw."""
        _check_kinds([kind])
        fault = Fault(kind, path, count, after_processing, hold_s)
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        """Drop the queued (injected) faults; the random mode is left as it is."""
        with self._lock:
            self._faults.clear()

    def set_random_faults(self, rate: float, *, kinds: Iterable[str] = RANDOM_FAULT_KINDS,
                          seed: int | None = None,
                          hold_s: float = DEFAULT_FAULT_HOLD_S) -> None:
        """Make every later REST request fail with probability ``rate`` (0..1; 0 = off)
        with a kind drawn from ``kinds``; ``seed`` restarts the draws (``None`` =
        unpredictable); ``hold_s`` = seconds a ``timeout`` holds the connection."""
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"fault rate must be within 0..1, got {rate!r}")
        if hold_s < 0:
            raise ValueError("hold_s must not be negative")
        chosen = _check_kinds(kinds)
        with self._lock:
            self.fault_rate = float(rate)
            self.fault_kinds = chosen
            self.fault_hold_s = hold_s
            self._fault_rng = random.Random(seed)

    def expire_tokens(self, app_key: str | None = None) -> None:
        """Make the issued tokens (of ``app_key``, or all) expired now."""
        with self._lock:
            for tok in self._tokens.values():
                if app_key is None or tok.app_key == app_key:
                    tok.expires_at = self.clock()

    def upper_limits(self) -> dict[str, int]:
        return {code: self.market.limits(code)[0] for code in self.market.stocks}

    def match(self) -> None:
        """Fill marketable open orders (auto-fill) at the current prices."""
        with self._lock:
            if not self.auto_fill or not ep.market_open(self.clock()):
                return
            for acct in self.accounts.values():
                for order in acct.open_orders():
                    price = self.market.price(order.code)
                    if order.is_market:
                        fill_price = price
                    elif order.side == BUY and price <= order.price:
                        fill_price = min(order.price, price)
                    elif order.side == SELL and price >= order.price:
                        fill_price = max(order.price, price)
                    else:
                        continue
                    qty = min(order.remaining, self.fill_qty_per_match or order.remaining)
                    acct.apply_fill(order, qty, fill_price)

    def transport(self) -> httpx.MockTransport:
        """An in-process transport serving this app."""
        return httpx.MockTransport(self.handle_mock)

    def handle_mock(self, request: httpx.Request) -> httpx.Response:
        try:
            return self(request)
        except FakeTimeout as exc:
            raise httpx.ReadTimeout("fake KIS: no answer", request=request) from exc
        except FakeDrop as exc:
            raise httpx.RemoteProtocolError("fake KIS: connection closed",
                                            request=request) from exc

    # --- the app ----------------------------------------------------------------------
    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = urlsplit(str(request.url)).path
        if path.startswith(CONTROL_PREFIX):
            return self._control(request, path)
        with self._lock:
            self.stats.requests += 1
            self.stats.by_path[path] += 1
            for hook in list(self.on_request):
                hook(path, "before")
            fault = self._take_fault(path, after=False) or self._draw_fault(path)
            if fault is not None and not fault.after_processing:
                return self._fire(fault, request)
            status, body, tr_cont = self._dispatch(request, path)
            for hook in list(self.on_request):
                hook(path, "after")
            if fault is None and status == 200:
                fault = self._take_fault(path, after=True)
            if fault is not None and status == 200:
                return self._fire(fault, request)
        headers = {"tr_cont": tr_cont, "tr_id": request.headers.get("tr_id", ""),
                   "gt_uid": secrets.token_hex(16)}
        return httpx.Response(status, json=body, headers=headers)

    def _take_fault(self, path: str, *, after: bool) -> Fault | None:
        for fault in self._faults:
            if fault.after_processing != after:
                continue
            if fault.path is None and not path.startswith("/uapi/"):
                continue
            if fault.path is not None and fault.path not in path:
                continue
            fault.count -= 1
            if fault.count <= 0:
                self._faults.remove(fault)
            return fault
        return None

    def _draw_fault(self, path: str) -> Fault | None:
        """The random mode's draw for one REST request (the token endpoint never draws)."""
        if self.fault_rate <= 0 or not path.startswith("/uapi/"):
            return None
        rng = self._fault_rng
        if rng.random() >= self.fault_rate:
            return None
        kind = rng.choice(self.fault_kinds)
        after = (path.endswith(ORDER_PATHS) and kind in ANSWER_LOST_KINDS
                 and rng.random() < 0.5)
        if kind == "no_odno" and not (after and path.endswith("/order-cash")):
            kind = "http_500"  # an answer without an order number exists for orders only
        return Fault(kind, path, 1, after, self.fault_hold_s)

    def _fire(self, fault: Fault, request: httpx.Request) -> httpx.Response:
        self.stats.faults_fired += 1
        self.stats.faults_by_kind[fault.kind] += 1
        if fault.after_processing:
            self.stats.faults_after_processing += 1
        if fault.kind == "timeout":
            raise FakeTimeout(fault.hold_s)
        if fault.kind == "drop":
            raise FakeDrop()
        if fault.kind == "malformed_json":
            return httpx.Response(200, content=b'{"rt_cd": "0", "output": [',
                                  headers={"content-type": "application/json"})
        if fault.kind == "token_expired":
            auth = request.headers.get("authorization", "")
            token = self._tokens.get(auth[7:]) if auth.startswith("Bearer ") else None
            if token is not None:
                token.expires_at = min(token.expires_at, self.clock())
            return httpx.Response(self.expired_token_status, json={
                "rt_cd": "1", "msg_cd": "EGW00123", "msg1": "기간이 만료된 token 입니다."})
        if fault.kind == "rate_limit":
            return self._rate_limited()
        if fault.kind == "no_odno":  # success, but the order number is missing
            return httpx.Response(200, json={
                "rt_cd": "0", "msg_cd": "APBK0013", "msg1": "주문 전송 완료 되었습니다.",
                "output": {"KRX_FWDG_ORD_ORGNO": "", "ODNO": "", "ORD_TMD": ""}})
        return httpx.Response(500, text="<html>500 Internal Server Error</html>")

    # --- control API over HTTP -------------------------------------------------------
    def _control(self, request: httpx.Request, path: str) -> httpx.Response:
        """``/_fake/...``: see the module docstring. Not a KIS request."""
        with self._lock:
            self.stats.control_requests += 1
        name = path[len(CONTROL_PREFIX):]
        methods = {"clock": "GET", "advance": "POST", "set_price": "POST"}
        if name not in methods:
            return _control_answer(404, {"error": f"no control endpoint {path}"})
        if request.method != methods[name]:
            return _control_answer(405, {"error": f"{path} takes {methods[name]}"})
        if name == "clock":
            return _control_answer(200, {"now": self.clock().isoformat()})
        try:
            body = json.loads(request.read() or b"{}")
            if not isinstance(body, dict):
                raise TypeError("the body must be a JSON object")
            if name == "advance":
                seconds = float(body["seconds"])
                if not seconds >= 0:  # also refuses NaN
                    raise ValueError("seconds must be ≥ 0")
                return _control_answer(200, {"now": self.advance(seconds).isoformat()})
            code = str(body["code"])
            price = body.get("price")
            if price is not None and (isinstance(price, bool) or not isinstance(price, int)
                                      or price <= 0):
                raise ValueError("price must be a positive integer (KRW) or null")
        except (ValueError, TypeError, KeyError) as exc:
            return _control_answer(400, {"error": f"bad body for {path}: {exc!r}"})
        with self._lock:
            if not self.market.known(code):
                return _control_answer(404, {"error": f"unknown stock code {code!r}"})
            self.set_price(code, price)
            return _control_answer(200, {"code": code, "price": self.market.price(code),
                                         "now": self.clock().isoformat()})

    def _rate_limited(self) -> httpx.Response:
        self.stats.rate_limited += 1
        return httpx.Response(500, json={"rt_cd": "1", "msg_cd": "EGW00201",
                                         "msg1": "초당 거래건수를 초과하였습니다."})

    def _body(self, request: httpx.Request) -> dict[str, Any]:
        raw = request.read()
        if not raw:
            return {}
        try:
            data = json.loads(raw)
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    def _dispatch(self, request: httpx.Request, path: str) -> ep.Result:
        if path == "/oauth2/tokenP" and request.method == "POST":
            return self._token(self._body(request))
        if path == "/oauth2/Approval" and request.method == "POST":
            return self._approval(self._body(request))
        if not path.startswith("/uapi/"):
            return ep.fail("OPSQ0002", "없는 서비스 코드 입니다", status=404)
        app_key = request.headers.get("appkey", "")
        acct = self.accounts.get(app_key)
        if acct is None or request.headers.get("appsecret") != acct.app_secret:
            return ep.fail("EGW00103", "유효하지 않은 AppKey입니다.", status=403)
        if not self._admit(app_key):
            return 500, json.loads(self._rate_limited().content), ""
        if path == "/uapi/hashkey":
            return 200, ep.hashkey(self._body(request)), ""
        auth = self._check_token(request, app_key)
        if auth is not None:
            return auth
        route = self._routes.get((request.method, path))
        if route is None:
            return ep.fail("OPSQ0002", "없는 서비스 코드 입니다", status=404)
        allowed, handler = route
        tr_id = request.headers.get("tr_id", "")
        if tr_id not in allowed:
            text = f"{'모의' if self.env == 'virtual' else '실전'}투자 TR 이 아닙니다."
            return ep.fail("OPSQ0002", text, status=500)
        self.match()
        ctx = ep.Ctx(acct, tr_id, dict(parse_qsl(request.url.query.decode(),
                                                 keep_blank_values=True)),
                     self._body(request), request.headers.get("tr_cont", ""), self.clock())
        return handler(ctx)

    def _order_cash(self, ctx: ep.Ctx) -> ep.Result:
        side = BUY if ctx.tr_id[4:] in ("0012U", "0802U") else SELL
        return ep.order_cash(self, ctx, side)

    def _admit(self, app_key: str) -> bool:
        now = self.rate_clock()
        window = self._windows.setdefault(app_key, deque())
        while window and window[0] <= now - 1.0:
            window.popleft()
        if len(window) >= self.rate_limit_per_s:
            return False
        window.append(now)
        self.arrivals.setdefault(app_key, []).append(now)
        return True

    def _check_token(self, request: httpx.Request, app_key: str) -> ep.Result | None:
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer "):
            return ep.fail("EGW00205", "credentials_type이 유효하지 않습니다.(Bearer)", status=500)
        token = self._tokens.get(auth[7:])
        if token is None or token.app_key != app_key or token.revoked:
            return ep.fail("EGW00121", "유효하지 않은 token 입니다.", status=500)
        if self.clock() >= token.expires_at:
            return ep.fail("EGW00123", "기간이 만료된 token 입니다.",
                           status=self.expired_token_status)
        return None

    def _approval(self, body: dict[str, Any]) -> ep.Result:
        """``/oauth2/Approval``: ``appkey`` + ``secretkey`` -> ``approval_key`` (a new one
        each call); ``refuse_approval`` makes it answer HTTP 403."""
        app_key = str(body.get("appkey", ""))
        acct = self.accounts.get(app_key)
        self.stats.by_path["/oauth2/Approval"] += 1
        if (self.refuse_approval or body.get("grant_type") != "client_credentials"
                or acct is None or body.get("secretkey") != acct.app_secret):
            return 403, {"error_code": "EGW00103",
                         "error_description": "유효하지 않은 AppKey입니다."}, ""
        key = secrets.token_hex(18)
        self.approval_keys[key] = app_key
        return 200, {"approval_key": key}, ""

    def _token(self, body: dict[str, Any]) -> ep.Result:
        app_key = str(body.get("appkey", ""))
        acct = self.accounts.get(app_key)
        if (body.get("grant_type") != "client_credentials" or acct is None
                or body.get("appsecret") != acct.app_secret):
            return 403, {"error_code": "EGW00103",
                         "error_description": "유효하지 않은 AppKey입니다."}, ""
        now = self.clock()
        last = self._token_requested_at.get(app_key)
        if last is not None and (now - last).total_seconds() < 60:
            self.stats.token_throttled += 1
            text = "접근토큰 발급 잠시 후 다시 시도하세요(1분당 1회)"
            return 403, {"error_code": "EGW00133", "error_description": text}, ""
        self._token_requested_at[app_key] = now
        current = [(k, t) for k, t in self._tokens.items()
                   if t.app_key == app_key and not t.revoked and now < t.expires_at]
        if current and now - current[-1][1].issued_at < ep.TOKEN_SAME_WITHIN:
            value, tok = current[-1]
        else:
            value = "fake-" + secrets.token_urlsafe(48)
            tok = _Token(app_key, now, now + ep.TOKEN_LIFETIME)
            self._tokens[value] = tok
            self.stats.tokens_issued += 1
        return 200, {"access_token": value, "token_type": "Bearer",
                     "expires_in": int((tok.expires_at - now).total_seconds()),
                     "access_token_token_expired": ep.expiry_text(tok.expires_at)}, ""


def _control_answer(status: int, body: dict[str, Any]) -> httpx.Response:
    return httpx.Response(status, json=body)


class FakeKISControl:
    """Client of the HTTP control API of a served fake (``base_url`` of a
    :class:`FakeKISServer`), for code running in another process. An instance is also a
    clock: ``control()`` returns the fake's current time (tz-aware KST)."""

    def __init__(self, base_url: str, *, timeout_s: float = 5.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self._http = httpx.Client(base_url=base_url, timeout=timeout_s, transport=transport)

    def now(self) -> datetime:
        """``GET /_fake/clock``."""
        return self._time(self._http.get(CONTROL_PREFIX + "clock"))

    __call__ = now

    def advance(self, seconds: float) -> datetime:
        """``POST /_fake/advance``: move the fake's clock ``seconds`` forward (it matches
        orders); returns the new time."""
        return self._time(self._http.post(CONTROL_PREFIX + "advance",
                                          json={"seconds": seconds}))

    def set_price(self, code: str, price: int | None) -> int:
        """``POST /_fake/set_price``: override the price of ``code`` in KRW (``None`` =
        back to the data); returns the current price."""
        answer = self._http.post(CONTROL_PREFIX + "set_price",
                                 json={"code": code, "price": price})
        answer.raise_for_status()
        return int(answer.json()["price"])

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> FakeKISControl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _time(answer: httpx.Response) -> datetime:
        answer.raise_for_status()
        return datetime.fromisoformat(answer.json()["now"])


__all__ = [
    "ANSWER_LOST_KINDS",
    "CONTROL_PREFIX",
    "FAULT_KINDS",
    "RANDOM_FAULT_KINDS",
    "FakeDrop",
    "FakeKIS",
    "FakeKISControl",
    "FakeKISServer",
    "FakeStats",
    "FakeTimeout",
    "Fault",
]
