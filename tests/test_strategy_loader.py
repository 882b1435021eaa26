"""StrategyLoader: discovery, validation messages, isolation of broken folders."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from framework.errors import ConfigError
from strategies.config import STRATEGIES_DIR, StrategyLoader
from strategies.sample.strategy import SampleParameters


def make_folder(root: Path, name: str, config: str, code: str | None = None) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(config, encoding="utf-8")
    if code is not None:
        (folder / "strategy.py").write_text(code, encoding="utf-8")
    return folder


GOOD_CODE = """
from strategies.base import BaseStrategy

class Good(BaseStrategy):
    def generate_signal(self, stock_code, data, timeframe):
        return None
"""
GOOD_CONFIG = 'universe: ["005930"]\n'


def test_repository_strategies_load() -> None:
    items = {i.name: i for i in StrategyLoader().discover()}
    assert items["sample"].ok
    assert items["sample"].enabled
    assert isinstance(items["sample"].config.parameters, SampleParameters)
    assert items["sma_cross"].ok
    assert not items["sma_cross"].enabled
    strategy = items["sample"].create()
    assert strategy.universe == ("005930", "000660", "035420", "035720")
    assert strategy.risk.max_daily_trades == 5


def test_typo_names_file_key_and_nearest(tmp_path: Path) -> None:
    make_folder(
        tmp_path, "typo", GOOD_CONFIG + "risk_management:\n  stop_los_pct: 0.03\n", GOOD_CODE
    )
    item = StrategyLoader(root=tmp_path).discover()[0]
    assert not item.ok
    assert str(tmp_path / "typo" / "config.yaml") in item.error
    assert "risk_management.stop_los_pct" in item.error
    assert "did you mean 'stop_loss_pct'" in item.error


def test_parameter_model_errors_name_the_key(tmp_path: Path) -> None:
    folder = make_folder(tmp_path, "params", GOOD_CONFIG, None)
    shutil.copy(STRATEGIES_DIR / "sample" / "strategy.py", folder / "strategy.py")
    (folder / "config.yaml").write_text(
        GOOD_CONFIG + "parameters:\n  rsi_period: many\n  ma_shrot_period: 3\n", encoding="utf-8"
    )
    item = StrategyLoader(root=tmp_path).discover()[0]
    assert "parameters.rsi_period" in item.error
    assert "integer" in item.error
    assert "did you mean 'ma_short_period'" in item.error


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ("universe: [000660]\n", "quote"),  # YAML 1.1 reads it as an octal number
        ("universe: []\n", "universe"),
        ("universe: ['5930']\n", "6-character"),
        (GOOD_CONFIG + "timeframe: weekly\n", "timeframe"),
        (GOOD_CONFIG + "risk_management:\n  max_position_size: 3\n", "max_position_size"),
        (GOOD_CONFIG + "enabled: [1\n", "invalid YAML (line"),
        ("- a\n- b\n", "expected a mapping"),
    ],
)
def test_bad_configs_are_explained(tmp_path: Path, config: str, expected: str) -> None:
    make_folder(tmp_path, "bad", config, GOOD_CODE)
    item = StrategyLoader(root=tmp_path).discover()[0]
    assert not item.ok
    assert expected in item.error
    assert "config.yaml" in item.error


def test_broken_folder_is_skipped_others_load(tmp_path: Path) -> None:
    make_folder(tmp_path, "a_broken", GOOD_CONFIG, "def oops(:\n")
    make_folder(tmp_path, "b_two", GOOD_CONFIG, GOOD_CODE + GOOD_CODE.replace("Good", "Other"))
    make_folder(tmp_path, "c_none", GOOD_CONFIG, "x = 1\n")
    make_folder(tmp_path, "d_good", GOOD_CONFIG, GOOD_CODE)
    items = {i.name: i for i in StrategyLoader(root=tmp_path).discover()}
    assert "SyntaxError" in items["a_broken"].error
    assert "exactly one" in items["b_two"].error
    assert "Good, Other" in items["b_two"].error
    assert "found none" in items["c_none"].error
    assert items["d_good"].ok
    assert [i.name for i in StrategyLoader(root=tmp_path).load_enabled()] == ["d_good"]


def test_unknown_strategy_suggests_nearest(tmp_path: Path) -> None:
    make_folder(tmp_path, "momentum", GOOD_CONFIG, GOOD_CODE)
    with pytest.raises(ConfigError, match="did you mean 'momentum'"):
        StrategyLoader(root=tmp_path).load_enabled(only="momentun")


def test_only_broken_strategy_raises_its_error(tmp_path: Path) -> None:
    make_folder(tmp_path, "bad", "universe: nope\n", GOOD_CODE)
    with pytest.raises(ConfigError, match="universe"):
        StrategyLoader(root=tmp_path).load_enabled(only="bad")
