"""Settings of the KIS adapter, read from the environment (and a ``.env`` file).

==================  =====================================  ==================================
variable            meaning                                default
==================  =====================================  ==================================
``KIS_APP_KEY``     app key (36 chars at KIS)              required
``KIS_APP_SECRET``  app secret (180 chars at KIS)          required
``KIS_ACCOUNT_NO``  ``12345678-01`` (CANO-ACNT_PRDT_CD)    required
``KIS_ENV``         ``virtual`` (모의투자) or ``real``       ``virtual``
``KIS_BASE_URL``    REST base URL override (tests, proxy)  host of ``KIS_ENV``
``KIS_TOKEN_DIR``   directory of the on-disk token cache   ``~/.cache/kis-trader/tokens``
``KIS_WS_URL``      WebSocket base URL override (tests)    WebSocket host of ``KIS_ENV``
``KIS_HTS_ID``      HTS ID (fill notices are sent per ID)  unset: no WebSocket by default
==================  =====================================  ==================================

Secrets are held as :class:`pydantic.SecretStr`, so ``repr(settings)`` never shows them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from framework.errors import ConfigError

REAL_BASE_URL = "https://openapi.koreainvestment.com:9443"
VIRTUAL_BASE_URL = "https://openapivts.koreainvestment.com:29443"
REAL_WS_URL = "ws://ops.koreainvestment.com:21000"
VIRTUAL_WS_URL = "ws://ops.koreainvestment.com:31000"
DEFAULT_TOKEN_DIR = Path("~/.cache/kis-trader/tokens")

_ACCOUNT_RE = re.compile(r"^\d{8}-\d{2}$")

KisEnv = Literal["virtual", "real"]


class KISSettings(BaseModel):
    """Everything the KIS adapter needs to connect (frozen; unknown keys rejected).

    Parameters
    ----------
    app_key, app_secret:
        Credentials of the KIS app (a virtual app has its own pair).
    account_no:
        ``"12345678-01"``: 8-digit ``CANO``, dash, 2-digit ``ACNT_PRDT_CD``.
    env:
        ``"virtual"`` (default) or ``"real"``; selects host, tr_ids and rate limit.
    base_url:
        Overrides the REST base URL (``None`` = the KIS host of ``env``).
    ws_url:
        Overrides the WebSocket base URL (``None`` = the KIS WebSocket host of ``env``);
        the client connects to ``<ws_url>/tryitout``.
    hts_id:
        The HTS ID of the account holder: fill notices (``H0STCNI0``/``H0STCNI9``) are
        registered per HTS ID. ``None``: no fill notices.
    token_dir:
        Directory of the token cache files (created with mode 0700).
    requests_per_s:
        Client-side rate limit; ``None`` = 18 real / 1 virtual (KIS limits, 2026-04).
    timeout_s, connect_timeout_s:
        Read and connect timeouts of the HTTP client, seconds.
    max_read_retries:
        Attempts after the first for reads on network errors, 5xx and ``EGW00201``.
    retry_wait_s:
        Base of the exponential back-off between read retries (doubles each try, max 8x).
    token_refresh_margin_s:
        A cached token is replaced this many seconds before ``access_token_token_expired``.
    use_hashkey:
        Send the optional ``hashkey`` header on order POSTs (one extra call each).
    commission_rate, sell_tax_rate:
        Used only to estimate fees on fills (KIS does not report them per order);
        ``sell_tax_rate`` ``None`` (default) is the dated table of :mod:`utils.fees` by
        settlement date and market, a number one flat rate for every stock sale.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    app_key: SecretStr
    app_secret: SecretStr
    account_no: SecretStr
    env: KisEnv = "virtual"
    base_url: str | None = None
    ws_url: str | None = None
    hts_id: SecretStr | None = None
    token_dir: Path = DEFAULT_TOKEN_DIR
    requests_per_s: int | None = Field(default=None, gt=0)
    timeout_s: float = Field(default=10.0, gt=0)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    max_read_retries: int = Field(default=3, ge=0, le=10)
    retry_wait_s: float = Field(default=0.25, ge=0)
    token_refresh_margin_s: int = Field(default=600, ge=0)
    use_hashkey: bool = False
    commission_rate: float = Field(default=0.000140527, ge=0, lt=0.01)
    sell_tax_rate: float | None = Field(default=None, ge=0, lt=0.01)

    @field_validator("account_no")
    @classmethod
    def _check_account(cls, value: SecretStr) -> SecretStr:
        if not _ACCOUNT_RE.match(value.get_secret_value()):
            raise ValueError("account number must look like 12345678-01 (8 digits, dash, 2)")
        return value

    @field_validator("app_key", "app_secret")
    @classmethod
    def _check_nonempty(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value().strip()) < 4:
            raise ValueError("must be a non-empty credential")
        return value

    @field_validator("base_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not re.match(r"^https?://", value):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("ws_url")
    @classmethod
    def _check_ws_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not re.match(r"^wss?://", value):
            raise ValueError("must start with ws:// or wss://")
        return value.rstrip("/")

    @field_validator("hts_id", mode="before")
    @classmethod
    def _check_hts_id(cls, value: object) -> object:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        return value

    # --- derived values -----------------------------------------------------------
    @property
    def is_real(self) -> bool:
        return self.env == "real"

    @property
    def rest_base_url(self) -> str:
        """Base URL for REST calls: the override, else the KIS host of ``env``."""
        if self.base_url:
            return self.base_url
        return REAL_BASE_URL if self.is_real else VIRTUAL_BASE_URL

    @property
    def ws_base_url(self) -> str:
        """Base URL of the WebSocket: the override, else the KIS host of ``env``."""
        if self.ws_url:
            return self.ws_url
        return REAL_WS_URL if self.is_real else VIRTUAL_WS_URL

    @property
    def rate_limit_per_s(self) -> int:
        """Requests per second allowed by the client-side limiter."""
        if self.requests_per_s is not None:
            return self.requests_per_s
        return 18 if self.is_real else 1

    @property
    def cano(self) -> str:
        """8-digit account number (``CANO``)."""
        return self.account_no.get_secret_value().split("-")[0]

    @property
    def acnt_prdt_cd(self) -> str:
        """2-digit product code (``ACNT_PRDT_CD``), ``01`` for a 종합계좌."""
        return self.account_no.get_secret_value().split("-")[1]

    def secrets(self) -> tuple[str, ...]:
        """Every secret value, for the log masking filter."""
        values: tuple[str, ...] = (
            self.app_key.get_secret_value(),
            self.app_secret.get_secret_value(),
            self.account_no.get_secret_value(),
            self.cano,
        )
        if self.hts_id is not None:
            values += (self.hts_id.get_secret_value(),)
        return values

    # --- construction -------------------------------------------------------------
    @classmethod
    def from_env(
        cls,
        env_file: str | os.PathLike[str] | None = ".env",
        environ: Mapping[str, str] | None = None,
        **overrides: object,
    ) -> KISSettings:
        """Read ``KIS_*`` variables from ``environ`` (default ``os.environ``) over ``env_file``.

        Values in the process environment win over the file. Raises ``ConfigError``
        naming the variable when one is missing or invalid.
        """
        from dotenv import dotenv_values  # local import: only needed here

        values: dict[str, str | None] = {}
        if env_file is not None and Path(env_file).is_file():
            values.update(dotenv_values(env_file))
        values.update(os.environ if environ is None else environ)
        mapping = {
            "app_key": "KIS_APP_KEY",
            "app_secret": "KIS_APP_SECRET",
            "account_no": "KIS_ACCOUNT_NO",
            "env": "KIS_ENV",
            "base_url": "KIS_BASE_URL",
            "token_dir": "KIS_TOKEN_DIR",
            "ws_url": "KIS_WS_URL",
            "hts_id": "KIS_HTS_ID",
        }
        data: dict[str, object] = {}
        for field_name, var in mapping.items():
            raw = values.get(var)
            if raw is not None and raw != "":
                data[field_name] = raw.strip().lower() if field_name == "env" else raw.strip()
        for required in ("app_key", "app_secret", "account_no"):
            if required not in data and required not in overrides:
                raise ConfigError(f"{mapping[required]} is not set (environment or .env)",
                                  key=mapping[required])
        if "token_dir" in data:
            data["token_dir"] = Path(str(data["token_dir"])).expanduser()
        data.update(overrides)
        try:
            return cls(**data)
        except ValidationError as exc:
            err = exc.errors()[0]
            name = str(err["loc"][0]) if err["loc"] else "?"
            var = mapping.get(name, name)
            raise ConfigError(f"{var}: {err['msg']}", key=var) from None

    def resolved_token_dir(self) -> Path:
        """``token_dir`` with ``~`` expanded."""
        return self.token_dir.expanduser()
