"""The request pipeline of the KIS adapter: rate limiter, retries, breaker, token refresh.

Every REST call goes through :class:`KISClient`:

1. the access token (:class:`api.kis_auth.TokenManager`);
2. the circuit breaker (:mod:`api.circuit_breaker`; cancels bypass it);
3. a permit from the app key's :class:`KISRateLimiter` (one per app key, shared by every
   process of that app key through a SQLite file in the per-user state folder), held
   until the answer arrives;
4. one HTTP exchange, its answer checked by :mod:`api.kis_errors` (the only translation);
5. reads only: ``EGW00123``/``EGW00121`` -> refresh the token once and repeat; network
   errors, 5xx and ``EGW00201`` -> bounded retries with exponential back-off (tenacity).
   Orders are sent exactly once: a token error refreshes the token and raises
   ``AuthError`` (the order was refused by the gateway, not placed); an ambiguous failure
   raises ``UnknownOrderOutcomeError``.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from api.circuit_breaker import KISCircuitBreaker
from api.kis_auth import Clock, TokenManager, get_logger, kst_now, make_http_client
from api.kis_errors import (
    TOKEN_MSG_CODES,
    RequestKind,
    check_response,
    translate_transport_error,
)
from api.kis_settings import KISSettings
from framework.errors import AuthError, ConfigError, RateLimitError, TransientBrokerError
from utils.log_masking import mask_text
from utils.state import state_dir

log = get_logger(__name__)

DEFAULT_MARGIN_MS = 2
"""Extra length of the limiter's window over KIS's 1 s, for clock granularity only (permits
are stamped in whole milliseconds, floored, so a 1001 ms window may span 1000.x ms): network
and scheduling jitter cannot make KIS count too many, because a request holds its permit
until its answer arrives (see :class:`KISRateLimiter`). Measured with
``benchmarks/download_rate.py --cpu-load N``; figures in ``docs/kis_market_data.md``."""

STALE_IN_FLIGHT_MS = 60_000
"""A permit still in flight after this long belongs to a process that died; it is ignored."""


def shared_limiter_dir() -> Path:
    """Folder of the per-app-key limiter files: ``<state dir>/ratelimit``
    (:func:`utils.state.state_dir`)."""
    return state_dir() / "ratelimit"


class _ProcessLock:
    """A lock held across threads (``RLock``) and processes (``filelock.FileLock``)."""

    def __init__(self, path: Path | None) -> None:
        from filelock import FileLock

        self._thread = threading.RLock()
        self._file = FileLock(str(path), thread_local=False) if path is not None else None

    def __enter__(self) -> _ProcessLock:
        self._thread.acquire()
        if self._file is not None:
            try:
                self._file.acquire(timeout=-1, poll_interval=0.001)
            except BaseException:
                self._thread.release()
                raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.release()
        self._thread.release()


class KISRateLimiter:
    """Sliding-window limiter shared by all threads and, with ``path``, by all processes of
    the same app key (a SQLite file in WAL mode behind a file lock).

    KIS counts a request when it arrives, somewhere between the moment the client sends it
    and the moment the answer comes back. So a request holds its permit *in flight* from
    the grant until its answer (:meth:`hold`), and then the permit is stamped with the time
    of the answer. A new permit is granted only while fewer than ``per_second`` permits are
    in flight or were answered within the last ``1000 + margin_ms`` ms: then, whatever the
    delays of the network or of the scheduler (a busy machine), no 1 s window at KIS can
    hold more than ``per_second`` arrivals. Worked number: 18/s with answers taking 12 ms and
    the 2 ms margin gives 18 requests per 1.014 s, 98.6 % of the limit.

    Parameters
    ----------
    per_second:
        Budget, requests per second (KIS: 18 real, 1 virtual).
    margin_ms:
        Window length over 1000 ms (see :data:`DEFAULT_MARGIN_MS`).
    name:
        Shown in ``repr``.
    path:
        ``None``: this process only (SQLite in memory). A file: shared by every process
        using it. A process with a lower ``per_second`` waits while the window holds that
        many permits of anyone, so the smaller budget yields to the larger one and the total
        never exceeds the larger.
    """

    def __init__(self, per_second: int, *, margin_ms: int = DEFAULT_MARGIN_MS,
                 name: str = "kis", path: Path | None = None):
        if per_second <= 0:
            raise ConfigError(f"requests per second must be positive, got {per_second}")
        self.per_second = per_second
        self.window_ms = 1000 + margin_ms
        self.path = path
        self._name = name
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = _ProcessLock(path.with_name(path.name + ".lock") if path else None)
        with self._lock:
            self._db = sqlite3.connect(str(path) if path else ":memory:",
                                       isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA busy_timeout=10000")
            if path is not None:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS kis_permits (id INTEGER PRIMARY KEY, "
                             "ts INTEGER NOT NULL, done INTEGER NOT NULL)")
        self.waits = 0
        self.granted = 0
        self.held_s = 0.0
        """Seconds permits were held in flight by :meth:`hold`, summed (the answer times)."""

    def __repr__(self) -> str:
        where = f", shared={self.path.name}" if self.path else ""
        return f"KISRateLimiter({self.per_second}/s, window={self.window_ms} ms{where})"

    @staticmethod
    def _now_ms() -> int:
        return time.time_ns() // 1_000_000  # wall clock: the same in every process

    def _try(self) -> tuple[int | None, float]:
        """Grant a permit (its id) or say how long to wait (seconds)."""
        now = self._now_ms()
        since = now - self.window_ms
        with self._lock:
            db = self._db
            db.execute("DELETE FROM kis_permits WHERE (done = 1 AND ts <= ?) "
                       "OR (done = 0 AND ts < ?)", (since, now - STALE_IN_FLIGHT_MS))
            (count,) = db.execute("SELECT COUNT(*) FROM kis_permits").fetchone()
            if count < self.per_second:
                cur = db.execute("INSERT INTO kis_permits (ts, done) VALUES (?, 0)", (now,))
                return int(cur.lastrowid or 0), 0.0
            (oldest,) = db.execute("SELECT MIN(ts) FROM kis_permits WHERE done = 1").fetchone()
        if oldest is None:  # all in flight: the first answer frees one
            return None, 0.002
        return None, max(1, oldest - since + 1) / 1000.0

    def _take(self, timeout_s: float) -> int:
        deadline = time.monotonic() + timeout_s
        while True:
            permit, wait_s = self._try()
            if permit is not None:
                self.granted += 1
                return permit
            self.waits += 1
            if time.monotonic() + wait_s > deadline:
                raise RateLimitError(f"no request permit within {timeout_s} s (client limiter)")
            time.sleep(wait_s)

    def _done(self, permit: int, held_s: float = 0.0) -> None:
        with self._lock:
            self._db.execute("UPDATE kis_permits SET ts = ?, done = 1 WHERE id = ?",
                             (self._now_ms(), permit))
            self.held_s += held_s

    def acquire(self, timeout_s: float = 60.0) -> None:
        """A permit answered at once (for a request whose answer is not waited on here).
        ``RateLimitError`` if none within ``timeout_s``."""
        self._done(self._take(timeout_s))

    @contextmanager
    def hold(self, timeout_s: float = 60.0) -> Iterator[None]:
        """Hold a permit while one request is sent and answered (see the class docstring).
        ``RateLimitError`` if none within ``timeout_s``."""
        permit = self._take(timeout_s)
        started = time.monotonic()
        try:
            yield
        finally:
            self._done(permit, time.monotonic() - started)


_LIMITERS: dict[str, KISRateLimiter] = {}
_LIMITERS_LOCK = threading.Lock()


def rate_limiter_for(app_key: str, per_second: int, *, shared: bool = True) -> KISRateLimiter:
    """The limiter of ``app_key`` in this process (created on first use).

    ``shared`` (default): backed by ``<state dir>/ratelimit/<hash of the app key>.sqlite``,
    so every process of the same app key shares the budget (the file holds permit times
    only, never the key). Raises ``ConfigError`` if the app key already has a limiter with
    another rate in this process.
    """
    key = hashlib.sha256(app_key.encode()).hexdigest()
    path = shared_limiter_dir() / f"{key[:24]}.sqlite" if shared else None
    slot = f"{key}|{path}"
    with _LIMITERS_LOCK:
        limiter = _LIMITERS.get(slot)
        if limiter is None:
            limiter = _LIMITERS[slot] = KISRateLimiter(per_second, name=key[:12], path=path)
        elif limiter.per_second != per_second:
            raise ConfigError(
                f"this app key already has a {limiter.per_second}/s limiter; "
                f"asked for {per_second}/s"
            )
        return limiter


def reset_rate_limiters() -> None:
    """Forget every limiter (tests)."""
    with _LIMITERS_LOCK:
        _LIMITERS.clear()


@dataclass(frozen=True, slots=True)
class KISResponse:
    """A successful answer: JSON ``body`` and the ``tr_cont`` response header."""

    body: dict[str, Any]
    tr_cont: str = ""

    @property
    def has_next(self) -> bool:
        """``F``/``M`` = more pages follow; ``D``/``E`` = last page."""
        return self.tr_cont.strip().upper() in ("F", "M")


def tr_id(settings: KISSettings, real: str, virtual: str) -> str:
    """The tr_id for the configured environment."""
    return real if settings.is_real else virtual


class KISClient:
    """Sends KIS REST requests through the pipeline described in the module docstring.

    Parameters
    ----------
    settings:
        Credentials, env, timeouts, retry policy.
    transport:
        Optional httpx transport (``httpx.MockTransport(fake)`` in tests).
    clock:
        Tz-aware ``now()`` for token expiry and the once-a-minute rule.
    breaker, limiter:
        Override the defaults (a new breaker; the app key's process-wide limiter).
    sleep:
        Used between retries (tests pass a no-op).
    """

    def __init__(
        self,
        settings: KISSettings,
        *,
        transport: httpx.BaseTransport | None = None,
        clock: Clock = kst_now,
        breaker: KISCircuitBreaker | None = None,
        limiter: KISRateLimiter | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.http = make_http_client(settings, transport)
        self.limiter = limiter or rate_limiter_for(
            settings.app_key.get_secret_value(), settings.rate_limit_per_s
        )
        self.breaker = breaker or KISCircuitBreaker()
        self.tokens = TokenManager(
            settings, self.http, clock=clock, before_request=self.limiter.acquire, sleep=sleep
        )
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"KISClient(env={self.settings.env!r}, base_url={self.settings.rest_base_url!r})"

    def close(self) -> None:
        self.http.close()

    # public --------------------------------------------------------------------------
    def get(
        self,
        path: str,
        tr_id: str,
        params: Mapping[str, str],
        *,
        tr_cont: str = "",
    ) -> KISResponse:
        """A read (``GET``): token refresh once on ``EGW00123``, bounded retries on
        network errors, 5xx and ``EGW00201``. Raises the last error when retries run out."""
        retrying = Retrying(
            stop=stop_after_attempt(1 + self.settings.max_read_retries),
            wait=wait_exponential(
                multiplier=self.settings.retry_wait_s, max=self.settings.retry_wait_s * 8
            ) + wait_random(0, self.settings.retry_wait_s / 2),
            retry=retry_if_exception_type(TransientBrokerError),
            sleep=self._sleep,
            reraise=True,
            before_sleep=lambda state: log.info(
                "retrying %s %s after %r (attempt %d)", path, tr_id,
                state.outcome.exception() if state.outcome else None, state.attempt_number,
            ),
        )
        for attempt in retrying:
            with attempt:
                return self._with_token_refresh("GET", path, tr_id, params, None, tr_cont)
        raise AssertionError("unreachable")  # pragma: no cover

    def post_order(
        self, path: str, tr_id: str, body: Mapping[str, str], *, bypass_breaker: bool = False
    ) -> KISResponse:
        """An order POST, sent exactly once (see the module docstring for errors)."""
        token = self.tokens.token()
        try:
            return self._send("POST", path, tr_id, None, body, "", "order", token, bypass_breaker)
        except AuthError as exc:
            if exc.code in TOKEN_MSG_CODES:
                self.tokens.refresh(rejected_token=token)
            raise

    # internals -----------------------------------------------------------------------
    def _with_token_refresh(
        self,
        method: Literal["GET", "POST"],
        path: str,
        tr_id: str,
        params: Mapping[str, str] | None,
        body: Mapping[str, str] | None,
        tr_cont: str,
    ) -> KISResponse:
        token = self.tokens.token()
        try:
            return self._send(method, path, tr_id, params, body, tr_cont, "read", token, False)
        except AuthError as exc:
            if exc.code not in TOKEN_MSG_CODES:
                raise
            log.info("KIS refused the token (%s); refreshing once", exc.code)
            token = self.tokens.refresh(rejected_token=token)
            return self._send(method, path, tr_id, params, body, tr_cont, "read", token, False)

    def _send(
        self,
        method: Literal["GET", "POST"],
        path: str,
        tr_id: str,
        params: Mapping[str, str] | None,
        body: Mapping[str, str] | None,
        tr_cont: str,
        kind: RequestKind,
        token: str,
        bypass_breaker: bool,
    ) -> KISResponse:
        headers = {
            "authorization": f"Bearer {token}",
            "appkey": self.settings.app_key.get_secret_value(),
            "appsecret": self.settings.app_secret.get_secret_value(),
            "tr_id": tr_id,
            "custtype": "P",
            "tr_cont": tr_cont,
        }
        what = f"{path.rsplit('/', 1)[-1]} {tr_id}"
        with self.breaker.guard(bypass=bypass_breaker):
            if body is not None and self.settings.use_hashkey:
                headers["hashkey"] = self.tokens.hashkey(body)
            log.debug("KIS %s %s params=%s", method, what, mask_text(str(params or body)))
            try:
                with self.limiter.hold():
                    response = self.http.request(
                        method, path, params=dict(params) if params else None,
                        json=dict(body) if body is not None else None, headers=headers,
                    )
            except httpx.HTTPError as exc:
                raise translate_transport_error(exc, kind=kind, what=what) from exc
            data = check_response(response, kind=kind, what=what)
        return KISResponse(data, response.headers.get("tr_cont", ""))


def paginate(
    client: KISClient,
    path: str,
    tr_id: str,
    params: Mapping[str, str],
    *,
    max_pages: int = 200,
) -> Iterator[dict[str, Any]]:
    """Yield the body of each page of a 연속조회 inquiry.

    First call: header ``tr_cont ""`` and empty ``CTX_AREA_FK100``/``CTX_AREA_NK100``; while
    the answer's header ``tr_cont`` is ``F``/``M``, call again with ``tr_cont "N"`` and the
    cursors from the previous body. Stops on ``D``/``E``, on blank cursors or after
    ``max_pages`` (then ``TransientBrokerError``: the listing would be incomplete).
    """
    query = dict(params)
    query.setdefault("CTX_AREA_FK100", "")
    query.setdefault("CTX_AREA_NK100", "")
    tr_cont = ""
    for _ in range(max_pages):
        page = client.get(path, tr_id, query, tr_cont=tr_cont)
        yield page.body
        fk = str(page.body.get("ctx_area_fk100", page.body.get("CTX_AREA_FK100", ""))).strip()
        nk = str(page.body.get("ctx_area_nk100", page.body.get("CTX_AREA_NK100", ""))).strip()
        if not page.has_next or not (fk or nk):
            return
        query["CTX_AREA_FK100"], query["CTX_AREA_NK100"] = fk, nk
        tr_cont = "N"
    raise TransientBrokerError(f"{path}: more than {max_pages} pages; listing incomplete")
