"""A malformed rule is rejected at load, naming the file, the rule and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from framework.errors import ConfigError
from strategies.config import StrategyConfig, StrategyLoader
from strategies.rules.engine import RuleConfigError, RuleEngine, compile_rules
from strategies.rules.registry import catalogue
from strategies.rules.strategy import RuleStrategy

HEAD = 'type: rules\nuniverse: ["005930"]\nrules:\n'
GOOD_RULE = """\
  - id: rsi_entry
    priority: 20
    activation: READY
    trigger: {type: rsi, params: {period: 14, op: below, value: 30}}
    action: {type: buy, params: {cash_pct: 10}}
"""


def load(tmp_path: Path, rules_yaml: str, extra: str = ""):
    folder = tmp_path / "bad_rules"
    folder.mkdir()
    (folder / "config.yaml").write_text(HEAD + rules_yaml + extra, encoding="utf-8")
    return StrategyLoader(root=tmp_path).discover()[0], folder / "config.yaml"


def test_good_rule_loads_without_strategy_py(tmp_path: Path) -> None:
    item, _ = load(tmp_path, GOOD_RULE)
    assert item.ok, item.error
    assert item.cls is RuleStrategy
    strategy = item.create()
    assert strategy.describe() == [
        " 20  rsi_entry  [READY]  when rsi(period=14, op=below, value=30.0)  if -  "
        "then buy(cash_pct=10.0)"
    ]


@pytest.mark.parametrize(
    ("rule", "key", "words"),
    [
        (GOOD_RULE.replace("type: rsi,", "type: rsl,"),
         "rules[0] (id 'rsi_entry').trigger.type", "unknown trigger 'rsl'; did you mean 'rsi'?"),
        (GOOD_RULE.replace("period: 14", "period: 0"),
         "rules[0] (id 'rsi_entry').trigger.params.period", "greater than or equal to 2"),
        (GOOD_RULE.replace("period: 14", "perod: 14"),
         "rules[0] (id 'rsi_entry').trigger.params.perod", "did you mean 'period'?"),
        (GOOD_RULE.replace("    trigger: {type: rsi, params: {period: 14, op: below, value: 30}}",
                           "    triggers:\n      - {type: rsi}\n      - {type: always}"),
         "rules[0] (id 'rsi_entry').triggers", "a rule has exactly one trigger"),
        (GOOD_RULE.replace("    trigger: {type: rsi, params: {period: 14, op: below, value: 30}}",
                           "    trigger:\n      - {type: rsi}\n      - {type: always}"),
         "rules[0] (id 'rsi_entry').trigger", "got a list of 2; a rule has exactly one trigger"),
        (GOOD_RULE.replace("{type: buy, params: {cash_pct: 10}}", "{type: buy, params: {}}"),
         "rules[0] (id 'rsi_entry').action.params", "exactly one of cash_pct, amount_krw"),
        (GOOD_RULE.replace("{type: buy, params: {cash_pct: 10}}", "{type: exit}"),
         "rules[0] (id 'rsi_entry').action.type", "needs a position"),
        (GOOD_RULE.replace("{type: rsi, params:", "{type: rsi, period: 3, params:"),
         "rules[0] (id 'rsi_entry').trigger.period", "put parameters under 'params'"),
        (GOOD_RULE + GOOD_RULE, "rules[1] (id 'rsi_entry').id", "duplicate id"),
        (GOOD_RULE.replace("activation: READY", "activation: HOLDING"),
         "rules[0] (id 'rsi_entry').activation", "'READY', 'ACTIVE' or 'ANY'"),
        (GOOD_RULE.replace("    action: {type: buy, params: {cash_pct: 10}}\n", ""),
         "rules[0] (id 'rsi_entry').action", "required key is missing"),
        (GOOD_RULE.replace("    activation: READY\n", "    activation: READY\n    conditions:\n"
                           "      - {type: execution_count, params: {rule: nope}}\n"),
         "rules[0] (id 'rsi_entry').conditions[0].params.rule", "no rule with id 'nope'"),
        (GOOD_RULE.replace("    activation: READY\n", "    activation: READY\n    conditions:\n"
                           "      - {type: cooldown, params: {}}\n"),
         "rules[0] (id 'rsi_entry').conditions[0].params", "give bars and/or seconds"),
    ],
)
def test_malformed_rule_is_rejected_with_rule_and_key(
    tmp_path: Path, rule: str, key: str, words: str
) -> None:
    item, path = load(tmp_path, rule)
    assert not item.ok
    assert item.error is not None
    assert item.error.startswith(f"{path}: {key}: "), item.error
    assert words in item.error


def test_missing_rules_list_is_rejected(tmp_path: Path) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "config.yaml").write_text('type: rules\nuniverse: ["005930"]\n', encoding="utf-8")
    item = StrategyLoader(root=tmp_path).discover()[0]
    assert item.error is not None
    assert "rules: a rules strategy needs a non-empty" in item.error


def test_unknown_rules_parameters_named(tmp_path: Path) -> None:
    item, path = load(tmp_path, GOOD_RULE, "parameters:\n  persist_contxt: true\n")
    assert item.error is not None
    assert f"{path}: parameters.persist_contxt: unknown key; did you mean 'persist_context'?" \
        in item.error


def test_constructing_directly_also_validates() -> None:
    config = StrategyConfig(name="x", type="rules", universe=("005930",),
                            rules=[{"id": "a", "trigger": {"type": "nope"},
                                    "action": {"type": "exit"}}])
    with pytest.raises(ConfigError, match=r"rules\[0\] \(id 'a'\)\.trigger\.type"):
        RuleStrategy(config)


def test_catalogue_lists_the_components() -> None:
    assert {"rsi", "ma_cross", "price_vs_ma", "macd", "bollinger", "volume_surge",
            "profit_loss", "rapid_drop", "rapid_spike", "time_of_day",
            "trailing_stop"} <= set(catalogue("trigger"))
    assert {"execution_count", "context_flag", "position_state", "cooldown",
            "max_trades_today", "stronger_reentry"} <= set(catalogue("condition"))
    assert {"buy", "add_position", "sell", "exit", "set_flag",
            "arm_trailing_stop"} <= set(catalogue("action"))


def test_rule_not_a_mapping() -> None:
    with pytest.raises(RuleConfigError, match=r"^rules\[0\]: expected a mapping"):
        compile_rules(["rsi"])


def test_describe_is_in_priority_order_then_file_order() -> None:
    rules = compile_rules([
        {"id": "late", "priority": 5, "trigger": {"type": "always"},
         "action": {"type": "exit"}},
        {"id": "first", "priority": 0, "trigger": {"type": "always"},
         "action": {"type": "exit"}},
        {"id": "tie", "priority": 5, "trigger": {"type": "always"},
         "action": {"type": "set_flag", "params": {"flag": "f"}}},
    ])
    lines = RuleEngine(rules).describe()
    assert [line.split()[1] for line in lines] == ["first", "late", "tie"]
    assert lines[0].startswith("  0  first  [ANY]  when always()  if -  then exit()")
