"""Final equity of an SMA-cross strategy on the long KRX files, with the cost rules in force.

    python benchmarks/costs_by_period.py [--data-dir DIR] [--fast 10] [--slow 30]

Runs ``strategies/sma_cross`` (all-in, ``max_position_size`` 1.0, 10,000,000 KRW, protective
exits off) over each 2000–2024 file and the KODEX 200 ETF file through ``core.backtest`` and
prints trades, commission and tax paid and the final equity. Run it on two versions of the
code to see what a change of the tax table, tick tables or buy sizing does to the figures.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from config.settings import data_root
from core.backtest import Backtest, BacktestSettings
from core.data_collector import find_csv, load_bars_csv
from strategies.config import StrategyConfig
from strategies.sma_cross.strategy import SmaCrossParameters, SmaCrossStrategy

FILES = (
    ("daily_2000_2024", "005930"),
    ("daily_2000_2024", "000660"),
    ("daily_2000_2024", "035420"),
    ("daily_2000_2024", "035720"),
    ("daily_long_to_2023", "069500"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=data_root())
    parser.add_argument("--fast", type=int, default=10)
    parser.add_argument("--slow", type=int, default=30)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    print(f"{'file':<28} {'trades':>6} {'commission':>12} {'tax':>12} {'final equity':>14}")
    for folder, code in FILES:
        path = find_csv(args.data_dir / "krx" / folder, code)
        if path is None:
            print(f"{folder}/{code}: no data file", file=sys.stderr)
            continue
        config = StrategyConfig(
            name="sma_cross",
            universe=(code,),
            parameters=SmaCrossParameters(fast=args.fast, slow=args.slow),
            risk_management={"max_position_size": 1.0, "max_daily_trades": 10},
        )
        settings = BacktestSettings(cash_krw=10_000_000, progress=False)
        bars = {code: load_bars_csv(path)}
        result = Backtest([SmaCrossStrategy(config)], bars, settings).run()
        fills = result.fills
        print(
            f"{folder + '/' + code:<28} {len(result.trades):>6} "
            f"{int(fills['commission_krw'].sum()):>12,} {int(fills['tax_krw'].sum()):>12,} "
            f"{result.final_equity_krw:>14,}"
        )


if __name__ == "__main__":
    main()
