"""``python main.py live`` as a user runs it: a real process on the real clock (APScheduler),
against the fake KIS on 127.0.0.1; SIGTERM stops it cleanly."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from datetime import datetime
from pathlib import Path

from db.repository import Repository
from tests.e2e.day import STRATEGIES, env_for_subprocess, kis_env, write_settings
from tests.fakes.clock import FakeClock
from tests.fakes.harness import fast_fake
from tests.fakes.kis_server import FakeKISServer
from utils.market_calendar import KST

REPO = Path(__file__).resolve().parent.parent


def test_live_command_starts_reconciles_and_stops_on_sigterm(tmp_path: Path) -> None:
    fake = fast_fake(clock=FakeClock(datetime.now(KST)))  # the bot runs on the real clock
    db_url = f"sqlite:///{tmp_path / 'live.db'}"
    settings = write_settings(tmp_path)
    with FakeKISServer(fake) as server:
        env = env_for_subprocess(kis_env(server.base_url, tmp_path / "tokens"))
        proc = subprocess.Popen(
            [
                sys.executable,
                "main.py",
                "--settings",
                str(settings),
                "--strategies-dir",
                str(STRATEGIES),
                "-v",
                "live",
                "--strategy",
                "day_trader",
                "--db",
                db_url,
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        lines: list[str] = []
        ready = threading.Event()

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line.rstrip())
                if "jobs planned, trading starts" in line or "market closed; next session" in line:
                    ready.set()  # the scheduler runs: SIGTERM now stops a trading bot

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            while not ready.wait(0.2):
                assert proc.poll() is None, "\n".join(lines[-40:])
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0, "\n".join(lines[-40:])
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            reader.join(timeout=10)
            assert proc.stdout is not None
            proc.stdout.close()
    output = "\n".join(lines)
    assert "reconciliation at" in output
    assert "on the virtual account" in output
    assert "jobs planned, trading starts" in output or "market closed; next session" in output
    repo = Repository(db_url)
    try:
        runs = repo.list_runs("live")
        assert len(runs) == 1
        events = repo.get_events(run_id=runs[0]["run_id"])
    finally:
        repo.close()
    kinds = [e["kind"] for e in events]
    assert "reconcile" in kinds
    assert "session_started" in kinds
    stopped = [e for e in events if e["kind"] == "session_stopped"]
    assert stopped
    assert "SIGTERM" in stopped[-1]["message"]
