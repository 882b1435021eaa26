"""kis-trader command line.

    python main.py                      run the configured mode (live with KIS keys in .env,
                                        else a backtest)
    python main.py live [--dry-run]     trade the enabled strategies through KIS (virtual
                                        account unless KIS_ENV=real and --confirm-real)
    python main.py reconcile            compare the database's book with the account, print it
    python main.py backtest [...]       backtest enabled strategies over CSV bars
    python main.py strategies           list discovered strategies and load errors
    python main.py new-strategy NAME    copy the sample strategy to strategies/NAME
    python main.py download [...]       fetch daily or minute bars through KIS into CSV files
    python main.py symbols [QUERY]      find symbols by name or code (--refresh, --info from KIS)
    python main.py optimize [...]       search a strategy's optimize: ranges with Optuna
    python main.py lookahead-check --strategy NAME [--data-dir DIR]
                                        is each indicator column causal? (exit 0 yes, 1 no)

Bad input ends with a one-line ``error: ...`` on stderr and exit status 2; ``live`` and
``reconcile`` exit with status 5 when another process trades the same account's book. A
backtest exits with status 3 when a strategy was disabled after failing
``max_consecutive_errors`` times in a row, and with status 4 when an indicator looks ahead
(``--allow-lookahead`` runs it anyway).
SIGINT/SIGTERM stop cleanly (status 0) at any point, start-up included.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from config.settings import (
    REPO_ROOT,
    Settings,
    database_url,
    kis_credentials_present,
    load_env,
    load_settings,
)
from core.fencing import StrategyDisabledError
from core.lease import EXIT_LEASE_HELD, LeaseHeldError
from core.lookahead import LookaheadError
from framework.errors import BrokerError, ConfigError, DataError, KisTraderError
from strategies.config import STRATEGIES_DIR, StrategyLoader
from utils.clock import KST

if TYPE_CHECKING:
    from core.live import LiveSession
    from strategies.base import BaseStrategy

logger = logging.getLogger("kis_trader")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python main.py", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--settings", type=Path, help="settings YAML (default config/settings.yaml)"
    )
    parser.add_argument(
        "--strategies-dir",
        type=Path,
        default=STRATEGIES_DIR,
        help="folder of strategy plugins (default: strategies/)",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv)")
    sub = parser.add_subparsers(dest="command")

    bt = sub.add_parser("backtest", help="backtest strategies over historical bars")
    _backtest_options(bt)
    run = sub.add_parser("run", help="run the configured mode (default command)")
    _backtest_options(run)
    live = sub.add_parser("live", help="trade the enabled strategies through KIS")
    _live_options(live)
    dash = sub.add_parser("dashboard", help="the web dashboard, read-only on the database")
    dash.add_argument("--db", help="database URL (default DATABASE_URL or sqlite:///kis_trader.db)")
    _dashboard_options(dash, prefix="")
    dash.add_argument("--book", help="the book (run id) to show (default: the newest live one)")
    rec = sub.add_parser("reconcile", help="compare the database's book with the account")
    rec.add_argument("--dry-run", action="store_true", help="the dry-run book (simulated orders)")
    rec.add_argument("--db", help="database URL (default DATABASE_URL or sqlite:///kis_trader.db)")
    sub.add_parser("strategies", help="list strategies, enabled or not, and load errors")
    opt = sub.add_parser("optimize", help="search a strategy's optimize: ranges with Optuna")
    _optimize_options(opt)
    look = sub.add_parser(
        "lookahead-check", help="check that a strategy's indicators use no later bars"
    )
    look.add_argument("--strategy", required=True, help="the strategy (enabled or not)")
    look.add_argument("--data-dir", type=Path, help="folder of <code>.csv / <code>_*.csv files")
    new = sub.add_parser("new-strategy", help="copy the sample strategy to strategies/NAME")
    new.add_argument("name", help="folder name: lower-case letters, digits and _")
    try:
        from api import download
    except ImportError:  # the KIS adapter is optional for backtests
        download = None  # type: ignore[assignment]
    if download is not None:
        dl = sub.add_parser("download", help="fetch daily bars through KIS into CSV files")
        download.configure_parser(dl)
        dl.set_defaults(handler=download.run)
    from api import symbols_cli

    sym = sub.add_parser("symbols", help="find symbols by name or code; refresh the symbol file")
    symbols_cli.configure_parser(sym)
    sym.set_defaults(handler=symbols_cli.run)
    return parser


def _backtest_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--strategy", help="only this strategy (enabled or not)")
    p.add_argument("--data-dir", type=Path, help="folder of <code>.csv / <code>_*.csv files")
    p.add_argument("--start", help="first trading date YYYY-MM-DD (earlier bars are warm-up)")
    p.add_argument("--end", help="last date YYYY-MM-DD (inclusive)")
    p.add_argument("--cash", type=int, help="starting cash in KRW")
    p.add_argument(
        "--timeframe",
        choices=("daily", "minute"),
        default="daily",
        help="bars to run on: daily files, or minute files <data-dir>/minute/<code>.csv "
        "(daily bars of multi-timeframe strategies are derived from them)",
    )
    p.add_argument("--commission-rate", type=float, help="commission per side, e.g. 0.00015")
    p.add_argument(
        "--sell-tax-rate",
        type=float,
        help="one flat sell tax rate instead of the dated schedule, e.g. 0.0018",
    )
    p.add_argument("--slippage-ticks", type=int, help="market orders fill N ticks worse")
    p.add_argument("--out", type=Path, help="report folder (default reports/<time>)")
    p.add_argument("--db", help="database URL (default DATABASE_URL or sqlite:///kis_trader.db)")
    p.add_argument("--no-db", action="store_true", help="do not write the run to the database")
    p.add_argument("--no-html", action="store_true", help="skip the HTML chart")
    p.add_argument("--no-xlsx", action="store_true", help="skip the Excel workbook")
    p.add_argument("--xlsx-bars", action="store_true", help="add one sheet of bars per stock")
    p.add_argument("--benchmark", help="stock code to compare equity with (default: buy-and-hold)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--allow-lookahead",
        action="store_true",
        help="run even when an indicator uses later bars (see lookahead-check)",
    )


def _optimize_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--strategy", required=True, help="the strategy (its config.yaml optimize:)")
    p.add_argument("--trials", type=int, required=True, help="trials in the study (in total)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes on this machine")
    p.add_argument("--storage", help="Optuna RDB URL (default sqlite:///OUT/study.db)")
    p.add_argument("--study", help="study name (default <strategy>-<metric>)")
    p.add_argument(
        "--metric",
        help="objective, or several separated by commas for NSGA-II "
        "(sharpe, sortino, calmar, profit_factor, total_return, cagr, win_rate, expectancy, "
        "final_equity, max_drawdown; default optimize.metric or sharpe)",
    )
    p.add_argument("--data-dir", type=Path, help="folder of <code>.csv / <code>_*.csv files")
    p.add_argument("--start", help="first trading date YYYY-MM-DD (earlier bars are warm-up)")
    p.add_argument("--end", help="last date YYYY-MM-DD (inclusive)")
    p.add_argument("--walk-forward", type=int, metavar="K", help="K train/test windows")
    p.add_argument("--seed", type=int, help="sampler seed (reproducible with --jobs 1)")
    p.add_argument("--no-prune", action="store_true", help="run every trial to the end")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--out", type=Path, required=True, help="output folder")


def _dashboard_options(p: argparse.ArgumentParser, prefix: str) -> None:
    p.add_argument(f"--{prefix}host", default="127.0.0.1",
                   help="address to bind (not loopback: needs DASHBOARD_TOKEN)")
    p.add_argument(f"--{prefix}port", type=int, default=8080, help="port (default 8080)")


def _live_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dashboard", action="store_true",
                   help="serve the web dashboard with its controls from this process")
    _dashboard_options(p, prefix="dashboard-")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="KIS quotes and bars, simulated orders and account (nothing is sent)",
    )
    p.add_argument(
        "--confirm-real",
        action="store_true",
        help="with KIS_ENV=real: confirm trading with real money (else a typed prompt)",
    )
    p.add_argument("--strategy", help="only this strategy (enabled or not)")
    p.add_argument("--db", help="database URL (default DATABASE_URL or sqlite:///kis_trader.db)")
    p.add_argument(
        "--ws",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="KIS WebSocket for real-time prices and fill notices (default: on when "
        "KIS_HTS_ID is set, or live.realtime.enabled)",
    )


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        from api.kis_auth import install_log_masking
    except ImportError:  # the KIS adapter is optional for backtests
        return
    for handler in logging.getLogger().handlers:  # secrets are masked in every log line
        install_log_masking(handler)


# --- commands ----------------------------------------------------------------------------


def _universe_bars(data_dir: Path, codes: list[str]) -> dict[str, Any]:
    """Bars by code from ``data_dir``; a note on stderr for codes without a file,
    ``DataError`` when none has one."""
    from core.data_collector import load_universe

    bars, missing = load_universe(data_dir, codes)
    if not bars:
        raise DataError(
            f"{data_dir}: no data file for any of {', '.join(codes)} "
            "(expected <code>.csv or <code>_*.csv)"
        )
    if missing:
        print(f"note: no data in {data_dir} for {', '.join(missing)}; skipped", file=sys.stderr)
    return bars


def cmd_backtest(args: argparse.Namespace, settings: Settings) -> int:
    from core.backtest import Backtest, BacktestSettings
    from core.data_collector import to_date
    from core.order_manager import OrderPolicy
    from core.report import compute_metrics, format_summary, run_notes, write_report
    from core.risk import RiskLimits

    defaults = settings.backtest
    data_dir = args.data_dir or settings.resolve_path(defaults.data_dir)
    if getattr(args, "timeframe", "daily") == "minute":
        data_dir = data_dir / "minute"
    start, end = to_date(args.start, "--start"), to_date(args.end, "--end")
    if start and end and start > end:
        raise DataError(f"--start {start} is after --end {end}")
    cash = defaults.cash_krw if args.cash is None else args.cash
    if cash <= 0:
        raise ConfigError(f"--cash must be a positive amount of KRW, got {cash}")
    commission = defaults.commission_rate if args.commission_rate is None else args.commission_rate
    tax = defaults.sell_tax_rate if args.sell_tax_rate is None else args.sell_tax_rate
    for name, rate in (("--commission-rate", commission), ("--sell-tax-rate", tax)):
        if rate is not None and not 0 <= rate < 0.05:
            raise ConfigError(f"{name} is a fraction such as 0.00015, got {rate}")
    slippage = defaults.slippage_ticks if args.slippage_ticks is None else args.slippage_ticks
    if slippage < 0:
        raise ConfigError(f"--slippage-ticks must be ≥ 0, got {slippage}")

    loader = StrategyLoader(root=args.strategies_dir)
    items = loader.load_enabled(only=args.strategy)
    if not items:
        raise ConfigError(
            f"no enabled strategy in {args.strategies_dir} (see: python main.py strategies)"
        )
    strategies = [item.create() for item in items]
    bars = _universe_bars(data_dir, sorted({c for s in strategies for c in s.universe}))

    bt_settings = BacktestSettings(
        cash_krw=cash,
        commission_rate=str(commission),
        sell_tax_rate=None if tax is None else str(tax),
        slippage_ticks=slippage,
        start=start,
        end=end,
        progress=not args.no_progress,
        risk_limits=RiskLimits(**settings.risk.model_dump()),
        order_policy=OrderPolicy(
            settings.live.orders.buy_timeout_s,
            settings.live.orders.sell_timeout_s,
            settings.live.orders.max_replacements,
        ),
        allow_lookahead=args.allow_lookahead,
    )
    started_at = datetime.now(KST)
    backtest = Backtest(strategies, bars, bt_settings)
    result = backtest.run()
    result.started_at = started_at
    metrics = compute_metrics(result)
    out = args.out or settings.resolve_path(defaults.out_dir) / started_at.strftime("%Y%m%d-%H%M%S")
    if not args.no_db:
        from db.repository import Repository

        repo = Repository(args.db or database_url(settings))
        # the report folder goes with the run: the dashboard opens its report.html
        summary = {**metrics, "report_dir": str(Path(out).resolve())}
        backtest.save(repo, result, started_at, summary=summary)
    benchmark = None
    if args.benchmark:
        from core.data_collector import find_csv, load_bars_csv

        bench_path = find_csv(data_dir, args.benchmark)
        if bench_path is None:
            raise DataError(f"{data_dir}: no data file for --benchmark {args.benchmark}")
        benchmark = load_bars_csv(bench_path)["close"].rename(args.benchmark)
    paths = write_report(
        result, out, html=not args.no_html, xlsx=not args.no_xlsx,
        xlsx_bars=args.xlsx_bars, benchmark=benchmark,
    )
    if backtest.screens:  # screened universes: the codes of every day, per strategy
        import csv

        paths["universe"] = out / "universe.csv"
        with paths["universe"].open("w", encoding="utf-8", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=["date", "strategy", "codes"])
            writer.writeheader()
            writer.writerows(backtest.screens.rows())
    print(format_summary(metrics))
    for line in run_notes(result):
        print(f"note: {line}")
    print(f"run id: {result.run_id}")
    print(f"report: {out}")
    width = max(map(len, paths), default=0)
    for kind, path in paths.items():
        print(f"  {kind:<{width}} {path}")
    return 0


def cmd_optimize(args: argparse.Namespace, settings: Settings) -> int:
    from core.backtest import BacktestSettings
    from core.data_collector import to_date
    from core.optimize import (
        Evaluator,
        OptimizeJob,
        optimize,
        parse_metrics,
        walk_forward,
        write_outputs,
    )
    from core.risk import RiskLimits

    if args.trials < 1:
        raise ConfigError(f"--trials must be ≥ 1, got {args.trials}")
    if args.jobs < 1:
        raise ConfigError(f"--jobs must be ≥ 1, got {args.jobs}")
    defaults = settings.backtest
    start, end = to_date(args.start, "--start"), to_date(args.end, "--end")
    if start and end and start > end:
        raise DataError(f"--start {start} is after --end {end}")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    job = OptimizeJob(
        strategy=args.strategy,
        strategies_dir=args.strategies_dir,
        data_dir=args.data_dir or settings.resolve_path(defaults.data_dir),
        settings=BacktestSettings(
            cash_krw=defaults.cash_krw,
            commission_rate=str(defaults.commission_rate),
            sell_tax_rate=None if defaults.sell_tax_rate is None else str(defaults.sell_tax_rate),
            slippage_ticks=defaults.slippage_ticks,
            start=start,
            end=end,
            risk_limits=RiskLimits(**settings.risk.model_dump()),
        ),
        n_trials=args.trials,
        seed=args.seed,
        storage=args.storage or f"sqlite:///{(out / 'study.db').resolve()}",
        prune=not args.no_prune,
    )
    evaluator = Evaluator(job)  # checks the strategy, its optimize: section and the data
    job.metrics = parse_metrics(args.metric or evaluator.space.metric or "sharpe")
    job.study_name = args.study or f"{args.strategy}-{'-'.join(job.metrics)}"
    if args.seed is not None and args.jobs > 1:
        print(f"note: --seed with --jobs {args.jobs}: trials interleave between processes, "
              "so the study is not reproducible (it is with --jobs 1)", file=sys.stderr)
    progress = not args.no_progress
    if args.walk_forward is not None:
        frame = walk_forward(job, args.walk_forward, args.jobs, out, progress)
        with_pandas = frame.drop(columns=["params"]).to_string(index=False, float_format="%.3f")
        print(with_pandas)
        for row in frame.itertuples():
            print(f"window {row.window}: {row.params}")
        print(f"walk-forward: {out / 'walk_forward.csv'}")
        return 0
    study = optimize(job, args.jobs, progress=progress)
    paths = write_outputs(study, job, evaluator.config_with, out)
    best = json.loads(paths["best"].read_text(encoding="utf-8"))
    values = ", ".join(f"{m} {v:.4g}" for m, v in zip(job.metrics, best["values"], strict=True))
    print(f"best trial {best['trial']} of {best['trials']}: {values}")
    print(f"  parameters: {best['parameters']}")
    if best["risk_management"]:
        print(f"  risk_management: {best['risk_management']}")
    width = max(map(len, paths), default=0)
    for kind, path in paths.items():
        print(f"  {kind:<{width}} {path}")
    return 0


def cmd_lookahead_check(args: argparse.Namespace, settings: Settings) -> int:
    """Print the look-ahead verdict of each indicator column of ``--strategy``; exit 0 when
    every column is causal, 1 when one looks ahead, 2 when the check could not run."""
    from core.lookahead import check_strategy

    data_dir = args.data_dir or settings.resolve_path(settings.backtest.data_dir)
    (item,) = StrategyLoader(root=args.strategies_dir).load_enabled(only=args.strategy)
    strategy = item.create()
    bars = _universe_bars(data_dir, list(strategy.universe))
    report = check_strategy(strategy, bars)
    print(report.format())
    if report.error is not None:
        return 2
    return 0 if report.causal else 1


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    data_dir = args.data_dir or settings.resolve_path(settings.backtest.data_dir)
    if kis_credentials_present() and settings.mode == "auto":
        print("KIS credentials found: live trading (python main.py live).")
        live_args = argparse.Namespace(
            dry_run=False,
            confirm_real=False,
            strategy=args.strategy,
            db=args.db,
            strategies_dir=args.strategies_dir,
        )
        return cmd_live(live_args, settings)
    if kis_credentials_present():
        print(f"mode: backtest in settings: backtesting every enabled strategy over {data_dir}.")
    else:
        print(
            f"No KIS credentials (KIS_APP_KEY, KIS_APP_SECRET, KIS_ACCOUNT_NO): running a "
            f"backtest of every enabled strategy over {data_dir}."
        )
    return cmd_backtest(args, settings)


def cmd_strategies(args: argparse.Namespace, settings: Settings) -> int:
    items = StrategyLoader(root=args.strategies_dir).discover()
    if not items:
        print(f"no strategy folders in {args.strategies_dir}")
        return 0
    for item in items:
        if not item.ok:
            print(f"{item.name:<20} ERROR     {item.error}")
            continue
        assert item.config is not None  # noqa: S101 - ok implies a config
        state = "enabled" if item.config.enabled else "disabled"
        print(
            f"{item.name:<20} {state:<9} {item.config.type:<7} {item.config.timeframe:<7} "
            f"universe={','.join(item.config.universe)}"
        )
        if item.config.description:
            print(f"{'':<20} {item.config.description}")
        try:
            lines = item.create().describe()
        except Exception as exc:  # describing must not hide the rest of the list
            lines = [f"(could not describe: {exc})"]
        for line in lines:
            print(f"{'':<20} {line}")
    return 0


@dataclass
class LiveParts:
    """A wired live session and what must be closed after it."""

    session: LiveSession
    closers: list[Callable[[], object]] = field(default_factory=list)
    controls: Any = None
    """The operator's controls (:class:`core.control.Controls`): dashboard, Telegram, SIGHUP."""

    def close(self) -> None:
        for close in reversed(self.closers):
            try:
                close()
            except Exception:  # closing must go on for the rest
                logger.exception("closing %r failed", close)


def build_live_session(
    settings: Settings,
    *,
    strategies_dir: Path = STRATEGIES_DIR,
    strategy: str | None = None,
    dry_run: bool = False,
    db_url: str | None = None,
    confirm: Callable[[], None] = lambda: None,
    alerts: bool = True,
    clock: Callable[[], datetime] | None = None,
    kis_overrides: dict[str, Any] | None = None,
    broker_options: dict[str, Any] | None = None,
    ws: bool | None = None,
    ws_options: dict[str, Any] | None = None,
    settings_path: Path | None = None,
) -> LiveParts:
    """Wire a :class:`core.live.LiveSession` from settings and the environment (``.env``).

    KIS credentials come from ``KIS_*`` variables; ``KIS_ENV=real`` without ``dry_run``
    calls ``confirm`` (which raises ``ConfigError`` to refuse). Telegram alerts and
    commands start when ``TELEGRAM_BOT_TOKEN`` and ``TELEGRAM_CHAT_ID`` are set and
    ``telegram.enabled`` (``TELEGRAM_API_URL`` points the bot at another Bot API server).
    ``ws`` (``--ws``/``--no-ws``) switches the KIS WebSocket on or off (default
    ``live.realtime.enabled``, else on when ``KIS_HTS_ID`` is set; see
    :mod:`core.realtime`). ``clock``, ``kis_overrides``, ``broker_options`` and
    ``ws_options`` (keyword arguments of :class:`api.kis_ws.KISWebSocket`) are for
    simulations and tests.
    Raises ``ConfigError`` for missing credentials or no enabled strategy.
    """
    from api.kis_settings import KISSettings
    from utils.clock import now as kst_now

    kis = KISSettings.from_env(**(kis_overrides or {}))
    if kis.env == "real" and not dry_run:
        confirm()
    strategies = _load_live_strategies(strategies_dir, strategy)
    clock = clock or kst_now
    closers: list[Callable[[], object]] = []
    try:
        parts = _wire_live(
            settings, kis, strategies, dry_run, db_url, alerts, clock, broker_options or {},
            closers, config_paths=(strategies_dir, settings_path),
        )
        _wire_realtime(parts, settings, kis, ws, dry_run, clock, ws_options or {})
        if strategy is None:
            _require_enabled(parts.session, strategies_dir)
        return parts
    except BaseException:
        LiveParts(session=None, closers=closers).close()  # type: ignore[arg-type]
        raise


def _wire_live(
    settings: Settings,
    kis: Any,
    strategies: list[BaseStrategy],
    dry_run: bool,
    db_url: str | None,
    alerts: bool,
    clock: Callable[[], datetime],
    broker_options: dict[str, Any],
    closers: list[Callable[[], object]],
    *,
    config_paths: tuple[Path, Path | None],
) -> LiveParts:
    """The wiring of :func:`build_live_session`; whatever it opens goes to ``closers``."""
    import os

    from api.kis_broker import KISBroker
    from api.paper import PaperBroker
    from core.control import Controls
    from core.engine import paper_account
    from core.live import LiveSession, book_id
    from core.reload import Reloader
    from db.repository import Repository
    from framework.events import CircuitBreakerChanged
    from utils.fees import FeeModel
    from utils.market_calendar import krx_calendar

    market = KISBroker(kis, clock=clock, **broker_options)
    closers.append(market.close)
    _sync_market_days(market, kis.is_real, clock)
    repository = Repository(db_url or database_url(settings), clock=clock)
    closers.append(repository.close)
    fees = FeeModel(kis.commission_rate, kis.sell_tax_rate)
    mode = "dry_run" if dry_run else "live"
    account = kis.account_no.get_secret_value()
    run_id = book_id(mode, kis.env, account)
    stop_on_lost: list[Callable[[str], object]] = []
    lease = _take_lease(settings, repository, run_id, mode, kis.env, clock, stop_on_lost)
    closers.append(lease.release)
    paper: PaperBroker | None = None
    funds = None
    if dry_run:
        # ids unique to this process: an earlier process's ids are already in the fill journal
        funds, paper = paper_account(
            settings.live.dry_run_cash_krw, fees, strategies, clock=clock,
            id_prefix=_process_id_prefix(),
        )
        _seed_paper(paper, repository, run_id, settings.live.dry_run_cash_krw, clock())
    notifier = None
    token, chat = os.environ.get("TELEGRAM_BOT_TOKEN"), os.environ.get("TELEGRAM_CHAT_ID")
    session = LiveSession(
        settings=settings,
        strategies=strategies,
        broker=paper or market,
        executor=paper or market,
        market=market,
        repository=repository,
        run_id=run_id,
        mode=mode,
        env=kis.env,
        clock=clock,
        calendar=krx_calendar(),
        fees=fees,
        on_quote=(
            (lambda q: paper.process_quote(q.stock_code, q.time, q.price, q.prev_close))
            if paper
            else None
        ),
        expire_day_orders=paper.expire_session if paper else None,
        funds=funds,
    )
    stop_on_lost.append(session.request_stop)
    controls = Controls(session, Reloader(session, *config_paths))
    parts = LiveParts(session=session, closers=closers, controls=controls)
    if alerts and settings.telegram.enabled and token and chat:
        from notifier import Notifier, parse_user_ids

        try:
            allowed = parse_user_ids(os.environ.get("TELEGRAM_ALLOWED_USER_IDS"))
        except ValueError as exc:
            raise ConfigError(str(exc), key="TELEGRAM_ALLOWED_USER_IDS") from None
        notifier = Notifier(
            token,
            chat,
            base_url=os.environ.get("TELEGRAM_API_URL") or None,
            alerts={str(k): v for k, v in settings.telegram.alerts.items()},
            controls=controls,
            commands=settings.telegram.commands,
            allowed_user_ids=allowed,
            names=session.names.get,
        )
        notifier.start()
        session.alerts = notifier
        closers.insert(0, notifier.stop)
    market.breaker.add_listener(
        lambda event: session.trader.publish(
            CircuitBreakerChanged(
                at=clock(),
                message=f"KIS circuit breaker {event.old_state} -> {event.new_state}",
                level="warning",
                old_state=str(event.old_state),
                new_state=str(event.new_state),
            )
        )
    )
    return parts


def _wire_realtime(
    parts: LiveParts,
    settings: Settings,
    kis: Any,
    flag: bool | None,
    dry_run: bool,
    clock: Callable[[], datetime],
    options: dict[str, Any],
) -> None:
    """Attach the KIS WebSocket feed to the session when it is wanted (see
    :func:`core.realtime.realtime_enabled`); a dry run takes ticks only (its fills are
    simulated)."""
    from api.kis_ws import KISWebSocket
    from core.realtime import RealtimeFeed, realtime_enabled

    rt = settings.live.realtime
    hts_id = kis.hts_id.get_secret_value() if kis.hts_id is not None else None
    if not realtime_enabled(rt.enabled, flag, hts_id):
        return
    if dry_run and kis.hts_id is not None:
        kis = kis.model_copy(update={"hts_id": None})
    if not hts_id and not dry_run:
        logger.warning("KIS_HTS_ID is not set: no fill notices; fills come from polling")
    options = {
        "max_registrations": rt.max_registrations,
        "min_backoff_s": rt.min_backoff_s,
        "max_backoff_s": rt.max_backoff_s,
        **options,
    }
    client = KISWebSocket(kis, clock=clock, **options)
    feed = RealtimeFeed(
        parts.session,
        client,
        fill_reconcile_interval_s=rt.fill_reconcile_interval_s,
        seed_minute_bars=rt.seed_minute_bars,
        requests_per_s=kis.rate_limit_per_s,
    )
    parts.session.attach_realtime(feed)
    parts.closers.insert(0, feed.stop)


def _sync_market_days(market: Any, is_real: bool, clock: Callable[[], datetime]) -> None:
    """KIS's open days (chk-holiday, real accounts) into the calendar and its cache; on a
    failure or a virtual account the cached days, ``XKRX`` and the hand rules decide."""
    if not is_real:
        return
    from api.kis_screen_api import sync_market_days

    try:
        days = sync_market_days(market.client, clock().date())
    except KisTraderError as exc:
        logging.getLogger(__name__).warning(
            "holiday sync from KIS failed (%s); using the cached days and XKRX", exc)
        return
    closed = sorted(d for d, open_ in days.items() if not open_ and d.weekday() < 5)
    logging.getLogger(__name__).info(
        "KIS calendar synced for %d days; weekdays closed: %s", len(days),
        ", ".join(map(str, closed)) or "none")


def _take_lease(
    settings: Settings,
    repository: Any,
    run_id: str,
    mode: str,
    env: str,
    clock: Callable[[], datetime],
    on_lost: list[Callable[[str], object]],
) -> Any:
    """Take the book's lease (:mod:`core.lease`) before anything reads or writes the book;
    a take-over of a dead holder is journaled. Raises ``LeaseHeldError``."""
    from core.lease import AccountLease

    what = "the dry-run book" if mode == "dry_run" else "the live book"
    lease = AccountLease(
        run_id,
        repository.engine,
        what=f"{what} of this account ({env})",
        clock=clock,
        heartbeat_s=settings.live.lease_heartbeat_s,
        on_lost=lambda reason: [stop(reason) for stop in on_lost],
    )
    previous = lease.acquire()
    logger.info("start-up: lease %s taken", run_id)
    if previous is not None:
        try:
            repository.ensure_run(mode, {"mode": mode, "env": env}, clock(), run_id)
            repository.log_event(
                "lease_taken_over",
                f"lease taken over from a holder that did not stop cleanly "
                f"({previous.describe()})",
                run_id=run_id,
                level="warning",
                data={**previous.to_json(), "key": run_id},
                at=clock(),
            )
        except BaseException:
            lease.release()
            raise
    return lease


def _load_live_strategies(root: Path, only: str | None) -> list[BaseStrategy]:
    loader = StrategyLoader(root=root)
    if only is not None:
        items = loader.load_enabled(only=only)
    else:  # one discovery: a broken plugin is reported and the others trade
        found = loader.discover()
        for item in found:
            if not item.ok:
                print(f"warning: strategy {item.name} not loaded: {item.error}", file=sys.stderr)
        # disabled ones too: a stored switch (core.switches) may turn one on
        items = [item for item in found if item.ok]
    if not items:
        raise ConfigError(f"no enabled strategy in {root}: set enabled: true in a config.yaml")
    return [item.create() for item in items]


def _process_id_prefix() -> str:
    """A short token unique to this process start (wall-clock nanoseconds and pid, hex)."""
    import os
    import time

    return f"{time.time_ns():X}{os.getpid():X}-"


def _require_enabled(session: LiveSession, root: Path) -> None:
    """At least one strategy is enabled in its config.yaml or has a switch in force (all
    switched off, the bot still starts: the exits of the book apply and a switch turns them
    back on)."""
    for slot in session.trader.slots.values():
        enabled, switch, _dropped = session.switches.effective(
            slot.name, slot.strategy.config.enabled, drop=False
        )
        if enabled or switch is not None:
            return
    raise ConfigError(f"no enabled strategy in {root}: set enabled: true in a config.yaml")


def _seed_paper(paper: Any, repository: Any, run_id: str, default_cash: int, now: datetime) -> None:
    """Dry-run after a restart: the simulated account continues from the book.

    Its holdings are the book's, summed over the strategies holding a stock, and its cash
    the last equity snapshot's. The simulated orders of the previous process ended with it
    (this paper account has none to poll): the book's open ones are cancelled.
    """
    from framework.types import OrderStatus

    last = repository.get_last_equity(run_id)
    holdings: dict[str, tuple[int, int]] = {}
    for row in repository.get_positions(run_id, status="holding"):
        qty, cost = holdings.get(row["stock_code"], (0, 0))
        holdings[row["stock_code"]] = (qty + int(row["qty"]), cost + int(row["cost_basis_krw"]))
    paper.seed(last["cash_krw"] if last else default_cash, holdings)
    for order in repository.get_open_orders(run_id):
        if order.broker_order_id is None:  # never sent: reconciliation rejects it
            continue
        note = "dry run restarted: the simulated order ended with the previous process"
        order.status, order.message, order.updated_at = OrderStatus.CANCELLED, note, now
        repository.save_order(run_id, order, note=note)


def _confirm_real(args: argparse.Namespace) -> None:
    """Real money needs ``--confirm-real`` or the word REAL typed at the prompt."""
    if args.confirm_real:
        return
    if not sys.stdin.isatty():
        raise ConfigError(
            "KIS_ENV=real trades with real money: pass --confirm-real "
            "(or run in a terminal and type REAL at the prompt)"
        )
    answer = input("KIS_ENV=real: orders go to your REAL account. Type REAL to continue: ")
    if answer.strip() != "REAL":
        raise ConfigError("real trading not confirmed")


class StartupStopped(BaseException):
    """SIGINT/SIGTERM during start-up (a ``BaseException``, like ``KeyboardInterrupt``, so
    no ``except Exception`` on the way swallows it)."""


class _StopSignals:
    """SIGINT and SIGTERM handlers, installed before anything starts.

    Until :meth:`trading` is called a signal ends the start-up where it is (it raises
    :class:`StartupStopped`; what was opened is closed on the way out); afterwards it asks
    the session for a clean stop. A signal while stopping is ignored.
    """

    def __init__(self) -> None:
        import signal

        self.session: LiveSession | None = None
        self.received: str | None = None
        self._previous = {
            sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)
        }

    def _handle(self, signum: int, _frame: object) -> None:
        import signal

        name = signal.Signals(signum).name
        if self.session is not None:
            self.session.request_stop(f"signal {name}")
        elif self.received is None:
            self.received = name
            raise StartupStopped(name)

    def trading(self, session: LiveSession) -> None:
        self.session = session

    def stopping(self) -> None:
        """From here on signals are ignored until :meth:`restore` (clean-up runs through)."""
        if self.received is None:
            self.received = "stopping"
        self.session = None

    def restore(self) -> None:
        import signal

        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _dashboard_token() -> str | None:
    import os

    return os.environ.get("DASHBOARD_TOKEN") or None


def cmd_dashboard(args: argparse.Namespace, settings: Settings) -> int:
    """The dashboard alone, read-only on the database; blocks until Ctrl+C."""
    from dashboard.app import create_app
    from dashboard.security import check_bind
    from dashboard.server import DashboardServer
    from db.repository import Repository

    token = _dashboard_token()
    check_bind(args.host, token)
    repository = Repository(args.db or database_url(settings))
    try:
        server = DashboardServer(create_app(repository, run_id=args.book, token=token),
                                 args.host, args.port, token)
        server.start()
        print(f"dashboard (read-only) on {server.url}; Ctrl+C stops.", flush=True)
        try:
            while server.thread.is_alive():
                server.thread.join(1.0)
        except KeyboardInterrupt:
            pass
        server.stop()
    finally:
        repository.close()
    return 0


def _start_live_dashboard(args: argparse.Namespace, built: LiveParts, controls: Any) -> None:
    from dashboard.app import create_app
    from dashboard.server import DashboardServer

    token = _dashboard_token()
    server = DashboardServer(
        create_app(built.session.repository, controls=controls, token=token),
        args.dashboard_host, args.dashboard_port, token,
    )
    server.start()
    built.closers.insert(0, server.stop)
    print(f"dashboard on {server.url}", flush=True)


def _reload_on_sighup(controls: Any) -> None:
    """SIGHUP re-reads the configuration (on a thread of its own: it waits for the job that
    holds the session's lock)."""
    import signal
    import threading

    if not hasattr(signal, "SIGHUP"):
        return

    def handle(_signum: int, _frame: object) -> None:
        threading.Thread(target=lambda: print(controls.reload("signal").message, flush=True),
                         name="reload", daemon=True).start()

    signal.signal(signal.SIGHUP, handle)


def cmd_live(args: argparse.Namespace, settings: Settings) -> int:
    from core.live import ScheduledRunner

    signals = _StopSignals()
    built: LiveParts | None = None
    if args.dashboard:
        from dashboard.security import check_bind

        check_bind(args.dashboard_host, _dashboard_token())
    try:
        logger.info("start-up: wiring the session")
        built = build_live_session(
            settings,
            strategies_dir=args.strategies_dir,
            strategy=args.strategy,
            dry_run=args.dry_run,
            db_url=args.db or database_url(settings),
            confirm=lambda: _confirm_real(args),
            ws=getattr(args, "ws", None),
            settings_path=args.settings,
        )
        session = built.session
        if args.dry_run:
            _check_data_source(session)
        logger.info("start-up: reconciling the book with the account")
        report = session.start()
        _reload_on_sighup(built.controls)
        if args.dashboard:
            _start_live_dashboard(args, built, built.controls)
        signals.trading(session)  # from here a signal is a clean stop of the runner
        print(report.format())
        mode = "dry run (simulated orders)" if args.dry_run else f"{session.env} account"
        print(f"trading {', '.join(session.trader.slots)} on the {mode}; Ctrl+C stops.")
        sys.stdout.flush()
        ScheduledRunner(session, say=lambda text: print(text, flush=True)).run()
    except StartupStopped as exc:
        signals.stopping()
        print(f"stopped by {exc} during start-up; nothing was traded", file=sys.stderr)
        return 0
    finally:
        signals.stopping()
        try:
            if built is not None:
                built.session.stop(built.session.stop_reason or "stopped")
                built.close()
        finally:
            signals.restore()
    return 0


def _check_data_source(session: LiveSession) -> None:
    """A dry run trades on KIS quotes: one quote at start proves they arrive. Raises
    ``BrokerError`` naming what failed (later losses are retried by the jobs)."""
    codes = session.universe[:1]
    if not codes:
        return
    logger.info("start-up: checking the quote source with %s", codes[0])
    try:
        session.quote_source.get_quotes(codes)
    except BrokerError as exc:
        raise BrokerError(f"dry run: KIS quotes are out of reach: {exc}") from exc


def cmd_reconcile(args: argparse.Namespace, settings: Settings) -> int:
    from core.reconcile import ReconcileError

    signals = _StopSignals()
    built: LiveParts | None = None
    try:
        built = build_live_session(
            settings,
            strategies_dir=args.strategies_dir,
            strategy=None,
            dry_run=args.dry_run,
            db_url=args.db or database_url(settings),
            confirm=lambda: None,  # reads only: nothing is sent
            alerts=False,
        )
        report = built.session.reconcile_only()
    except StartupStopped as exc:
        print(f"stopped by {exc}; nothing was changed", file=sys.stderr)
        return 0
    except ReconcileError as exc:
        print(f"error: reconciliation failed: {exc}", file=sys.stderr)
        return 2
    finally:
        signals.stopping()
        try:
            if built is not None:
                built.close()
        finally:
            signals.restore()
    print(report.format())
    return 0


_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


def cmd_new_strategy(args: argparse.Namespace, settings: Settings) -> int:
    name = args.name
    if not _NAME.match(name):
        raise ConfigError(
            f"strategy name {name!r}: use lower-case letters, digits and _, "
            "starting with a letter (e.g. my_breakout)"
        )
    root: Path = args.strategies_dir
    target = root / name
    if target.exists():
        raise ConfigError(f"{target} already exists")
    source = STRATEGIES_DIR / "sample"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
    class_name = "".join(part.capitalize() for part in name.split("_")) + "Strategy"
    code = (target / "strategy.py").read_text(encoding="utf-8")
    (target / "strategy.py").write_text(
        code.replace("SampleStrategy", class_name), encoding="utf-8"
    )
    cfg = (target / "config.yaml").read_text(encoding="utf-8")
    cfg = cfg.replace("enabled: true", "enabled: false", 1)
    (target / "config.yaml").write_text(cfg, encoding="utf-8")
    print(f"created {target} (class {class_name}, disabled).")
    print(f"Edit {target / 'strategy.py'} and {target / 'config.yaml'}, set enabled: true, then:")
    print(f"  python main.py backtest --strategy {name}")
    return 0


COMMANDS = {
    None: cmd_run,
    "run": cmd_run,
    "live": cmd_live,
    "reconcile": cmd_reconcile,
    "dashboard": cmd_dashboard,
    "backtest": cmd_backtest,
    "strategies": cmd_strategies,
    "new-strategy": cmd_new_strategy,
    "optimize": cmd_optimize,
    "lookahead-check": cmd_lookahead_check,
}

EXIT_STRATEGY_DISABLED = 3
"""A backtest stopped because a strategy kept failing (``StrategyDisabledError``)."""
EXIT_LOOKAHEAD = 4
"""A backtest was refused because an indicator looks ahead (``LookaheadError``)."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    try:
        load_env()
        settings = load_settings(args.settings)
        if settings.symbols_file:  # markets of stocks beyond the shipped config/symbols.csv
            from utils.symbols import configure_symbols

            configure_symbols(settings.resolve_path(settings.symbols_file))
        if args.command is None:  # plain `python main.py`: the run command's defaults
            given = list(argv) if argv is not None else sys.argv[1:]
            args = parser.parse_args([*given, "run"])
        handler = getattr(args, "handler", None)
        if handler is not None:
            return int(handler(args))
        return COMMANDS[args.command](args, settings)
    except LeaseHeldError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_LEASE_HELD
    except StrategyDisabledError as exc:  # its traceback was logged once, when it first failed
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_STRATEGY_DISABLED
    except LookaheadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_LOOKAHEAD
    except KisTraderError as exc:
        message = str(exc).strip() or type(exc).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.path.insert(0, str(REPO_ROOT))
    sys.exit(main())
