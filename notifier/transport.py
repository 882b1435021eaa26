"""The python-telegram-bot :class:`~telegram.ext.Application` of the notifier, built so that the
bot token never reaches python-telegram-bot or httpx.

The application is built with a placeholder token; a small httpx transport puts the real one
into the URL path on the wire. So no URL, exception text, ``repr`` or log record of those
libraries (httpx logs every request URL at INFO, python-telegram-bot logs its API URL at DEBUG
and puts the token in some error texts and in ``repr(bot)``) can carry it. A masking
:class:`logging.Filter` on this package's, httpx's, httpcore's and telegram's loggers is a
second line of defence.
"""

from __future__ import annotations

import logging
import urllib.request
from datetime import timedelta
from typing import Any, Final
from urllib.parse import quote, urlsplit

import httpx
from telegram import Bot
from telegram.error import BadRequest, NetworkError, RetryAfter
from telegram.ext import Application, ApplicationBuilder
from telegram.request import HTTPXRequest
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from utils.log_masking import install_log_masking, mask_text

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL: Final = "https://api.telegram.org"
TOKEN_PLACEHOLDER: Final = "REDACTED"  # noqa: S105 - what the libraries see instead
_MAX_RETRY_AFTER_S: Final = 60.0
_MAX_BACKOFF_S: Final = 30.0
_MASKED_LOGGER_PREFIXES: Final = ("notifier", "httpx", "httpcore", "telegram")


class Secret:
    """Holds the token; its repr never shows it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"


def install_mask_filter() -> None:
    """Attach the masking filter to every existing notifier, httpx, httpcore and telegram
    logger (a logger's filters only see records created on that very logger)."""
    loggers: list[logging.Logger] = []
    for name, item in list(logging.Logger.manager.loggerDict.items()):
        if isinstance(item, logging.Logger) and name.split(".")[0] in _MASKED_LOGGER_PREFIXES:
            loggers.append(item)
    for name in _MASKED_LOGGER_PREFIXES:
        loggers.append(logging.getLogger(name))
    for each in loggers:
        install_log_masking(each)


class _TokenTransport(httpx.AsyncBaseTransport):
    """Swaps the placeholder token in ``/bot<placeholder>/`` for the real one on the wire only;
    httpx and python-telegram-bot keep seeing (and logging) the placeholder."""

    def __init__(self, inner: httpx.AsyncBaseTransport, secret: Secret) -> None:
        self._inner = inner
        self._secret = secret
        self._needle = f"/bot{TOKEN_PLACEHOLDER}/".encode("ascii")

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        raw_path = request.url.raw_path
        if self._needle in raw_path:
            token = quote(self._secret.reveal(), safe=":").encode("ascii")
            real = raw_path.replace(self._needle, b"/bot" + token + b"/", 1)
            request = httpx.Request(
                request.method,
                request.url.copy_with(raw_path=real),
                headers=request.headers,
                stream=request.stream,
                extensions=request.extensions,
            )
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()

    def __repr__(self) -> str:
        return "_TokenTransport()"


def _env_proxy(url: str) -> str | None:
    """The proxy the environment (``HTTPS_PROXY`` etc., ``NO_PROXY``) gives for ``url``: httpx
    ignores those variables once a custom transport is given, so it is applied here."""
    parts = urlsplit(url)
    if not parts.hostname or urllib.request.proxy_bypass(parts.hostname):
        return None
    proxies = urllib.request.getproxies()
    return proxies.get(parts.scheme) or proxies.get("all")


def build_application(
    base_url: str, secret: Secret, timeout_s: float
) -> tuple[Application[Any, Any, Any, Any, Any, Any], tuple[HTTPXRequest, ...]]:
    """The application for the Bot API at ``base_url`` (``{base_url}/bot{token}/{method}``)
    and its two HTTP clients (sending: a pool of 4; ``getUpdates``: 1), each request limited
    to ``timeout_s`` seconds (a long poll's own wait is added by python-telegram-bot).
    Updates are handled one at a time, in order; no job queue.

    Raises:
        ValueError: ``base_url`` is not an http(s) URL.
    """
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
    proxy = _env_proxy(base_url)

    def request(pool: int) -> HTTPXRequest:
        inner = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=pool), proxy=proxy)
        return HTTPXRequest(
            connection_pool_size=pool,
            read_timeout=timeout_s,
            write_timeout=timeout_s,
            connect_timeout=timeout_s,
            pool_timeout=timeout_s,
            httpx_kwargs={"transport": _TokenTransport(inner, secret)},
        )

    send_request, updates_request = request(4), request(1)
    application = (
        ApplicationBuilder()
        .token(TOKEN_PLACEHOLDER)
        .base_url(f"{base_url}/bot")
        .base_file_url(f"{base_url}/file/bot")
        .request(send_request)
        .get_updates_request(updates_request)
        .concurrent_updates(False)
        .job_queue(None)
        .build()
    )
    return application, (send_request, updates_request)


def describe(exc: BaseException) -> str:
    """``Type: message`` of ``exc``, masked and at most 300 characters (for logs and answers)."""
    return mask_text(f"{type(exc).__name__}: {exc}")[:300]


def _retryable(exc: BaseException) -> bool:
    """Network trouble, timeouts, HTTP 5xx and flood control are retried; client errors not."""
    if isinstance(exc, RetryAfter):
        return True
    return isinstance(exc, NetworkError) and not isinstance(exc, BadRequest)


async def send_text(
    bot: Bot, chat_id: int | str, text: str, *, silent: bool, attempts: int, backoff_s: float
) -> None:
    """``sendMessage`` of ``text`` (``disable_notification`` when ``silent``), tried
    ``attempts`` times in all: network errors, timeouts, HTTP 5xx and 429 are retried after
    ``backoff_s`` seconds doubling each time (at most 30 s) or the 429's ``retry_after`` (at
    most 60 s); client errors are not.

    Raises:
        telegram.error.TelegramError: the last failure.
    """

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, RetryAfter):
            after = exc.retry_after
            seconds = after.total_seconds() if isinstance(after, timedelta) else float(after)
            return min(seconds, _MAX_RETRY_AFTER_S)
        return min(backoff_s * 2 ** (state.attempt_number - 1), _MAX_BACKOFF_S)

    def log_retry(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        logger.debug("telegram send attempt %d failed (%s); retrying", state.attempt_number,
                     describe(exc) if exc else "?")

    retrying = AsyncRetrying(
        stop=stop_after_attempt(attempts), wait=wait, retry=retry_if_exception(_retryable),
        before_sleep=log_retry, reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            await bot.send_message(chat_id=chat_id, text=text, disable_notification=silent or None)
