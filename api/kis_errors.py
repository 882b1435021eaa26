"""The one place where httpx errors and KIS answers become :mod:`framework.errors`.

Every HTTP exchange of the adapter ends in :func:`check_response` (an answer arrived) or
:func:`translate_transport_error` (no answer). Both take ``kind``:

* ``"read"`` — inquiries; network errors, 5xx and ``EGW00201`` become
  :class:`TransientBrokerError` / :class:`RateLimitError` (the caller retries them);
* ``"order"`` — order-cash and revise/cancel POSTs; anything ambiguous (a read timeout, a
  dropped connection, a 5xx without a gateway code, an unreadable body) becomes
  :class:`UnknownOrderOutcomeError` because the order may have been placed. A connect error
  or connect timeout is definite (nothing was sent) and stays a ``TransientBrokerError``.

Error mapping (``msg_cd`` = KIS message code, HTTP status in brackets):

==========================================  ==============================================
answer                                      raised
==========================================  ==============================================
``EGW00201`` [500 or 200]                   ``RateLimitError`` (reads and orders: gateway
                                            refused it before it reached the order system)
``EGW00123`` ``EGW00121`` ``EGW00205``      ``AuthError`` (the caller refreshes once)
``EGW00133`` [403, ``error_code`` shape]    ``AuthError`` (token issued less than 1 min ago)
``EGW00103`` ``EGW00105`` [403]             ``AuthError`` (wrong app key / secret)
HTTP 401                                    ``AuthError``
other 5xx                                   read: ``TransientBrokerError``;
                                            order: ``UnknownOrderOutcomeError``
``모의투자 TR 이 아닙니다`` [500]            ``BrokerError`` (TR of the other environment)
other 4xx                                   ``BrokerError`` / order: ``OrderRejectedError``
``rt_cd != "0"`` [200]                      read: ``BrokerError``; order:
                                            ``InsufficientFundsError`` or ``OrderRejectedError``
``조회할 자료가 없습니다`` [200]             not an error: empty result
==========================================  ==============================================
"""

from __future__ import annotations

import json
from typing import Any, Literal

import httpx

from framework.errors import (
    AuthError,
    BrokerError,
    InsufficientFundsError,
    OrderRejectedError,
    RateLimitError,
    TransientBrokerError,
    UnknownOrderOutcomeError,
)

RequestKind = Literal["read", "order"]

RETRYABLE_MSG_CODES: frozenset[str] = frozenset(
    {
        # 초당 거래건수를 초과하였습니다: over the per-appkey requests/second limit
        # (HTTP 500 mostly, 200 in some reports). Reads back off and retry.
        "EGW00201",
    }
)
"""``msg_cd`` values after which a read may be repeated (after a back-off)."""

TOKEN_MSG_CODES: frozenset[str] = frozenset(
    {
        "EGW00123",  # 기간이 만료된 token 입니다: expired -> issue a new token, repeat once
        "EGW00121",  # 유효하지 않은 token 입니다: invalid -> issue a new token, repeat once
        "EGW00205",  # credentials_type이 유효하지 않습니다(Bearer): bad header -> same
    }
)
"""``msg_cd`` values that mean "the access token is not accepted"."""

TOKEN_THROTTLED_CODE = "EGW00133"  # noqa: S105 (a message code)
"""접근토큰 발급 잠시 후 다시 시도하세요(1분당 1회): a token was issued less than 1 min ago."""

BAD_CREDENTIAL_CODES: frozenset[str] = frozenset(
    {
        "EGW00103",  # 유효하지 않은 AppKey입니다: wrong app key (or of the other environment)
        "EGW00105",  # 유효하지 않은 AppSecret입니다: wrong app secret
    }
)
"""``msg_cd`` values that mean "these credentials are wrong": never retried."""

INSUFFICIENT_FUNDS_CODES: frozenset[str] = frozenset(
    {
        "APBK0952",  # 주문가능금액을 초과 했습니다 (observed code; also matched by text)
    }
)
_INSUFFICIENT_FUNDS_TEXT = ("주문가능금액", "잔고부족", "매수가능금액")
_NO_DATA_TEXT = "조회할 자료가 없습니다"
_WRONG_ENV_TR_TEXT = ("TR 이 아닙니다", "TR이 아닙니다")

# connect-phase failures: the request never left this process
_NOT_SENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def is_not_sent(exc: httpx.HTTPError) -> bool:
    """True for a connect-phase failure: the request never left this process."""
    return isinstance(exc, _NOT_SENT_ERRORS)


def _where(exc: httpx.HTTPError) -> str:
    try:
        url = exc.request.url
    except RuntimeError:  # no request attached
        return "KIS"
    return f"{url.host}:{url.port or (443 if url.scheme == 'https' else 80)}"


_DNS_TEXT = ("name or service not known", "nodename nor servname", "name resolution",
             "getaddrinfo failed", "no address associated")
_TLS_TEXT = ("ssl", "certificate", "tls", "handshake")


def describe_connect_error(exc: httpx.HTTPError) -> str:
    """What went wrong before a request was sent, with host:port: ``cannot connect to
    127.0.0.1:59999 (connection refused)``, ``DNS lookup of … failed``, ``TLS handshake …``."""
    where = _where(exc)
    detail = str(exc).strip()
    low = detail.lower()
    if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
        return f"cannot connect to {where} (no answer within the connect timeout)"
    if any(t in low for t in _DNS_TEXT):
        return f"DNS lookup of {where.rsplit(':', 1)[0]} failed ({detail})"
    if any(t in low for t in _TLS_TEXT):
        return f"TLS handshake with {where} failed ({detail})"
    reason = "connection refused" if "refused" in low else detail or type(exc).__name__
    return f"cannot connect to {where} ({reason})"


def translate_transport_error(exc: httpx.HTTPError, *, kind: RequestKind, what: str) -> BrokerError:
    """Map an httpx exception (no answer received) to a framework error to ``raise … from``."""
    name = type(exc).__name__
    if isinstance(exc, _NOT_SENT_ERRORS):
        return TransientBrokerError(f"{what}: not sent, {describe_connect_error(exc)}")
    if kind == "order":
        return UnknownOrderOutcomeError(
            f"{what}: no answer ({name}); the order may or may not exist, look it up first"
        )
    return TransientBrokerError(f"{what}: network error ({name})")


def parse_body(response: httpx.Response) -> dict[str, Any] | None:
    """The JSON object of ``response``, or ``None`` if the body is not a JSON object."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def check_response(response: httpx.Response, *, kind: RequestKind, what: str) -> dict[str, Any]:
    """Return the JSON body of a successful KIS answer, else raise the matching error.

    ``what`` names the call in messages (``"inquire-balance VTTC8434R"``); it must not
    contain secrets.
    """
    status = response.status_code
    body = parse_body(response)
    if body is None:
        if kind == "order":
            raise UnknownOrderOutcomeError(
                f"{what}: unreadable answer (HTTP {status}); look the order up first"
            )
        raise TransientBrokerError(f"{what}: unreadable answer (HTTP {status})")

    code = str(body.get("msg_cd") or body.get("error_code") or "").strip() or None
    message = str(body.get("msg1") or body.get("error_description") or "").strip()
    text = f"{what}: {message or 'error'} (HTTP {status}, msg_cd {code})"

    if code in RETRYABLE_MSG_CODES:
        raise RateLimitError(text, code=code)
    if code in TOKEN_MSG_CODES or code == TOKEN_THROTTLED_CODE:
        raise AuthError(text, code=code)
    if code in BAD_CREDENTIAL_CODES:
        raise AuthError(
            f"{text}: KIS refused the app key or secret; check KIS_APP_KEY, KIS_APP_SECRET "
            "and KIS_ENV (real and virtual accounts have different keys)",
            code=code,
        )
    if status == 401:
        raise AuthError(
            f"{text}: HTTP 401 Unauthorized; check KIS_APP_KEY, KIS_APP_SECRET and "
            "KIS_BASE_URL",
            code=code,
        )
    if status >= 500:
        if any(t in message for t in _WRONG_ENV_TR_TEXT):
            raise BrokerError(text, code=code)
        if kind == "order":
            raise UnknownOrderOutcomeError(text + "; look the order up first", code=code)
        raise TransientBrokerError(text, code=code)
    if status >= 400:
        if kind == "order":
            raise OrderRejectedError(text, code=code)
        raise BrokerError(text, code=code)

    rt_cd = body.get("rt_cd")
    if rt_cd is None or str(rt_cd) == "0" or _NO_DATA_TEXT in message:
        return body
    if kind == "order":
        if code in INSUFFICIENT_FUNDS_CODES or any(t in message for t in _INSUFFICIENT_FUNDS_TEXT):
            raise InsufficientFundsError(text, code=code)
        raise OrderRejectedError(text, code=code)
    raise BrokerError(text, code=code)
