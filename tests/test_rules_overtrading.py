"""Overtrading controls as plain Python objects (usable from any Python strategy)."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from strategies.rules import Cooldown, DailyTradeLimit, PartialTakeProfit, ReentryFilter
from strategies.rules.overtrading import breakout_pct, partial_qty, volume_ratio
from utils.clock import KST

T0 = datetime(2024, 3, 4, 10, 0, tzinfo=KST)


def test_cooldown_blocks_until_it_is_over() -> None:
    cd = Cooldown(seconds=1800)
    assert cd.allows("005930", T0)
    cd.on_exit("005930", T0)
    assert not cd.allows("005930", T0 + timedelta(minutes=29, seconds=59))
    assert cd.allows("005930", T0 + timedelta(minutes=30))
    assert cd.allows("000660", T0)  # per stock


def test_daily_trade_limit_per_stock_and_total_resets_next_day() -> None:
    per_stock = DailyTradeLimit(max_trades=2)
    total = DailyTradeLimit(max_trades=3, per_stock=False)
    for code in ("005930", "005930", "000660"):
        per_stock.on_trade(code, T0)
        total.on_trade(code, T0)
    assert not per_stock.allows("005930", T0)
    assert per_stock.allows("000660", T0)
    assert not total.allows("035420", T0)
    assert per_stock.allows("005930", T0 + timedelta(days=1))
    assert total.allows("035420", T0 + timedelta(days=1))


def test_reentry_filter_needs_breakout_and_volume_the_same_day() -> None:
    rf = ReentryFilter(min_breakout_pct=2, min_volume_ratio=2, lookback=5)
    high = np.full(6, 100.0)
    weak_close, strong_close = np.r_[np.full(5, 100.0), 101.0], np.r_[np.full(5, 100.0), 103.0]
    vol, big_vol = np.full(6, 1e3), np.r_[np.full(5, 1e3), 2.5e3]
    assert rf.allows("005930", T0, weak_close, high, vol)  # first entry
    rf.on_entry("005930", T0)
    later = T0 + timedelta(hours=2)
    assert not rf.allows("005930", later, weak_close, high, big_vol)
    assert not rf.allows("005930", later, strong_close, high, vol)
    assert rf.allows("005930", later, strong_close, high, big_vol)
    assert rf.allows("005930", T0 + timedelta(days=1), weak_close, high, vol)


def test_partial_take_profit_then_rebuy() -> None:
    ptp = PartialTakeProfit(take_profit_pct=5, sell_pct=50, reentry_pct=3)
    assert ptp.decide("005930", 10_400, 10_000) is None
    assert ptp.decide("005930", 10_500, 10_000) == "sell_part"
    assert ptp.sell_qty(7) == 3
    ptp.on_partial_sell("005930", 10_500)
    assert ptp.decide("005930", 10_814, 10_000) is None
    assert ptp.decide("005930", 10_815, 10_000) == "rebuy"
    ptp.on_rebuy("005930")
    assert ptp.decide("005930", 10_000, 10_000) is None


def test_breakout_and_volume_ratio_worked_numbers() -> None:
    pct = breakout_pct(np.array([1.0, 10_300.0]), np.array([10_000.0, 0.0]), 1)
    assert pct == pytest.approx(3.0)
    assert volume_ratio(np.array([100.0, 300.0]), 1) == 3.0
    assert breakout_pct(np.array([1.0]), np.array([1.0]), 1) == -np.inf


@given(st.integers(min_value=0, max_value=10**7), st.floats(min_value=0.01, max_value=100))
def test_partial_qty_bounds(held: int, pct: float) -> None:
    qty = partial_qty(held, pct)
    if held == 0:
        assert qty == 0
    else:
        assert 1 <= qty <= held
        assert qty <= max(1, held * pct / 100)
