"""report.html in a real browser: headless Chromium renders the candles, the indicator
lines, the entry/exit markers and the trade table (skipped where Chromium is absent;
CI installs it)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("CI installs chromium (.ci/run); it is missing")
        pytest.skip("chromium is not installed")
    return exe


def _data() -> Path:
    env = os.environ.get("KIS_TRADER_DATA_DIR")
    base = Path(env) if env else REPO.parents[1] / "shared" / "data"
    path = base / "krx" / "daily_2023_2025"
    if not path.is_dir():
        pytest.skip(f"real data not found: {path}")
    return path


def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    exe = _chromium()
    out = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, str(REPO / "main.py"), "backtest", "--strategy", "sample",
         "--data-dir", str(_data()), "--no-db", "--no-xlsx", "--no-progress", "--out", str(out)],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    page = out / "report.html"
    assert page.stat().st_size < 10_000_000
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--virtual-time-budget=20000", f"--user-data-dir={tmp_path / 'profile'}"]
    shot = tmp_path / "shot.png"

    dom = subprocess.run(
        [exe, *flags, "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=300, check=False,
    ).stdout
    subprocess.run(
        [exe, *flags, "--window-size=1300,2400", f"--screenshot={shot}", page.as_uri()],
        capture_output=True, timeout=300, check=False,
    )

    assert dom.count('class="trace boxes"') == 4  # one candlestick chart per stock
    assert dom.count('class="trace bars"') == 4  # their volume
    assert len(re.findall(r'class="trace scatter', dom)) >= 4 * 4  # indicator lines, markers
    assert 'class="point"' in dom  # entry/exit markers drawn
    table = dom[dom.index("id=\"trades\""):]
    assert table.count("<tr>") >= 2  # header and at least one trade
    assert shot.stat().st_size > 50_000  # a real picture, not a blank page
