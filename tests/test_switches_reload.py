"""Strategy switches (at once, across a restart, until config.yaml's ``enabled`` changes) and
the run-time reload (a valid change applies, an invalid one is refused and the old
configuration keeps trading), on a live session against the fake KIS."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from core.control import ControlError
from tests.operate import live_session


def _edit(path: Path, **changes: object) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data.update(changes)
    path.write_text(yaml.safe_dump(data), encoding="utf-8")


def _events(live, kind: str) -> list[str]:
    rows = live.session.repository.get_events(live.session.run_id, kind=kind)
    return [r["message"] for r in rows]


def test_a_switched_off_strategy_sends_no_order_and_stays_off_after_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with live_session(tmp_path, monkeypatch) as live:
        assert live.controls.switch("day_trader", False, by="test") == "day_trader switched off"
        live.run_day()
        assert live.orders_of("day_trader") == []
        assert _events(live, "strategy_disabled") == ["day_trader switched off (test)"]
        fake = live.fake
    with live_session(tmp_path, monkeypatch, fake=fake) as again:
        slot = again.session.trader.slots["day_trader"]
        assert slot.enabled is False
        row = next(r for r in again.controls.strategies() if r["name"] == "day_trader")
        assert (row["enabled"], row["file_enabled"], row["switch"]) == (False, True, "off")


def test_the_switch_holds_until_enabled_changes_in_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with live_session(tmp_path, monkeypatch, start=False) as live:
        _edit(live.config(), enabled=False)
    # enabled: false in the file and no switch: nothing may trade, start-up refuses
    from framework.errors import ConfigError

    with pytest.raises(ConfigError, match="no enabled strategy"), live_session(
        tmp_path, monkeypatch
    ):
        pass
    _edit(tmp_path / "strategies" / "day_trader" / "config.yaml", enabled=True)
    with live_session(tmp_path, monkeypatch) as live:
        live.controls.switch("day_trader", False, by="test")
        _edit(live.config(), enabled=False)  # the file now agrees: the switch is dropped
        result = live.controls.reload(by="test")
        assert result.ok, result.message
        assert live.session.switches.get("day_trader") is None
        assert live.session.trader.slots["day_trader"].enabled is False
        assert _events(live, "strategy_switch_dropped")
        live.controls.switch("day_trader", True, by="test")  # on, over the file's false
        fake = live.fake
    with live_session(tmp_path, monkeypatch, fake=fake) as again:
        assert again.session.trader.slots["day_trader"].enabled is True
        _edit(again.config(), enabled=True)  # the file changes: the file wins, still on
        assert again.controls.reload(by="test").ok
        assert again.session.switches.get("day_trader") is None
        assert again.session.trader.slots["day_trader"].enabled is True


def test_unknown_strategy_and_nothing_held_are_one_line_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with live_session(tmp_path, monkeypatch) as live:
        with pytest.raises(ControlError, match="unknown strategy 'nope'; running: day_trader"):
            live.controls.switch("nope", False, by="test")
        with pytest.raises(ControlError, match="005930 is not held"):
            live.controls.sell("005930", None, by="test")


def test_a_valid_reload_applies_new_parameters_and_keeps_open_positions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with live_session(tmp_path, monkeypatch) as live:
        live.run_day()
        before = {(p.strategy, p.stock_code): p.qty for p in live.session.trader.open_positions()}
        assert before, "the scripted day leaves positions open"
        old = live.session.trader.slots["day_trader"].strategy
        _edit(live.config(), parameters={"005930": [20, -3.0], "000660": [7, None]},
              universe=["005930", "000660"])
        settings = yaml.safe_load(live.settings_path.read_text(encoding="utf-8"))
        settings["risk"]["cooldown_s"] = 900
        live.settings_path.write_text(yaml.safe_dump(settings), encoding="utf-8")

        result = live.controls.reload(by="test")

        assert result.ok, result.message
        assert "day_trader config changed" in result.changes
        assert "risk limits" in result.changes
        new = live.session.trader.slots["day_trader"].strategy
        assert new is not old
        assert new.params["005930"] == [20, -3.0]
        assert list(new.universe) == ["005930", "000660"]
        assert live.session.risk.limits.cooldown_s == 900
        after = {(p.strategy, p.stock_code): p.qty for p in live.session.trader.open_positions()}
        assert after == before
        assert new.get_position("005930") is not None or ("day_trader", "005930") not in before
        assert _events(live, "config_reloaded")


@pytest.mark.parametrize(
    ("target", "text", "why"),
    [
        ("config", "risk_management:\n  stop_los_pct: 0.1\n", "did you mean 'stop_loss_pct'"),
        ("config", "universe: [005930\n", "config.yaml"),
        ("settings", "risk:\n  cooldown_s: -5\n", "cooldown_s"),
    ],
)
def test_a_broken_reload_keeps_trading_on_the_old_config_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str, text: str, why: str
) -> None:
    with live_session(tmp_path, monkeypatch) as live:
        old = live.session.trader.slots["day_trader"].strategy
        old_limits = live.session.risk.limits
        path = live.config() if target == "config" else live.settings_path
        path.write_text(text, encoding="utf-8")

        result = live.controls.reload(by="test")

        assert not result.ok
        assert why in result.message
        assert result.message.startswith("reload refused, the old configuration stays")
        assert live.session.trader.slots["day_trader"].strategy is old
        assert live.session.risk.limits is old_limits
        assert any(why in m for m in _events(live, "reload_refused"))
        live.run_day()  # trading goes on with the old configuration
        assert len(live.orders_of("day_trader")) >= 3
