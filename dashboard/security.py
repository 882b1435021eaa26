"""Who may use the dashboard: the bind rule, the token and the CSRF value.

* Bound to a loopback address (``127.0.0.1``, ``::1``, ``localhost``) the pages are open to
  the local machine; any other bind needs ``DASHBOARD_TOKEN`` or start-up refuses.
* With a token every page and API call needs it (``Authorization: Bearer <token>`` or the
  ``kis_dashboard`` cookie set by the login form). Without a token the dashboard is
  read-only: every write is refused.
* A write also needs the CSRF value (header ``X-CSRF-Token``), an HMAC of the token that the
  pages carry and another site cannot read.

The token is compared in constant time and never logged (uvicorn's access log shows paths
only; the token is never in a path or query).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress

from framework.errors import ConfigError

COOKIE = "kis_dashboard"
CSRF_HEADER = "X-CSRF-Token"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Raise ``ConfigError`` when ``host`` is not loopback and no token is set."""
    if not is_loopback(host) and not token:
        raise ConfigError(
            f"dashboard: binding to {host} exposes the account beyond this machine; set "
            "DASHBOARD_TOKEN (see .env.example) or bind to 127.0.0.1",
            key="DASHBOARD_TOKEN",
        )


class Guard:
    """Checks a request's token and CSRF value against ``token`` (``None``: no token)."""

    def __init__(self, token: str | None):
        self._token = token or None

    @property
    def has_token(self) -> bool:
        return self._token is not None

    def csrf(self) -> str:
        """The CSRF value of this token ('' without a token)."""
        if self._token is None:
            return ""
        return hmac.new(self._token.encode(), b"kis-dashboard-csrf", hashlib.sha256).hexdigest()

    def token_ok(self, bearer: str | None, cookie: str | None) -> bool:
        if self._token is None:
            return False
        given = bearer or cookie or ""
        return hmac.compare_digest(given.encode(), self._token.encode())

    def may_read(self, bearer: str | None, cookie: str | None) -> bool:
        return self._token is None or self.token_ok(bearer, cookie)

    def write_refusal(self, bearer: str | None, cookie: str | None, csrf: str | None) -> str | None:
        """Why a write is refused, or ``None`` when it may go ahead."""
        if self._token is None:
            return "read-only: set DASHBOARD_TOKEN to use the controls"
        if not self.token_ok(bearer, cookie):
            return "a valid dashboard token is required"
        if not csrf or not hmac.compare_digest(csrf.encode(), self.csrf().encode()):
            return "the CSRF value is missing or wrong"
        return None
