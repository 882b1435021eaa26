"""The full engine against an independent few-line computation of the same SMA-cross rules.

Rules: golden cross of SMA(fast) over SMA(slow) at bar t's close while flat → buy at bar t+1's
open with ``qty = floor(cash / (close_t × (1 + c)))`` (budget = all equity capped by cash),
further capped so that ``qty × upper limit + commission`` fits in cash (KIS holds a market
buy's buying power at the upper-limit price over the base, here close_t), cut to what cash
affords at the open; dead cross while holding → sell everything at t+1's open. A bar t+1
locked at the daily limit (high = low at ±30 %, ±15 % before 2015-06-15, of close t) fills
no buy at limit-up and no sell at limit-down: the order expires. Commission
``floor(amount × 0.015 %)`` both sides, sell tax ``floor(amount × rate)`` by the settlement
date (T+2 KRX sessions) for stocks, none for the KODEX 200 ETF. Positions open at the end are
marked to the last close.
"""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.backtest import Backtest, BacktestSettings
from core.data_collector import find_csv, load_bars_csv
from strategies.config import StrategyConfig
from strategies.sma_cross.strategy import SmaCrossParameters, SmaCrossStrategy
from utils.market_calendar import settlement_date

CASH = 10_000_000
ETFS = {"069500"}
TAX_BP = {2023: 20, 2024: 18, 2025: 15}  # basis points by settlement year, ≥2026 → 20
NEW_TICKS = ((2_000, 1), (5_000, 5), (20_000, 10), (50_000, 50), (200_000, 100), (500_000, 500))
OLD_TICKS = ((1_000, 1), (5_000, 5), (10_000, 10), (50_000, 50), (100_000, 100), (500_000, 500))


def tax_bp(code: str, trade_day: date) -> int:
    if code in ETFS:
        return 0
    day = settlement_date(trade_day)
    if day < date(2019, 6, 3):
        return 30
    if day.year <= 2020:
        return 25
    if day.year <= 2022:
        return 23
    return TAX_BP.get(day.year, 20)


def upper_limit(code: str, base: int, day: date) -> int:
    """상한가: base × 1.3 (× 1.15 before 2015-06-15) rounded down to the tick."""
    raw = base * (130 if day >= date(2015, 6, 15) else 115) // 100
    if code in ETFS:
        tick = 1 if day >= date(2023, 1, 25) and raw < 2_000 else 5
    else:
        table = NEW_TICKS if day >= date(2023, 1, 25) else OLD_TICKS
        tick = next((t for edge, t in table if raw < edge), 1_000)
    return raw - raw % tick


def vectorised(
    bars: pd.DataFrame, fast: int, slow: int, code: str
) -> tuple[list[dict], int]:
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
            up = upper_limit(code, int(close[t]), bars.index[t].date())
            while q > 0 and q * up + q * up * 15 // 100_000 > cash:
                q -= 1
            while q > 0 and q * px + q * px * 15 // 100_000 > cash:
                q -= 1
            if q > 0:
                cash -= q * px + q * px * 15 // 100_000
                qty, entry = q, (bars.index[t + 1], px)
        elif side == "sell" and qty > 0:
            amount = qty * px
            bp = tax_bp(code, bars.index[t + 1].date())
            cash += amount - amount * 15 // 100_000 - amount * bp // 10_000
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

    expected, expected_equity = vectorised(bars, fast, slow, code)
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
