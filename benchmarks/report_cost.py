"""Report cost against engine time: one backtest, then report.html and report.xlsx timed.

    python benchmarks/report_cost.py [--bars 1000000] [--symbols 100] [--symbol-bars 5000]

Two runs of the SMA-cross strategy on random-walk bars: one stock with ``--bars`` minute bars,
and ``--symbols`` stocks with ``--symbol-bars`` daily bars each. For each it prints the engine
time, the HTML and xlsx times, their ratio to the engine time, and the HTML size.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.engine_speed import synthetic_bars
from core.backtest import Backtest, BacktestSettings
from core.report import EXCEL_MAX_ROWS, _summary_dict, _write_html, _write_xlsx, compute_metrics
from strategies.config import StrategyConfig
from strategies.sma_cross.strategy import SmaCrossParameters, SmaCrossStrategy


def measure(label: str, bars: dict[str, pd.DataFrame]) -> None:
    config = StrategyConfig(
        name="sma_cross", universe=tuple(bars), parameters=SmaCrossParameters(fast=20, slow=60),
        risk_management={"max_position_size": 1.0 / min(len(bars), 10), "max_daily_trades": 100},
    )
    t0 = time.perf_counter()
    result = Backtest([SmaCrossStrategy(config)], bars, BacktestSettings()).run()
    engine = time.perf_counter() - t0
    metrics = compute_metrics(result)
    with tempfile.TemporaryDirectory() as tmp:
        html = Path(tmp) / "report.html"
        t0 = time.perf_counter()
        _write_html(result, metrics, html)
        t_html = time.perf_counter() - t0
        t0 = time.perf_counter()
        _write_xlsx(result, _summary_dict(result, metrics), Path(tmp) / "r.xlsx", EXCEL_MAX_ROWS)
        t_xlsx = time.perf_counter() - t0
        size_mb = html.stat().st_size / 1e6
    total = t_html + t_xlsx
    print(
        f"{label}: engine {engine:.2f} s, {len(result.trades):,} trades | html {t_html:.2f} s "
        f"({size_mb:.1f} MB) + xlsx {t_xlsx:.2f} s = {total:.2f} s = {total / engine:.2f}× engine"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bars", type=int, default=1_000_000)
    ap.add_argument("--symbols", type=int, default=100)
    ap.add_argument("--symbol-bars", type=int, default=5_000)
    args = ap.parse_args()
    measure(f"1 stock × {args.bars:,} minute bars", {"005930": synthetic_bars(args.bars)})
    daily = {}
    for i in range(args.symbols):
        frame = synthetic_bars(args.symbol_bars, seed=100 + i)
        frame.index = pd.bdate_range("2000-01-03", periods=len(frame), tz="Asia/Seoul")
        daily[f"{100000 + i:06d}"] = frame
    measure(f"{args.symbols} stocks × {args.symbol_bars:,} daily bars", daily)


if __name__ == "__main__":
    main()
