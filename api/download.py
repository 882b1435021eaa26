"""``python main.py download``: daily bars from KIS into ``<code>.csv`` files.

Usage::

    python main.py download --symbols 005930,000660 --start 2015-01-01 [--end 2025-06-17]
                            [--data-dir data]

Each file has the header ``date,open,high,low,close,volume``, one row a trading day,
ascending, ``date`` as ``YYYY-MM-DD``, prices in KRW and volume in shares as integers — the
format the backtest reads. Credentials come from ``KIS_*`` variables (``.env``).
Bad input or a KIS failure prints one line to stderr and returns a non-zero code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from api.kis_auth import get_logger
from framework.errors import ConfigError, KisTraderError
from framework.types import validate_code

log = get_logger(__name__)

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_FAILED = 1

BrokerFactory = Callable[[], Any]


def _parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def configure_parser(subparser: argparse.ArgumentParser) -> None:
    """Add the ``download`` options to ``subparser``."""
    subparser.add_argument("--symbols", required=True,
                           help="comma-separated 6-character KRX codes, e.g. 005930,000660")
    subparser.add_argument("--start", required=True, type=_parse_date,
                           help="first day, YYYY-MM-DD")
    subparser.add_argument("--end", type=_parse_date, default=None,
                           help="last day, YYYY-MM-DD (default: today)")
    subparser.add_argument("--data-dir", default="data", type=Path,
                           help="directory of the CSV files (default: data)")


def _symbols(text: str) -> list[str]:
    codes = [c.strip() for c in str(text).split(",") if c.strip()]
    if not codes:
        raise ValueError("--symbols is empty")
    for code in codes:
        validate_code(code)
    return list(dict.fromkeys(codes))


def run(args: argparse.Namespace, broker_factory: BrokerFactory | None = None) -> int:
    """Download every symbol; return 0 on success, 2 on bad input, 1 on a failure.

    ``broker_factory`` builds the data source (default: ``KISBroker.from_env()``); it must
    have ``get_daily_bars(code, start, end)`` and may have ``close()``.
    """
    try:
        codes = _symbols(args.symbols)
        start: date = args.start if isinstance(args.start, date) else _parse_date(args.start)
        end_arg = getattr(args, "end", None)
        end: date | None = (
            end_arg if isinstance(end_arg, date) or end_arg is None else _parse_date(end_arg)
        )
        if end is not None and start > end:
            raise ValueError(f"--start {start} is after --end {end}")
        data_dir = Path(getattr(args, "data_dir", None) or "data")
    except (ValueError, argparse.ArgumentTypeError) as exc:
        print(f"download: {exc}", file=sys.stderr)
        return EXIT_USAGE

    try:
        if broker_factory is None:
            from api.kis_broker import KISBroker

            broker: Any = KISBroker.from_env()
        else:
            broker = broker_factory()
    except ConfigError as exc:
        print(f"download: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        for code in codes:
            frame = broker.get_daily_bars(code, start, end)
            path = data_dir / f"{code}.csv"
            out = frame[["open", "high", "low", "close", "volume"]].astype("int64")
            out.index = out.index.strftime("%Y-%m-%d")
            out.index.name = "date"
            tmp = path.with_suffix(".csv.tmp")
            out.to_csv(tmp)
            tmp.replace(path)
            print(f"{code}: {len(out)} bars -> {path}")
    except KisTraderError as exc:
        print(f"download: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:
        print(f"download: cannot write: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        close = getattr(broker, "close", None)
        if callable(close):
            close()
    return EXIT_OK
