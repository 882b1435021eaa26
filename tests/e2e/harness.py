"""A live session against the fake KIS over HTTP on 127.0.0.1 (and a fake Telegram Bot API)
for the restart, CLI and command tests: :func:`harness` / :class:`Harness`, the ``probe``
strategy that trades what a test plans, and helpers that seed and read the book."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from api.kis_settings import KISSettings
from config.settings import Settings, load_settings
from core.live import LiveSession, book_id
from db.repository import Repository
from main import LiveParts, build_live_session
from tests.e2e.day import kis_env
from tests.fakes.account import Holding as FakeHolding
from tests.fakes.clock import FakeClock
from tests.fakes.harness import fast_fake
from tests.fakes.kis_server import DEFAULT_ACCOUNT_NO, FakeKIS, FakeKISServer
from tests.fakes.telegram_server import FakeTelegram
from utils.market_calendar import KST

NOW = datetime(2025, 6, 16, 9, 30, tzinfo=KST)
"""Fake time at the start of every test: a trading day with real data, market open."""
CODES = ["005930", "000660", "035720", "005380", "035420", "000270"]
CHAT_ID = 515151
OTHER_CHAT_ID = 626262
ORDER_CASH = "/uapi/domestic-stock/v1/trading/order-cash"
FAST_KIS = {"requests_per_s": 1000, "retry_wait_s": 0.0, "timeout_s": 2.0}
LIVE_BOOK = book_id("live", "virtual", DEFAULT_ACCOUNT_NO)
DRY_BOOK = book_id("dry_run", "virtual", DEFAULT_ACCOUNT_NO)

SETTINGS_YAML = """
risk:
  cooldown_s: 0
live:
  schedule:
    quote_interval_s: 60
    signal_interval_s: 300
    fill_poll_interval_s: 60
    account_sync_interval_s: 600
    close_report_delay_s: 300
  orders:
    buy_timeout_s: 3600
    sell_timeout_s: 3600
    max_replacements: 0
  unmanaged:            # not the built-in defaults (0.05 / 0.10): adoption must use these
    stop_loss_pct: 0.07
    take_profit_pct: 0.3
    trailing_stop_pct: null
  history_days: 20
  dry_run_cash_krw: 50000000
telegram:
  alerts:
    order_sent: false
"""

PROBE_CONFIG = """
enabled: true
description: test probe (records its hooks, trades what the test plans)
universe: ["005930", "035720"]
timeframe: daily
risk_management:
  stop_loss_pct: 0.05
  take_profit_pct: 0.5
  max_position_size: 0.5
  max_daily_trades: 10
"""

PROBE_SOURCE = '''
"""Records every hook call; ``plan[code]`` is the next signal for ``code`` (used once)."""

from framework.types import Signal, SignalType
from strategies.base import BaseStrategy


class ProbeStrategy(BaseStrategy):
    def __init__(self, config):
        super().__init__(config)
        self.calls = []
        self.plan = {}
        self.seen = {}

    def on_init(self, broker, data_provider, executor):
        self.calls.append("on_init")
        return True

    def on_market_open(self):
        self.calls.append("on_market_open")

    def generate_signal(self, stock_code, data, timeframe):
        self.calls.append("generate_signal")
        self.seen[stock_code] = {k: list(data[k]) for k in ("open", "high", "low", "close")}
        self.seen[stock_code]["index"] = list(data.index)
        return self.plan.pop(stock_code, None) or Signal(SignalType.HOLD, stock_code)

    def on_order_filled(self, order):
        self.calls.append("on_order_filled")

    def on_market_close(self):
        self.calls.append("on_market_close")
'''


def write_probe(root: Path) -> Path:
    """``root/strategies/probe`` (config.yaml and strategy.py); returns the strategies dir."""
    folder = root / "strategies" / "probe"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(PROBE_CONFIG, encoding="utf-8")
    (folder / "strategy.py").write_text(PROBE_SOURCE, encoding="utf-8")
    return folder.parent


def write_settings(root: Path, text: str = SETTINGS_YAML) -> Path:
    path = root / "settings.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def dead_url() -> str:
    """A loopback URL where nothing listens (the port was just free)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@dataclass
class Harness:
    """A fake KIS served on loopback (and a fake Telegram), the env of a bot using them,
    a settings file, the probe strategy and a SQLite file; builds sessions on them."""

    fake: FakeKIS
    base_url: str
    tmp: Path
    settings_path: Path
    strategies: Path
    db_url: str
    tg: FakeTelegram | None
    built: list[LiveParts] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        return load_settings(self.settings_path)

    def build(self, *, dry_run: bool = False, strategy: str | None = None) -> LiveSession:
        parts = build_live_session(
            self.settings,
            strategies_dir=self.strategies,
            strategy=strategy,
            dry_run=dry_run,
            db_url=self.db_url,
            clock=self.fake.clock,
            kis_overrides=FAST_KIS,
            broker_options={"sleep": lambda _s: None},
        )
        self.built.append(parts)
        return parts.session

    def end(self, session: LiveSession) -> None:
        """Stop a session and close what it opened (the process ends)."""
        for parts in self.built:
            if parts.session is session:
                session.stop("test: process ends")
                parts.close()
                self.built.remove(parts)
                return
        raise AssertionError("not a session of this harness")

    def close(self) -> None:
        while self.built:
            self.end(self.built[-1].session)

    def repo(self) -> Repository:
        return Repository(self.db_url, clock=self.fake.clock)

    def order_cash_requests(self) -> int:
        return self.fake.stats.by_path[ORDER_CASH]

    def hold(self, code: str, qty: int, avg: int) -> None:
        """Set the fake account's holding of ``code`` (0 shares: none)."""
        holdings = self.fake.account().holdings
        if qty:
            holdings[code] = FakeHolding(qty, qty * avg)
        else:
            holdings.pop(code, None)

    def texts(self) -> list[str]:
        assert self.tg is not None
        return self.tg.texts(CHAT_ID)

    def wait_text(self, needle: str) -> str:
        """The first Telegram message to the chat containing ``needle`` (waits for it)."""
        assert self.tg is not None
        found = self.tg.wait_for(lambda: any(needle in t for t in self.texts()), timeout_s=15)
        assert found, f"no Telegram message with {needle!r}: {self.texts()}"
        return next(t for t in self.texts() if needle in t)


@contextmanager
def harness(
    tmp: Path, mp: pytest.MonkeyPatch, *, env: str = "virtual", telegram: bool = True
) -> Iterator[Harness]:
    fake = fast_fake(clock=FakeClock(NOW), codes=CODES, env=env)
    with ExitStack() as stack:
        server = stack.enter_context(FakeKISServer(fake))
        tg = stack.enter_context(FakeTelegram()) if telegram else None
        for key, value in kis_env(server.base_url, tmp / "tokens").items():
            mp.setenv(key, value)
        mp.setenv("KIS_ENV", env)
        # `python main.py ...` reads the KIS settings from the environment alone: give it
        # the fast client limiter of the tests too (the limiter is process-wide per app key)
        from_env = KISSettings.from_env.__func__  # type: ignore[attr-defined]
        mp.setattr(
            KISSettings,
            "from_env",
            classmethod(lambda cls, *args, **kw: from_env(cls, *args, **{**FAST_KIS, **kw})),
        )
        mp.delenv("DATABASE_URL", raising=False)
        if tg is not None:
            mp.setenv("TELEGRAM_BOT_TOKEN", tg.token)
            mp.setenv("TELEGRAM_CHAT_ID", str(CHAT_ID))
            mp.setenv("TELEGRAM_API_URL", tg.base_url)
        else:
            for key in ("TELEGRAM_BOT_TOKEN", "TELEGRAM_CHAT_ID", "TELEGRAM_API_URL"):
                mp.delenv(key, raising=False)
        h = Harness(
            fake=fake,
            base_url=server.base_url,
            tmp=tmp,
            settings_path=write_settings(tmp),
            strategies=write_probe(tmp),
            db_url=f"sqlite:///{tmp / 'book.db'}",
            tg=tg,
        )
        stack.callback(h.close)
        yield h


def probe(session: LiveSession) -> Any:
    return session.trader.slots["probe"].strategy


def seed_position(
    repo: Repository,
    code: str,
    qty: int,
    avg: int,
    *,
    strategy: str = "probe",
    run_id: str = LIVE_BOOK,
    opened_at: datetime | None = None,
    **extra: Any,
) -> None:
    repo.ensure_run("dry_run" if run_id == DRY_BOOK else "live", {}, NOW, run_id)
    repo.save_position(
        run_id,
        strategy=strategy,
        stock_code=code,
        qty=qty,
        avg_price=float(avg),
        cost_basis_krw=qty * avg,
        status="holding",
        opened_at=opened_at or NOW.replace(hour=9, minute=5),
        **extra,
    )


def holding_rows(repo: Repository, run_id: str = LIVE_BOOK) -> dict[tuple[str, str], int]:
    return {
        (r["strategy"], r["stock_code"]): int(r["qty"])
        for r in repo.get_positions(run_id, status="holding")
    }


def closed_rows(repo: Repository, run_id: str = LIVE_BOOK) -> list[dict[str, Any]]:
    return repo.get_positions(run_id, status="closed")


# --- the positions rules, in one restart ---------------------------------------------------
