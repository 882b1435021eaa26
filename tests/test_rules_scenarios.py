"""The three behaviour scenarios of the rule design, replayed on constructed price paths.

Each runs the seven rules of ``strategies/rule_example/config.yaml`` through the full
``Backtest`` (market orders decided on bar t fill at bar t+1's open); scenario 3's
"until the flag is cleared" part and the crash tick are also driven directly through the
``RuleEngine``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.backtest import Backtest
from framework.types import PositionView, SignalType
from strategies.config import StrategyConfig, StrategyLoader
from strategies.rules.strategy import RuleStrategy

CODE = "005930"
EXAMPLE = Path(__file__).resolve().parents[1] / "strategies" / "rule_example"

# 16 falling bars: RSI(14) is first defined on bar 14 (0 there: no gains) → entry signal on
# bar 14, filled at bar 15's open.
DOWN = [10_000 * 0.99**i for i in range(16)]


def frame(closes: list[float], start: str = "2024-01-02") -> pd.DataFrame:
    c = np.asarray(closes, dtype=float)
    idx = pd.date_range(start, periods=len(c), freq="B", tz="Asia/Seoul")
    return pd.DataFrame(
        {"open": c, "high": c * 1.001, "low": c * 0.999, "close": c, "volume": 1_000.0},
        index=idx,
    )


@pytest.fixture(scope="module")
def example_config() -> StrategyConfig:
    item = StrategyLoader().load_one(EXAMPLE)
    assert item.ok, item.error
    assert item.config is not None
    return item.config.model_copy(update={"universe": (CODE,), "enabled": True})


def run(config: StrategyConfig, closes: list[float]) -> tuple[RuleStrategy, pd.DataFrame]:
    strategy = RuleStrategy(config)
    result = Backtest([strategy], {CODE: frame(closes)}).run()
    return strategy, result.orders


def chosen(strategy: RuleStrategy) -> list[str | None]:
    return [d.chosen for d in strategy.decisions]


def test_scenario_1_entry_three_adds_then_planned_take_profit(example_config) -> None:
    up = [DOWN[-1] * 1.03**i for i in range(1, 15)]  # +3 %/bar: no spike, no trailing stop

    strategy, orders = run(example_config, DOWN + up)

    assert chosen(strategy) == [
        "rsi_entry", "pyramid_on_profit", "pyramid_on_profit", "pyramid_on_profit",
        "take_profit_after_adds",
    ]
    assert list(orders["side"]) == ["buy", "buy", "buy", "buy", "sell"]
    assert (orders["status"] == "filled").all()
    assert orders["qty"].iloc[-1] == orders["qty"].iloc[:4].sum()  # full exit
    assert strategy.get_position(CODE) is None
    # the cycle ended: the next one starts from zero adds
    st = strategy.context.stock(CODE)
    assert st.counts_total["pyramid_on_profit"] == 3
    assert st.state.value in ("CLOSED", "READY")


def test_scenario_2_crash_tick_exit_beats_averaging_down(example_config) -> None:
    drift = [DOWN[-1] * 0.99, DOWN[-1] * 0.98]  # −1 %, −2 %: not yet −5 %
    crash = [drift[-1] * 0.93]                  # −7 % in one bar: both rules fire
    closes = DOWN + drift + crash + [crash[0]] * 2

    strategy, orders = run(example_config, closes)

    crash_tick = strategy.decisions[-1]
    assert crash_tick.candidates == ["rapid_drop_exit", "average_down"]
    assert crash_tick.chosen == "rapid_drop_exit"
    assert crash_tick.dropped == ["average_down"]
    assert crash_tick.signal is not None
    assert crash_tick.signal.signal_type is SignalType.STRONG_SELL
    assert chosen(strategy) == ["rsi_entry", "rapid_drop_exit"]
    assert list(orders["side"]) == ["buy", "sell"]  # no averaging-down buy was sent
    assert list(orders["signal_type"]) == ["buy", "strong_sell"]
    assert strategy.get_position(CODE) is None


def test_scenario_3_spike_pauses_pyramiding_in_backtest(example_config) -> None:
    flat = [DOWN[-1]] * 3
    spike = [DOWN[-1] * 1.07]                       # +7 %: profit ≥ 5 % and a spike
    higher = [spike[0] * 1.02**i for i in range(1, 6)]  # still ≥ 5 % profit, no spike

    strategy, orders = run(example_config, DOWN + flat + spike + higher)

    spike_tick = strategy.decisions[-1]
    assert spike_tick.candidates == ["spike_pause", "pyramid_on_profit"]
    assert spike_tick.chosen == "spike_pause"
    assert chosen(strategy) == ["rsi_entry", "spike_pause"]  # no add afterwards
    assert list(orders["side"]) == ["buy"]
    assert strategy.context.get_flag("pyramiding_paused", CODE) is True
    assert strategy.context.stock(CODE).count("pyramid_on_profit") == 0


class Book:
    """Drives the rule engine bar by bar; fills every order at the next bar's open."""

    def __init__(self, strategy: RuleStrategy, closes: list[float]):
        self.engine = strategy.engine
        self.frame = frame(closes)
        self.qty = 0
        self.cost = 0.0
        self.pending = None

    def position(self) -> PositionView | None:
        return PositionView(CODE, self.qty, self.cost / self.qty) if self.qty else None

    def step(self, i: int):
        bars = self.engine.window(self.frame, i + 1)
        if self.pending is not None:
            signal, self.pending = self.pending, None
            price = float(self.frame["open"].iloc[i])
            buy = signal.signal_type.is_buy
            if buy:
                self.qty += signal.qty
                self.cost += signal.qty * price
            else:
                self.cost -= self.cost * signal.qty / self.qty
                self.qty -= signal.qty
            self.engine.on_fill(CODE, signal.metadata["rule_id"], buy=buy, price=price,
                                qty_after=self.qty, now=bars.time.to_pydatetime(),
                                first_fill_of_order=True)
        decision = self.engine.tick(CODE, bars, self.position(), lambda: 10_000_000)
        self.pending = decision.signal
        return decision


def test_scenario_3_pyramiding_blocked_until_flag_cleared(example_config) -> None:
    flat = [DOWN[-1]] * 3
    spike = [DOWN[-1] * 1.07]
    higher = [spike[0] * 1.01**i for i in range(1, 8)]
    closes = DOWN + flat + spike + higher
    book = Book(RuleStrategy(example_config), closes)
    spike_i = len(DOWN) + len(flat)
    decisions = [book.step(i) for i in range(spike_i + 1)]
    assert decisions[-1].chosen == "spike_pause"
    ctx = book.engine.context

    blocked = [book.step(i) for i in range(spike_i + 1, spike_i + 4)]
    assert all(d.chosen is None and d.candidates == [] for d in blocked)
    assert book.qty > 0
    assert ctx.get_flag("pyramiding_paused", CODE) is True

    ctx.clear_flag("pyramiding_paused", CODE)  # e.g. an operator or another rule
    resumed = book.step(spike_i + 4)
    assert resumed.chosen == "pyramid_on_profit"
    assert resumed.signal is not None
    assert resumed.signal.signal_type is SignalType.BUY


def test_crash_tick_direct_engine_runs_only_the_exit(example_config) -> None:
    drift = [DOWN[-1] * 0.99, DOWN[-1] * 0.98]
    closes = DOWN + drift + [drift[-1] * 0.93]
    book = Book(RuleStrategy(example_config), closes)
    decisions = [book.step(i) for i in range(len(closes))]
    crash = decisions[-1]
    assert crash.candidates == ["rapid_drop_exit", "average_down"]
    assert crash.chosen == "rapid_drop_exit"
    assert crash.signal is not None
    assert crash.signal.qty == book.qty
    assert book.engine.context.stock(CODE).count("average_down") == 0
