"""The backtest's fast path changes nothing: a strategy asked only on its ``signal_bars``
gives the run it gives when asked on every bar, quiet stretches passed in one step included
(flat or held, across days, with the daily loss lock and the portfolio stop firing inside
them); bars of a held stock that can fire no exit still raise its peak."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from core.backtest import Backtest, BacktestSettings
from core.data_collector import find_csv, load_bars_csv
from core.risk import RiskLimits
from framework.bars import Bars
from framework.types import Signal, SignalType
from strategies.base import BaseStrategy
from strategies.config import StrategyConfig
from strategies.sma_cross.strategy import SmaCrossParameters, SmaCrossStrategy

CODES = ("005930", "035720")


class AskedEveryBar(SmaCrossStrategy):
    """The same rules, without the mask: asked on every bar; counts the calls."""

    calls = 0

    def signal_bars(self, data: Bars) -> Any:
        return None

    def generate_signal(self, stock_code: str, data: Bars, timeframe: str) -> Signal | None:
        type(self).calls += 1
        return super().generate_signal(stock_code, data, timeframe)


class Counted(SmaCrossStrategy):
    calls = 0

    def generate_signal(self, stock_code: str, data: Bars, timeframe: str) -> Signal | None:
        type(self).calls += 1
        return super().generate_signal(stock_code, data, timeframe)


class WrongMask(SmaCrossStrategy):
    def signal_bars(self, data: Bars) -> Any:
        return np.ones(3, dtype=bool)


def config(trailing: float | None, **risk: Any) -> StrategyConfig:
    return StrategyConfig(
        name="sma_cross",
        universe=CODES,
        parameters=SmaCrossParameters(fast=5, slow=20),
        risk_management={
            "max_position_size": 0.5,
            "max_daily_trades": 3,
            "stop_loss_pct": 0.04,
            "take_profit_pct": 0.08,
            "trailing_stop_pct": trailing,
            **risk,
        },
    )


def daily(data_dir: Path) -> dict[str, pd.DataFrame]:
    out = {}
    for code in CODES:
        path = find_csv(data_dir / "krx" / "daily_2000_2024", code)
        assert path is not None
        out[code] = load_bars_csv(path).iloc[-2_500:]
    return out


def hourly(n: int = 6_000, seed: int = 3, stagger: int = 500) -> dict[str, pd.DataFrame]:
    """Two stocks of synthetic hourly bars, 24 a day, the second one starting ``stagger``
    bars later (0: both have a bar at every time, the run's aligned case)."""
    rng = np.random.default_rng(seed)
    out = {}
    for k, code in enumerate(CODES):
        index = pd.date_range("2021-03-01", periods=n, freq="h", tz="Asia/Seoul")[k * stagger :]
        m = len(index)
        close = (30_000 * np.exp(np.cumsum(rng.normal(0, 0.006, m)))).round()
        open_ = (np.concatenate([[close[0]], close[:-1]]) * (1 + rng.normal(0, 0.002, m))).round()
        high = (np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.004, m)))).round()
        low = (np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.004, m)))).round()
        out[code] = pd.DataFrame(
            {"open": open_, "high": high, "low": low, "close": close, "volume": 1_000.0},
            index=index,
        )
    return out


def bars_of(data_dir: Path, kind: str) -> dict[str, pd.DataFrame]:
    if kind == "daily":
        return daily(data_dir)
    return hourly(stagger=0 if kind == "hourly_aligned" else 500)


def run(
    strategy: BaseStrategy,
    bars: dict[str, pd.DataFrame],
    limits: RiskLimits | None = None,
    years: list[tuple[int, int]] | None = None,
) -> tuple[Backtest, Any]:
    settings = BacktestSettings(
        cash_krw=50_000_000,
        risk_limits=limits or RiskLimits(daily_loss_limit_pct=0.02, portfolio_stop_pct=0.5),
    )
    bt = Backtest([strategy], bars, settings, run_id="f" * 32)
    if years is not None:
        bt.on_year_end = lambda year, equity: years.append((year, equity))
    return bt, bt.run()


def fingerprint(bt: Backtest, result: Any) -> list[Any]:
    return [
        result.trades.to_dict("records"),
        result.orders.to_dict("records"),
        result.fills.to_dict("records"),
        result.equity.to_dict("list"),
        result.positions.to_dict("records"),
        [(e["kind"], e["message"], e["at"]) for e in result.events],
        bt.journal.closed_positions,
        [(p.stock_code, p.peak_price) for p in bt.trader.open_positions()],
        result.settings["strategy_stats"],
    ]


@pytest.mark.parametrize("trailing", [None, 0.03])
@pytest.mark.parametrize("bars_kind", ["daily", "hourly", "hourly_aligned"])
def test_asking_only_on_signal_bars_gives_the_same_run(
    data_dir: Path, trailing: float | None, bars_kind: str
) -> None:
    bars = bars_of(data_dir, bars_kind)
    Counted.calls = AskedEveryBar.calls = 0
    fast = run(Counted(config(trailing)), bars)
    slow = run(AskedEveryBar(config(trailing)), bars)

    assert len(fast[1].trades) > 10, "the case should trade"
    assert fingerprint(*fast) == fingerprint(*slow)
    assert Counted.calls < AskedEveryBar.calls / 3  # asked on the crosses only


@pytest.mark.parametrize(
    ("daily_loss", "portfolio_stop", "risk"),
    [
        (0.004, 0.25, {}),  # the loss lock engages on many days, then the stop halts
        (0.01, 0.08, {}),
        (0.01, None, {"max_holding_days": 4}),  # time cuts at the days' last bars
        (None, 0.3, {"exit_at_close": True}),
    ],
)
@pytest.mark.parametrize("bars_kind", ["daily", "hourly", "hourly_aligned"])
def test_risk_limits_fire_at_the_same_bars_when_quiet_stretches_are_passed(
    data_dir: Path,
    bars_kind: str,
    daily_loss: float | None,
    portfolio_stop: float | None,
    risk: dict[str, Any],
) -> None:
    bars = bars_of(data_dir, bars_kind)
    limits = RiskLimits(daily_loss_limit_pct=daily_loss, portfolio_stop_pct=portfolio_stop)
    years_fast: list[tuple[int, int]] = []
    years_slow: list[tuple[int, int]] = []
    fast = run(Counted(config(None, **risk)), bars, limits, years_fast)
    slow = run(AskedEveryBar(config(None, **risk)), bars, limits, years_slow)

    rules = {e["data"].get("rule") for e in fast[1].events if e["kind"] == "risk_limit"}
    assert rules & {"daily_loss_lock", "portfolio_stop"}, "the case should hit a limit"
    assert fingerprint(*fast) == fingerprint(*slow)
    assert years_fast == years_slow
    assert bars_kind != "daily" or len(years_fast) >= 5  # the hourly bars span one year


def test_the_strategy_is_asked_on_exactly_its_marked_bars(data_dir: Path) -> None:
    bars = daily(data_dir)
    strategy = Counted(config(None))
    Counted.calls = 0
    bt, _ = run(strategy, bars)
    marked = 0
    for code, frame in bars.items():
        window = bt.trader.build_window(bt.trader.slots["sma_cross"], code, frame)
        marked += int(strategy.signal_bars(window).sum())
    assert Counted.calls == marked


def test_a_mask_of_the_wrong_shape_is_reported_and_every_bar_is_asked(data_dir: Path) -> None:
    bars = daily(data_dir)
    bt, result = run(WrongMask(config(None)), bars)
    slow = run(AskedEveryBar(config(None)), bars)

    errors = [e for e in result.events if e["kind"] == "strategy_error"]
    assert errors
    assert "signal_bars" in errors[0]["message"]
    assert fingerprint(bt, result)[:5] == fingerprint(*slow)[:5]


class BuyOnce(BaseStrategy):
    """Buys on its third bar and holds; exits far away, so most bars pass by."""

    def generate_signal(self, stock_code: str, data: Bars, timeframe: str) -> Signal | None:
        if len(data) == 3:
            return Signal(SignalType.BUY, stock_code, confidence=100.0)
        return None


def test_a_held_stock_s_peak_is_the_highest_high_since_entry() -> None:
    bars = {"005930": hourly()["005930"]}
    strategy = BuyOnce(
        StrategyConfig(
            name="once",
            universe=("005930",),
            risk_management={
                "max_position_size": 0.5,
                "stop_loss_pct": 0.9,
                "take_profit_pct": 50.0,
            },
        )
    )
    bt, result = run(strategy, bars)

    (pos,) = bt.trader.open_positions()
    frame = bars["005930"]
    assert pos.peak_price == max(frame["open"].iloc[3], frame["high"].iloc[3:].max())
    assert len(result.trades) == 0


@pytest.mark.parametrize(
    ("limits", "risk"),
    [
        (RiskLimits(daily_loss_limit_pct=0.004, portfolio_stop_pct=0.25), {}),
        (RiskLimits(daily_loss_limit_pct=0.01), {"max_holding_days": 4}),
        (RiskLimits(), {"trailing_stop_pct": 0.03}),
    ],
)
def test_short_stretches_walked_over_lists_give_the_run_numpy_gives(
    monkeypatch: pytest.MonkeyPatch, limits: RiskLimits, risk: dict[str, Any]
) -> None:
    """Aligned stocks: the one-walk pass of short stretches (Backtest._pass_short) against
    the numpy pass every stretch takes when none counts as short."""
    import core.backtest

    bars = hourly(stagger=0)
    strategy_risk = {k: v for k, v in risk.items() if k != "trailing_stop_pct"}
    trailing = risk.get("trailing_stop_pct")
    walked = run(Counted(config(trailing, **strategy_risk)), bars, limits)
    monkeypatch.setattr(core.backtest, "_SHORT", 0)
    with_numpy = run(Counted(config(trailing, **strategy_risk)), bars, limits)

    assert len(walked[1].trades) > 10, "the case should trade"
    assert fingerprint(*walked) == fingerprint(*with_numpy)
