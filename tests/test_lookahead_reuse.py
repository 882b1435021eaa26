"""The look-ahead check leaves the bars as they are and its whole-history pass of
``indicators`` is what the backtest's windows are built from (the hook is not run twice)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from core.backtest import Backtest, BacktestSettings
from core.lookahead import check_strategy, require_causal
from framework.bars import Bars
from strategies.base import BaseStrategy
from strategies.config import StrategyConfig


def bars(n: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(11)
    close = (10_000 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))).round()
    index = pd.date_range("2021-01-04", periods=n, freq="D", tz="Asia/Seoul")
    return pd.DataFrame(
        {"open": close, "high": close * 1.01, "low": close * 0.99, "close": close,
         "volume": np.full(n, 1_000.0)},
        index=index,
    )


class Meddler(BaseStrategy):
    """Writes into the bars it is given and counts its calls by length."""

    numpy_bars = True

    def __init__(self, config: StrategyConfig, answer: str = "dict") -> None:
        super().__init__(config)
        self.lengths: list[int] = []
        self.answer = answer

    def indicators(self, bars: pd.DataFrame) -> Any:
        self.lengths.append(len(bars))
        bars["added"] = 1.0
        bars.loc[bars.index[0], "close"] = -1.0
        mean = bars["open"].rolling(3).mean()
        if self.answer == "frame":
            return pd.DataFrame({"mean": mean})
        if self.answer == "list":
            return [mean]
        return {"mean": mean}

    def generate_signal(self, stock_code: str, data: Bars, timeframe: str) -> None:
        return None


def meddler(answer: str = "dict") -> Meddler:
    return Meddler(StrategyConfig(name="meddler", universe=("005930",)), answer)


def test_the_check_changes_nothing_in_the_bars() -> None:
    frame = bars()
    before = frame.copy()
    report = check_strategy(meddler(), {"005930": frame})
    assert report.causal
    assert report.verdicts
    pd.testing.assert_frame_equal(frame, before)


def test_require_causal_keeps_each_whole_history_answer() -> None:
    frame = bars()
    kept: dict[tuple[str, str], Any] = {}
    require_causal([meddler()], {"005930": frame}, kept)
    assert list(kept) == [("meddler", "005930")]
    mean = kept[("meddler", "005930")]["mean"]
    assert len(mean) == len(frame)
    np.testing.assert_array_equal(mean.to_numpy(), frame["open"].rolling(3).mean().to_numpy())


@pytest.mark.parametrize("answer", ["dict", "frame"])
def test_the_windows_reuse_the_checked_pass(answer: str) -> None:
    frame = bars()
    strategy = meddler(answer)
    bt = Backtest([strategy], {"005930": frame})
    bt.run()
    assert strategy.lengths.count(len(frame)) == 1  # the check's pass, not a second one
    allowed = meddler(answer)
    bt_allowed = Backtest(
        [allowed], {"005930": bars()}, BacktestSettings(allow_lookahead=True)
    )
    bt_allowed.run()
    assert allowed.lengths == [len(frame)]  # unchecked: the window asks the hook itself
    (_, _, reused), (_, _, asked) = bt._windows[0], bt_allowed._windows[0]
    reused.resize(len(frame))
    asked.resize(len(frame))
    np.testing.assert_array_equal(reused["mean"], asked["mean"])


def test_an_answer_that_is_no_table_is_still_a_failure_of_the_hook() -> None:
    strategy = meddler("list")
    bt = Backtest([strategy], {"005930": bars()})
    result = bt.run()
    stats: dict[str, Any] = result.settings["strategy_stats"]  # type: ignore[assignment]
    assert stats["meddler"]["errors"] == 1
    assert strategy.lengths.count(len(bars())) == 2  # the check's pass kept nothing
