"""Guards around strategy code: a failing strategy stops the backtest (status 3), an
indicator that looks ahead is refused (status 4), ``lookahead-check`` gives the verdict, and
equity past the int64 books stops the run with one line."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from core.backtest import Backtest
from core.data_collector import find_csv, load_bars_csv
from core.fencing import StrategyDisabledError
from core.lookahead import LookaheadError, check_strategy, require_causal, sample_ends
from framework.types import Signal, SignalType
from strategies.base import BaseStrategy
from strategies.config import StrategyConfig, StrategyLoader
from tests.test_cli import run

REPO = Path(__file__).resolve().parent.parent

BROKEN = '''
from framework.types import Signal, SignalType
from strategies.base import BaseStrategy


class SmaX(BaseStrategy):
    numpy_bars = True

    def generate_signal(self, stock_code, data, timeframe):
        sma = data["close"].rolling(5).mean().iloc[-1]
        return Signal(SignalType.BUY, stock_code) if sma > 0 else None
'''

PEEK = '''
from framework.types import Signal, SignalType
from strategies.base import BaseStrategy


class Peek(BaseStrategy):
    def indicators(self, bars):
        return {"next_close": bars["close"].shift(-1), "sma5": bars["close"].rolling(5).mean()}

    def generate_signal(self, stock_code, data, timeframe):
        row = data.iloc[-1]
        held = stock_code in self.positions
        if not held and row["next_close"] > row["close"]:
            return Signal(SignalType.BUY, stock_code, confidence=100.0)
        if held and row["next_close"] < row["close"]:
            return Signal(SignalType.SELL, stock_code, confidence=100.0)
        return None
'''

ORACLE = '''
from framework.types import Signal, SignalType
from strategies.base import BaseStrategy


class Oracle(BaseStrategy):
    def indicators(self, bars):
        return {"up": (bars["open"].shift(-2) > bars["open"].shift(-1)).astype(float)}

    def generate_signal(self, stock_code, data, timeframe):
        up = data["up"].iloc[-1] > 0
        held = stock_code in self.positions
        if not held and up:
            return Signal(SignalType.BUY, stock_code, confidence=100.0)
        if held and not up:
            return Signal(SignalType.SELL, stock_code, confidence=100.0)
        return None
'''

ALL_IN = (
    "risk_management: {max_position_size: 1.0, stop_loss_pct: null, take_profit_pct: null, "
    "max_daily_trades: 5}\n"
)


def folder(root: Path, name: str, code: str, extra: str = "") -> Path:
    (root / name).mkdir(parents=True)
    (root / name / "strategy.py").write_text(code, encoding="utf-8")
    (root / name / "config.yaml").write_text(
        f'enabled: true\nuniverse: ["005930"]\n{extra}', encoding="utf-8"
    )
    return root


def main_py(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run(*args, cwd=cwd)


def backtest_args(root: Path, name: str, data: Path, out: Path) -> list[str]:
    return [
        "--strategies-dir", str(root), "backtest", "--strategy", name, "--data-dir", str(data),
        "--no-db", "--no-html", "--no-xlsx", "--no-progress", "--out", str(out),
    ]


def error_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("error:")]


def test_raising_strategy_ends_the_backtest_with_status_3(tmp_path: Path, krx_long: Path) -> None:
    root = folder(tmp_path / "s", "sma_x", BROKEN)
    proc = main_py(*backtest_args(root, "sma_x", krx_long, tmp_path / "out"), cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr
    (line,) = error_lines(proc.stderr)
    assert line.startswith(
        "error: strategy sma_x disabled after 3 errors in generate_signal: AttributeError: "
        "'numpy.ndarray' object has no attribute 'rolling' ("
    ), line
    assert line.endswith("sma_x/strategy.py:10)"), line
    assert proc.stderr.count("Traceback") == 1  # once, not per bar
    assert line == proc.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "out").exists()  # no report of a run that did not happen


def test_lookahead_indicator_is_refused_with_status_4(tmp_path: Path, krx_long: Path) -> None:
    root = folder(tmp_path / "s", "peek", PEEK)
    args = backtest_args(root, "peek", krx_long, tmp_path / "out")
    proc = main_py(*args, cwd=tmp_path)
    assert proc.returncode == 4, proc.stderr
    (line,) = error_lines(proc.stderr)
    assert "strategy peek looks ahead: indicator 'next_close' on 005930 at " in line
    assert "--allow-lookahead" in line
    assert "Traceback" not in proc.stderr

    proc = main_py(*args, "--allow-lookahead", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "trades.csv").is_file()


def test_lookahead_check_flags_shift_minus_one(tmp_path: Path, krx_long: Path) -> None:
    root = folder(tmp_path / "s", "peek", PEEK)
    proc = main_py(
        "--strategies-dir", str(root), "lookahead-check", "--strategy", "peek",
        "--data-dir", str(krx_long), cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stderr
    lines = {ln.split()[0]: ln for ln in proc.stdout.splitlines() if ln.startswith("  ")}
    assert "LOOKS AHEAD" in lines["next_close"]
    assert "causal" in lines["sma5"]
    assert "LOOKS AHEAD" not in lines["sma5"]
    assert proc.stdout.strip().endswith("verdict: LOOKS AHEAD")


@pytest.mark.parametrize("name", ["sma_cross", "sample", "rule_example"])
def test_lookahead_check_passes_every_shipped_strategy(
    tmp_path: Path, krx_long: Path, name: str
) -> None:
    proc = main_py("lookahead-check", "--strategy", name, "--data-dir", str(krx_long), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().endswith("verdict: causal")
    assert "causal" in proc.stdout.splitlines()[1]


def test_every_shipped_strategy_is_causal_in_the_library(krx_long: Path) -> None:
    items = [i for i in StrategyLoader().discover() if i.ok]
    assert {"sma_cross", "sample", "rule_example"} <= {i.name for i in items}
    bars = {}
    for item in items:
        for code in item.config.universe:
            path = find_csv(krx_long, code)
            if path is not None:
                bars[code] = load_bars_csv(path)
    reports = {r.strategy: r for r in require_causal([i.create() for i in items], bars)}
    assert all(r.causal for r in reports.values())
    for name in ("sma_cross", "sample", "rule_example"):  # they compute indicators()
        assert reports[name].verdicts, name


def test_check_names_the_first_differing_bar(krx_long: Path) -> None:
    class Centred(BaseStrategy):
        def indicators(self, bars: pd.DataFrame) -> dict[str, pd.Series]:
            return {"mid": bars["close"].rolling(5, center=True).mean()}

        def generate_signal(self, stock_code: str, data: Any, timeframe: str) -> None:
            return None

    frame = load_bars_csv(find_csv(krx_long, "005930"))  # type: ignore[arg-type]
    strategy = Centred(StrategyConfig(name="centred", universe=("005930",)))
    report = check_strategy(strategy, {"005930": frame})
    bad = report.first_violation()
    assert bad is not None
    assert bad.column == "mid"
    # a centred window of 5 changes the last 2 rows of the first prefix checked
    first_end = sample_ends(len(frame))[0]
    assert bad.first_bar == frame.index[first_end - 1]
    assert bad.prefix_end == frame.index[first_end]
    with pytest.raises(LookaheadError, match="indicator 'mid' on 005930"):
        Backtest([strategy], {"005930": frame}).run()


def test_equity_beyond_the_books_stops_with_one_line(tmp_path: Path, krx_long: Path) -> None:
    root = folder(tmp_path / "s", "oracle", ORACLE, ALL_IN)
    args = backtest_args(root, "oracle", krx_long, tmp_path / "out")
    proc = main_py(*args, "--allow-lookahead", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    (line,) = error_lines(proc.stderr)
    assert line.startswith("error: backtest stopped at ")
    assert "KRW the books hold" in line
    assert "Traceback" not in proc.stderr
    assert "OverflowError" not in proc.stderr


class Answers(BaseStrategy):
    """Answers ``answer`` from generate_signal; on_market_open/close always succeed."""

    answer: Any = None

    def generate_signal(self, stock_code: str, data: Any, timeframe: str) -> Any:
        return self.answer

    def on_market_open(self) -> None:
        pass

    def on_market_close(self) -> None:
        pass


def daily(krx_recent: Path) -> dict[str, pd.DataFrame]:
    return {"005930": load_bars_csv(find_csv(krx_recent, "005930"))}  # type: ignore[arg-type]


@pytest.mark.parametrize("answer", [{"signal": "BUY"}, "BUY", 1])
def test_a_non_signal_answer_is_a_failure(krx_recent: Path, answer: Any) -> None:
    strategy = Answers(StrategyConfig(name="answers", universe=("005930",)))
    strategy.answer = answer
    with pytest.raises(StrategyDisabledError) as info:
        Backtest([strategy], daily(krx_recent)).run()
    text = str(info.value)
    assert text.startswith("strategy answers disabled after 3 errors in generate_signal: TypeError")
    assert f"returned {type(answer).__name__}, expected Signal or None" in text


def test_none_and_hold_are_answers_not_failures(krx_recent: Path) -> None:
    for answer in (None, Signal(SignalType.HOLD, "005930")):
        strategy = Answers(StrategyConfig(name="answers", universe=("005930",)))
        strategy.answer = answer
        result = Backtest([strategy], daily(krx_recent)).run()
        assert result.settings["strategy_stats"]["answers"]["errors"] == 0


def test_other_hooks_succeeding_do_not_reset_the_count(krx_recent: Path) -> None:
    class EveryThird(Answers):
        """Fails on every bar, across days whose open and close hooks succeed."""

        def generate_signal(self, stock_code: str, data: Any, timeframe: str) -> Any:
            raise ValueError(f"bar {data.index[-1]:%Y-%m-%d}")

    strategy = EveryThird(
        StrategyConfig(name="every", universe=("005930",), max_consecutive_errors=4)
    )
    bars = daily(krx_recent)
    with pytest.raises(StrategyDisabledError) as info:
        Backtest([strategy], bars).run()
    assert info.value.errors == 4
    assert str(info.value).startswith("strategy every disabled after 4 errors in generate_signal")
    assert f"bar {bars['005930'].index[3]:%Y-%m-%d}" in str(info.value)  # the 4th day's bar
