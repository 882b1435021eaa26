"""Engine speed: bars per second of the full backtest engine on a long synthetic series.

    python benchmarks/engine_speed.py [--bars 1000000] [--compare]

Runs the plain SMA-cross strategy (``strategies/sma_cross``) through ``core.backtest`` on a
random-walk series of one stock (minute bars, 390 a trading day), at several lengths, and
prints bars/s, time per bar and peak Python memory (tracemalloc) for each, so linearity and
memory growth can be read off. ``--compare`` also times ``backtesting.py`` on the same rules
when that package is installed (it is not a dependency).
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.backtest import Backtest, BacktestSettings
from strategies.config import StrategyConfig
from strategies.sma_cross.strategy import SmaCrossParameters, SmaCrossStrategy


def synthetic_bars(n: int, seed: int = 7) -> pd.DataFrame:
    """``n`` minute bars (09:00–15:29, business days from 2000) of a random walk in KRW."""
    rng = np.random.default_rng(seed)
    days = pd.bdate_range("2000-01-03", periods=n // 390 + 1)
    minutes = pd.to_timedelta(np.arange(390), unit="min") + pd.Timedelta(hours=9)
    index = (days.values[:, None] + minutes.values[None, :]).ravel()[:n]
    close = np.maximum(1000.0, 50_000 + np.cumsum(rng.normal(0, 60, n))).round()
    open_ = np.maximum(1000.0, close + rng.normal(0, 30, n)).round()
    high = np.maximum(open_, close) + rng.integers(0, 80, n)
    low = np.maximum(500.0, np.minimum(open_, close) - rng.integers(0, 80, n))
    volume = rng.integers(100, 10_000, n).astype(float)
    frame = pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": volume},
        index=pd.DatetimeIndex(index).tz_localize("Asia/Seoul"),
    )
    return frame


def run_engine(frame: pd.DataFrame, fast: int, slow: int) -> tuple[float, int, int]:
    config = StrategyConfig(
        name="sma_cross",
        universe=("005930",),
        parameters=SmaCrossParameters(fast=fast, slow=slow),
        risk_management={"max_position_size": 1.0, "max_daily_trades": 100},
    )
    strategy = SmaCrossStrategy(config)
    t0 = time.perf_counter()
    result = Backtest([strategy], {"005930": frame}, BacktestSettings()).run()
    return time.perf_counter() - t0, len(result.trades), result.final_equity_krw


def run_backtesting_py(frame: pd.DataFrame, fast: int, slow: int) -> float | None:
    try:
        from backtesting import Backtest as BtPy
        from backtesting import Strategy
        from backtesting.lib import crossover
    except ImportError:
        return None

    class SmaCross(Strategy):
        def init(self) -> None:
            close = pd.Series(self.data.Close)
            self.f = self.I(lambda: close.rolling(fast).mean().to_numpy())
            self.s = self.I(lambda: close.rolling(slow).mean().to_numpy())

        def next(self) -> None:
            if crossover(self.f, self.s):
                self.buy()
            elif crossover(self.s, self.f):
                self.position.close()

    data = frame.rename(columns=str.capitalize).tz_localize(None)
    with warnings.catch_warnings():  # its per-order margin warnings would flood the output
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        BtPy(data, SmaCross, cash=10_000_000_000, commission=0.00015).run()
        return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--fast", type=int, default=10)
    parser.add_argument("--slow", type=int, default=30)
    parser.add_argument("--compare", action="store_true")
    args = parser.parse_args()
    sizes = sorted({args.bars // 10, args.bars // 4, args.bars // 2, args.bars})
    print(f"{'bars':>10} {'seconds':>8} {'bars/s':>10} {'us/bar':>7} {'peak MB':>8} trades")
    for n in sizes:
        frame = synthetic_bars(n)
        tracemalloc.start()
        elapsed, trades, _equity = run_engine(frame, args.fast, args.slow)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        # a second run without tracemalloc for the speed figure (tracing slows Python)
        elapsed, trades, _equity = run_engine(frame, args.fast, args.slow)
        print(
            f"{n:>10,} {elapsed:>8.2f} {n / elapsed:>10,.0f} {elapsed / n * 1e6:>7.2f} "
            f"{peak / 2**20:>8.1f} {trades}"
        )
    if args.compare:
        frame = synthetic_bars(args.bars)
        secs = run_backtesting_py(frame, args.fast, args.slow)
        if secs is None:
            print("backtesting.py not installed: pip install backtesting to compare")
        else:
            print(
                f"backtesting.py on {args.bars:,} bars: {secs:.2f} s = "
                f"{args.bars / secs:,.0f} bars/s"
            )


if __name__ == "__main__":
    main()
