"""python main.py optimize as a user runs it: a synthetic wave whose best levels are known,
reproducibility, worker processes sharing one study, walk-forward on real data, bad input."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.backtest import BacktestSettings
from core.optimize import OptimizeJob, counted_trials, optimize, walk_forward_windows

REPO = Path(__file__).resolve().parent.parent

STRATEGY = '''
from pydantic import BaseModel, ConfigDict
from framework.types import Signal, SignalType
from strategies.base import BaseStrategy


class LevelParameters(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    buy_level: int = 15000
    sell_level: int = 15000


class LevelStrategy(BaseStrategy):
    """Buy when the close is at or under buy_level, sell at or over sell_level."""

    Parameters = LevelParameters
    numpy_bars = True  # reads data.last(...) from the numpy window

    def generate_signal(self, stock_code, data, timeframe):
        close = data.last("close")
        held = self.get_position(stock_code) is not None
        if not held and close <= self.params.buy_level:
            return Signal(SignalType.BUY, stock_code, confidence=100.0, reasons=("low",))
        if held and close >= self.params.sell_level:
            return Signal(SignalType.SELL, stock_code, confidence=100.0, reasons=("high",))
        return None
'''

CONFIG = """
enabled: true
universe: ["900001"]
parameters: {buy_level: 15000, sell_level: 15000}
risk_management:
  stop_loss_pct: null
  take_profit_pct: null
  max_position_size: 1.0
  max_daily_trades: 10
optimize:
  metric: total_return
"""

SPACE = """  parameters:
    buy_level: {type: int, low: 10000, high: 20000, step: 2500}
    sell_level: {type: int, low: 10000, high: 20000, step: 2500}
"""


def _wave() -> pd.DataFrame:
    """A triangular wave of daily closes between 10,000 and 20,000 KRW (250 KRW a day):
    buying at 10,000 and selling at 20,000 is the single best pair of levels."""
    leg = np.arange(10_000, 20_001, 250)
    one = np.concatenate([leg, leg[::-1][1:-1]])
    close = np.tile(one, 14)[:1000].astype(float)
    days = pd.bdate_range("2010-01-04", periods=len(close))
    return pd.DataFrame(
        {"date": days.strftime("%Y-%m-%d"), "open": close, "high": close, "low": close,
         "close": close, "volume": 1000},
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "strategies" / "levels"
    folder.mkdir(parents=True)
    (folder / "strategy.py").write_text(STRATEGY, encoding="utf-8")
    (folder / "config.yaml").write_text(CONFIG + SPACE, encoding="utf-8")
    data = tmp_path / "data"
    data.mkdir()
    _wave().to_csv(data / "900001.csv", index=False)
    return tmp_path


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KIS_APP", "DATABASE_URL"))}
    return subprocess.run(
        [sys.executable, str(REPO / "main.py"), *args], cwd=cwd, env=env,
        capture_output=True, text=True, timeout=600, check=False,
    )


def _opt(project: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run(
        "--strategies-dir", str(project / "strategies"), "optimize", "--strategy", "levels",
        "--data-dir", str(project / "data"), "--no-progress", *extra, cwd=project,
    )


def test_finds_the_best_pair_and_writes_outputs(project: Path) -> None:
    out = project / "out"

    proc = _opt(project, "--trials", "40", "--seed", "3", "--out", str(out))

    assert proc.returncode == 0, proc.stderr
    best = json.loads((out / "best.json").read_text(encoding="utf-8"))
    assert best["parameters"] == {"buy_level": 10000, "sell_level": 20000}
    assert best["trials"] == 40
    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == 40
    assert sorted(trials["number"]) == list(range(40))
    fragment = (out / "best_config.yaml").read_text(encoding="utf-8")
    assert "buy_level: 10000" in fragment
    assert "sell_level: 20000" in fragment
    assert "stop_loss_pct: null" in fragment
    page = (out / "optimization.html").read_text(encoding="utf-8")
    assert "Optimization History" in page
    assert "Slice" in page
    assert "best trial" in proc.stdout


def _job(project: Path, name: str, seed: int | None, storage: str, n: int = 15) -> OptimizeJob:
    return OptimizeJob(
        strategy="levels", strategies_dir=project / "strategies", data_dir=project / "data",
        settings=BacktestSettings(), metrics=("total_return",), n_trials=n, seed=seed,
        storage=storage, study_name=name,
    )


def test_same_seed_same_study(project: Path) -> None:
    storage = f"sqlite:///{project / 'seed.db'}"

    first = optimize(_job(project, "a", 11, storage), progress=False)
    second = optimize(_job(project, "b", 11, storage), progress=False)
    other = optimize(_job(project, "c", 12, storage), progress=False)

    def params(study: object) -> list[dict[str, object]]:
        return [t.params for t in counted_trials(study)]

    assert params(first) == params(second)
    assert first.best_trial.number == second.best_trial.number
    assert params(first) != params(other)


def test_two_processes_share_a_sqlite_study(project: Path) -> None:
    out = project / "jobs"

    proc = _opt(project, "--trials", "12", "--jobs", "2", "--seed", "1", "--out", str(out))

    assert proc.returncode == 0, proc.stderr
    assert "not reproducible" in proc.stderr
    trials = pd.read_csv(out / "trials.csv")
    assert sorted(trials["number"]) == list(range(12))
    assert trials["state"].isin(["COMPLETE", "PRUNED", "FAIL"]).all()


@pytest.fixture
def pg_storage() -> object:
    url = os.environ.get("KIS_TRADER_TEST_PG_URL")
    if not url:
        if os.environ.get("KIS_TRADER_REQUIRE_PG"):
            pytest.fail("KIS_TRADER_REQUIRE_PG is set but KIS_TRADER_TEST_PG_URL is not")
        pytest.skip("no PostgreSQL (set KIS_TRADER_TEST_PG_URL)")
    import sqlalchemy as sa

    name = f"optuna_{uuid.uuid4().hex[:10]}"  # Optuna's tables apart from the project's
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield url.rsplit("/", 1)[0] + "/" + name
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


def test_two_workers_on_one_postgresql_study(project: Path, pg_storage: str) -> None:
    n = 16
    cmd = [
        sys.executable, str(REPO / "main.py"), "--strategies-dir", str(project / "strategies"),
        "optimize", "--strategy", "levels", "--data-dir", str(project / "data"),
        "--no-progress", "--trials", str(n), "--storage", pg_storage, "--study", "shared",
    ]
    import optuna

    storage = optuna.storages.RDBStorage(pg_storage)
    optuna.create_study(study_name="shared", storage=storage, direction="maximize")

    procs = [
        subprocess.Popen([*cmd, "--out", str(project / f"w{i}")], cwd=project, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for i in range(2)
    ]
    results = [p.communicate(timeout=600) for p in procs]

    assert all(p.returncode == 0 for p in procs), results
    study = optuna.load_study(study_name="shared", storage=storage)
    trials = counted_trials(study)
    storage.engine.dispose()
    assert sorted(t.number for t in trials) == list(range(n))
    assert all(t.state.is_finished() for t in trials)
    assert all(len(t.user_attrs["worker"].split("-")) == 2 for t in trials)
    workers = {t.user_attrs["worker"] for t in trials}
    assert len(workers) <= 2


def _data_2000() -> Path:
    env = os.environ.get("KIS_TRADER_DATA_DIR")
    base = Path(env) if env else REPO.parents[1] / "shared" / "data"
    path = base / "krx" / "daily_2000_2024"
    if not path.is_dir():
        pytest.skip(f"real data not found: {path}")
    return path


def test_walk_forward_on_real_files(tmp_path: Path) -> None:
    folder = tmp_path / "strategies" / "sma_cross"
    folder.mkdir(parents=True)
    (folder / "strategy.py").write_text(
        (REPO / "strategies" / "sma_cross" / "strategy.py").read_text(encoding="utf-8"),
        encoding="utf-8",
    )
    config = (REPO / "strategies" / "sma_cross" / "config.yaml").read_text(encoding="utf-8")
    (folder / "config.yaml").write_text(config + textwrap.dedent("""
        optimize:
          parameters:
            fast: {type: int, low: 5, high: 20, step: 5}
            slow: {type: int, low: 30, high: 120, step: 30}
    """), encoding="utf-8")

    proc = run(
        "--strategies-dir", str(tmp_path / "strategies"), "optimize", "--strategy", "sma_cross",
        "--data-dir", str(_data_2000()), "--trials", "4", "--seed", "1", "--walk-forward", "4",
        "--metric", "total_return", "--no-progress", "--out", str(tmp_path / "wf"), cwd=tmp_path,
    )

    assert proc.returncode == 0, proc.stderr
    frame = pd.read_csv(tmp_path / "wf" / "walk_forward.csv")
    assert list(frame["window"]) == [0, 1, 2, 3]
    assert frame["test"].iloc[0].split("..")[0] > frame["train"].iloc[0].split("..")[1]
    for col in ("is_total_return", "oos_total_return", "is_max_drawdown", "oos_max_drawdown"):
        assert col in proc.stdout
        assert frame[col].notna().all()
    assert frame["test"].iloc[-1].endswith("2024-12-16")


def test_walk_forward_windows_are_consecutive() -> None:
    from datetime import date

    windows = walk_forward_windows(date(2000, 1, 1), date(2024, 12, 31), 4)

    assert len(windows) == 4
    for a, b in itertools.pairwise(windows):
        assert b.train_start == a.test_start
        assert b.train_end == a.test_end
    assert windows[-1].test_end == date(2024, 12, 31)


@pytest.mark.parametrize(
    ("space", "expected"),
    [
        ("  parameters:\n    buy_level: {type: int, low: 20000, high: 10000}\n",
         "optimize.parameters.buy_level: empty range"),
        ("  parameters:\n    buy_level: {type: int, low: ten, high: 10000}\n",
         "optimize.parameters.buy_level.low: "),
        ("  parameters:\n    buy_level: {type: int, low: 1, high: 10, stepp: 2}\n",
         "optimize.parameters.buy_level.stepp: unknown key; did you mean 'step'?"),
        ("  parameters:\n    buy_levle: {type: int, low: 1, high: 10}\n",
         "did you mean 'buy_level'?"),
        ("  risk_management:\n    stop_los_pct: {type: float, low: 0.01, high: 0.1}\n",
         "did you mean 'stop_loss_pct'?"),
        ("  parameters:\n    buy_level: {type: range, low: 1, high: 10}\n",
         "optimize.parameters.buy_level"),
    ],
)
def test_bad_search_space_is_one_line(project: Path, space: str, expected: str) -> None:
    (project / "strategies" / "levels" / "config.yaml").write_text(CONFIG + space)

    proc = _opt(project, "--trials", "3", "--out", str(project / "bad"))

    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if " ERROR " not in line]  # loader log
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    assert expected in lines[0]


def test_metric_undefined_without_trades_is_one_line(project: Path) -> None:
    (project / "strategies" / "levels" / "config.yaml").write_text(
        CONFIG + "  parameters:\n    buy_level: {type: int, low: 1, high: 5}\n"
    )

    proc = _opt(project, "--trials", "3", "--metric", "profit_factor", "--out", str(project / "o"))

    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "no trial" in lines[0]
    assert "profit_factor is undefined" in lines[0]
    assert "0 trades" in lines[0]


def test_unknown_metric_did_you_mean(project: Path) -> None:
    proc = _opt(project, "--trials", "3", "--metric", "sharp", "--out", str(project / "o"))

    assert proc.returncode == 2
    assert "did you mean 'sharpe'?" in proc.stderr


def test_multi_objective_gives_a_pareto_front(project: Path) -> None:
    out = project / "multi"

    proc = _opt(project, "--trials", "12", "--seed", "2", "--metric", "total_return,max_drawdown",
                "--out", str(out))

    assert proc.returncode == 0, proc.stderr
    best = json.loads((out / "best.json").read_text(encoding="utf-8"))
    assert best["metrics"] == ["total_return", "max_drawdown"]
    front = best["pareto_front"]
    assert front
    returns = [t["values"][0] for t in front]
    assert returns == sorted(returns, reverse=True)  # best first objective first
    assert "Pareto" in (out / "optimization.html").read_text(encoding="utf-8")
