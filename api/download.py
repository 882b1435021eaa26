"""``python main.py download``: daily or minute bars from KIS into CSV files, at the rate limit.

Usage::

    python main.py download --symbols 005930,000660 --start 2015-01-01 [--end 2025-06-17]
    python main.py download --universe kospi200 --start 2010-01-01 [--budget 12] [--workers 6]
    python main.py download --universe my_list.txt --timeframe minute --start 2025-06-01

``--universe`` is a file (one code a line, or a CSV with a ``code`` column) or a named set of
the symbol file (:meth:`utils.symbols.SymbolTable.members`: ``kospi200``, ``kosdaq150``,
``kospi``, ``kosdaq``, ``etf``, ``all`` …).

Files: daily bars in ``<data dir>/<code>.csv``, minute bars in ``<data dir>/minute/<code>.csv``,
header ``date,open,high,low,close,volume``, one row a bar, ascending; ``date`` is
``YYYY-MM-DD`` (daily) or ``YYYY-MM-DD HH:MM:SS`` (minute, Asia/Seoul, naive in the file);
prices in KRW and volume in shares as integers — the format the backtest reads.

Resumable: a symbol whose file exists is fetched only from its last stored day on (and, if
``--start`` is earlier than its first row, the missing head); the stored last day must equal
the one fetched again, else the file's history changed at KIS (adjusted prices after a split
or a rights issue) and the symbol is fetched again in full. Files are replaced atomically.

Rate: the symbols are fetched by ``--workers`` threads through the app key's one limiter
(:class:`api.kis_http.KISRateLimiter`, shared with every other process of the same app key);
``--budget`` lowers its rate below KIS's limit (18/s real, 1/s virtual). A progress bar
(tqdm, on a terminal) and a summary line (symbols, rows, requests, requests/s, errors) are
printed. Credentials come from ``KIS_*`` variables (``.env``).

Bad input (a bad date, an unreadable universe) prints one line and returns 2; a symbol that
fails (unknown code, delisted, no bars in the range) prints one line and the others go on;
the status is then 1.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from api.kis_auth import get_logger
from framework.errors import ConfigError, DataError, KisTraderError
from framework.types import validate_code
from utils.clock import KST

log = get_logger(__name__)

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_FAILED = 1
DEFAULT_WORKERS = 4
COLUMNS = ["open", "high", "low", "close", "volume"]

BrokerFactory = Callable[[], Any]


def _parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def configure_parser(subparser: argparse.ArgumentParser) -> None:
    """Add the ``download`` options to ``subparser``."""
    which = subparser.add_mutually_exclusive_group(required=True)
    which.add_argument("--symbols",
                       help="comma-separated 6-character KRX codes, e.g. 005930,000660")
    which.add_argument("--universe",
                       help="a file of codes, or kospi200, kosdaq150, kospi, kosdaq, etf, all")
    subparser.add_argument("--start", required=True, type=_parse_date,
                           help="first day, YYYY-MM-DD")
    subparser.add_argument("--end", type=_parse_date, default=None,
                           help="last day, YYYY-MM-DD (default: today)")
    subparser.add_argument("--data-dir", default="data", type=Path,
                           help="directory of the CSV files (default: data)")
    subparser.add_argument("--timeframe", choices=("day", "minute"), default="day",
                           help="daily bars (default) or minute bars (past days: real accounts)")
    subparser.add_argument("--budget", type=int, default=None,
                           help="requests per second, at most KIS's limit (default: 18 real, "
                                "1 virtual)")
    subparser.add_argument("--workers", type=int, default=DEFAULT_WORKERS,
                           help=f"symbols fetched at the same time (default {DEFAULT_WORKERS})")
    subparser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _symbols(text: str) -> list[str]:
    codes = [c.strip() for c in str(text).split(",") if c.strip()]
    if not codes:
        raise ValueError("--symbols is empty")
    for code in codes:
        validate_code(code)
    return list(dict.fromkeys(codes))


def resolve_universe(spec: str) -> list[str]:
    """Codes of ``--universe``: an existing file, else a named set of the symbol file.
    ``ConfigError`` for an unreadable file or an unknown name; ``ValueError`` when empty."""
    from utils.symbols import default_symbols, read_code_list

    path = Path(spec).expanduser()
    codes = read_code_list(path) if path.is_file() else default_symbols().members(spec)
    if not codes:
        raise ValueError(f"--universe {spec}: no symbols (python main.py symbols --refresh "
                         "fills the symbol file)")
    return codes


@dataclass
class Summary:
    """What a download did: symbols done and failed, rows written, requests and seconds."""

    symbols: int = 0
    rows: int = 0
    requests: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def per_s(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        return (f"downloaded {self.symbols} symbols, {self.rows} rows, {self.requests} "
                f"requests in {self.seconds:.1f} s ({self.per_s:.2f} requests/s), "
                f"{len(self.errors)} errors")


def read_bars(path: Path, minute: bool) -> pd.DataFrame:
    """A stored file as a frame indexed by ``date`` (naive ``Timestamp``), int64 columns.
    ``DataError`` naming the file when it is not in the format above."""
    try:
        frame = pd.read_csv(path, dtype={"date": str})
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read: {exc}") from exc
    if list(frame.columns) != ["date", *COLUMNS]:
        raise DataError(f"{path}: header {','.join(map(str, frame.columns))!r}: expected "
                        f"date,{','.join(COLUMNS)}")
    fmt = "%Y-%m-%d %H:%M:%S" if minute else "%Y-%m-%d"
    try:
        index = pd.to_datetime(frame["date"], format=fmt)
    except ValueError as exc:
        raise DataError(f"{path}: date: expected {fmt}: {exc}") from exc
    out = frame[COLUMNS].astype("int64")
    out.index = pd.DatetimeIndex(index, name="date")
    return out


def write_bars(path: Path, frame: pd.DataFrame, minute: bool) -> None:
    """Write ``frame`` (index naive or tz-aware KST) in the file format, atomically."""
    out = frame[COLUMNS].astype("int64").copy()
    index = pd.DatetimeIndex(out.index)
    if index.tz is not None:
        index = index.tz_convert("Asia/Seoul").tz_localize(None)
    out.index = pd.Index(index.strftime("%Y-%m-%d %H:%M:%S" if minute else "%Y-%m-%d"),
                         name="date")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    out.to_csv(tmp)
    tmp.replace(path)


def _naive(frame: pd.DataFrame) -> pd.DataFrame:
    index = pd.DatetimeIndex(frame.index)
    if index.tz is not None:
        frame = frame.copy()
        frame.index = index.tz_convert("Asia/Seoul").tz_localize(None)
    return frame[COLUMNS].astype("int64")


class Downloader:
    """Fetches one symbol's bars, resuming from its file (see the module docstring).

    ``broker`` has ``get_daily_bars(code, start, end)`` and, for minute bars, a ``client``
    (:class:`api.kis_http.KISClient`).
    """

    def __init__(self, broker: Any, data_dir: Path, start: date, end: date, minute: bool):
        self.broker = broker
        self.data_dir = data_dir
        self.start = start
        self.end = end
        self.minute = minute

    def path(self, code: str) -> Path:
        return (self.data_dir / "minute" if self.minute else self.data_dir) / f"{code}.csv"

    def _fetch(self, code: str, start: date, end: date) -> pd.DataFrame:
        if not self.minute:
            try:
                return _naive(self.broker.get_daily_bars(code, start, end))
            except DataError as exc:
                if "no daily bars" in str(exc):
                    return pd.DataFrame(columns=COLUMNS, dtype="int64")
                raise
        from api.kis_history_api import minute_history
        from utils.market_calendar import krx_calendar

        calendar = krx_calendar()
        days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
        days = [d for d in days if _is_trading_day(calendar, d)]
        return _naive(minute_history(self.broker.client, code, days))

    def run(self, code: str) -> int:
        """Bring ``code``'s file up to date; return the rows added. ``DataError`` when there
        are no bars at all (unknown, delisted, nothing in the range)."""
        path = self.path(code)
        stored = read_bars(path, self.minute) if path.is_file() else None
        if stored is None or stored.empty:
            fresh = self._fetch(code, self.start, self.end)
            if fresh.empty:
                why = ("delisted, suspended or not yet listed?" if not self.minute else
                       "KIS keeps about a year of past minute bars (FHKST03010230); also "
                       "delisted, suspended or not yet listed?")
                raise DataError(f"{code}: no bars between {self.start} and {self.end} ({why})")
            write_bars(path, fresh, self.minute)
            return len(fresh)
        first, last = stored.index[0].date(), stored.index[-1].date()
        days = stored.index.normalize().unique()
        # the last stored day may have been partial (fetched during the session): it is
        # fetched again, and the day before it, complete, is the overlap that must agree
        anchor = days[-2].date() if len(days) >= 2 else last
        parts = [stored[stored.index.normalize() < pd.Timestamp(anchor)]]
        if self.start < first:
            parts.insert(0, self._fetch(code, self.start, first - timedelta(days=1)))
        tail = self._fetch(code, anchor, max(self.end, last))
        if anchor != last:
            overlap_new = tail[tail.index.normalize() == pd.Timestamp(anchor)]
            overlap_old = stored[stored.index.normalize() == pd.Timestamp(anchor)]
            if not overlap_new.equals(overlap_old):
                log.warning("%s: stored %s differs from KIS now (adjusted prices?); "
                            "fetching the whole range again", code, anchor)
                fresh = self._fetch(code, min(self.start, first), max(self.end, last))
                write_bars(path, fresh, self.minute)
                return len(fresh)
        parts.append(tail)
        if tail.empty or tail.index[-1].date() < last:
            parts.append(stored[stored.index.normalize() >= pd.Timestamp(anchor)])
        merged = pd.concat(parts)
        merged = merged[~merged.index.duplicated(keep="last")].sort_index()
        added = len(merged) - len(stored)
        if added or not merged.equals(stored):
            write_bars(path, merged, self.minute)
        return added


def _is_trading_day(calendar: Any, day: date) -> bool:
    try:
        return bool(calendar.is_trading_day(day))
    except ValueError:  # beyond the calendar: weekdays
        return day.weekday() < 5


def download(codes: list[str], downloader: Downloader, *, workers: int, limiter: Any = None,
             progress: bool = True, out: Any = None, err: Any = None) -> Summary:
    """Run ``downloader`` over ``codes`` with ``workers`` threads; one line per failure on
    ``err`` (default stderr), the summary on ``out`` (default stdout); returns the
    :class:`Summary` (requests counted from ``limiter.granted``)."""
    out = out or sys.stdout
    err = err or sys.stderr
    summary = Summary()
    lock = threading.Lock()
    granted_before = getattr(limiter, "granted", 0)
    started = time.monotonic()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(codes), unit="symbol", file=err, disable=None)
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(codes)))) as pool:
        futures = {pool.submit(downloader.run, code): code for code in codes}
        for future in as_completed(futures):
            code = futures[future]
            try:
                rows = future.result()
            except (KisTraderError, OSError) as exc:
                text = str(exc).removeprefix(f"{code}: ")
                message = f"{code}: {type(exc).__name__}: {text}"
                with lock:
                    summary.errors.append(message)
                print(f"download: {message}", file=err)
            else:
                with lock:
                    summary.symbols += 1
                    summary.rows += rows
                added = f"{rows} new bars" if rows else "up to date"
                print(f"{code}: {added} -> {downloader.path(code)}", file=out)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    summary.seconds = time.monotonic() - started
    summary.requests = getattr(limiter, "granted", 0) - granted_before
    print(summary.line(), file=out)
    return summary


def run(args: argparse.Namespace, broker_factory: BrokerFactory | None = None) -> int:
    """Download every symbol; return 0 on success, 2 on bad input, 1 if a symbol failed.

    ``broker_factory`` builds the data source (default: ``KISBroker.from_env()`` with the
    budget); it must have ``get_daily_bars(code, start, end)`` (and ``client`` for minute
    bars) and may have ``close()``.
    """
    try:
        if getattr(args, "symbols", None):
            codes = _symbols(args.symbols)
        elif getattr(args, "universe", None):
            codes = resolve_universe(args.universe)
        else:
            raise ValueError("give --symbols or --universe")
        start: date = args.start if isinstance(args.start, date) else _parse_date(args.start)
        end_arg = getattr(args, "end", None)
        end: date | None = (
            end_arg if isinstance(end_arg, date) or end_arg is None else _parse_date(end_arg)
        )
        if end is not None and start > end:
            raise ValueError(f"--start {start} is after --end {end}")
        data_dir = Path(getattr(args, "data_dir", None) or "data")
        workers = int(getattr(args, "workers", DEFAULT_WORKERS) or DEFAULT_WORKERS)
        if workers < 1:
            raise ValueError(f"--workers {workers}: expected at least 1")
        budget = getattr(args, "budget", None)
    except (ValueError, argparse.ArgumentTypeError, ConfigError) as exc:
        print(f"download: {exc}", file=sys.stderr)
        return EXIT_USAGE

    try:
        if broker_factory is None:
            from api.kis_broker import KISBroker
            from api.kis_settings import KISSettings

            settings = KISSettings.from_env()
            limit = 18 if settings.is_real else 1
            if budget is not None and not 0 < budget <= limit:
                raise ConfigError(f"--budget {budget}: expected 1..{limit} requests/s on the "
                                  f"{settings.env} account (KIS's limit)")
            if budget is not None:
                settings = settings.model_copy(update={"requests_per_s": budget})
            broker: Any = KISBroker(settings)
        else:
            broker = broker_factory()
    except ConfigError as exc:
        print(f"download: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        client = getattr(broker, "client", None)
        today = (client.clock() if client is not None else datetime.now(KST)).date()
        minute = getattr(args, "timeframe", "day") == "minute"
        if minute and client is not None and not client.settings.is_real and start < today:
            print("download: past minute bars (FHKST03010230) need a real account; "
                  "the virtual account serves today's only", file=sys.stderr)
            start = today
        downloader = Downloader(broker, data_dir, start, end or today, minute)
        summary = download(codes, downloader, workers=workers,
                           limiter=getattr(client, "limiter", None),
                           progress=not getattr(args, "no_progress", False))
    except (KisTraderError, OSError) as exc:
        print(f"download: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        close = getattr(broker, "close", None)
        if callable(close):
            close()
    return EXIT_FAILED if summary.errors else EXIT_OK
