"""KIS access token (issue, on-disk cache, refresh), hashkey, the shared HTTP client, and
secret masking for logs.

Token rules (``POST /oauth2/tokenP``, no tr_id):

* a token lives 24 h; it is cached in ``<token_dir>/<env>-<sha256(app key)[:16]>.json``
  (mode 0600, directory 0700) and reused across restarts until ``refresh_margin_s``
  (default 10 min) before ``access_token_token_expired``;
* a new token is never asked for within 60 s of the previous request for one (KIS answers
  HTTP 403 ``EGW00133`` otherwise). The time of the last request is kept in the cache file
  too, so a quick restart honours the rule as well; a request inside that minute waits for
  the rest of it (a countdown in the log every 10 s) and a ``EGW00133`` answer waits one
  minute once. A request that never reached KIS (connect error) does not start the minute;
* :meth:`TokenManager.refresh` replaces a token KIS rejected (``EGW00123`` expired); callers
  repeat a read once after it.

Masking: :func:`mask` turns a secret into ``"ab***"``; :class:`SecretMaskingFilter` replaces
every registered secret (app key, secret, account number, tokens) in log records. The filter
is installed on the loggers of ``api.*`` modules and of ``httpx``/``httpcore``; ``main.py``
may add it to its handlers too (:func:`install_log_masking`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from api.kis_errors import (
    TOKEN_THROTTLED_CODE,
    check_response,
    is_not_sent,
    translate_transport_error,
)
from api.kis_schemas import HashkeyResponse, TokenResponse
from api.kis_settings import KISSettings
from framework.errors import AuthError
from utils.clock import KST
from utils.log_masking import SecretMaskingFilter as SecretMaskingFilter
from utils.log_masking import install_log_masking as install_log_masking
from utils.log_masking import mask as mask
from utils.log_masking import mask_text as mask_text
from utils.log_masking import register_secret as register_secret

TOKEN_PATH = "/oauth2/tokenP"  # noqa: S105 (a URL path)
HASHKEY_PATH = "/uapi/hashkey"
MIN_TOKEN_REQUEST_INTERVAL_S = 60
TOKEN_WAIT_STEP_S = 10.0
"""Seconds between the countdown lines while the once-a-minute rule is waited out."""

Clock = Callable[[], datetime]


def kst_now() -> datetime:
    """Current time, tz-aware ``Asia/Seoul`` (the default clock of the adapter)."""
    return datetime.now(tz=KST)


# --- masking (utils.log_masking) ---------------------------------------------------
def get_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)`` with the masking filter attached."""
    logger = logging.getLogger(name)
    install_log_masking(logger)
    return logger


for _name in ("httpx", "httpcore"):
    install_log_masking(logging.getLogger(_name))

log = get_logger(__name__)


# --- HTTP client --------------------------------------------------------------------
def make_http_client(
    settings: KISSettings, transport: httpx.BaseTransport | None = None
) -> httpx.Client:
    """The one ``httpx.Client`` of an adapter: base URL, timeouts, optional transport.

    Pass ``httpx.MockTransport(fake)`` as ``transport`` to run against an in-process fake.
    """
    timeout = httpx.Timeout(settings.timeout_s, connect=settings.connect_timeout_s)
    return httpx.Client(
        base_url=settings.rest_base_url,
        timeout=timeout,
        transport=transport,
        headers={"content-type": "application/json; charset=utf-8"},
    )


# --- token --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CachedToken:
    """A token and its expiry (tz-aware KST)."""

    access_token: str
    expires_at: datetime
    issued_at: datetime

    def __repr__(self) -> str:
        token = mask(self.access_token)
        return f"CachedToken(access_token={token!r}, expires_at={self.expires_at})"


class TokenManager:
    """Issues, caches and refreshes the access token of one app key and environment.

    Parameters
    ----------
    settings:
        App key/secret, env and token directory.
    http:
        The shared client (its base URL is the REST host).
    clock:
        ``() -> datetime`` tz-aware; tests share a fake clock with the fake server.
    before_request:
        Called before each hashkey request (the rate limiter's ``acquire``).
    sleep:
        Waits out the once-a-minute token rule (tests pass a fake that moves the clock).

    Thread-safe: concurrent callers share one token and one refresh.
    """

    def __init__(
        self,
        settings: KISSettings,
        http: httpx.Client,
        *,
        clock: Clock = kst_now,
        before_request: Callable[[], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._settings = settings
        self._sleep = sleep
        self._http = http
        self._clock = clock
        self._before_request = before_request
        self._lock = threading.RLock()
        self._token: CachedToken | None = None
        self._last_request_at: datetime | None = None
        app_hash = hashlib.sha256(settings.app_key.get_secret_value().encode()).hexdigest()[:16]
        self.cache_path = settings.resolved_token_dir() / f"{settings.env}-{app_hash}.json"
        register_secret(*settings.secrets())

    def __repr__(self) -> str:
        return f"TokenManager(env={self._settings.env!r}, cache={str(self.cache_path)!r})"

    # public --------------------------------------------------------------------------
    def token(self) -> str:
        """A valid access token: memory, else the disk cache, else a new one from KIS.

        Raises ``AuthError`` (refused, or throttled: last request < 60 s ago) and
        ``TransientBrokerError`` (network error / 5xx at the token endpoint).
        """
        with self._lock:
            if self._token is None or not self._usable(self._token):
                self._load_cache()
            if self._token is not None and self._usable(self._token):
                return self._token.access_token
            return self._issue().access_token

    def refresh(self, rejected_token: str | None = None) -> str:
        """Replace a token KIS rejected; if another thread already did, return that one."""
        with self._lock:
            if (
                rejected_token is not None
                and self._token is not None
                and self._token.access_token != rejected_token
                and self._usable(self._token)
            ):
                return self._token.access_token
            self._token = None
            return self._issue().access_token

    def auth_headers(self) -> dict[str, str]:
        """``authorization``, ``appkey`` and ``appsecret`` headers for a REST call."""
        return {
            "authorization": f"Bearer {self.token()}",
            "appkey": self._settings.app_key.get_secret_value(),
            "appsecret": self._settings.app_secret.get_secret_value(),
        }

    def hashkey(self, body: Mapping[str, Any]) -> str:
        """``POST /uapi/hashkey``: the ``HASH`` of an order body, sent as header ``hashkey``."""
        if self._before_request is not None:
            self._before_request()
        headers = {
            "appkey": self._settings.app_key.get_secret_value(),
            "appsecret": self._settings.app_secret.get_secret_value(),
        }
        try:
            response = self._http.post(HASHKEY_PATH, json=dict(body), headers=headers)
        except httpx.HTTPError as exc:
            raise translate_transport_error(exc, kind="read", what="hashkey") from exc
        return HashkeyResponse.model_validate(
            check_response(response, kind="read", what="hashkey")
        ).HASH

    # internals -----------------------------------------------------------------------
    def _usable(self, token: CachedToken) -> bool:
        margin = timedelta(seconds=self._settings.token_refresh_margin_s)
        return self._clock() < token.expires_at - margin

    def _issue(self) -> CachedToken:
        """A new token from KIS, waiting (at most a minute, with a countdown in the log)
        when the once-a-minute rule is all that stands in the way."""
        now = self._clock()
        last = self._last_request_at or self._read_cache_field("last_request_at")
        if last is not None:
            wait_s = MIN_TOKEN_REQUEST_INTERVAL_S - (now - last).total_seconds()
            if wait_s > 0:
                self._wait_for_token_rule(min(wait_s, MIN_TOKEN_REQUEST_INTERVAL_S))
                self._load_cache()  # another process may have got one meanwhile
                token = self._token
                if token is not None and token.issued_at > last and self._usable(token):
                    return token
                self._token = None
        try:
            return self._request_token()
        except AuthError as exc:
            if exc.code != TOKEN_THROTTLED_CODE:
                raise
            # KIS saw a token request we did not (another machine or process): wait once
            self._wait_for_token_rule(MIN_TOKEN_REQUEST_INTERVAL_S)
            return self._request_token()

    def _wait_for_token_rule(self, wait_s: float) -> None:
        left = wait_s
        while left > 0:
            log.warning(
                "KIS issues one access token a minute: requesting a new one in %.0f s", left
            )
            step = min(left, TOKEN_WAIT_STEP_S)
            self._sleep(step)
            left -= step

    def _request_token(self) -> CachedToken:
        now = self._clock()
        before = self._last_request_at
        self._last_request_at = now
        self._write_cache(self._token, now)
        body = {
            "grant_type": "client_credentials",
            "appkey": self._settings.app_key.get_secret_value(),
            "appsecret": self._settings.app_secret.get_secret_value(),
        }
        log.info("requesting a new KIS access token (env=%s)", self._settings.env)
        try:
            response = self._http.post(TOKEN_PATH, json=body)
        except httpx.HTTPError as exc:
            if is_not_sent(exc):  # KIS never saw it: the minute does not start
                self._last_request_at = before
                self._write_cache(self._token, before) if before else self._forget_request()
            raise translate_transport_error(exc, kind="read", what="tokenP") from exc
        data = TokenResponse.model_validate(check_response(response, kind="read", what="tokenP"))
        register_secret(data.access_token)
        token = CachedToken(data.access_token, data.expires_at(now), now)
        self._token = token
        self._write_cache(token, now)
        log.info("new KIS token valid until %s", token.expires_at.isoformat())
        return token

    def _read_cache_file(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.cache_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _read_cache_field(self, key: str) -> datetime | None:
        data = self._read_cache_file()
        if not data or not data.get(key):
            return None
        try:
            return datetime.fromisoformat(str(data[key]))
        except ValueError:
            return None

    def _load_cache(self) -> None:
        data = self._read_cache_file()
        if not data or not data.get("access_token"):
            return
        try:
            token = CachedToken(
                access_token=str(data["access_token"]),
                expires_at=datetime.fromisoformat(str(data["expires_at"])),
                issued_at=datetime.fromisoformat(str(data["issued_at"])),
            )
        except (KeyError, ValueError):
            log.warning("ignoring an unreadable token cache file %s", self.cache_path)
            return
        register_secret(token.access_token)
        if self._usable(token):
            log.debug("using the cached KIS token from %s", self.cache_path)
            self._token = token

    def _forget_request(self) -> None:
        """Drop ``last_request_at`` from the cache file (a request that was never sent)."""
        if self._token is None:
            self.cache_path.unlink(missing_ok=True)

    def _write_cache(self, token: CachedToken | None, request_at: datetime) -> None:
        directory: Path = self.cache_path.parent
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        data: dict[str, str] = {
            "env": self._settings.env,
            "last_request_at": request_at.isoformat(),
        }
        if token is not None:
            data.update(
                access_token=token.access_token,
                expires_at=token.expires_at.isoformat(),
                issued_at=token.issued_at.isoformat(),
            )
        tmp = self.cache_path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.cache_path)
