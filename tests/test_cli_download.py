"""`python main.py download` against the fake KIS over HTTP, then `backtest` on the result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from tests.fakes import FakeKISServer
from tests.fakes.clock import FakeClock
from tests.fakes.harness import fast_fake
from tests.fakes.kis_server import DEFAULT_ACCOUNT_NO, DEFAULT_APP_KEY, DEFAULT_APP_SECRET
from utils.clock import KST

REPO = Path(__file__).resolve().parent.parent


def main_py(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO / "main.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def test_download_then_backtest(tmp_path: Path) -> None:
    data = tmp_path / "data"
    # the CLI runs on the wall clock, so the fake's clock starts at the wall clock too
    fake = fast_fake(clock=FakeClock(datetime.now(KST)))
    with FakeKISServer(fake) as server:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("KIS_", "DATABASE")) or k == "KIS_TRADER_STATE_DIR"}
        env.update({
            "KIS_APP_KEY": DEFAULT_APP_KEY, "KIS_APP_SECRET": DEFAULT_APP_SECRET,
            "KIS_ACCOUNT_NO": DEFAULT_ACCOUNT_NO, "KIS_ENV": "virtual",
            "KIS_BASE_URL": server.base_url, "KIS_TOKEN_DIR": str(tmp_path / "tokens"),
        })
        proc = main_py("download", "--symbols", "005930", "--start", "2024-01-01", "--end",
                       "2025-06-13", "--data-dir", str(data), cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert DEFAULT_APP_SECRET not in proc.stdout + proc.stderr
    csv = data / "005930.csv"
    lines = csv.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "date,open,high,low,close,volume"
    assert lines[1].startswith("2024-01-02,")
    assert lines[-1].startswith("2025-06-13,")
    # the downloaded bars are the real prices the fake serves
    shared = Path(os.environ.get("KIS_TRADER_DATA_DIR", REPO.parent / "shared" / "data"))
    source = (shared / "krx" / "daily_2023_2025" / "005930_samsung_electronics.csv")
    source_rows = {r.split(",")[0]: r for r in source.read_text(encoding="utf-8").splitlines()[1:]}
    assert all(source_rows[r.split(",")[0]] == r for r in lines[1:])

    out = tmp_path / "report"
    env.pop("KIS_APP_KEY")
    proc = main_py("backtest", "--strategy", "sma_cross", "--data-dir", str(data), "--out",
                   str(out), "--no-db", "--no-html", "--no-xlsx", "--no-progress",
                   cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["bars"] == len(lines) - 1
