"""Trader behaviour through the backtest clock: isolation, sizing, limits, no look-ahead."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.backtest import Backtest, BacktestSettings
from core.data_collector import find_csv, load_bars_csv
from framework.bars import Bars
from framework.types import Signal, SignalType
from strategies.base import BaseStrategy
from strategies.config import StrategyConfig
from strategies.sma_cross.strategy import SmaCrossParameters, SmaCrossStrategy
from utils.ticks import upper_limit_price


def config(
    name: str, codes: tuple[str, ...] = ("005930",), **risk: float | None
) -> StrategyConfig:
    """A strategy config with the protective exits off unless given (sizing tests)."""
    risk_cfg = {
        "max_position_size": 0.10,
        "max_daily_trades": 5,
        "stop_loss_pct": None,
        "take_profit_pct": None,
        **risk,
    }
    return StrategyConfig(name=name, universe=codes, risk_management=risk_cfg)


def bars_of(data_dir: Path, code: str, folder: str = "daily_2023_2025") -> pd.DataFrame:
    path = find_csv(data_dir / "krx" / folder, code)
    assert path is not None
    return load_bars_csv(path)


class Raiser(BaseStrategy):
    """Raises in every hook it can."""

    def on_market_open(self) -> None:
        raise RuntimeError("boom at open")

    def generate_signal(self, stock_code: str, data: Bars, timeframe: str) -> Signal | None:
        raise ValueError("boom in signal")

    def on_market_close(self) -> None:
        raise RuntimeError("boom at close")


class BuyOnce(BaseStrategy):
    """Buys on a fixed bar with a given signal type and confidence, then holds."""

    numpy_bars = True  # counts bars with len(data): the whole visible history

    def __init__(
        self,
        cfg: StrategyConfig,
        at: int = 30,
        kind: SignalType = SignalType.BUY,
        confidence: float = 100.0,
    ):
        super().__init__(cfg)
        self.at, self.kind, self.confidence = at, kind, confidence
        self.filled: list[int] = []

    def generate_signal(self, stock_code: str, data: Bars, timeframe: str) -> Signal | None:
        if len(data) == self.at:
            return Signal(self.kind, stock_code, confidence=self.confidence, reasons=("test",))
        return None

    def on_order_filled(self, order):  # type: ignore[no-untyped-def]
        self.filled.append(order.filled_qty)


def test_raising_strategy_is_isolated_others_keep_trading(data_dir: Path) -> None:
    bars = {"005930": bars_of(data_dir, "005930")}
    good = SmaCrossStrategy(
        StrategyConfig(
            name="good",
            universe=("005930",),
            parameters=SmaCrossParameters(fast=5, slow=20),
            risk_management={"max_position_size": 0.5},
        )
    )
    bad = Raiser(config("bad"))
    alone = Backtest([SmaCrossStrategy(good.config)], bars).run()
    keep_going = BacktestSettings(stop_on_strategy_failure=False)
    result = Backtest([bad, good], bars, keep_going).run()
    stats = result.settings["strategy_stats"]
    assert stats["bad"]["active"] is False
    assert stats["bad"]["errors"] >= 3
    kinds = [e["kind"] for e in result.events]
    assert "strategy_error" in kinds
    assert kinds.count("strategy_isolated") == 1
    assert any("boom" in e["message"] for e in result.events)
    # the good strategy traded exactly as it does alone
    assert len(result.trades) == len(alone.trades) > 0
    assert result.final_equity_krw == alone.final_equity_krw


@pytest.mark.parametrize(
    ("kind", "confidence", "weight"),
    [
        (SignalType.BUY, 90.0, 1.0),
        (SignalType.BUY, 60.0, 0.5),
        (SignalType.STRONG_BUY, 95.0, 1.5),
        (SignalType.BUY, 20.0, 0.0),
    ],
)
def test_buy_size_follows_confidence_and_strong_weight(
    data_dir: Path, kind: SignalType, confidence: float, weight: float
) -> None:
    frame = bars_of(data_dir, "005930")
    strategy = BuyOnce(config("one"), at=30, kind=kind, confidence=confidence)
    result = Backtest([strategy], {"005930": frame}, BacktestSettings(cash_krw=10_000_000)).run()
    close_t = frame["close"].iloc[29]  # decided on bar 30 (index 29) at its close
    expected = math.floor(0.10 * 10_000_000 * weight / (close_t * 1.00015))
    filled = int(result.fills["qty"].sum()) if len(result.fills) else 0
    assert filled == expected
    if expected:
        assert result.fills["time"].iloc[0] == frame.index[30]  # next bar's open
        assert result.fills["price"].iloc[0] == frame["open"].iloc[30]
        assert strategy.filled == [expected]


def test_max_daily_trades_and_hold_counting(data_dir: Path) -> None:
    class Busy(BaseStrategy):
        def generate_signal(self, stock_code: str, data: Bars, timeframe: str) -> Signal | None:
            if self.get_position(stock_code) is None:
                return Signal(SignalType.BUY, stock_code, confidence=100.0)
            return Signal(SignalType.HOLD, stock_code)

    frame = bars_of(data_dir, "005930")
    result = Backtest([Busy(config("busy", max_daily_trades=0))], {"005930": frame}).run()
    stats = result.settings["strategy_stats"]["busy"]
    assert len(result.orders) == 0
    assert stats["rejections"].get("max_daily_trades 0 reached") == len(frame)
    result = Backtest([Busy(config("busy"))], {"005930": frame}).run()
    stats = result.settings["strategy_stats"]["busy"]
    assert len(result.orders) == 1
    assert stats["signals"]["buy"] == 1
    assert stats["signals"]["hold"] == len(frame) - 1  # filled at bar 2's open, held after


def test_strategy_sees_no_future_bars(data_dir: Path) -> None:
    seen: list[tuple[int, pd.Timestamp, float]] = []

    class Spy(BaseStrategy):
        numpy_bars = True

        def indicators(self, bars: pd.DataFrame) -> dict[str, pd.Series]:
            return {"prev_close": bars["close"].shift(1)}

        def generate_signal(self, stock_code: str, data: Bars, timeframe: str) -> Signal | None:
            seen.append((len(data), data.time, data.last("close")))
            assert len(data["prev_close"]) == len(data)
            frame = self.data_provider.get_daily_bars(stock_code)
            assert frame.index[-1] == data.time  # the provider stops at the clock too
            return None

    frame = bars_of(data_dir, "005930")
    Backtest(
        [Spy(config("spy"))], {"005930": frame}, BacktestSettings(start=frame.index[100].date())
    ).run()
    assert [n for n, _, _ in seen] == list(range(101, len(frame) + 1))  # warm-up visible
    assert [t for _, t, _ in seen] == list(frame.index[100:])
    assert np.array_equal([c for _, _, c in seen], frame["close"].to_numpy()[100:])


def test_two_strategies_keep_separate_positions_and_never_overspend(data_dir: Path) -> None:
    frame = {"005930": bars_of(data_dir, "005930"), "000660": bars_of(data_dir, "000660")}
    # a market buy holds 130 % of its price (the upper limit) until it fills
    a = BuyOnce(config("a", ("005930", "000660"), max_position_size=0.3), at=25)
    b = BuyOnce(config("b", ("005930",), max_position_size=0.3), at=25)
    result = Backtest([a, b], frame, BacktestSettings(cash_krw=5_000_000)).run()
    held = result.positions.groupby("strategy")["qty"].sum().to_dict()
    assert set(held) <= {"a", "b"}
    assert (result.equity["cash_krw"] >= 0).all()
    spent = int((result.fills["amount_krw"] + result.fills["commission_krw"]).sum())
    assert spent <= 5_000_000
    assert result.equity["cash_krw"].iloc[-1] == 5_000_000 - spent
    # both strategies asked; the second buy was sized from what the first left free
    assert len(result.orders) >= 2


def test_explicit_qty_is_capped_by_the_strategy_allocation(data_dir: Path) -> None:
    class AllIn(BaseStrategy):
        numpy_bars = True  # counts bars with len(data)

        def generate_signal(self, stock_code: str, data: Bars, timeframe: str) -> Signal | None:
            if len(data) == 30:
                return Signal(SignalType.BUY, stock_code, qty=1_000_000)
            return None

    frame = bars_of(data_dir, "005930")
    cfg = config("allin").model_copy(update={"allocation": 0.2})
    result = Backtest([AllIn(cfg)], {"005930": frame}, BacktestSettings(cash_krw=10_000_000)).run()
    # a market buy holds the upper-limit price (close × 1.3 on the tick) until it fills
    price = upper_limit_price(int(frame["close"].iloc[29]), on=frame.index[29].date())
    qty = 2_000_000 // price  # 20 % of equity, less commission: drop shares until it fits
    while qty * price + qty * price * 15 // 100_000 > 2_000_000:
        qty -= 1
    assert int(result.fills["qty"].sum()) == qty
