"""The example rule strategy on real KRX data, alone and side by side with the sample."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.backtest import Backtest
from core.data_collector import load_universe
from strategies.config import StrategyLoader
from strategies.rules.strategy import RuleStrategy

ROOT = Path(__file__).resolve().parents[1] / "strategies"


@pytest.fixture(scope="module")
def loaded():
    items = {i.name: i for i in StrategyLoader().discover()}
    assert items["rule_example"].ok, items["rule_example"].error
    assert items["sample"].ok, items["sample"].error
    return items


def test_example_is_disabled_by_default_but_loadable_by_name(loaded) -> None:
    assert not loaded["rule_example"].enabled
    names = [i.name for i in StrategyLoader().load_enabled()]
    assert "rule_example" not in names
    assert [i.name for i in StrategyLoader().load_enabled("rule_example")] == ["rule_example"]


def test_example_describe_lists_seven_rules_by_priority(loaded) -> None:
    lines = loaded["rule_example"].create().describe()
    ids = [line.split()[1] for line in lines]
    assert ids == ["rapid_drop_exit", "spike_pause", "trailing_stop", "pyramid_on_profit",
                   "take_profit_after_adds", "average_down", "rsi_entry"]
    assert [int(line.split()[0]) for line in lines] == [0, 1, 5, 10, 10, 10, 20]


def test_rule_and_python_strategies_side_by_side_on_real_data(loaded, krx_recent) -> None:
    rule = loaded["rule_example"].create()
    sample = loaded["sample"].create()
    assert isinstance(rule, RuleStrategy)
    bars, missing = load_universe(krx_recent, set(rule.universe) | set(sample.universe))
    assert not missing

    result = Backtest([rule, sample], bars).run()

    stats = result.settings["strategy_stats"]
    assert stats["rule_example"]["errors"] == 0
    assert stats["sample"]["errors"] == 0
    orders = result.orders
    rule_orders = orders[orders["strategy"] == "rule_example"]
    sample_orders = orders[orders["strategy"] == "sample"]
    assert len(rule_orders) > 5
    assert len(sample_orders) > 0
    # every rule order names the rule that placed it; the sample's never do
    assert rule_orders["reasons"].str.startswith("rule ").all()
    assert not sample_orders["reasons"].str.startswith("rule ").any()
    fired = {d.chosen for d in rule.decisions}
    assert {"rsi_entry", "rapid_drop_exit", "trailing_stop"} <= fired
    # positions are per strategy: each one's view only shows its own fills
    for strategy in (rule, sample):
        fills = result.fills[result.fills["strategy"] == strategy.name]
        for code, view in strategy.positions.items():
            own = fills[fills["code"] == code]
            net = own.loc[own.side == "buy", "qty"].sum() - own.loc[own.side == "sell", "qty"].sum()
            assert view.qty == net
    # the context belongs to the rule strategy alone and tracks only its own trades
    assert not hasattr(sample, "context")
    total_rule_orders = sum(sum(st.counts_total.values()) for st in rule.context.stocks.values())
    assert total_rule_orders == len(rule_orders[rule_orders["status"] == "filled"]) + sum(
        1 for d in rule.decisions if d.signal is None)
