"""Every kind of bad input ends in one line naming the file, the line or key and what was
expected: never a traceback, never printed twice, exit status 2."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import main
from strategies.config import STRATEGIES_DIR

SAMPLE = (STRATEGIES_DIR / "sample" / "config.yaml").read_text(encoding="utf-8")
GOOD_CSV = "date,open,high,low,close,volume\n2024-01-02,100,110,90,105,1000\n"

SETTINGS_CASES = [
    # (settings.yaml bytes, what the line must say)
    (b"mode: backtest\nmode: auto\n", ["line 2", "key 'mode' given twice (first on line 1)"]),
    (b"backtest:\n  cash_krw: 5\n  cash_krw: 6\n", ["line 3", "'cash_krw' given twice"]),
    (b"mode: auto\n# \xc7\xd1\xb1\xdb\n", ["line 2", "not UTF-8 text", "save the file as UTF-8"]),
    (
        b"backtest:\n  cash_krw: true\n",
        ["backtest.cash_krw", "expected a number, got the boolean true"],
    ),
    (b"risk:\n  max_order_qty: false\n", ["risk.max_order_qty", "boolean false"]),
    (b"backtest:\n  cash_krw: 1e32\n", ["backtest.cash_krw", "out of any sensible range"]),
    (b"backtest:\n  cash_krw: 1.0e+32\n", ["backtest.cash_krw", "out of any sensible range"]),
    (b"backtest:\n  cash_krw: 100000000000000\n", ["backtest.cash_krw", "less than or equal"]),
    (b"live:\n  schedule:\n    quote_interval_s: .inf\n", ["quote_interval_s", "finite number"]),
    (b"backtest: [1, 2\n", ["invalid YAML", "line"]),
]

CONFIG_CASES = [
    # (strategy config.yaml text, what the line must say)
    (SAMPLE + "allocation: 0.5\n", ["config.yaml", "key 'allocation' given twice"]),
    (SAMPLE.replace("allocation: 1.0", "allocation: true"), ["allocation", "boolean true"]),
    (
        SAMPLE.replace("rsi_period: 14", "rsi_period: yes"),
        ["parameters.rsi_period", "boolean true"],
    ),
    (
        SAMPLE.replace("ma_short_period: 5", "ma_short_period: 1.0e+40"),
        ["parameters.ma_short_period", "out of any sensible range"],
    ),
]

CSV_CASES = [
    (
        "date,open,high,low,close,volume\n2024-01-02,100,110,90,105,1\n2024-01-03,100,90,110,100,1\n",
        ["005930.csv: line 3", "high 90 is below low 110"],
    ),
    (
        "date,open,high,low,close,volume\n2024-01-02,100,110,90,120,1\n",
        ["005930.csv: line 2", "close 120 is outside [low 90, high 110]"],
    ),
    (
        "date,open,high,low,close,volume\n2024-01-02,80,110,90,100,1\n",
        ["005930.csv: line 2", "open 80 is outside [low 90, high 110]"],
    ),
]


def one_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    lines = [ln for ln in captured.err.splitlines() if ln.strip()]
    assert "Traceback" not in captured.err + captured.out
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error: "), captured.err
    return lines[0]


@pytest.mark.parametrize(("content", "expected"), SETTINGS_CASES)
def test_bad_settings_file(tmp_path: Path, capsys, content: bytes, expected: list[str]) -> None:
    path = tmp_path / "settings.yaml"
    path.write_bytes(content)
    assert main.main(["--settings", str(path), "strategies"]) == 2
    line = one_line(capsys)
    assert str(path) in line
    for part in expected:
        assert part in line


def test_a_missing_settings_file_is_not_ignored(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "nope.yaml"
    assert main.main(["--settings", str(missing), "strategies"]) == 2
    assert one_line(capsys) == f"error: --settings {missing}: does not exist"


@pytest.mark.parametrize(("content", "expected"), CONFIG_CASES)
def test_bad_strategy_config(tmp_path: Path, capsys, content: str, expected: list[str]) -> None:
    root = tmp_path / "strategies"
    shutil.copytree(
        STRATEGIES_DIR / "sample", root / "mine", ignore=shutil.ignore_patterns("__pycache__")
    )
    (root / "mine" / "config.yaml").write_text(content, encoding="utf-8")
    data = tmp_path / "data"
    data.mkdir()
    code = main.main(
        [
            "--strategies-dir",
            str(root),
            "backtest",
            "--strategy",
            "mine",
            "--data-dir",
            str(data),
            "--no-db",
        ]
    )
    assert code == 2
    line = one_line(capsys)  # once: not a log line and then the error line
    assert str(root / "mine" / "config.yaml") in line
    for part in expected:
        assert part in line


@pytest.mark.parametrize(("content", "expected"), CSV_CASES)
def test_bad_csv_rows(tmp_path: Path, capsys, content: str, expected: list[str]) -> None:
    root = tmp_path / "strategies"
    shutil.copytree(
        STRATEGIES_DIR / "sample", root / "mine", ignore=shutil.ignore_patterns("__pycache__")
    )
    data = tmp_path / "data"
    data.mkdir()
    (data / "005930.csv").write_text(content, encoding="utf-8")
    for code in ("000660", "035420", "035720"):
        (data / f"{code}.csv").write_text(GOOD_CSV, encoding="utf-8")
    code = main.main(
        [
            "--strategies-dir",
            str(root),
            "backtest",
            "--strategy",
            "mine",
            "--data-dir",
            str(data),
            "--no-db",
            "--no-progress",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 2
    line = one_line(capsys)
    for part in expected:
        assert part in line
