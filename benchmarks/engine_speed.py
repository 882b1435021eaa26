"""Engine speed against a plain Python loop and backtesting.py, in one run.

    python benchmarks/engine_speed.py [--bars 200000] [--no-universe] [--no-scaling]

1. **One stock, SMA 5/20 cross, 200,000 bars** (synthetic hourly bars, 24 a day from
   2000-01-01 KST: a seeded geometric random walk whose drift changes sign every 300 bars, so
   the cross trades all the way through; prices in KRW). Three runs on the same bars:

   * the full engine (``core.backtest``) on its fast path (``Bars`` windows, the strategy asked
     only on its ``signal_bars``) with every feature on: risk checks (daily loss lock 5 %,
     portfolio stop 90 %, ``max_daily_trades``), protective exits (stop loss 3 %, take profit
     6 %, inside the bar, levels on the tick grid), funds and reservations, orders, fills,
     positions and the journal;
   * :func:`plain_loop`: the same rules in a few dozen lines of plain Python, no framework
     (market buy sized all-in and capped at the upper-limit price KIS holds, fills at the
     next open, exits inside the bar, commission and the dated sell tax truncated to the won);
     it must give the same trades and final equity to the won, and the script says whether
     it does;
   * backtesting.py (PyPI ``backtesting``; skipped when not installed) with the same cross,
     stop loss and take profit, commission only (it has no sell tax).

   Printed: seconds (wall and CPU), bars/s and the ratios engine / backtesting.py and
   engine / plain loop. Each run is timed after a short warm-up run (the first sale near a
   tax-rate change builds the KRX calendar once per process, ~1-3 s).

2. **Scaling**: the engine at 1/4, 1/2 and all of the bars, with µs per bar (linear time
   shows as a flat column) and tracemalloc's peak (flat memory beyond the stored results
   shows as peak per bar not rising).

3. **100 stocks × 5,000 daily bars of the ``sample`` strategy, whole process**: the last
   5,000 rows of the four real files in ``$KIS_TRADER_DATA_DIR/krx/daily_2000_2024`` copied
   under 100 made-up codes (900000-900099) into a temporary folder, the sample strategy
   copied with that universe, and ``python main.py backtest`` timed from start to exit
   (load, run, database in the temporary folder, CSV outputs; no HTML or Excel).

Figures only: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
import warnings
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.backtest import Backtest, BacktestSettings  # noqa: E402
from core.risk import RiskLimits  # noqa: E402
from strategies.config import StrategyConfig  # noqa: E402
from strategies.sma_cross.strategy import SmaCrossParameters, SmaCrossStrategy  # noqa: E402
from utils.fees import FeeModel  # noqa: E402
from utils.market_calendar import settlement_date  # noqa: E402
from utils.ticks import round_to_tick, upper_limit_price  # noqa: E402

CODE = "005930"
CASH_KRW = 100_000_000
FAST, SLOW = 5, 20
STOP_PCT, TARGET_PCT = 0.03, 0.06
MAX_DAILY_TRADES = 10
DAILY_LOSS_PCT, PORTFOLIO_STOP_PCT = 0.05, 0.90


def synthetic_hourly(n: int, seed: int = 7) -> pd.DataFrame:
    """``n`` hourly bars from 2000-01-01 00:00 KST (24 a day), KRW, integer prices."""
    rng = np.random.default_rng(seed)
    index = pd.date_range("2000-01-01", periods=n, freq="h", tz="Asia/Seoul")
    drift = np.repeat(rng.choice([-1.0, 1.0], n // 300 + 1), 300)[:n] * 0.0006
    steps = drift + rng.normal(0, 0.004, n)
    close = (50_000 * np.exp(np.cumsum(steps - steps.mean()))).round()
    open_ = (np.concatenate([[close[0]], close[:-1]]) * np.exp(rng.normal(0, 0.001, n))).round()
    high = (np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.003, n)))).round()
    low = (np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.003, n)))).round()
    volume = rng.integers(100, 10_000, n).astype(float)
    return pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": volume}, index=index
    )


def run_engine(frame: pd.DataFrame) -> tuple[Backtest, object]:
    config = StrategyConfig(
        name="sma_cross",
        universe=(CODE,),
        parameters=SmaCrossParameters(fast=FAST, slow=SLOW),
        risk_management={
            "max_position_size": 1.0,
            "max_daily_trades": MAX_DAILY_TRADES,
            "stop_loss_pct": STOP_PCT,
            "take_profit_pct": TARGET_PCT,
        },
    )
    limits = RiskLimits(
        daily_loss_limit_pct=DAILY_LOSS_PCT, portfolio_stop_pct=PORTFOLIO_STOP_PCT
    )
    bt = Backtest(
        [SmaCrossStrategy(config)],
        {CODE: frame},
        BacktestSettings(cash_krw=CASH_KRW, risk_limits=limits),
    )
    return bt, bt.run()


def plain_loop(frame: pd.DataFrame) -> tuple[list[tuple[int, int, int, int]], int]:
    """The engine's rules for this one stock, no framework. Returns the round trips
    (entry bar, exit bar, shares, entry price) and the final equity (KRW)."""
    fees = FeeModel()
    o, h, lo, c = (frame[k].tolist() for k in ("open", "high", "low", "close"))
    fast = frame["close"].rolling(FAST).mean().tolist()
    slow = frame["close"].rolling(SLOW).mean().tolist()
    days = [ts.date() for ts in frame.index]
    cash, qty, entry, order = CASH_KRW, 0, (0, 0), None
    day, trades_today, locked, halted = None, 0, False, False
    start = peak = CASH_KRW
    trips: list[tuple[int, int, int, int]] = []

    def sell(i: int, price: int) -> None:
        nonlocal cash, qty
        amount = qty * price
        cash += amount - fees.commission(amount) - fees.sell_tax(amount, days[i], CODE)
        trips.append((entry[0], i, qty, entry[1]))
        qty = 0

    for i in range(len(c)):
        if days[i] != day:  # a new day: counters and the day's starting equity
            day, trades_today, locked = days[i], 0, False
            start = cash + int(qty * c[i - 1]) if i else cash
            peak = max(peak, start)
        if order is not None:  # the order of the previous close fills at this open
            px = round(o[i])
            if order == "sell":
                sell(i, px)
            else:
                q = min(order, fees.max_affordable_qty(cash, px))
                amount = q * px
                cash -= amount + fees.commission(amount)
                qty, entry = q, (i, px)
            order = None
        if qty:  # protective exits inside the bar: at the open on a gap, else at the level
            avg = entry[1]
            stop, target = avg * (1 - STOP_PCT), avg * (1 + TARGET_PCT)
            rules = {"on": days[i]}
            exit_px = (
                o[i] if o[i] <= stop or o[i] >= target
                else round_to_tick(stop, "down", **rules) if lo[i] <= stop
                else round_to_tick(target, "up", **rules) if h[i] >= target
                else None
            )  # fmt: skip
            if exit_px is not None:
                trades_today += 1
                sell(i, round(exit_px))
        equity = cash + int(qty * c[i])
        peak = max(peak, equity)
        locked = locked or equity <= start * (1 - DAILY_LOSS_PCT)
        if not halted and equity <= peak * (1 - PORTFOLIO_STOP_PCT):
            halted, order = True, ("sell" if qty else None)
        if halted or i == 0:
            continue
        up = fast[i - 1] <= slow[i - 1] and fast[i] > slow[i]
        down = fast[i - 1] >= slow[i - 1] and fast[i] < slow[i]
        if up and not qty and trades_today < MAX_DAILY_TRADES and not locked:
            base = round(c[i])
            q = math.floor(min(equity, cash) / (c[i] * (1 + fees.commission_rate_f)))
            held_at = upper_limit_price(base, on=days[i])  # KIS holds a market buy there
            q = min(q, fees.max_affordable_qty(cash, held_at))
            if q > 0:
                order, trades_today = q, trades_today + 1
        elif down and qty:
            order, trades_today = "sell", trades_today + 1
    return trips, cash + qty * round(c[-1])


def run_backtesting_py(frame: pd.DataFrame) -> tuple[int, float] | None:
    try:
        from backtesting import Backtest as BtPy
        from backtesting import Strategy
        from backtesting.lib import crossover
    except ImportError:
        return None

    class SmaCross(Strategy):
        def init(self) -> None:
            close = pd.Series(self.data.Close)
            self.f = self.I(lambda: close.rolling(FAST).mean().to_numpy())
            self.s = self.I(lambda: close.rolling(SLOW).mean().to_numpy())

        def next(self) -> None:
            if crossover(self.f, self.s):
                if not self.position:
                    price = self.data.Close[-1]
                    self.buy(sl=price * (1 - STOP_PCT), tp=price * (1 + TARGET_PCT))
            elif crossover(self.s, self.f):
                self.position.close()

    data = frame.rename(columns=str.capitalize).tz_localize(None)
    # its per-order margin warnings and progress bar would flood the output
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        stats = BtPy(data, SmaCross, cash=CASH_KRW, commission=0.00015).run()
    return int(stats["# Trades"]), float(stats["Equity Final [$]"])


def timed(fn, *args):  # type: ignore[no-untyped-def]
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def compare(n: int) -> None:
    frame = synthetic_hourly(n)
    warm = frame.iloc[: min(n, 20_000)]
    settlement_date(date(2019, 5, 31))  # warm-up: the KRX calendar of dated sell taxes
    run_engine(warm)
    plain_loop(warm)
    (_, result), e_wall, e_cpu = timed(run_engine, frame)
    (trips, p_equity), p_wall, p_cpu = timed(plain_loop, frame)
    print(f"== SMA {FAST}/{SLOW} cross, one stock, {n:,} synthetic hourly bars")
    print(f"{'':16} {'wall s':>7} {'CPU s':>7} {'bars/s (CPU)':>13}  result")
    print(
        f"{'engine':16} {e_wall:>7.2f} {e_cpu:>7.2f} {n / e_cpu:>13,.0f}  "
        f"{len(result.trades)} round trips, final equity {result.final_equity_krw:,} KRW"
    )
    print(
        f"{'plain loop':16} {p_wall:>7.2f} {p_cpu:>7.2f} {n / p_cpu:>13,.0f}  "
        f"{len(trips)} round trips, final equity {p_equity:,} KRW"
    )
    got = list(
        zip(result.trades["qty"], result.trades["entry_price"], strict=True)
    )
    same = got == [(t[2], t[3]) for t in trips] and p_equity == result.final_equity_krw
    print(f"{'':16} engine and plain loop agree to the won: {'yes' if same else 'NO'}")
    bp = run_backtesting_py(warm)
    if bp is None:
        print("backtesting.py not installed (pip install backtesting) - not compared")
    else:
        bp, b_wall, b_cpu = timed(run_backtesting_py, frame)
        assert bp is not None
        print(
            f"{'backtesting.py':16} {b_wall:>7.2f} {b_cpu:>7.2f} {n / b_cpu:>13,.0f}  "
            f"{bp[0]} trades, final equity {bp[1]:,.0f} (commission only)"
        )
        print(f"engine / backtesting.py bars/s: {b_cpu / e_cpu:.2f}x (target >= 2)")
    print(f"engine / plain loop bars/s:     {p_cpu / e_cpu:.2f}x (target >= 0.5)")


def scaling(n: int) -> None:
    print(f"\n== engine scaling (same rules and bars)\n{'bars':>9} {'CPU s':>7} {'us/bar':>7} "
          f"{'peak MB':>8} {'B/bar':>6} round trips")  # fmt: skip
    for size in (n // 4, n // 2, n):
        frame = synthetic_hourly(size)
        tracemalloc.start()
        run_engine(frame)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        (_, result), _, cpu = timed(run_engine, frame)  # untraced, for the time
        print(
            f"{size:>9,} {cpu:>7.2f} {cpu / size * 1e6:>7.2f} {peak / 2**20:>8.1f} "
            f"{peak / size:>6.0f} {len(result.trades)}"
        )


def universe(codes: int = 100, rows: int = 5_000) -> None:
    data_root = Path(os.environ.get("KIS_TRADER_DATA_DIR", ROOT / "data"))
    sources = sorted((data_root / "krx" / "daily_2000_2024").glob("*.csv"))
    if not sources:
        print(f"\nno files in {data_root}/krx/daily_2000_2024: universe run skipped")
        return
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        (tmp / "data").mkdir()
        names = [f"{900_000 + k:06d}" for k in range(codes)]
        for k, code in enumerate(names):
            lines = sources[k % len(sources)].read_text().splitlines()
            (tmp / "data" / f"{code}.csv").write_text("\n".join([lines[0], *lines[-rows:]]))
        shutil.copytree(ROOT / "strategies" / "sample", tmp / "strategies" / "sample",
                        ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
        config = tmp / "strategies" / "sample" / "config.yaml"
        listed = ", ".join(f'"{c}"' for c in names)
        config.write_text(re.sub(r"(?m)^universe:.*$", f"universe: [{listed}]", config.read_text()))
        cmd = [
            sys.executable, str(ROOT / "main.py"), "--strategies-dir", str(tmp / "strategies"),
            "backtest", "--data-dir", str(tmp / "data"), "--db", f"sqlite:///{tmp / 'runs.db'}",
            "--no-html", "--no-xlsx", "--no-progress", "--out", str(tmp / "out"),
        ]  # fmt: skip
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT)  # noqa: S603
        wall = time.perf_counter() - t0
        trades = re.search(r"Closed trades.*: (\d+)", proc.stdout)
        print(
            f"\n== sample strategy, {codes} stocks x {rows:,} daily bars (real files copied "
            f"under codes 900000-{900_000 + codes - 1}), whole process"
        )
        if proc.returncode:
            print(f"failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
            return
        print(
            f"python main.py backtest: {wall:.1f} s wall (target < 30 s), "
            f"{codes * rows:,} bars, {trades.group(1) if trades else '?'} closed trades"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bars", type=int, default=200_000)
    parser.add_argument("--no-scaling", action="store_true")
    parser.add_argument("--no-universe", action="store_true")
    args = parser.parse_args()
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    cores = os.cpu_count()
    if load is not None:  # the figures move with what else the machine runs
        print(f"machine: {cores} cores, load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}")
    compare(args.bars)
    if not args.no_scaling:
        scaling(args.bars)
    if not args.no_universe:
        universe()


if __name__ == "__main__":
    main()
