"""Synthetic 1-minute bars consistent with real daily OHLCV, for backtests of minute strategies
where no minute history is at hand.

For each day with a real bar ``O H L C V`` the generator makes a deterministic path (the
random generator is seeded with the stock code and the date, so the same input always gives
the same file):

* 381 bars: 09:00 … 15:19 (continuous trading, 380 minutes) and 15:30 (the closing
  auction's single match, at the close ``C``);
* the path runs O → first extreme → second extreme → C; the high comes first on a day
  that closes below its open (the low first otherwise), each leg a random walk bridged to
  its end point, clipped to [L, H], every price on the KRX tick grid of the day;
* the day's first bar opens at O, some bar touches H, some bar touches L, the last closes at
  C: the daily bar rebuilt from the minutes equals the real one (volume included);
* volume is split over the minutes with a U-shape (busier at the open and the close) times
  the size of each minute's move (a minute that moves the price trades more), in whole
  shares summing exactly to V.

Command line (writes ``<out>/<code>.csv`` with ``date,open,high,low,close,volume``, ``date``
as ``YYYY-MM-DD HH:MM:SS`` Asia/Seoul)::

    python -m utils.synthetic_minutes --data-dir ../shared/data/krx/daily_2023_2025 \\
        --out data/minute --codes 005930 000660 --start 2025-01-02 --end 2025-06-30

These bars are a model, not market history: fine for exercising a minute strategy end to end,
not for judging its edge.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from datetime import date, datetime, time, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from utils.ticks import round_to_tick

CONTINUOUS_MINUTES = 380
"""09:00 … 15:19."""
CLOSE_AUCTION = time(15, 30)


def minute_times(day: date) -> list[datetime]:
    """The 381 bar labels of ``day`` (naive Asia/Seoul wall clock)."""
    start = datetime.combine(day, time(9, 0))
    times = [start + timedelta(minutes=i) for i in range(CONTINUOUS_MINUTES)]
    times.append(datetime.combine(day, CLOSE_AUCTION))
    return times


def _seed(code: str, day: date) -> int:
    return int.from_bytes(hashlib.sha256(f"{code}:{day.isoformat()}".encode()).digest()[:8],
                          "big")


def _bridge(rng: np.random.Generator, a: float, b: float, n: int, scale: float) -> np.ndarray:
    """``n + 1`` points from ``a`` to ``b``: a Brownian bridge of ``scale`` around the line."""
    if n <= 0:
        return np.array([a, b][: n + 1 or 1], dtype=np.float64)
    steps = rng.normal(0.0, scale, n)
    walk = np.concatenate([[0.0], np.cumsum(steps)])
    t = np.linspace(0.0, 1.0, n + 1)
    walk -= t * walk[-1]
    return a + (b - a) * t + walk


def day_minutes(code: str, day: date, o: float, h: float, lo: float, c: float,
                v: float) -> pd.DataFrame:
    """The synthetic minute bars of one day (see the module docstring)."""
    rng = np.random.default_rng(_seed(code, day))
    n = CONTINUOUS_MINUTES
    first_high = c < o
    k1 = int(rng.integers(n // 10, n // 2))
    k2 = int(rng.integers(max(k1 + 1, n // 2), n - n // 10))
    e1, e2 = (h, lo) if first_high else (lo, h)
    scale = max((h - lo) / 40.0, 0.0)
    points = np.concatenate([
        _bridge(rng, o, e1, k1, scale)[:-1],
        _bridge(rng, e1, e2, k2 - k1, scale)[:-1],
        _bridge(rng, e2, c, n - k2, scale),
    ])  # n + 1 points: the open of each minute, then the last close
    points = np.clip(points, lo, h)
    prices = np.array([round_to_tick(float(p), on=day) for p in points], dtype=np.float64)
    prices = np.clip(prices, lo, h)
    prices[0], prices[k1], prices[k2], prices[-1] = o, e1, e2, c
    opens, closes = prices[:-1], prices[1:]
    highs = np.maximum(opens, closes)
    lows = np.minimum(opens, closes)
    # the closing auction bar trades at the close
    opens = np.append(opens, c)
    closes = np.append(closes, c)
    highs = np.append(highs, c)
    lows = np.append(lows, c)
    x = np.linspace(-1.0, 1.0, n + 1)
    weights = 1.0 + 2.0 * x**2
    weights *= rng.uniform(0.7, 1.3, n + 1)
    span = max(h - lo, 1.0)  # minutes that move the price trade more
    weights *= 1.0 + 8.0 * np.abs(closes - opens) / span
    raw = weights / weights.sum() * int(v)
    vol = np.floor(raw)
    rest = int(v) - int(vol.sum())
    if rest > 0:
        order = np.argsort(-(raw - vol))[:rest]
        vol[order] += 1
    return pd.DataFrame(
        {"open": opens, "high": highs, "low": lows, "close": closes, "volume": vol},
        index=pd.DatetimeIndex(minute_times(day), name="date"),
    )


def synthesize(code: str, daily: pd.DataFrame) -> pd.DataFrame:
    """Minute bars of every day of ``daily`` (OHLCV, one row a day), ascending."""
    frames = [
        day_minutes(code, pd.Timestamp(ts).date(), r.open, r.high, r.low, r.close, r.volume)
        for ts, r in zip(daily.index, daily.itertuples(index=False), strict=True)
    ]
    if not frames:
        return pd.DataFrame(columns=["open", "high", "low", "close", "volume"])
    return pd.concat(frames)


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """``date,open,high,low,close,volume`` with ``date`` as ``YYYY-MM-DD HH:MM:SS``."""
    out = frame.copy()
    index = pd.DatetimeIndex(out.index)
    if index.tz is not None:
        index = index.tz_localize(None)
    out.index = index.strftime("%Y-%m-%d %H:%M:%S")
    out.index.name = "date"
    for col in ("open", "high", "low", "close", "volume"):
        out[col] = out[col].round().astype("int64")
    path.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(path)


def main(argv: list[str] | None = None) -> int:
    from core.data_collector import find_csv, load_bars_csv
    from framework.errors import DataError

    p = argparse.ArgumentParser(description="synthetic minute bars from daily OHLCV files")
    p.add_argument("--data-dir", type=Path, required=True, help="folder of daily CSV files")
    p.add_argument("--out", type=Path, required=True, help="folder for <code>.csv minute files")
    p.add_argument("--codes", nargs="+", required=True, help="stock codes")
    p.add_argument("--start", help="first day YYYY-MM-DD")
    p.add_argument("--end", help="last day YYYY-MM-DD")
    args = p.parse_args(argv)
    for code in args.codes:
        path = find_csv(args.data_dir, code)
        if path is None:
            print(f"{args.data_dir}: no daily file for {code}", file=sys.stderr)
            return 1
        try:
            daily = load_bars_csv(path)
        except DataError as exc:
            print(str(exc), file=sys.stderr)
            return 1
        if args.start:
            daily = daily.loc[daily.index >= pd.Timestamp(args.start, tz=daily.index.tz)]
        if args.end:
            end = pd.Timestamp(args.end, tz=daily.index.tz) + pd.Timedelta(days=1)
            daily = daily.loc[daily.index < end]
        minutes = synthesize(code, daily)
        write_csv(minutes, args.out / f"{code}.csv")
        print(f"{code}: {len(daily)} days, {len(minutes)} minute bars -> {args.out / code}.csv")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
