"""The command line as a user runs it: real subprocesses, real data, real SQLite file."""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SUMMARY_KEYS = {
    "bars",
    "trades",
    "final_equity",
    "total_return_pct",
    "max_drawdown_pct",
    "cagr_pct",
    "sharpe",
    "win_rate_pct",
    "elapsed_s",
}
TRADE_KEYS = [
    "strategy",
    "code",
    "entry_time",
    "exit_time",
    "entry_price",
    "exit_price",
    "qty",
    "pnl_krw",
    "return_pct",
    "reasons",
]


def run(
    *args: str, cwd: Path, env_extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("KIS_APP", "KIS_ACCOUNT", "DATABASE_URL", "TELEGRAM"))
    }
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, str(REPO / "main.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if not ln.startswith("backtest:")]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0]


def test_backtest_writes_report_and_database(tmp_path: Path, krx_recent: Path) -> None:
    out, db = tmp_path / "out", tmp_path / "runs.db"
    proc = run(
        "backtest",
        "--data-dir",
        str(krx_recent),
        "--out",
        str(out),
        "--db",
        f"sqlite:///{db}",
        "--cash",
        "50000000",
        "--no-progress",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary.keys() >= SUMMARY_KEYS
    assert summary["bars"] == 370
    assert summary["initial_cash"] == 50_000_000
    with (out / "trades.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert rows
    assert set(TRADE_KEYS) <= set(rows[0])
    assert summary["trades"] == len(rows)
    assert {r["strategy"] for r in rows} == {"sample"}
    for name in ("report.html", "report.xlsx", "equity.csv", "orders.csv", "fills.csv"):
        assert (out / name).stat().st_size > 0
    # the same run is in the database, tagged by its run id
    con = sqlite3.connect(db)
    ((run_id, mode),) = con.execute("select run_id, mode from runs").fetchall()
    assert mode == "backtest"
    assert run_id in proc.stdout
    closed = con.execute(
        "select count(*) from positions where status='closed' and run_id=?", (run_id,)
    ).fetchone()[0]
    assert closed == len(rows)
    fills = con.execute("select count(*) from fills where run_id=?", (run_id,)).fetchone()[0]
    orders = con.execute("select count(*) from orders where run_id=?", (run_id,)).fetchone()[0]
    assert fills >= 2 * len(rows)
    assert orders >= fills
    equity_rows = con.execute(
        "select count(*) from equity_snapshots where run_id=?", (run_id,)
    ).fetchone()[0]
    assert equity_rows == 370
    last_equity = con.execute(
        "select equity_krw from equity_snapshots where run_id=? order by at desc limit 1", (run_id,)
    ).fetchone()[0]
    assert last_equity == summary["final_equity"]
    stored = json.loads(con.execute("select summary from runs").fetchone()[0])
    assert stored["final_equity"] == summary["final_equity"]


def test_plain_run_without_credentials_says_backtest_first(
    tmp_path: Path, krx_recent: Path
) -> None:
    proc = run(
        "run",
        "--data-dir",
        str(krx_recent),
        "--out",
        str(tmp_path / "o"),
        "--no-db",
        "--no-html",
        "--no-xlsx",
        "--no-progress",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    first = proc.stdout.splitlines()[0]
    assert first.startswith("No KIS credentials")
    assert "backtest" in first


def test_main_without_arguments_runs_the_default_backtest(tmp_path: Path, data_dir: Path) -> None:
    proc = run(cwd=tmp_path, env_extra={"KIS_TRADER_DATA_DIR": str(data_dir)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("No KIS credentials")
    assert (tmp_path / "kis_trader.db").is_file()  # default SQLite file in the working dir
    assert "Final equity" in proc.stdout


def test_flat_sell_tax_and_dates(tmp_path: Path, krx_long: Path) -> None:
    out = tmp_path / "o"
    proc = run(
        "backtest",
        "--data-dir",
        str(krx_long),
        "--start",
        "2015-01-01",
        "--end",
        "2016-12-31",
        "--sell-tax-rate",
        "0",
        "--commission-rate",
        "0",
        "--out",
        str(out),
        "--no-db",
        "--no-html",
        "--no-xlsx",
        "--no-progress",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    with (out / "fills.csv").open(encoding="utf-8") as fh:
        fills = list(csv.DictReader(fh))
    assert fills
    assert all(f["tax_krw"] == "0" and f["commission_krw"] == "0" for f in fills)
    assert min(f["time"] for f in fills) >= "2015-01-01"
    assert max(f["time"] for f in fills) < "2017-01-01"


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["backtest", "--data-dir", "/nonexistent/dir"], ["/nonexistent/dir", "not found"]),
        (["backtest", "--strategy", "sampel"], ["did you mean 'sample'"]),
        (["backtest", "--start", "2024-13-01"], ["--start", "YYYY-MM-DD"]),
        (["backtest", "--start", "2024-05-01", "--end", "2024-01-01"], ["after --end"]),
        (["backtest", "--start", "2040-01-01"], ["date range"]),
        (["backtest", "--cash", "-5"], ["--cash"]),
        (["new-strategy", "Bad-Name"], ["lower-case"]),
    ],
)
def test_bad_input_is_one_line(
    tmp_path: Path, krx_recent: Path, args: list[str], needles: list[str]
) -> None:
    if "--data-dir" not in args and args[0] == "backtest":
        args = [*args, "--data-dir", str(krx_recent)]
    proc = (
        run(*args, "--no-db", "--no-progress", cwd=tmp_path)
        if args[0] == "backtest"
        else run(*args, cwd=tmp_path)
    )
    assert_one_line_error(proc, *needles)


def test_malformed_csv_names_file_and_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "005930.csv").write_text(
        "date,open,high,low,close,volume\n2024-01-02,100,110,90,105,1000\n2024-01-03,abc,1,1,1,1\n",
        encoding="utf-8",
    )
    proc = run("backtest", "--data-dir", str(data), "--no-db", "--no-progress", cwd=tmp_path)
    assert_one_line_error(proc, "005930.csv", "line 3", "open")
    (data / "005930.csv").write_text("when,o,h,l,c,v\n", encoding="utf-8")
    proc = run("backtest", "--data-dir", str(data), "--no-db", "--no-progress", cwd=tmp_path)
    assert_one_line_error(proc, "header")


def test_strategies_and_new_strategy(tmp_path: Path) -> None:
    root = tmp_path / "strategies"
    root.mkdir()
    proc = run("--strategies-dir", str(root), "new-strategy", "my_breakout", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    code = (root / "my_breakout" / "strategy.py").read_text(encoding="utf-8")
    assert "class MyBreakoutStrategy(BaseStrategy)" in code
    (root / "broken").mkdir()
    (root / "broken" / "config.yaml").write_text("universe: ['005930']\n", encoding="utf-8")
    (root / "broken" / "strategy.py").write_text("import nonexistent_module\n", encoding="utf-8")
    proc = run("--strategies-dir", str(root), "strategies", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert any(
        ln.startswith("broken") and "ERROR" in ln and "nonexistent_module" in ln for ln in lines
    )
    assert any(ln.startswith("my_breakout") and "disabled" in ln for ln in lines)
    proc = run("--strategies-dir", str(root), "new-strategy", "my_breakout", cwd=tmp_path)
    assert_one_line_error(proc, "already exists")
