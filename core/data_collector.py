"""Bars for the universe: CSV files for backtests, a clock-bounded provider for strategies.

CSV format (the files in ``shared/data/krx`` work as they are)::

    date,open,high,low,close,volume
    2024-01-02,78200,79800,78200,79600,17142847

``date`` is ``YYYY-MM-DD`` (daily) or ``YYYY-MM-DD HH:MM:SS`` (intraday), local KRX time;
rows ascending with unique dates; prices in KRW, volume in shares. A file is found in the
data directory as ``<code>.csv`` or ``<code>_<anything>.csv``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from framework.data import OHLCV_COLUMNS, DataProvider
from framework.errors import DataError
from framework.types import validate_code

TZ = "Asia/Seoul"


def find_csv(data_dir: Path, stock_code: str) -> Path | None:
    """The CSV of ``stock_code`` in ``data_dir`` or ``None``; ``DataError`` if ambiguous."""
    exact = data_dir / f"{stock_code}.csv"
    if exact.is_file():
        return exact
    matches = sorted(data_dir.glob(f"{stock_code}_*.csv"))
    if len(matches) > 1:
        names = ", ".join(m.name for m in matches)
        raise DataError(f"{data_dir}: several files for {stock_code}: {names}")
    return matches[0] if matches else None


def available_codes(data_dir: Path) -> list[str]:
    """Stock codes that have a CSV file in ``data_dir`` (sorted)."""
    codes = set()
    for path in data_dir.glob("*.csv"):
        head = path.stem.split("_", 1)[0]
        try:
            codes.add(validate_code(head))
        except ValueError:
            continue
    return sorted(codes)


def load_bars_csv(path: Path) -> pd.DataFrame:
    """Read one OHLCV CSV into a DataFrame (index tz Asia/Seoul, float64 columns).

    Raises ``DataError`` naming the file (and the line, where one is at fault) for a missing
    file, a wrong header, an unparsable date, unsorted or duplicate dates, missing or
    non-positive prices, negative volume, or a bar whose high is below its low or whose
    open or close lies outside [low, high].
    """
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"{path}: not a readable CSV: {str(exc).splitlines()[0]}") from exc
    header = [c.strip().lower() for c in raw.columns]
    expected = ["date", *OHLCV_COLUMNS]
    if header[:6] != expected:
        raise DataError(
            f"{path}: header must start with {','.join(expected)}, got {','.join(header)}"
        )
    raw.columns = header
    if raw.empty:
        raise DataError(f"{path}: no rows")
    dates = pd.to_datetime(raw["date"].str.strip(), format="ISO8601", errors="coerce")
    bad = dates.isna().to_numpy()
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"{path}: line {row + 2}: bad date {raw['date'].iloc[row]!r}")
    values = {}
    for col in OHLCV_COLUMNS:
        num = pd.to_numeric(raw[col].str.strip(), errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(num) | ((num <= 0) if col != "volume" else (num < 0))
        if bad.any():
            row = int(np.argmax(bad))
            raise DataError(f"{path}: line {row + 2}: bad {col} {raw[col].iloc[row]!r}")
        values[col] = num
    _check_ranges(path, raw, values)
    index = pd.DatetimeIndex(dates).tz_localize(TZ).as_unit("ns")
    if not index.is_monotonic_increasing:
        row = int(np.argmax(np.diff(index.asi8) < 0)) + 1
        raise DataError(f"{path}: line {row + 2}: dates are not in ascending order")
    if index.has_duplicates:
        row = int(np.argmax(index.duplicated()))
        raise DataError(f"{path}: line {row + 2}: duplicate date {raw['date'].iloc[row]}")
    frame = pd.DataFrame(values, index=index)
    frame.index.name = "date"
    return frame


def _check_ranges(path: Path, raw: pd.DataFrame, values: dict[str, np.ndarray]) -> None:
    """``DataError`` for the first bar with high < low or open/close outside [low, high]."""
    high, low = values["high"], values["low"]
    problems = [
        (high < low, "high {high} is below low {low}"),
        (
            (values["open"] < low) | (values["open"] > high),
            "open {open} is outside [low {low}, high {high}]",
        ),
        (
            (values["close"] < low) | (values["close"] > high),
            "close {close} is outside [low {low}, high {high}]",
        ),
    ]
    first: tuple[int, str] | None = None
    for bad, text in problems:
        if bad.any():
            row = int(np.argmax(bad))
            if first is None or row < first[0]:
                first = (row, text)
    if first is not None:
        row, text = first
        cells = {col: raw[col].iloc[row].strip() for col in ("open", "high", "low", "close")}
        raise DataError(f"{path}: line {row + 2}: {text.format(**cells)}")


def load_universe(
    data_dir: Path, codes: Iterable[str]
) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """Bars of every code that has a file; returns (bars by code, codes without a file)."""
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: data directory not found")
    bars: dict[str, pd.DataFrame] = {}
    missing: list[str] = []
    for code in sorted(set(codes)):
        path = find_csv(data_dir, code)
        if path is None:
            missing.append(code)
        else:
            bars[code] = load_bars_csv(path)
    return bars, missing


def to_date(value: str | date | None, what: str) -> date | None:
    """Parse ``YYYY-MM-DD`` for a CLI option; ``DataError`` naming the option if invalid."""
    if value is None or isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise DataError(f"{what}: expected a date as YYYY-MM-DD, got {value!r}") from None


def is_intraday(frame: pd.DataFrame) -> bool:
    """Whether ``frame``'s bars are intraday (any time of day other than midnight)."""
    if frame.empty:
        return False
    index = pd.DatetimeIndex(frame.index)
    return bool((index.normalize() != index).any())


def daily_from_minutes(frame: pd.DataFrame) -> pd.DataFrame:
    """Daily OHLCV of minute bars: per Asia/Seoul day the first open, highest high, lowest
    low, last close and summed volume; index = the day at 00:00 (tz Asia/Seoul)."""
    if frame.empty:
        return frame.iloc[0:0]
    days = pd.DatetimeIndex(frame.index).normalize()
    grouped = frame.groupby(days, sort=True)
    out = pd.DataFrame({
        "open": grouped["open"].first(),
        "high": grouped["high"].max(),
        "low": grouped["low"].min(),
        "close": grouped["close"].last(),
        "volume": grouped["volume"].sum(),
    })
    out.index = pd.DatetimeIndex(out.index, name="date")
    return out


class HistoricalDataProvider(DataProvider):
    """Serves stored bars, never past the clock's current time (no look-ahead).

    With minute bars (a backtest on ``--timeframe minute``), :meth:`get_minute_bars` gives a
    day's minute bars up to now and :meth:`get_daily_bars` daily bars derived from them:
    completed days as they ended, today's bar as it stands now (the one forming, as live).
    """

    def __init__(self, bars: dict[str, pd.DataFrame], clock: Callable[[], datetime]):
        self._bars = bars
        self._clock = clock
        self._daily: dict[str, pd.DataFrame] = {}

    def _derived_daily(self, stock_code: str) -> pd.DataFrame:
        frame = self._bars[stock_code]
        if not is_intraday(frame):
            return frame
        daily = self._daily.get(stock_code)
        if daily is None:
            daily = daily_from_minutes(frame)
            self._daily[stock_code] = daily
        now = pd.Timestamp(self._clock())
        today = now.normalize()
        done = daily.loc[daily.index < today]
        minutes = frame.loc[(frame.index >= today) & (frame.index <= now)]
        if minutes.empty:
            return done
        forming = daily_from_minutes(minutes)
        return pd.concat([done, forming])

    def get_minute_bars(self, stock_code: str, day: date | None = None) -> pd.DataFrame:
        """The minute bars of ``day`` (default: today) up to now, ascending. Raises
        ``DataError`` when only daily bars are loaded for ``stock_code``."""
        if stock_code not in self._bars:
            raise DataError(f"no bars for {stock_code}")
        frame = self._bars[stock_code]
        if not is_intraday(frame):
            raise DataError(
                f"{stock_code}: only daily bars are loaded; backtest with --timeframe minute "
                "(files <data_dir>/minute/<code>.csv) for minute bars"
            )
        now = pd.Timestamp(self._clock())
        start = pd.Timestamp(day, tz=TZ) if day is not None else now.normalize()
        rows = frame.loc[(frame.index >= start) & (frame.index < start + pd.Timedelta(days=1))]
        return rows.loc[rows.index <= now].copy()

    def get_daily_bars(
        self, stock_code: str, start: date | None = None, end: date | None = None
    ) -> pd.DataFrame:
        if stock_code not in self._bars:
            raise DataError(f"no bars for {stock_code}")
        frame = self._derived_daily(stock_code)
        now = pd.Timestamp(self._clock())
        frame = frame.loc[frame.index <= now]
        if start is not None:
            frame = frame.loc[frame.index >= pd.Timestamp(start, tz=TZ)]
        if end is not None:
            frame = frame.loc[frame.index < pd.Timestamp(end, tz=TZ) + pd.Timedelta(days=1)]
        return frame.copy()
