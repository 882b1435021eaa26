"""The request pipeline of the KIS adapter: rate limiter, retries, breaker, token refresh.

Every REST call goes through :class:`KISClient`:

1. the access token (:class:`api.kis_auth.TokenManager`);
2. the circuit breaker (:mod:`api.circuit_breaker`; cancels bypass it);
3. a permit from the app key's :class:`KISRateLimiter` (one per app key per process);
4. one HTTP exchange, its answer checked by :mod:`api.kis_errors` (the only translation);
5. reads only: ``EGW00123``/``EGW00121`` -> refresh the token once and repeat; network
   errors, 5xx and ``EGW00201`` -> bounded retries with exponential back-off (tenacity).
   Orders are sent exactly once: a token error refreshes the token and raises
   ``AuthError`` (the order was refused by the gateway, not placed); an ambiguous failure
   raises ``UnknownOrderOutcomeError``.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import httpx
from pyrate_limiter import InMemoryBucket, Limiter, Rate, RateItem
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

log = get_logger(__name__)

DEFAULT_MARGIN_MS = 30
"""Extra length of the limiter's window over KIS's 1 s, absorbing network jitter between
the moment a permit is taken and the moment KIS counts the request (18 per 1.03 s = 97 %)."""


class KISRateLimiter:
    """Sliding-window limiter (pyrate-limiter ``SlidingWindowLog``) shared by all threads.

    At most ``per_second`` permits in any window of ``1000 + margin_ms`` ms. A permit's
    timestamp is the monotonic time at which it was granted (no sleep drift), so the
    requests leave at most ``per_second`` per rolling window as KIS counts them.
    """

    def __init__(self, per_second: int, *, margin_ms: int = DEFAULT_MARGIN_MS, name: str = "kis"):
        if per_second <= 0:
            raise ConfigError(f"requests per second must be positive, got {per_second}")
        self.per_second = per_second
        self.window_ms = 1000 + margin_ms
        self._name = name
        self._bucket = InMemoryBucket([Rate(per_second, self.window_ms)])
        self._limiter = Limiter(self._bucket)
        self._lock = threading.Lock()
        self.waits = 0

    def __repr__(self) -> str:
        return f"KISRateLimiter({self.per_second}/s, window={self.window_ms} ms)"

    def acquire(self, timeout_s: float = 60.0) -> None:
        """Block until a permit is free. ``RateLimitError`` if none within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                if self._limiter.try_acquire(self._name, blocking=False):
                    return
                probe = RateItem(self._name, self._bucket.now(), 1)
                wait = self._bucket.waiting(probe)
            wait_ms = wait if isinstance(wait, int) else 1
            self.waits += 1
            wait_s = max(int(wait_ms), 1) / 1000.0
            if time.monotonic() + wait_s > deadline:
                raise RateLimitError(f"no request permit within {timeout_s} s (client limiter)")
            time.sleep(wait_s)


_LIMITERS: dict[str, KISRateLimiter] = {}
_LIMITERS_LOCK = threading.Lock()


def rate_limiter_for(app_key: str, per_second: int) -> KISRateLimiter:
    """The process-wide limiter of ``app_key`` (created on first use).

    Raises ``ConfigError`` if the app key already has a limiter with another rate.
    """
    key = hashlib.sha256(app_key.encode()).hexdigest()
    with _LIMITERS_LOCK:
        limiter = _LIMITERS.get(key)
        if limiter is None:
            limiter = _LIMITERS[key] = KISRateLimiter(per_second, name=key[:12])
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
            self.limiter.acquire()
            log.debug("KIS %s %s params=%s", method, what, mask_text(str(params or body)))
            try:
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
