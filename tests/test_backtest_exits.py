"""Protective exits in the backtest, on the bars, checked against an independent few-line
calculation of the fill rules (README "Fill rules"): stop loss, take profit and trailing
stop of a buy-and-hold position on real KRX daily bars (raw prices, 2023-12 → 2025-06, all
after the 2023-01-25 tick table)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from core.backtest import Backtest, BacktestSettings
from core.data_collector import find_csv, load_bars_csv
from core.risk import ExitPolicy, bar_exit
from framework.bars import Bars
from framework.types import Signal, SignalType
from strategies.base import BaseStrategy
from strategies.config import StrategyConfig

CASH = 10_000_000
BANDS = ((2_000, 1), (5_000, 5), (20_000, 10), (50_000, 50), (200_000, 100), (500_000, 500))


def tick(price: float) -> int:
    return next((t for upper, t in BANDS if price < upper), 1_000)


def floor_tick(x: float) -> int:
    return math.floor(x / tick(x) + 1e-9) * tick(x)


def ceil_tick(x: float) -> int:
    return math.ceil(x / tick(x) - 1e-9) * tick(x)


def expected_exit(
    bars: pd.DataFrame, entry: int, sl: float | None, tp: float | None, tr: float | None
) -> tuple[int, int, str] | None:
    """(bar index, fill price, rule) of the first exit after a buy filled at bar ``entry``'s
    open; the entry bar counts. Written from the rules, independent of the engine."""
    o, h, lo = (bars[c].to_numpy() for c in ("open", "high", "low"))
    avg = peak = float(o[entry])
    for j in range(entry, len(bars)):
        levels = []
        if sl is not None:
            levels.append((avg * (1 - sl), "stop_loss"))
        if tr is not None:
            levels.append((peak * (1 - tr), "trailing_stop"))
        stop = max(levels) if levels else None
        target = avg * (1 + tp) if tp is not None else None
        if stop and o[j] <= stop[0]:
            return j, int(o[j]), stop[1]
        if target and o[j] >= target:
            return j, int(o[j]), "take_profit"
        if stop and lo[j] <= stop[0]:
            return j, floor_tick(stop[0]), stop[1]
        if target and h[j] >= target:
            return j, ceil_tick(target), "take_profit"
        peak = max(peak, float(h[j]))
    return None


class BuyAndHold(BaseStrategy):
    """Buys once at bar ``at`` (fills at the next open) and never sells by itself."""

    numpy_bars = True  # counts bars with len(data): the whole visible history
    at = 5

    def generate_signal(self, stock_code: str, data: Bars, timeframe: str) -> Signal | None:
        if len(data) == self.at and self.get_position(stock_code) is None:
            return Signal(SignalType.BUY, stock_code, confidence=100.0)
        return None


def run(bars: pd.DataFrame, code: str, **risk: float | None) -> pd.DataFrame:
    config = StrategyConfig(
        name="hold",
        universe=(code,),
        risk_management={
            "max_position_size": 0.5,
            "max_daily_trades": 5,
            "stop_loss_pct": None,
            "take_profit_pct": None,
            **risk,
        },
    )
    result = Backtest([BuyAndHold(config)], {code: bars}, BacktestSettings(cash_krw=CASH)).run()
    return result.trades


def bars_of(data_dir: Path, code: str) -> pd.DataFrame:
    path = find_csv(data_dir / "krx" / "daily_2023_2025", code)
    assert path is not None
    return load_bars_csv(path)


CASES = [
    ("035720", {"stop_loss_pct": 0.05}),
    ("035720", {"stop_loss_pct": 0.12}),
    ("000660", {"take_profit_pct": 0.10}),
    ("000660", {"take_profit_pct": 0.35}),
    ("005930", {"trailing_stop_pct": 0.08}),
    ("000660", {"trailing_stop_pct": 0.10}),
    ("005380", {"stop_loss_pct": 0.07, "take_profit_pct": 0.07, "trailing_stop_pct": 0.05}),
    ("000270", {"stop_loss_pct": 0.15, "take_profit_pct": 0.25, "trailing_stop_pct": 0.12}),
]


@pytest.mark.parametrize(("code", "risk"), CASES)
def test_exit_bar_and_price_match_an_independent_calculation(
    data_dir: Path, code: str, risk: dict[str, float]
) -> None:
    bars = bars_of(data_dir, code)
    trades = run(bars, code, **risk)
    entry = BuyAndHold.at  # decided at bar at-1's close → fills at bar ``at``'s open
    want = expected_exit(
        bars,
        entry,
        risk.get("stop_loss_pct"),
        risk.get("take_profit_pct"),
        risk.get("trailing_stop_pct"),
    )
    assert want is not None, "the case should exit inside the data"
    j, price, rule = want
    assert len(trades) == 1
    trade = trades.iloc[0]
    assert trade["entry_time"] == bars.index[entry]
    assert trade["entry_price"] == bars["open"].iloc[entry]
    assert trade["exit_time"] == bars.index[j]
    assert trade["exit_price"] == price
    assert trade["exit_reasons"].startswith(rule)


def test_a_never_selling_strategy_without_exits_keeps_its_open_loss(data_dir: Path) -> None:
    bars = bars_of(data_dir, "035720")
    assert run(bars, "035720").empty  # no exit rule: held to the end, marked to the close


def bar(o: float, h: float, lo: float) -> tuple[float, float, float]:
    return o, h, lo


class Pos:
    def __init__(self, avg: float, peak: float | None = None, **kw: float | None) -> None:
        self.qty, self.avg_price, self.peak_price = 10, avg, peak if peak is not None else avg
        self.stop_loss = kw.get("stop_loss")
        self.target_price = kw.get("target_price")


SL5_TP10 = ExitPolicy(stop_loss_pct=0.05, take_profit_pct=0.10)


def test_a_gap_through_the_stop_fills_at_the_open_not_at_the_level() -> None:
    t = bar_exit(Pos(10_000), SL5_TP10, *bar(9_300, 9_800, 9_100))
    assert t is not None
    assert (t.rule, t.price) == ("stop_loss", 9_300)


def test_a_stop_inside_the_bar_fills_at_the_level_rounded_down_to_a_tick() -> None:
    # 10,010 × 0.95 = 9,509.5 → 9,500 (10-won band)
    t = bar_exit(Pos(10_010), SL5_TP10, *bar(9_800, 9_900, 9_420))
    assert t is not None
    assert (t.rule, t.price) == ("stop_loss", 9_500)


def test_a_target_inside_the_bar_fills_at_the_level_rounded_up_and_a_gap_at_the_open() -> None:
    # 10,010 × 1.10 = 11,011 → 11,020
    t = bar_exit(Pos(10_010), SL5_TP10, *bar(10_500, 11_100, 10_400))
    assert t is not None
    assert (t.rule, t.price) == ("take_profit", 11_020)
    gap = bar_exit(Pos(10_000), SL5_TP10, *bar(11_500, 11_600, 9_000))
    assert gap is not None
    assert (gap.rule, gap.price) == ("take_profit", 11_500)  # the open comes first


def test_with_both_levels_inside_one_bar_the_stop_wins() -> None:
    t = bar_exit(Pos(10_000), SL5_TP10, *bar(10_000, 11_500, 9_000))
    assert t is not None
    assert t.rule == "stop_loss"


def test_a_price_from_the_data_is_never_re_rounded() -> None:
    # split-adjusted history off the tick grid: the open is used as it is
    t = bar_exit(Pos(10_000), SL5_TP10, *bar(9_123.0, 9_200.0, 9_001.0))
    assert t is not None
    assert t.price == 9_123.0


def test_signal_levels_win_over_the_percentages() -> None:
    pos = Pos(10_000, stop_loss=9_900.0, target_price=10_300.0)
    t = bar_exit(pos, SL5_TP10, *bar(10_000, 10_100, 9_850))
    assert t is not None
    assert (t.rule, t.price) == ("stop_loss", 9_900)
