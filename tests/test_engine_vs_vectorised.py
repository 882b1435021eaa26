"""The full engine against an independent few-line computation of the same SMA-cross rules.

Rules: golden cross of SMA(fast) over SMA(slow) at bar t's close while flat → buy at bar t+1's
open with ``qty = floor(cash / (close_t × (1 + c)))`` (budget = all equity capped by cash),
cut to what cash affords at the open; dead cross while holding → sell everything at t+1's
open. A bar t+1 locked at the daily limit (high = low at ±30 %, ±15 % before 2015-06-15, of
close t) fills no buy at limit-up and no sell at limit-down: the order expires. Commission
``floor(amount × 0.015 %)`` both sides, sell tax ``floor(amount × rate)`` by trade year.
Positions open at the end are marked to the last close.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.backtest import Backtest, BacktestSettings
from core.data_collector import find_csv, load_bars_csv
from strategies.config import StrategyConfig
from strategies.sma_cross.strategy import SmaCrossParameters, SmaCrossStrategy

CASH = 10_000_000
TAX_BP = {2022: 23, 2023: 20, 2024: 18, 2025: 15}  # basis points; ≤2022 → 23, ≥2026 → 20


def tax_bp(year: int) -> int:
    return 23 if year <= 2022 else TAX_BP.get(year, 20)


def vectorised(bars: pd.DataFrame, fast: int, slow: int) -> tuple[list[dict], int]:
    close, open_ = bars["close"].to_numpy(), bars["open"].to_numpy().astype(np.int64)
    high, low = bars["high"].to_numpy(), bars["low"].to_numpy()

    def locked(t: int, side: str) -> bool:  # bar t locked at the limit against close t-1
        limit = 0.30 if bars.index[t].date() >= pd.Timestamp("2015-06-15").date() else 0.15
        if high[t] != low[t]:
            return False
        if side == "buy":
            return bool(high[t] >= round(close[t - 1]) * (1 + limit) * 0.99)
        return bool(low[t] <= round(close[t - 1]) * (1 - limit) / 0.99)

    f, s = (
        bars["close"].rolling(fast).mean().to_numpy(),
        bars["close"].rolling(slow).mean().to_numpy(),
    )
    up = np.flatnonzero((f[:-1] <= s[:-1]) & (f[1:] > s[1:])) + 1  # cross at bar t
    down = np.flatnonzero((f[:-1] >= s[:-1]) & (f[1:] < s[1:])) + 1
    events = sorted([(t, "buy") for t in up] + [(t, "sell") for t in down])
    cash, qty, trades = CASH, 0, []
    for t, side in events:
        if t + 1 >= len(bars):
            break
        px = int(open_[t + 1])
        if locked(t + 1, side):
            continue
        if side == "buy" and qty == 0:
            q = math.floor(cash / (close[t] * 1.00015))
            while q > 0 and q * px + q * px * 15 // 100_000 > cash:
                q -= 1
            if q > 0:
                cash -= q * px + q * px * 15 // 100_000
                qty, entry = q, (bars.index[t + 1], px)
        elif side == "sell" and qty > 0:
            amount = qty * px
            year = bars.index[t + 1].year
            cash += amount - amount * 15 // 100_000 - amount * tax_bp(year) // 10_000
            trades.append(
                {
                    "entry_time": entry[0],
                    "entry_price": entry[1],
                    "exit_time": bars.index[t + 1],
                    "exit_price": px,
                    "qty": qty,
                }
            )
            qty = 0
    return trades, cash + qty * int(close[-1])


@pytest.mark.parametrize(
    ("folder", "code", "fast", "slow"),
    [
        ("daily_2000_2024", "005930", 10, 30),
        ("daily_2000_2024", "035720", 5, 20),
        ("daily_long_to_2023", "069500", 20, 60),
        ("daily_2023_2025", "000660", 5, 20),
    ],
)
def test_engine_matches_vectorised_sma_cross(
    data_dir: Path, folder: str, code: str, fast: int, slow: int
) -> None:
    path = find_csv(data_dir / "krx" / folder, code)
    assert path is not None
    bars = load_bars_csv(path)
    config = StrategyConfig(
        name="sma_cross",
        universe=(code,),
        parameters=SmaCrossParameters(fast=fast, slow=slow),
        risk_management={
            "max_position_size": 1.0,
            "max_daily_trades": 10,
            "stop_loss_pct": None,  # protective exits off: the rules above only
            "take_profit_pct": None,
        },
    )
    result = Backtest(
        [SmaCrossStrategy(config)], {code: bars}, BacktestSettings(cash_krw=CASH)
    ).run()

    expected, expected_equity = vectorised(bars, fast, slow)
    got = result.trades
    assert len(expected) > 5, "the data should produce several round trips"
    assert len(got) == len(expected)
    assert list(got["entry_time"]) == [e["entry_time"] for e in expected]
    assert list(got["exit_time"]) == [e["exit_time"] for e in expected]
    assert list(got["entry_price"]) == [e["entry_price"] for e in expected]
    assert list(got["exit_price"]) == [e["exit_price"] for e in expected]
    assert list(got["qty"]) == [e["qty"] for e in expected]
    assert result.final_equity_krw == expected_equity
    # the equity curve is cash + holdings at every bar; it never has negative cash
    eq = result.equity
    assert (eq["cash_krw"] >= 0).all()
    assert (eq["equity_krw"] == eq["cash_krw"] + eq["holdings_value_krw"]).all()
