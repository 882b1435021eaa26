"""Global settings: ``config/settings.yaml`` validated, plus secrets from ``.env``.

Environment (read through python-dotenv from ``.env`` in the working directory, real
environment variables win): ``KIS_APP_KEY``, ``KIS_APP_SECRET``, ``KIS_ACCOUNT_NO``,
``KIS_ENV``, ``KIS_BASE_URL``, ``TELEGRAM_BOT_TOKEN``, ``TELEGRAM_CHAT_ID``, ``DATABASE_URL``,
``KIS_TRADER_DATA_DIR`` (root of the market data, default ``../shared/data`` beside the
repository), ``KIS_TRADER_SYMBOLS_FILE`` (a ``code,name,market`` CSV read over the shipped
``config/symbols.csv``; see :mod:`utils.symbols`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from dotenv import load_dotenv
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from config.yaml_input import check_values, read_yaml
from framework.errors import ConfigError
from strategies.config import format_validation_error

REPO_ROOT = Path(__file__).resolve().parent.parent
SETTINGS_PATH = REPO_ROOT / "config" / "settings.yaml"
MAX_KRW = 10**13
"""Largest KRW amount a setting may hold (10 trillion won; the database's limit is far above)."""
MAX_QTY = 10**9


def data_root() -> Path:
    """Root of the market data: ``KIS_TRADER_DATA_DIR`` or ``<repo>/../shared/data``."""
    env = os.environ.get("KIS_TRADER_DATA_DIR")
    return Path(env).expanduser() if env else REPO_ROOT.parent / "shared" / "data"


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BacktestDefaults(_Strict):
    data_dir: str = "${DATA_DIR}/krx/daily_2000_2024"
    cash_krw: int = Field(10_000_000, gt=0, le=MAX_KRW)
    commission_rate: float = Field(0.00015, ge=0, lt=0.01)
    sell_tax_rate: float | None = Field(None, ge=0, lt=0.05)
    slippage_ticks: int = Field(0, ge=0, le=100)
    out_dir: str = "reports"


class RiskSettings(_Strict):
    """Global risk limits for every strategy and mode (fractions: ``0.03`` = 3 %)."""

    max_order_amount_krw: int | None = Field(None, gt=0, le=MAX_KRW)
    max_order_qty: int | None = Field(None, gt=0, le=MAX_QTY)
    max_trades_per_day: int | None = Field(None, ge=0, le=100_000)
    cooldown_s: float = Field(0.0, ge=0, le=86_400)
    daily_loss_limit_pct: float | None = Field(None, gt=0, lt=1)
    portfolio_stop_pct: float | None = Field(None, gt=0, lt=1)
    max_positions: int | None = Field(None, ge=1)


class ScheduleSettings(_Strict):
    """Intervals of the live trading jobs (seconds) on KRX trading days."""

    quote_interval_s: float = Field(10.0, ge=1, le=3600)
    quote_batch_size: int = Field(20, ge=1, le=1000)
    signal_interval_s: float = Field(60.0, ge=1, le=3600)
    fill_poll_interval_s: float = Field(5.0, ge=1, le=3600)
    account_sync_interval_s: float = Field(60.0, ge=5, le=3600)
    close_report_delay_s: float = Field(300.0, ge=0, le=7200)
    exit_at_close_lead_s: float = Field(600.0, ge=0, le=3600)


class OrderSettings(_Strict):
    """Unfilled limit orders: cancel after the timeout, re-place up to ``max_replacements``."""

    buy_timeout_s: float | None = Field(180.0, gt=0, le=86_400)
    sell_timeout_s: float | None = Field(120.0, gt=0, le=86_400)
    max_replacements: int = Field(2, ge=0, le=10)


class UnmanagedSettings(_Strict):
    """Exit rules for holdings found in the account that no strategy opened."""

    stop_loss_pct: float | None = Field(0.05, gt=0, lt=1)
    take_profit_pct: float | None = Field(0.10, gt=0)
    trailing_stop_pct: float | None = Field(None, gt=0, lt=1)


class RealtimeSettings(_Strict):
    """The KIS WebSocket in live trading: real-time trades and fill notices."""

    enabled: bool | None = None
    """``None`` (default): on when ``KIS_HTS_ID`` is set; ``--ws``/``--no-ws`` override."""
    max_registrations: int = Field(40, ge=1, le=41)
    """Registrations per session, the fill notice included (KIS allows 41)."""
    fill_reconcile_interval_s: float = Field(30.0, ge=1, le=3600)
    """While the socket is up, open orders are polled this often (the reconciler)."""
    seed_minute_bars: bool = True
    """Read today's minute chart for the subscribed symbols of minute strategies (in the
    background) so that a restart mid-day has the morning's bars."""
    min_backoff_s: float = Field(1.0, gt=0, le=60)
    max_backoff_s: float = Field(60.0, gt=0, le=600)


class LiveSettings(_Strict):
    """``python main.py live``: schedule, order handling and history for signals."""

    schedule: ScheduleSettings = ScheduleSettings()
    orders: OrderSettings = OrderSettings()
    unmanaged: UnmanagedSettings = UnmanagedSettings()
    realtime: RealtimeSettings = RealtimeSettings()
    history_days: int = Field(200, ge=1, le=3000)
    dry_run_cash_krw: int = Field(10_000_000, gt=0, le=MAX_KRW)
    lease_heartbeat_s: float = Field(15.0, ge=0.2, le=600)
    """Seconds between heartbeats of the account lease (``core.lease``)."""


def _alert_mode(value: object) -> object:
    if value is True:
        return "on"
    return "off" if value is False else value


AlertMode = Annotated[Literal["on", "silent", "off"], BeforeValidator(_alert_mode)]
"""An alert kind's mode; YAML ``true``/``false`` read as ``on``/``off``."""


class TelegramSettings(_Strict):
    """Alerts and commands; the bot token and chat id come from ``.env`` only."""

    enabled: bool = True
    commands: bool = True
    alerts: dict[
        Literal[
            "start",
            "stop",
            "order_sent",
            "fill",
            "cancel",
            "error",
            "circuit_breaker",
            "reconcile",
            "daily_report",
            "risk",
        ],
        AlertMode,
    ] = Field(default_factory=dict)
    """Per alert kind: ``on`` (``true``: sent), ``silent`` (sent without a notification
    sound) or ``off`` (``false``: not sent); a kind not named is on."""


class DatabaseSettings(_Strict):
    url: str | None = None


class Settings(_Strict):
    mode: Literal["auto", "backtest"] = "auto"
    symbols_file: str | None = None
    """A ``code,name,market`` CSV read over the shipped ``config/symbols.csv``."""
    backtest: BacktestDefaults = BacktestDefaults()
    risk: RiskSettings = RiskSettings()
    database: DatabaseSettings = DatabaseSettings()
    live: LiveSettings = LiveSettings()
    telegram: TelegramSettings = TelegramSettings()

    def resolve_path(self, value: str) -> Path:
        """Expand ``${DATA_DIR}`` and make a relative path relative to the repository."""
        path = Path(value.replace("${DATA_DIR}", str(data_root()))).expanduser()
        return path if path.is_absolute() else REPO_ROOT / path


def load_settings(path: Path | None = None) -> Settings:
    """Read and validate the settings file: ``path`` (which must exist), else
    ``config/settings.yaml`` (defaults when that file is absent).

    Raises ``ConfigError`` naming the file and key (or line) for a missing ``path`` or
    invalid content: not UTF-8, invalid YAML, a duplicate key, a boolean where a number is
    expected, a number out of range.
    """
    if path is not None and not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise ConfigError(f"--settings {path}: {what}", path=str(path))
    path = path or SETTINGS_PATH
    raw = read_yaml(path) if path.is_file() else {}
    check_values(raw, Settings, path)
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(
            format_validation_error(exc, path, Settings, data=raw), path=str(path)
        ) from exc


def load_env(dotenv_path: Path | None = None) -> None:
    """Load ``.env`` (working directory by default) without overriding real variables."""
    load_dotenv(dotenv_path or Path.cwd() / ".env", override=False)


def kis_credentials_present() -> bool:
    """True when the KIS app key, secret and account number are all set."""
    return all(os.environ.get(k) for k in ("KIS_APP_KEY", "KIS_APP_SECRET", "KIS_ACCOUNT_NO"))


def database_url(settings: Settings) -> str:
    """``DATABASE_URL`` > settings ``database.url`` > ``sqlite:///kis_trader.db`` (cwd)."""
    return os.environ.get("DATABASE_URL") or settings.database.url or "sqlite:///kis_trader.db"
