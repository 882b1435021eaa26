"""Strategies written the way the seed shows them: a pandas ``data`` frame per call,
``self.positions[code]`` with the seed's keys, and the numpy fast path by opt-in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.backtest import Backtest, BacktestResult, BacktestSettings
from core.data_collector import find_csv, load_bars_csv
from core.windows import FrameWindow
from framework.types import Signal, SignalType
from strategies.base import BaseStrategy, StrategyPosition
from strategies.config import StrategyConfig, StrategyLoader
from strategies.sma_cross.strategy import SmaCrossParameters, SmaCrossStrategy

CODES = ("005930", "000660")
RISK = {"max_position_size": 0.5, "max_daily_trades": 2, "stop_loss_pct": 0.05,
        "take_profit_pct": 0.10}

# The rules of strategies/sma_cross, written as seed 002 writes a strategy: indicators
# computed inside generate_signal on the data frame, the book read from self.positions.
SEED_STRATEGY = '''
from framework.types import Signal, SignalType
from strategies.base import BaseStrategy


class SeedSma(BaseStrategy):
    def generate_signal(self, stock_code, data, timeframe="daily"):
        fast_n, slow_n = self.params["fast"], self.params["slow"]
        if data is None or len(data) < slow_n + 1:
            return None
        close = data["close"]
        fast = close.rolling(fast_n).mean()
        slow = close.rolling(slow_n).mean()
        f0, f1, s0, s1 = fast.iloc[-2], fast.iloc[-1], slow.iloc[-2], slow.iloc[-1]
        if stock_code in self.positions:
            position = self.positions[stock_code]
            if position["quantity"] > 0 and f0 >= s0 and f1 < s1:
                return Signal(signal_type=SignalType.SELL, stock_code=stock_code,
                              confidence=100.0,
                              reasons=(f"SMA{fast_n} crossed below SMA{slow_n}",))
        elif f0 <= s0 and f1 > s1:
            return Signal(signal_type=SignalType.BUY, stock_code=stock_code,
                          confidence=100.0,
                          reasons=(f"SMA{fast_n} crossed above SMA{slow_n}",))
        return None
'''


def seed_folder(root: Path, fast: int, slow: int) -> Path:
    folder = root / "seed_sma"
    folder.mkdir(parents=True)
    (folder / "strategy.py").write_text(SEED_STRATEGY, encoding="utf-8")
    (folder / "config.yaml").write_text(
        "enabled: true\n"
        f"universe: {list(CODES)}\n"
        f"lookback_bars: {slow + 5}\n"
        f"parameters: {{fast: {fast}, slow: {slow}}}\n"
        f"risk_management: {RISK}\n",
        encoding="utf-8",
    )
    return root


def long_bars(data_dir: Path) -> dict[str, pd.DataFrame]:
    out = {}
    for code in CODES:
        path = find_csv(data_dir / "krx" / "daily_2000_2024", code)
        assert path is not None
        out[code] = load_bars_csv(path)
    return out


def fills_of(result: BacktestResult) -> list[tuple[str, str, str, int, int]]:
    f = result.fills
    return [
        (str(t), c, s, int(q), int(p))
        for t, c, s, q, p in zip(f["time"], f["code"], f["side"], f["qty"], f["price"], strict=True)
    ]


def test_seed_style_folder_trades_like_the_fast_path(tmp_path: Path, data_dir: Path) -> None:
    fast, slow = 5, 20
    (item,) = StrategyLoader(root=seed_folder(tmp_path, fast, slow)).load_enabled()
    seed = item.create()
    assert not seed.numpy_bars
    fast_path = SmaCrossStrategy(
        StrategyConfig(
            name="seed_sma",
            universe=CODES,
            parameters=SmaCrossParameters(fast=fast, slow=slow),
            risk_management=RISK,
        )
    )
    bars = long_bars(data_dir)
    settings = BacktestSettings(cash_krw=50_000_000)

    a = Backtest([seed], bars, settings).run()
    b = Backtest([fast_path], bars, settings).run()

    assert len(a.fills) > 100  # both stocks, 24 years: a real trading history
    assert set(a.fills["code"]) == set(CODES)
    assert fills_of(a) == fills_of(b)  # same times, sides, quantities and prices
    assert a.trades["exit_reasons"].tolist() == b.trades["exit_reasons"].tolist()
    assert a.equity["equity_krw"].tolist() == b.equity["equity_krw"].tolist()  # to the won
    assert a.equity["cash_krw"].tolist() == b.equity["cash_krw"].tolist()
    # the strategy's holdings are the fills it owns
    for code in CODES:
        f = a.fills[a.fills["code"] == code]
        signed = np.where(f["side"] == "buy", f["qty"], -f["qty"]).sum()
        held = a.positions.loc[a.positions["code"] == code, "qty"].sum() if len(a.positions) else 0
        assert int(signed) == int(held)


class Spy(BaseStrategy):
    """Records what ``data`` looks like on each call."""

    def __init__(self, config: StrategyConfig):
        super().__init__(config)
        self.seen: list[tuple[type, int, pd.Timestamp, float, str, bool]] = []

    def indicators(self, bars: pd.DataFrame) -> dict[str, pd.Series]:
        return {"prev_close": bars["close"].shift(1)}

    def generate_signal(self, stock_code: str, data: pd.DataFrame, timeframe: str) -> None:
        self.seen.append(
            (
                type(data),
                len(data),
                data.index[-1],
                float(data["close"].iloc[-1]),
                str(data.index.tz),
                bool(data.index.is_monotonic_increasing),
            )
        )
        assert list(data.columns) == ["open", "high", "low", "close", "volume", "prev_close"]
        data.loc[data.index[-1], "close"] = -1.0  # writing into the view touches nothing else


@pytest.mark.parametrize("lookback", [40, "all"])
def test_data_is_a_frame_of_at_most_lookback_bars_ending_at_the_current_bar(
    data_dir: Path, lookback: int | str
) -> None:
    frame = load_bars_csv(find_csv(data_dir / "krx" / "daily_2023_2025", "005930"))  # type: ignore[arg-type]
    spy = Spy(StrategyConfig(name="spy", universe=("005930",), lookback_bars=lookback))
    start = frame.index[100].date()
    result = Backtest([spy], {"005930": frame}, BacktestSettings(start=start)).run()

    assert [s[0] for s in spy.seen] == [pd.DataFrame] * (len(frame) - 100)
    visible = range(101, len(frame) + 1)
    limit = len(frame) if lookback == "all" else lookback
    assert [s[1] for s in spy.seen] == [min(n, limit) for n in visible]
    assert [s[2] for s in spy.seen] == list(frame.index[100:])  # current bar last
    assert np.array_equal([s[3] for s in spy.seen], frame["close"].to_numpy()[100:])
    assert {s[4] for s in spy.seen} == {"Asia/Seoul"}
    assert all(s[5] for s in spy.seen)
    assert len(result.equity) == len(frame) - 100


def test_frame_window_is_a_view_not_a_copy_per_bar(data_dir: Path) -> None:
    frame = load_bars_csv(find_csv(data_dir / "krx" / "daily_2023_2025", "005930"))  # type: ignore[arg-type]
    cols = {c: frame[c].to_numpy(dtype=np.float64) for c in frame.columns}
    window = FrameWindow(cols, pd.DatetimeIndex(frame.index), lookback=10)
    window.resize(50)
    view = window.frame()
    assert len(view) == 10
    assert view.index[-1] == frame.index[49]
    assert np.shares_memory(view["close"].to_numpy(), cols["close"])
    with pytest.raises(ValueError, match="lookback must be at least 1"):
        FrameWindow(cols, pd.DatetimeIndex(frame.index), lookback=0)


def test_lookback_bars_is_validated() -> None:
    for bad in (0, -5, "some", 2.5):
        with pytest.raises(ValueError, match="lookback_bars"):
            StrategyConfig(name="x", universe=("005930",), lookback_bars=bad)
    assert StrategyConfig(name="x", universe=("005930",)).lookback == 250
    assert StrategyConfig(name="x", universe=("005930",), lookback_bars="all").lookback is None


class HoldsOnce(BaseStrategy):
    """Buys once, then records ``self.positions[code]`` each bar."""

    def __init__(self, config: StrategyConfig):
        super().__init__(config)
        self.views: list[StrategyPosition] = []

    def generate_signal(self, stock_code: str, data: pd.DataFrame, timeframe: str) -> Signal | None:
        if stock_code in self.positions:
            self.views.append(self.positions[stock_code])
            return None
        if len(data) == 30:
            return Signal(SignalType.BUY, stock_code, confidence=100.0)
        return None


def test_positions_read_with_the_seeds_keys(data_dir: Path) -> None:
    frame = load_bars_csv(find_csv(data_dir / "krx" / "daily_2023_2025", "005930"))  # type: ignore[arg-type]
    strategy = HoldsOnce(
        StrategyConfig(
            name="holds",
            universe=("005930",),
            risk_management={"max_position_size": 0.2, "stop_loss_pct": None,
                             "take_profit_pct": None},
        )
    )
    result = Backtest([strategy], {"005930": frame}).run()
    fill = result.fills.iloc[0]
    view = strategy.views[-1]
    assert view["quantity"] == view.qty == int(fill["qty"]) > 0
    assert view["entry_price"] == view.avg_price == int(fill["price"])
    assert view["entry_time"] == fill["time"]
    assert view["stock_code"] == "005930"
    assert set(view) == set(StrategyPosition.KEYS)
    with pytest.raises(KeyError, match="no position key 'qty'"):
        view["qty"]
