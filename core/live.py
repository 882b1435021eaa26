"""Live trading (and dry-run): the one ``Trader`` driven by a schedule on the KRX calendar.

A :class:`LiveSession` owns the engine of one trading process and exposes its work as jobs:

==============  ===========================================================================
job             what it does
==============  ===========================================================================
``open``        at the session open: the day's figures (loss lock, trade counts), daily
                history for daily-timeframe strategies, ``on_market_open``, equity snapshot
``quotes``      every ``quote_interval_s``: quotes for the next batch of the universe (and
                every held stock); stop loss / take profit / trailing stop on each; the
                daily loss lock and the portfolio stop on the new equity
``signals``     every ``signal_interval_s``: ``generate_signal`` for every strategy and stock
                (a daily strategy sees today's bar, built from the current quote, as the
                last row)
``fills``       every ``fill_poll_interval_s``: open orders polled for fills; timed-out
                orders cancelled and re-placed (``live.orders``)
``account``     every ``account_sync_interval_s``: cash and holdings compared with the
                account (differences journaled); equity snapshot
``exit_close``  ``exit_at_close_lead_s`` before the close: positions of ``exit_at_close``
                strategies sold at market
``close``       ``close_report_delay_s`` after the close: day orders still resting expire
                (the paper account in a dry run; KIS expires its own), last poll,
                ``on_market_close``, equity snapshot and the daily report
==============  ===========================================================================

The rules these jobs apply — exits, daily counters, loss lock, portfolio stop, timeouts, time
cut, ``decide_at``, day orders — live in :class:`core.session.TradingSession`, the object the
backtest drives too.

Two runners call these jobs: :class:`ScheduledRunner` (APScheduler in Asia/Seoul, real
time; ``python main.py live``) and :class:`SteppedRunner` (jumps a controllable clock from
one due job to the next; simulated days in tests and rehearsals). Both plan the day with
:func:`plan_day`, so they run the same jobs at the same times.

Before any job, :meth:`LiveSession.start` reconciles the database's book with the account
(:mod:`core.reconcile`); a failed reconciliation raises and nothing trades.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import pandas as pd

from config.settings import Settings
from core.engine import build_engine
from core.fund_manager import FundManager
from core.journal import DatabaseJournal, StorageError
from core.operator_events import SwitchDropped
from core.order_manager import OrderPolicy
from core.reconcile import ReconcileReport, reconcile
from core.risk import ExitPolicy, RiskLimits, RiskManager, TradingState
from core.session import TradingSession
from core.switches import StrategySwitches
from core.trader import StrategySlot
from framework.broker import Broker
from framework.data import DataProvider
from framework.errors import (
    BrokerError,
    ConfigError,
    DataError,
    KisTraderError,
    TransientBrokerError,
)
from framework.events import (
    AccountMismatch,
    BadQuote,
    BrokerRecovered,
    BrokerUnreachable,
    CashSynced,
    DailyReport,
    DataMissing,
    Event,
    JobFailed,
    Level,
    SessionStarted,
    SessionStopped,
    UniverseNote,
)
from framework.executor import OrderExecutor
from framework.types import Quote
from strategies.base import BaseStrategy
from utils.fees import FeeModel
from utils.market_calendar import KST, KRXCalendar, Session

if TYPE_CHECKING:
    from core.realtime import RealtimeFeed

logger = logging.getLogger(__name__)

JOB_NAMES = ("open", "quotes", "signals", "fills", "account", "exit_close", "close")
MIN_BACKOFF_S = 10.0
MAX_BACKOFF_S = 300.0
"""Back-off of the jobs while KIS is out of reach: 10 s, doubling, at most 5 minutes."""


class QuoteSource(Protocol):
    def get_quotes(self, stock_codes: Iterable[str]) -> dict[str, Quote]: ...


class Alerts(Protocol):
    """What the session needs of a notifier (:class:`notifier.Notifier`)."""

    def on_event(self, event: Event) -> None: ...

    def stop(self, timeout_s: float = 5.0) -> None: ...


def risk_limits(settings: Settings) -> RiskLimits:
    """The global risk limits of ``settings.risk``."""
    risk = settings.risk
    return RiskLimits(
        max_order_amount_krw=risk.max_order_amount_krw,
        max_order_qty=risk.max_order_qty,
        max_trades_per_day=risk.max_trades_per_day,
        cooldown_s=risk.cooldown_s,
        daily_loss_limit_pct=risk.daily_loss_limit_pct,
        portfolio_stop_pct=risk.portfolio_stop_pct,
        max_positions=risk.max_positions,
    )


def book_id(mode: str, env: str, account_no: str) -> str:
    """The long-lived run id of one account's book: positions and orders are found again
    under it after a restart. The account number is hashed (it never appears in the id)."""
    digest = hashlib.sha256(account_no.encode()).hexdigest()[:10]
    return f"{mode}-{env}-{digest}"


@dataclass(frozen=True)
class PlannedJob:
    """One job of a day: first run at ``first``, then every ``every_s`` seconds until
    ``last`` (``every_s`` ``None``: once)."""

    name: str
    first: datetime
    every_s: float | None = None
    last: datetime | None = None


def plan_day(session: Session, settings: Settings, now: datetime) -> list[PlannedJob]:
    """The jobs of ``session`` that are still due at ``now`` (a restart mid-day gets the
    ``open`` job at once and the interval jobs from now on)."""
    sch = settings.live.schedule
    close_at = session.close + timedelta(seconds=sch.close_report_delay_s)
    if now > close_at:  # (at close_at exactly: a process killed during the close job)
        return []
    start = max(now, session.open)
    jobs = [PlannedJob("open", start)] if now < session.close else []
    if now < session.close:
        for name, every in (
            ("fills", sch.fill_poll_interval_s),
            ("quotes", sch.quote_interval_s),
            ("signals", sch.signal_interval_s),
            ("account", sch.account_sync_interval_s),
        ):
            jobs.append(PlannedJob(name, start, every, session.close))
        exit_at = session.close - timedelta(seconds=sch.exit_at_close_lead_s)
        if now <= exit_at:
            jobs.append(PlannedJob("exit_close", max(exit_at, start)))
    jobs.append(PlannedJob("close", close_at))
    return jobs


class LiveSession:
    """The engine of one live or dry-run process; see the module docstring.

    Parameters
    ----------
    settings:
        Validated global settings (``live``, ``risk``, ``telegram`` sections).
    strategies:
        Enabled strategies.
    broker:
        The account (balance, holdings): ``KISBroker`` live, ``PaperBroker`` in dry-run.
    executor:
        Where orders go: ``KISBroker`` live, ``PaperBroker`` in dry-run.
    market:
        Quotes and bars (``KISBroker`` in both modes).
    repository:
        ``db.repository.Repository`` (schema migrated at construction).
    run_id:
        The book's id (:func:`book_id`).
    mode, env:
        ``"live"`` or ``"dry_run"``; ``"virtual"`` or ``"real"``.
    clock:
        Tz-aware now (Asia/Seoul).
    calendar:
        :class:`~utils.market_calendar.KRXCalendar`.
    alerts:
        Optional notifier; receives every engine event.
    funds:
        The engine's cash pool; a dry run passes the one of its paper account
        (:func:`core.engine.paper_account`). Default: an empty pool reconciliation fills.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        strategies: list[BaseStrategy],
        broker: Broker,
        executor: OrderExecutor,
        market: DataProvider,
        repository: Any,
        run_id: str,
        mode: str,
        env: str,
        clock: Callable[[], datetime],
        calendar: KRXCalendar,
        fees: FeeModel | None = None,
        alerts: Alerts | None = None,
        quote_source: QuoteSource | None = None,
        on_quote: Callable[[Quote], object] | None = None,
        expire_day_orders: Callable[[date], object] | None = None,
        funds: FundManager | None = None,
    ):
        self.settings = settings
        self.repository = repository
        self.run_id = run_id
        self.mode = mode
        self.env = env
        self.clock = clock
        self.calendar = calendar
        self.market = market
        self.quote_source: QuoteSource = quote_source or market  # type: ignore[assignment]
        self.on_quote = on_quote
        self.alerts = alerts
        self.names: dict[str, str] = {}
        self.lock = threading.RLock()
        self.stop_requested = threading.Event()
        self.stop_reason = ""
        self.started = False
        self.day: date | None = None
        self.history: dict[str, pd.DataFrame] = {}
        self.today_bars: dict[str, dict[str, float]] = {}
        self._batch = 0
        self.realtime: RealtimeFeed | None = None
        """Ticks and fill notices from the KIS WebSocket (:mod:`core.realtime`), if any."""
        self._failures = 0
        self._retry_at: datetime | None = None
        self.journal = DatabaseJournal(repository, run_id)
        self.switches = StrategySwitches(self.journal)
        live = settings.live
        self.fees = fees or FeeModel()
        self.risk = RiskManager(risk_limits(settings))
        un = live.unmanaged
        self.trader = build_engine(
            strategies,
            broker=broker,
            executor=executor,
            data_provider=market,
            journal=self.journal,
            fees=self.fees,
            clock=clock,
            order_prefix=f"{mode[0]}{uuid.uuid4().hex[:8]}",
            funds=funds,
            risk=self.risk,
            subscribers=[self._on_event],
            order_policy=OrderPolicy(
                live.orders.buy_timeout_s, live.orders.sell_timeout_s, live.orders.max_replacements
            ),
            default_exits=ExitPolicy(un.stop_loss_pct, un.take_profit_pct, un.trailing_stop_pct),
            names=self.names.get,
        )
        self.trading = TradingSession(
            self.trader,
            self.risk,
            expire_day_orders=expire_day_orders,
            sessions_between=calendar.sessions_between,
        )
        from core.universe import UniverseScreens

        self.screens = UniverseScreens(
            self.trader.slots,
            lambda name: [p.stock_code for p in self.trader.positions(name)],
            self.trader.publish,
            self.trader.clock,
            live_screen=self._kis_screen,
        )
        """Screened universes, run in the ``open`` job after the pool's history is loaded."""

    # --- universe ----------------------------------------------------------------------
    @property
    def universe(self) -> list[str]:
        """Every stock a strategy trades or the book holds, sorted."""
        codes: set[str] = set()
        for slot in self.trader.slots.values():
            codes.update(slot.strategy.universe)
        codes.update(p.stock_code for p in self.trader.positions())
        return sorted(codes)

    @property
    def failed_jobs(self) -> int:
        """Scheduled jobs that failed in a row because KIS did not answer (0: it answers)."""
        return self._failures

    # --- start / stop ------------------------------------------------------------------
    def start(self) -> ReconcileReport:
        """Record the run, reconcile the book with the account, call ``on_init``.

        Raises :class:`~core.reconcile.ReconcileError` when the account cannot be checked.
        """
        now = self.clock()
        with self.lock:
            self.repository.ensure_run(
                self.mode, {"mode": self.mode, "env": self.env}, now, self.run_id
            )
            for slot in self.trader.slots.values():
                self.apply_switch(slot)
                self.repository.upsert_strategy(
                    slot.name, slot.enabled, slot.strategy.config.model_dump(mode="json")
                )
            report = reconcile(self.trader, self.repository, self.run_id, names=self.names)
            self.trader.start()
            self.started = True
        self.trader.publish(
            SessionStarted(
                at=self.clock(),
                message=f"{self.mode} session started ({self.env}) with "
                f"{', '.join(self.trader.slots) or 'no strategies'}",
                mode=self.mode,
                env=self.env,
                strategies=tuple(self.trader.slots),
            )
        )
        if self.realtime is not None:
            self.realtime.start()
        return report

    def apply_switch(self, slot: StrategySlot) -> None:
        """Set ``slot.enabled`` from its config's ``enabled`` and its stored switch
        (:mod:`core.switches`); a switch the file has overtaken is dropped and journaled."""
        file_enabled = slot.strategy.config.enabled
        slot.enabled, _switch, dropped = self.switches.effective(slot.name, file_enabled)
        if dropped:
            self.trader.publish(SwitchDropped(
                at=self.clock(),
                message=f"{slot.name}: enabled is now {str(file_enabled).lower()} in "
                "config.yaml; the switch set before is dropped",
                strategy=slot.name, enabled=file_enabled,
            ))

    def reconcile_only(self) -> ReconcileReport:
        """Record the run and reconcile the book with the account; no strategy is called
        and nothing is sent (``python main.py reconcile``)."""
        with self.lock:
            self.repository.ensure_run(
                self.mode, {"mode": self.mode, "env": self.env}, self.clock(), self.run_id
            )
            return reconcile(self.trader, self.repository, self.run_id, names=self.names)

    def attach_realtime(self, feed: RealtimeFeed) -> None:
        """Take prices, minute bars and fill notices from ``feed`` too (started by
        :meth:`start`, stopped by :meth:`stop`)."""
        self.realtime = feed

    def stop(self, reason: str = "stopped") -> None:
        """Stop trading (idempotent): journal and alert it, flush the notifier."""
        if self.realtime is not None:
            self.realtime.stop()
        if not self.started:
            return
        self.started = False
        self.trader.publish(
            SessionStopped(at=self.clock(), message=f"session stopped: {reason}", reason=reason)
        )
        if self.alerts is not None:
            self.alerts.stop()

    def request_stop(self, reason: str = "stop requested") -> None:
        self.stop_reason = reason
        self.stop_requested.set()

    def _restore_day_counters(self, now: datetime) -> None:
        """Today's trades and sells already in the database (a restart mid-day): trade
        counts per strategy and overall, and the cooldowns."""
        orders = self.repository.get_orders(self.run_id)
        if orders.empty:
            return
        today = now.astimezone(KST).date()
        created = pd.to_datetime(orders["created_at"]).dt.tz_convert(KST).dt.date
        todays = orders[(created == today) & (orders["attempt"] == 0)]
        for name, count in todays.groupby("strategy").size().items():
            slot = self.trader.slots.get(str(name))
            if slot is not None:
                slot.trades_today = int(count)
        self.risk.trades_today = len(todays)
        fills = self.repository.get_fills(self.run_id)
        if not fills.empty:
            for row in fills[fills["side"] == "sell"].itertuples():
                when = pd.Timestamp(row.time).tz_convert(KST).to_pydatetime()
                if when.date() == today:
                    self.risk.record_sell(str(row.strategy), str(row.stock_code), when)

    # --- jobs --------------------------------------------------------------------------
    def run_job(self, name: str) -> None:
        """Run one job under the session lock; an error is journaled (and alerted), never
        raised — not even when the journal itself cannot be written (disk full: a
        ``storage_error`` alert says so once).

        KIS out of reach (``TransientBrokerError`` after the adapter's own retries): the
        first failure is journaled and alerted once (``broker_unreachable``); later runs of
        the job are skipped with a doubling back-off (up to :data:`MAX_BACKOFF_S`) and
        retried quietly until KIS answers again (``broker_recovered``).
        """
        if name not in JOB_NAMES:
            raise ValueError(f"unknown job {name!r}")
        with self.lock:
            if not self.started:
                return
            now = self.clock()
            if self._retry_at is not None and now < self._retry_at and name != "close":
                return
            try:
                getattr(self, f"job_{name}")()
            except StorageError as exc:
                self.trader.storage_failed(exc)
            except TransientBrokerError as exc:
                self._unreachable(name, exc, now)
            except KisTraderError as exc:
                logger.warning("job %s failed: %s", name, exc)
                self._job_failed(name, exc, "warning")
            except Exception as exc:
                logger.exception("job %s crashed", name)
                self._job_failed(name, exc, "error")
            else:
                if self._failures:
                    self.trader.publish(
                        BrokerRecovered(
                            at=self.clock(),
                            message=f"KIS answers again (after {self._failures} failed jobs)",
                            failures=self._failures,
                        )
                    )
                self._failures, self._retry_at = 0, None


    def _job_failed(self, name: str, exc: Exception, level: Level) -> None:
        error = f"{type(exc).__name__}: {exc}"
        try:
            self.trader.publish(
                JobFailed(
                    at=self.clock(), message=f"{name}: {error}", level=level, job=name, error=error
                )
            )
        except Exception:  # an alert handler or the journal: logged, the scheduler goes on
            logger.exception("job %s: the failure could not be reported", name)

    def _unreachable(self, name: str, exc: Exception, now: datetime) -> None:
        self._failures += 1
        delay_s = min(MAX_BACKOFF_S, MIN_BACKOFF_S * 2 ** (self._failures - 1))
        self._retry_at = now + timedelta(seconds=delay_s)
        if self._failures == 1:
            logger.warning("job %s failed: %s; retrying with back-off", name, exc)
            self.trader.publish(
                BrokerUnreachable(
                    at=now,
                    message=f"KIS out of reach ({name}: {exc}); retrying with back-off",
                    level="error",
                    job=name,
                    error=str(exc),
                )
            )
        else:
            logger.debug("job %s failed again (%d): %s", name, self._failures, exc)

    def job_open(self) -> None:
        """Start the day (once per day; after a restart mid-day the day's counters and
        starting equity come back from the database)."""
        now = self.clock()
        today = now.astimezone(KST).date()
        if self.day == today:
            return
        self.day = today
        if self.screens:
            self.screens.reset()  # the whole pool: its history is what the screens read
        self._load_history(today)
        if self.screens:
            self.screens.run(today, self.history)
        self.refresh_quotes(self.universe)
        start_equity = self._first_snapshot_of(today)
        # resets the strategies' trade counts (and sells what the time cut says) ...
        self.trading.open_day(today, start_equity or self.trader.equity_krw())
        self._restore_day_counters(now)  # ... which a restart mid-day brings back
        self.snapshot(now)

    def _kis_screen(self, kind: str, screen: Any) -> list[str]:
        """A screen asked of KIS (real accounts). On the virtual account the volume ranking
        falls back to the candidates ranked by the previous day's volume, and a condition
        search to the candidates, each with a warning saying why."""
        from api import kis_screen_api
        from core.universe import rank_by_volume

        client = getattr(self.market, "client", None)
        if client is None or not client.settings.is_real:
            what = "volume ranking (FHPST01710000)" if kind == "volume_rank" else (
                "HTS condition search (HHKST03900400)")
            ranked = " ranked by the previous day's volume" if kind == "volume_rank" else ""
            self.trader.publish(UniverseNote(
                at=self.clock(), level="warning",
                message=f"the {what} is a real-account KIS service; on the {self.env} "
                        f"account the screen uses its candidates{ranked}"))
            pool = list(screen.candidates)
            return rank_by_volume(self.history, pool) if kind == "volume_rank" else pool
        if kind == "volume_rank":
            return kis_screen_api.volume_rank(client)
        user = os.environ.get("KIS_HTS_ID", "").strip()
        if not user:
            raise ConfigError("a condition screen needs KIS_HTS_ID (your HTS user id)",
                              key="KIS_HTS_ID")
        return kis_screen_api.condition_codes(client, user, screen.condition)

    def _first_snapshot_of(self, today: date) -> int | None:
        equity = self.repository.get_equity(self.run_id)
        if equity.empty:
            return None
        index = pd.DatetimeIndex(equity.index).tz_convert(KST)
        todays = equity[index.date == today]
        return None if todays.empty else int(todays["equity_krw"].iloc[0])

    def _load_history(self, today: date) -> None:
        """Daily bars up to yesterday for the codes of daily-timeframe strategies."""
        days = self.settings.live.history_days
        codes: set[str] = set()
        for slot in self.trader.slots.values():
            if slot.active and "daily" in slot.strategy.timeframes:
                codes.update(slot.strategy.universe)
        start = today - timedelta(days=math.ceil(days * 1.5) + 10)
        for code in sorted(codes):
            try:
                frame = self.market.get_daily_bars(code, start, today - timedelta(days=1))
            except (BrokerError, DataError) as exc:
                self.trader.publish(
                    DataMissing(
                        at=self.clock(),
                        message=f"daily bars of {code}: {exc}",
                        level="warning",
                        code=code,
                    )
                )
                continue
            self.history[code] = clean_bars(frame).tail(days)
        self.today_bars.clear()

    def job_quotes(self) -> None:
        codes = self.universe
        size = self.settings.live.schedule.quote_batch_size
        held = {p.stock_code for p in self.trader.positions()}
        if len(codes) > size:
            start = (self._batch * size) % len(codes)
            batch = (codes + codes)[start : start + size]
            self._batch += 1
            codes = sorted(set(batch) | held)
        feed = self.realtime
        if feed is not None and feed.live:  # prices of subscribed symbols come from ticks
            codes = [c for c in codes if not feed.covers(c)]
            feed.close_minutes()
            if not codes:
                self.trading.mark_equity()
        self.refresh_quotes(codes)

    def refresh_quotes(self, codes: list[str]) -> None:
        """Read quotes, update prices and today's bars, apply exits and equity limits."""
        if not codes:
            return
        for code, quote in self._read_quotes(codes).items():
            price = quote.price
            if not isinstance(price, int | float) or not math.isfinite(price) or price <= 0:
                self.trader.publish(
                    BadQuote(
                        at=self.clock(),
                        message=f"{code}: price {price!r} ignored",
                        level="warning",
                        code=code,
                    )
                )
                continue
            if quote.name:
                self.names.setdefault(code, quote.name)
            self.trader.update_price(code, float(price), base_krw=quote.prev_close)
            self.update_today_bar(quote)
            if self.on_quote is not None:
                self.on_quote(quote)
            self.trading.quote(code, float(price))
        self.trading.mark_equity()

    def _read_quotes(self, codes: list[str]) -> dict[str, Quote]:
        """Quotes of ``codes``. A code the source refuses (``DataError``: KIS answers a
        price of 0, an unknown code) spoils a batch: then each code is read alone and the
        bad one is skipped with a ``bad_quote`` event, so the others still trade."""
        try:
            return self.quote_source.get_quotes(codes)
        except DataError:
            pass
        quotes: dict[str, Quote] = {}
        for code in codes:
            try:
                quotes.update(self.quote_source.get_quotes([code]))
            except DataError as exc:
                self.trader.publish(
                    BadQuote(at=self.clock(), message=f"{code}: {exc}", level="warning", code=code)
                )
        return quotes

    def update_today_bar(self, q: Quote) -> None:
        """Fold a quote or tick into today's forming daily bar of its stock (KRW, shares):
        the open once, the highest high, the lowest low, the last price as the close and
        the day's cumulative volume."""
        bar = self.today_bars.get(q.stock_code)
        price = float(q.price)
        if bar is None:
            bar = {"open": float(q.open or price), "high": price, "low": price, "volume": 0.0}
            self.today_bars[q.stock_code] = bar
        for key, value in (("open", q.open), ("high", q.high), ("low", q.low)):
            if value and value > 0:
                bar[key] = float(value) if key != "high" else max(bar["high"], float(value))
        bar["high"] = max(bar["high"], price)
        bar["low"] = min(bar["low"], price)
        bar["close"] = price
        if q.volume is not None and q.volume >= 0:
            bar["volume"] = float(q.volume)

    def frame_for(self, code: str, timeframe: str) -> pd.DataFrame | None:
        """What a strategy sees for ``code``: daily history plus today's bar (daily), or
        today's minute bars (minute). ``None`` when there is no usable data."""
        if timeframe == "minute":
            ticked = self.realtime.minute_frame(code) if self.realtime is not None else None
            if ticked is not None:
                return ticked
            frame = clean_bars(self.market.get_minute_bars(code, self.clock().date()))
            return frame if not frame.empty else None
        history = self.history.get(code)
        today = self.today_bars.get(code)
        if today is None:
            return None
        day = pd.Timestamp(self.clock().astimezone(KST).date(), tz=KST)
        row = pd.DataFrame(
            [{k: today[k] for k in ("open", "high", "low", "close", "volume")}],
            index=pd.DatetimeIndex([day]),
        )
        if history is None or history.empty:
            return row
        history = history[history.index < day]
        return pd.concat([history, row])

    def job_signals(self) -> None:
        now = self.clock()
        for slot in list(self.trader.slots.values()):
            if not (slot.active and slot.enabled) or not self.trading.decides_now(slot, now):
                continue
            for timeframe in slot.strategy.timeframes:
                self._signals_of(slot, timeframe, now)

    def _signals_of(self, slot: StrategySlot, timeframe: str, now: datetime) -> None:
        feed = self.realtime
        for code in slot.strategy.universe:
            if not slot.active:
                break
            if timeframe == "minute" and feed is not None and feed.covers(code):
                continue  # decided by the feed on each completed minute bar
            try:
                frame = self.frame_for(code, timeframe)
            except (BrokerError, DataError) as exc:
                self.trader.publish(
                    DataMissing(
                        at=now,
                        message=f"{code}: {exc}",
                        level="warning",
                        strategy=slot.name,
                        code=code,
                    )
                )
                continue
            if frame is None or frame.empty:
                continue
            bars = self.trader.build_window(slot, code, frame)
            self.trader.evaluate(slot, code, bars, timeframe=timeframe)

    def job_fills(self) -> None:
        feed = self.realtime
        if feed is not None:
            if not feed.should_poll_fills(self.clock()):
                return  # notices are live: polling is the slower reconciler
            feed.plan()  # holdings and open orders first in the registrations
        self.trading.poll()

    def job_exit_close(self) -> None:
        self.trading.exit_at_close()

    def job_account(self) -> None:
        """Poll fills, then compare the account's holdings and cash with the book."""
        self.trader.poll_orders()
        holdings = {h.stock_code: h.qty for h in self.trader.account_holdings()}
        balance = self.trader.account_balance()
        book: dict[str, int] = {}
        for p in self.trader.positions():
            book[p.stock_code] = book.get(p.stock_code, 0) + p.qty
        busy = {o.stock_code for o in self.trader.open_orders()}
        differ = [
            c for c in sorted(set(holdings) | set(book))
            if c not in busy and holdings.get(c, 0) != book.get(c, 0)
        ]
        if differ:  # a fill the book missed (a late fill of a cancelled order): read again
            self.trader.reread_fills(self.clock().date(), differ)
            book = {}
            for p in self.trader.positions():
                book[p.stock_code] = book.get(p.stock_code, 0) + p.qty
        for code in differ:
            if holdings.get(code, 0) != book.get(code, 0):
                self.trader.publish(
                    AccountMismatch(
                        at=self.clock(),
                        message=f"{code}: book {book.get(code, 0)} shares, "
                        f"account {holdings.get(code, 0)}",
                        level="warning",
                        code=code,
                        book_qty=book.get(code, 0),
                        account_qty=holdings.get(code, 0),
                    )
                )
        drift = balance.cash_krw - self.trader.cash_krw
        if drift and not self.trader.open_orders():
            self.trader.publish(
                CashSynced(
                    at=self.clock(),
                    message=f"cash {self.trader.cash_krw:,} KRW set to the account's "
                    f"{balance.cash_krw:,} ({drift:+,})",
                    level="info" if abs(drift) <= 10 else "warning",
                    account_cash_krw=balance.cash_krw,
                    drift_krw=drift,
                )
            )
            self.trader.sync_cash(balance.cash_krw)
            self.repository.record_cash(
                self.run_id, drift, kind="sync", reason="cash set to the account's figure",
                at=self.clock(),
            )
        self.snapshot(self.clock())

    def job_close(self) -> None:
        now = self.clock()
        self.trading.close_day(now.astimezone(KST).date())
        self.job_account()
        report = self.daily_report(now)
        self.trader.publish(
            DailyReport(
                at=now,
                message=f"daily report {report['date']}",
                date=now.astimezone(KST).date(),
                equity_krw=report["equity_krw"],
                cash_krw=report["cash_krw"],
                pnl_krw=report["pnl_krw"],
                pnl_pct=report["pnl_pct"],
                trades=report["trades"],
                fills=report["fills"],
                positions=tuple(report["positions"]),
            )
        )

    # --- figures -----------------------------------------------------------------------
    def snapshot(self, when: datetime) -> None:
        cash = self.trader.cash_krw
        equity = self.trader.equity_krw()
        self.repository.save_equity_snapshots(self.run_id, [(when, cash, equity - cash, equity)])
        self.trader.save_engine_state()  # the portfolio stop's high-water mark

    def daily_report(self, now: datetime) -> dict[str, Any]:
        today = now.astimezone(KST).date()
        equity = self.trader.equity_krw()
        start = self.risk.day_start_equity_krw or equity
        fills = self.repository.get_fills(self.run_id)
        n_fills = 0
        if not fills.empty:
            times = pd.to_datetime(fills["time"]).dt.tz_convert(KST).dt.date
            n_fills = int((times == today).sum())
        return {
            "date": today.isoformat(),
            "equity_krw": equity,
            "cash_krw": self.trader.cash_krw,
            "pnl_krw": equity - start,
            "pnl_pct": (equity - start) / start * 100.0 if start else 0.0,
            "trades": self.risk.trades_today,
            "fills": n_fills,
            "positions": self.positions(),
        }

    # --- controller (Telegram commands; any thread) --------------------------------------
    def set_trading_state(self, state: TradingState, by: str = "command") -> None:
        self.trading.set_trading_state(state, by)

    def set_state(self, state: str) -> None:
        self.set_trading_state(TradingState(state), by="telegram")

    def status(self) -> dict[str, Any]:
        with self.lock:
            now = self.clock()
            session = self.calendar.next_session(now)
            is_open = session.contains(now)
            return {
                "mode": self.mode,
                "env": self.env,
                "state": self.risk.state.value,
                "market": "open" if is_open else "closed",
                "next_event": (session.close if is_open else session.open).isoformat(),
                "equity_krw": self.trader.equity_krw(),
                "cash_krw": self.trader.cash_krw,
                "strategies": [
                    {
                        "name": s.name,
                        "active": s.active,
                        "enabled": s.enabled,
                        "trades_today": s.trades_today,
                        "errors": s.errors,
                    }
                    for s in self.trader.slots.values()
                ],
                **({"realtime": self.realtime.status()} if self.realtime is not None else {}),
            }

    def positions(self) -> list[dict[str, Any]]:
        out = []
        for p in self.trader.positions():
            price = self.trader.last_price(p.stock_code, p.avg_price) or p.avg_price
            pnl = round(p.qty * price) - p.cost_basis_krw
            out.append(
                {
                    "strategy": p.strategy,
                    "code": p.stock_code,
                    "name": self.names.get(p.stock_code),
                    "qty": p.qty,
                    "avg_price": p.avg_price,
                    "price": price,
                    "pnl_krw": pnl,
                    "pnl_pct": pnl / p.cost_basis_krw * 100.0 if p.cost_basis_krw else 0.0,
                    "stop_loss": p.stop_loss,
                    "target_price": p.target_price,
                }
            )
        return out

    def pnl(self) -> dict[str, Any]:
        with self.lock:
            now = self.clock()
            equity = self.trader.equity_krw()
            start = self.risk.day_start_equity_krw or equity
            unrealized = sum(p["pnl_krw"] for p in self.positions())
            return {
                "date": now.astimezone(KST).date().isoformat(),
                "start_equity_krw": start,
                "equity_krw": equity,
                "pnl_krw": equity - start,
                "pnl_pct": (equity - start) / start * 100.0 if start else 0.0,
                "realized_krw": sum(t.pnl_krw for t in self.trader.round_trips()),
                "unrealized_krw": unrealized,
                "trades": self.risk.trades_today,
            }

    def orders(self) -> list[dict[str, Any]]:
        with self.lock:
            return [
                {
                    "client_order_id": o.client_order_id,
                    "strategy": o.strategy,
                    "code": o.stock_code,
                    "name": self.names.get(o.stock_code),
                    "side": o.side.value,
                    "qty": o.qty,
                    "filled_qty": o.filled_qty,
                    "price": o.price,
                    "status": o.status.value,
                    "created_at": o.created_at.isoformat() if o.created_at else None,
                }
                for o in self.trader.open_orders()
            ]

    # --- events ------------------------------------------------------------------------
    def _on_event(self, event: Event) -> None:
        if self.alerts is not None:
            self.alerts.on_event(event)


def clean_bars(frame: pd.DataFrame) -> pd.DataFrame:
    """Drop bars with a missing, non-finite or non-positive price (a broker glitch)."""
    if frame.empty:
        return frame
    prices = frame[["open", "high", "low", "close"]].astype(float)
    ok = prices.apply(lambda col: col.map(math.isfinite)).all(axis=1) & (prices > 0).all(axis=1)
    return frame[ok]


# --- runners ---------------------------------------------------------------------------
class SteppedRunner:
    """Runs the session's jobs on a clock that jumps from one due job to the next.

    ``advance(seconds)`` moves the shared clock (the fake KIS's in tests). Used for
    simulated days; the jobs and their times are those of :func:`plan_day`.
    """

    def __init__(self, session: LiveSession, advance: Callable[[float], Any]):
        self.session = session
        self.advance = advance

    def run_day(self, day: date | None = None) -> Session | None:
        """Run the rest of the session of ``day`` (default: the current or next session);
        returns it, or ``None`` when there is nothing left to run that day."""
        s = self.session
        now = s.clock()
        session = s.calendar.session(day) if day is not None else s.calendar.next_session(now)
        if session is None:
            return None
        jobs = plan_day(session, s.settings, now)
        if not jobs:
            return None
        due: list[tuple[datetime, int, PlannedJob]] = [(j.first, i, j) for i, j in enumerate(jobs)]
        while due and not s.stop_requested.is_set():
            due.sort(key=lambda d: (d[0], d[1]))
            when, i, job = due.pop(0)
            wait = (when - s.clock()).total_seconds()
            if wait > 0:
                self.advance(wait)
            s.run_job(job.name)
            if job.every_s is not None and job.last is not None:
                nxt = when + timedelta(seconds=job.every_s)
                if nxt < job.last:
                    due.append((nxt, i, job))
        return session


class ScheduledRunner:
    """APScheduler on the KRX calendar in Asia/Seoul, real time (``python main.py live``).

    Every day at 07:30 (and at start) the day's jobs are planned from the calendar; on a
    day without a session it logs when the next one opens. Jobs run one at a time.
    Blocks in :meth:`run` until the session's stop is requested (``/stop``, SIGINT, SIGTERM).
    """

    def __init__(self, session: LiveSession, say: Callable[[str], object] | None = None):
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.background import BackgroundScheduler

        self.session = session
        self.say = say
        self.scheduler = BackgroundScheduler(
            timezone=KST,
            executors={"default": ThreadPoolExecutor(1)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30},
        )

    def plan(self) -> list[PlannedJob]:
        """(Re)plan today's jobs; returns them (empty on a day without a session left)."""
        from apscheduler.triggers.date import DateTrigger
        from apscheduler.triggers.interval import IntervalTrigger

        s = self.session
        now = s.clock()
        for job in self.scheduler.get_jobs():
            if job.id != "plan":
                job.remove()
        session = s.calendar.next_session(now)
        jobs = plan_day(session, s.settings, now) if session.day == now.date() else []
        if not jobs:
            self._tell(
                f"market closed; next session {session.day} opens at "
                f"{session.open:%Y-%m-%d %H:%M %Z}: waiting"
            )
            return []
        for job in jobs:
            if job.every_s is None:
                trigger: Any = DateTrigger(run_date=job.first, timezone=KST)
            else:
                trigger = IntervalTrigger(
                    seconds=job.every_s, start_date=job.first, end_date=job.last, timezone=KST
                )
            self.scheduler.add_job(s.run_job, trigger, args=[job.name], id=job.name)
        when = "now" if now >= session.open else f"at {session.open:%H:%M}"
        self._tell(
            f"session {session.day} {session.open:%H:%M}-{session.close:%H:%M}: "
            f"{len(jobs)} jobs planned, trading starts {when}"
        )
        return jobs

    def _tell(self, message: str) -> None:
        logger.info("%s", message)
        if self.say is not None:
            self.say(message)

    def run(self) -> None:
        from apscheduler.triggers.cron import CronTrigger

        if self.session.stop_requested.is_set():  # stopped before the first job
            return
        self.scheduler.add_job(self.plan, CronTrigger(hour=7, minute=30, timezone=KST), id="plan")
        self.plan()
        self.scheduler.start()
        try:
            while not self.session.stop_requested.wait(1.0):
                pass
        finally:
            self.scheduler.shutdown(wait=True)


__all__ = [
    "JOB_NAMES",
    "LiveSession",
    "PlannedJob",
    "ScheduledRunner",
    "SteppedRunner",
    "book_id",
    "clean_bars",
    "plan_day",
    "risk_limits",
]
