"""ExecutionContext: state machine, flags, day roll, isolation and JSON persistence."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.backtest import Backtest
from strategies.config import StrategyConfig
from strategies.rules.context import ExecutionContext, PositionState
from strategies.rules.strategy import RuleStrategy
from utils.clock import KST

T0 = datetime(2024, 3, 4, 9, 0, tzinfo=KST)
RULES = [
    {"id": "enter", "priority": 5, "activation": "READY", "trigger": {"type": "always"},
     "action": {"type": "buy", "params": {"amount_krw": 100_000}}},
    {"id": "out", "priority": 5, "activation": "ACTIVE",
     "trigger": {"type": "profit_loss", "params": {"op": "above", "pct": -100}},
     "action": {"type": "exit"}},
]


def rules_config(name: str = "r", **params) -> StrategyConfig:
    return StrategyConfig(name=name, type="rules", universe=("005930",), rules=RULES,
                          parameters=params)


def test_state_machine_ready_active_closed_ready() -> None:
    ctx = ExecutionContext()
    assert ctx.sync("005930", 0, 100.0, T0) is PositionState.READY
    ctx.on_fill("005930", buy=True, price=100.0, qty_after=10, now=T0, first_fill_of_order=True)
    st = ctx.stock("005930")
    assert st.state is PositionState.ACTIVE
    assert st.entries_today == 1
    ctx.record("005930", "add")
    ctx.set_flag("paused", True, "005930", reset_on="exit")
    ctx.on_fill("005930", buy=False, price=110.0, qty_after=0, now=T0, first_fill_of_order=True)
    assert st.state is PositionState.CLOSED
    assert st.last_exit_at == T0
    assert st.last_exit_price == 110.0
    assert ctx.sync("005930", 0, 110.0, T0 + timedelta(days=1)) is PositionState.READY
    assert st.cycle == 1
    assert st.count("add") == 0
    assert st.count("add", "total") == 1
    assert ctx.get_flag("paused", "005930") is False  # reset on exit


def test_roll_day_resets_day_counters_and_day_flags() -> None:
    ctx = ExecutionContext()
    ctx.roll_day(date(2024, 3, 4))
    ctx.record("005930", "a")
    ctx.stock("005930").orders_today = 3
    ctx.set_flag("halt", True, reset_on="day")
    ctx.set_flag("keep", True)
    assert ctx.roll_day(date(2024, 3, 4)) is False
    assert ctx.roll_day(date(2024, 3, 5)) is True
    st = ctx.stock("005930")
    assert st.count("a", "day") == 0
    assert st.count("a", "cycle") == 1
    assert st.orders_today == 0
    assert ctx.get_flag("halt") is False
    assert ctx.get_flag("keep") is True


def test_save_restore_round_trip(tmp_path: Path) -> None:
    ctx = ExecutionContext()
    ctx.roll_day(date(2024, 3, 4))
    ctx.on_fill("005930", buy=True, price=100.0, qty_after=10, now=T0, first_fill_of_order=True)
    ctx.record("005930", "pyramid")
    ctx.set_flag("paused", True, "005930", reset_on="exit")
    ctx.set_flag("mode", "calm")
    ctx.stock("005930").peak_price = 123.5
    path = tmp_path / "state" / "r.json"

    ctx.save(path)
    back = ExecutionContext.load(path)

    assert back == ctx
    assert back.stock("005930").last_entry_at == T0
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]  # no temporary left
    assert json.loads(path.read_text(encoding="utf-8"))["version"] == 1


def test_load_missing_is_empty_and_garbage_is_refused(tmp_path: Path) -> None:
    assert ExecutionContext.load(tmp_path / "none.json") == ExecutionContext()
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid JSON"):
        ExecutionContext.load(bad)
    bad.write_text('{"version": 99}', encoding="utf-8")
    with pytest.raises(ValueError, match="unsupported context version"):
        ExecutionContext.load(bad)


def test_strategy_restart_keeps_context(tmp_path: Path) -> None:
    first = RuleStrategy(rules_config(persist_context=True, state_dir=str(tmp_path)))
    assert first.state_path == tmp_path / "r.json"
    first.context.set_flag("paused", True, "005930")
    first.context.record("005930", "enter")
    first.save_context()

    second = RuleStrategy(rules_config(persist_context=True, state_dir=str(tmp_path)))
    second.restore_context()

    assert second.context.get_flag("paused", "005930") is True
    assert second.context.stock("005930").count("enter", "total") == 1


def test_enable_persistence_explicit_path(tmp_path: Path) -> None:
    strategy = RuleStrategy(rules_config())
    assert strategy.state_path is None
    strategy.save_context()  # no-op
    path = strategy.enable_persistence(tmp_path / "x.json")
    strategy.context.set_flag("f", 1)
    strategy.save_context()
    assert ExecutionContext.load(path).get_flag("f") == 1


def bars(n: int = 30) -> pd.DataFrame:
    c = np.full(n, 10_000.0)
    idx = pd.date_range("2024-01-02", periods=n, freq="B", tz="Asia/Seoul")
    return pd.DataFrame({"open": c, "high": c, "low": c, "close": c, "volume": 1e3}, index=idx)


def test_backtest_writes_no_state_by_default(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    strategy = RuleStrategy(rules_config())
    Backtest([strategy], {"005930": bars()}).run()
    assert strategy.context.stock("005930").count("enter", "total") > 0
    assert list(tmp_path.iterdir()) == []


def test_backtest_with_persistence_writes_state(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    strategy = RuleStrategy(rules_config(persist_context=True))
    Backtest([strategy], {"005930": bars()}).run()
    saved = ExecutionContext.load(tmp_path / "state" / "r.json")
    assert saved == strategy.context


def test_two_rule_strategies_have_isolated_contexts() -> None:
    pause = [{"id": "pause", "trigger": {"type": "always"},
              "action": {"type": "set_flag", "params": {"flag": "paused",
                                                          "scope": "strategy"}}}]
    a = RuleStrategy(StrategyConfig(name="a", type="rules", universe=("005930",), rules=pause))
    b = RuleStrategy(rules_config("b"))
    Backtest([a, b], {"005930": bars()}).run()
    assert a.context.get_flag("paused") is True
    assert b.context.get_flag("paused") is False
    assert a.context is not b.context
    assert "pause" not in b.context.stock("005930").counts_total
