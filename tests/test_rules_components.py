"""Triggers, conditions and actions of the catalogue on small constructed windows."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
import yaml

from framework.bars import Bars
from framework.types import PositionView, SignalType
from strategies.rules.base import Tick
from strategies.rules.context import ExecutionContext, PositionState
from strategies.rules.registry import build

CODE = "005930"


def frame(closes, freq: str = "B", start: str = "2024-01-02", volume=None) -> pd.DataFrame:
    c = np.asarray(closes, dtype=float)
    v = np.full(len(c), 1_000.0) if volume is None else np.asarray(volume, dtype=float)
    idx = pd.date_range(start, periods=len(c), freq=freq, tz="Asia/Seoul")
    return pd.DataFrame({"open": c, "high": c, "low": c, "close": c, "volume": v}, index=idx)


def tick(df: pd.DataFrame, comp=None, position: PositionView | None = None,
         ctx: ExecutionContext | None = None, cash: int = 10_000_000) -> Tick:
    cols = {c: df[c].to_numpy(dtype=float) for c in df.columns}
    if comp is not None and hasattr(comp, "columns"):
        cols.update({k: v.to_numpy(dtype=float) for k, v in comp.columns(df).items()})
    bars = Bars(cols, pd.DatetimeIndex(df.index))
    ctx = ctx or ExecutionContext()
    state = PositionState.ACTIVE if position else PositionState.READY
    return Tick(CODE, bars, bars.time.to_pydatetime(), state, position, ctx, ctx.stock(CODE),
                cash_krw=lambda: cash)


def trig(name: str, **params):
    return build("trigger", {"type": name, "params": params}, "trigger")


def fires(name: str, df: pd.DataFrame, position=None, ctx=None, **params) -> bool:
    t = trig(name, **params)
    return t.evaluate(tick(df, t, position, ctx))


def test_rsi_level_and_cross() -> None:
    falling = frame([100 - i for i in range(20)])
    assert fires("rsi", falling, op="below", value=30)
    assert not fires("rsi", falling, op="above", value=30)
    down = [100.0 - i for i in range(20)]
    assert fires("rsi", frame([*down, 95.0]), op="cross_above", value=30)
    assert not fires("rsi", frame([*down, 95.0, 99.0]), op="cross_above", value=30)
    assert not fires("rsi", frame([100.0] * 10), op="below", value=30)  # warm-up: NaN


def test_ma_cross_and_price_vs_ma() -> None:
    golden = frame([10.0] * 20 + [9.0] * 5 + [14.0])
    assert fires("ma_cross", golden, fast=3, slow=10, direction="up")
    assert not fires("ma_cross", golden, fast=3, slow=10, direction="down")
    assert fires("price_vs_ma", golden, period=5, op="cross_above")
    assert fires("ma_cross", golden, ma="ema", fast=2, slow=10)


def test_macd_bollinger_and_volume() -> None:
    turn = frame([100.0 - i for i in range(40)] + [70.0 + 5 * i for i in range(10)])
    macd = trig("macd", series="hist", op="cross_above", value=0)
    t = tick(turn, macd)
    hits = []
    for n in range(1, len(turn) + 1):
        t.bars.resize(n)
        hits.append(macd.evaluate(t))
    assert sum(hits) == 1
    assert hits.index(True) >= 40
    drop = frame([100.0, 101.0] * 15 + [80.0])
    assert fires("bollinger", drop, period=20, k=2, band="lower", op="cross_below")
    assert not fires("bollinger", drop, band="upper", op="above")
    surge = frame([100.0] * 25, volume=[1_000.0] * 24 + [2_500.0])
    assert fires("volume_surge", surge, period=20, multiplier=2.5)
    assert not fires("volume_surge", surge, period=20, multiplier=2.6)


def test_profit_loss_bounds_are_inclusive() -> None:
    df = frame([100.0, 105.0])
    pos = PositionView(CODE, 10, 100.0)
    assert fires("profit_loss", df, pos, op="above", pct=5)
    assert not fires("profit_loss", df, pos, op="above", pct=5.1)
    assert fires("profit_loss", frame([95.0]), pos, op="below", pct=-5)
    assert not fires("profit_loss", df, None, op="above", pct=0)  # flat: never


def test_rapid_drop_and_spike_windows_in_bars_and_seconds() -> None:
    daily = frame([100.0, 104.0, 101.0, 98.0])  # highest of the last 2 bars: 104 → −5.8 %
    assert fires("rapid_drop", daily, pct=5, window_bars=2)
    assert not fires("rapid_drop", daily, pct=5, window_bars=1)  # 101 → 98: −3 %
    minutes = frame([100.0, 100.0, 100.0, 96.0, 94.5], freq="min", start="2024-01-02 09:00")
    assert not fires("rapid_drop", minutes, pct=5, window_s=60)  # 96 → 94.5: −1.6 %
    assert fires("rapid_drop", minutes, pct=5, window_s=120)     # 100 → 94.5: −5.5 %
    assert not fires("rapid_drop", minutes, pct=1, window_s=59)  # no earlier bar inside
    assert fires("rapid_spike", frame([100.0, 99.0, 105.0]), pct=6, window_bars=2)


def test_rapid_drop_window_s_uses_only_bars_inside_the_window() -> None:
    minutes = frame([120.0, 100.0, 100.0, 96.0], freq="min", start="2024-01-02 09:00")
    assert not fires("rapid_drop", minutes, pct=5, window_s=60)   # 100 → 96: −4 %
    assert fires("rapid_drop", minutes, pct=5, window_s=180)      # 120 → 96: −20 %


def test_window_params_need_exactly_one_window() -> None:
    with pytest.raises(ValueError, match="exactly one of window_bars"):
        trig("rapid_drop", pct=5)
    with pytest.raises(ValueError, match="exactly one of window_bars"):
        trig("rapid_drop", pct=5, window_bars=1, window_s=60)


def test_time_of_day_accepts_yaml_times() -> None:
    params = yaml.safe_load("{start: 09:30, end: '10:00'}")  # 09:30 is read as 570
    t = trig("time_of_day", **params)
    inside = frame([1.0, 1.0], freq="min", start="2024-01-02 09:29")
    assert t.evaluate(tick(inside))
    assert not t.evaluate(tick(frame([1.0], freq="min", start="2024-01-02 10:00")))


def test_trailing_stop_activation_and_arm() -> None:
    ctx = ExecutionContext()
    pos = PositionView(CODE, 10, 10_000.0)
    ctx.stock(CODE).peak_price = 11_000.0
    df = frame([10_560.0])
    assert fires("trailing_stop", df, pos, ctx, trail_pct=4, activate_profit_pct=3)
    assert not fires("trailing_stop", frame([10_561.0]), pos, ctx, trail_pct=4)
    assert not fires("trailing_stop", df, pos, ctx, trail_pct=4, activate_profit_pct=None)
    arm = build("action", {"type": "arm_trailing_stop", "params": {"trail_pct": 2}}, "action")
    arm.execute(tick(frame([10_900.0]), position=pos, ctx=ctx))
    assert ctx.stock(CODE).trailing_pct == 2
    assert fires("trailing_stop", frame([10_780.0]), pos, ctx, activate_profit_pct=None)


def cond(name: str, t: Tick, **params) -> bool:
    return build("condition", {"type": name, "params": params}, "c").evaluate(t)


def test_cooldown_in_bars_and_seconds() -> None:
    df = frame([100.0] * 10)
    ctx = ExecutionContext()
    t = tick(df, ctx=ctx)
    assert cond("cooldown", t, bars=3)  # never exited
    ctx.stock(CODE).last_exit_at = df.index[7].to_pydatetime()  # 2 bars after it
    assert not cond("cooldown", t, bars=3)
    assert cond("cooldown", t, bars=2)
    assert cond("cooldown", t, seconds=86_400)
    assert not cond("cooldown", t, seconds=86_400 * 5)


def test_max_trades_today_and_execution_count_and_flags() -> None:
    ctx = ExecutionContext()
    t = tick(frame([100.0]), ctx=ctx)
    ctx.stock(CODE).orders_today = 2
    ctx.stock("000660").orders_today = 2
    assert not cond("max_trades_today", t, max_trades=2)
    assert cond("max_trades_today", t, max_trades=3)
    assert not cond("max_trades_today", t, max_trades=4, scope="strategy")
    ctx.record(CODE, "add")
    assert cond("execution_count", t, rule="add", op="eq", value=1)
    ctx.roll_day(t.now.date() + timedelta(days=1))
    assert cond("execution_count", t, rule="add", op="lt", value=1, window="day")
    assert cond("execution_count", t, rule="add", op="eq", value=1, window="cycle")
    assert cond("context_flag", t, flag="paused", equals=False)
    ctx.set_flag("paused", True, CODE)
    assert cond("context_flag", t, flag="paused")
    assert not cond("context_flag", t, flag="paused", scope="strategy")
    assert cond("position_state", t, state="READY")


def test_stronger_reentry_only_for_a_second_entry_the_same_day() -> None:
    closes = [100.0] * 21 + [101.0]
    ctx = ExecutionContext()
    weak = tick(frame(closes), ctx=ctx)
    assert cond("stronger_reentry", weak, min_breakout_pct=2, min_volume_ratio=None)
    ctx.stock(CODE).last_entry_at = weak.now  # already entered today
    assert not cond("stronger_reentry", weak, min_breakout_pct=2, min_volume_ratio=None)
    strong = tick(frame([100.0] * 21 + [103.0], volume=[1e3] * 21 + [3e3]), ctx=ctx)
    assert cond("stronger_reentry", strong, min_breakout_pct=2, min_volume_ratio=2)
    ctx.stock(CODE).last_entry_at = weak.now - timedelta(days=1)
    assert cond("stronger_reentry", weak, min_breakout_pct=2, min_volume_ratio=None)
    assert not cond("stronger_reentry", weak, min_breakout_pct=2, window_s=3 * 86_400)


def act(name: str, t: Tick, **params):
    return build("action", {"type": name, "params": params}, "action").execute(t)


def test_buy_sizes_from_orderable_cash() -> None:
    result = act("buy", tick(frame([71_500.0]), cash=10_000_000), cash_pct=10)
    assert result.signal is not None
    assert result.signal.signal_type is SignalType.BUY
    assert result.signal.qty == 13
    assert result.signal.limit_price is None
    limit = act("buy", tick(frame([10_000.0])), amount_krw=50_000, order="limit",
                limit_offset_pct=1)
    assert limit.signal is not None
    assert limit.signal.qty == 5
    assert limit.signal.limit_price == 9_900
    poor = act("buy", tick(frame([71_500.0]), cash=100_000), cash_pct=10)
    assert poor.signal is None
    assert "buys no share" in poor.note


def test_add_sell_exit_quantities() -> None:
    pos = PositionView(CODE, 7, 10_000.0)
    t = tick(frame([11_000.0]), position=pos)
    add = act("add_position", t, position_pct=50)
    assert add.signal is not None
    assert add.signal.qty == 3
    sell = act("sell", t, pct=50, order="limit", limit_offset_pct=1)
    assert sell.signal is not None
    assert sell.signal.signal_type is SignalType.SELL
    assert (sell.signal.qty, sell.signal.limit_price) == (3, 11_110)
    out = act("exit", t, urgent=True)
    assert out.signal is not None
    assert (out.signal.signal_type, out.signal.qty) == (SignalType.STRONG_SELL, 7)


def test_flag_actions_change_the_context() -> None:
    ctx = ExecutionContext()
    t = tick(frame([1.0]), ctx=ctx)
    result = act("set_flag", t, flag="paused", reset_on="day")
    assert result.signal is None
    assert ctx.get_flag("paused", CODE) is True
    assert ctx.reset_on["paused"] == "day"
    act("clear_flag", t, flag="paused")
    assert ctx.get_flag("paused", CODE) is False


def test_price_vs_last_sell_for_rebuy_after_partial_take_profit() -> None:
    ctx = ExecutionContext()
    ctx.stock(CODE).last_sell_price = 10_500.0
    assert fires("price_vs_last_sell", frame([10_815.0]), ctx=ctx, pct=3)
    assert not fires("price_vs_last_sell", frame([10_814.0]), ctx=ctx, pct=3)
