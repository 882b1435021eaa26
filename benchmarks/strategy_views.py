"""Cost per ``generate_signal`` call of the two ``data`` views, at 250 and 5,000 rows.

    KIS_TRADER_DATA_DIR=/path/to/data python benchmarks/strategy_views.py [--calls 2000]

On 005930's daily bars 2000-2024 (real KRX data), each call asks for the view of the
current bar and decides an SMA(5)/SMA(20) cross:

* ``DataFrame`` (the default): the engine hands out ``FrameWindow.frame()``, the last
  ``lookback_bars`` rows, and the strategy computes as the seed writes it
  (``data["close"].rolling(20).mean().iloc[-1]``). Also timed: handing out the view alone.
* ``numpy Bars`` (``numpy_bars = True``): the engine hands out the window; the strategy
  reads precomputed ``indicators()`` columns (``data["fast"][-1]``).

Prints microseconds per call (median of 5 runs of ``--calls`` calls) for each view and
history length; the engine's own per-bar work is not included.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from config.settings import data_root
from core.data_collector import find_csv, load_bars_csv
from core.windows import FrameWindow
from framework.bars import Bars
from framework.data import OHLCV_COLUMNS
from framework.indicators import sma

ROWS = (250, 5_000)


def per_call_us(calls: int, step: Callable[[int], object], first: int, last: int) -> float:
    """Median over 5 runs of the time per ``step(i)`` call, ``i`` cycling over bars."""
    span = last - first
    runs = []
    for _ in range(5):
        t0 = time.perf_counter()
        for k in range(calls):
            step(first + k % span)
        runs.append((time.perf_counter() - t0) / calls * 1e6)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per timing run")
    args = parser.parse_args()
    path = find_csv(data_root() / "krx" / "daily_2000_2024", "005930")
    if path is None:
        sys.exit("error: 005930 daily 2000-2024 not found; set KIS_TRADER_DATA_DIR")
    frame = load_bars_csv(path)
    cols = {c: frame[c].to_numpy(dtype=np.float64) for c in OHLCV_COLUMNS}
    index = pd.DatetimeIndex(frame.index)
    fast_cols = {
        **cols,
        "fast": sma(frame["close"], 5).to_numpy(),
        "slow": sma(frame["close"], 20).to_numpy(),
    }
    n = len(frame)
    print(f"005930 daily, {n:,} bars; {args.calls:,} calls per run, median of 5 runs")
    print(f"{'view':<34}{'rows':>8}{'µs / call':>12}")
    for rows in ROWS:
        if rows + 1 > n:
            continue
        window = FrameWindow(cols, index, lookback=rows)
        bars = Bars(fast_cols, index)
        first = rows  # every call sees a full `rows` of history

        def view_only(i: int, w: FrameWindow = window) -> object:
            w.resize(i + 1)
            return w.frame()

        def seed_style(i: int, w: FrameWindow = window) -> object:
            w.resize(i + 1)
            close = w.frame()["close"]
            fast, slow = close.rolling(5).mean(), close.rolling(20).mean()
            return fast.iloc[-2] <= slow.iloc[-2] and fast.iloc[-1] > slow.iloc[-1]

        def numpy_fast(i: int, b: Bars = bars) -> object:
            b.resize(i + 1)
            fast, slow = b["fast"], b["slow"]
            return fast[-2] <= slow[-2] and fast[-1] > slow[-1]

        for name, step in (
            ("DataFrame view (handed out only)", view_only),
            ("DataFrame view + seed-style SMAs", seed_style),
            ("numpy Bars + indicator columns", numpy_fast),
        ):
            print(f"{name:<34}{rows:>8,}{per_call_us(args.calls, step, first, n):>12.1f}")


if __name__ == "__main__":
    main()
