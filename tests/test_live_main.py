"""``python main.py live`` as a user runs it: a real process on the real clock (APScheduler),
against the fake KIS on 127.0.0.1; SIGTERM stops it cleanly."""

from __future__ import annotations

import signal
from datetime import datetime
from pathlib import Path

from db.repository import Repository
from tests.e2e.day import env_for_subprocess, kis_env, write_settings
from tests.fakes.clock import FakeClock
from tests.fakes.harness import fast_fake
from tests.fakes.kis_server import FakeKISServer
from tests.live_process import Bot
from utils.market_calendar import KST


def test_live_command_starts_reconciles_and_stops_on_sigterm(tmp_path: Path) -> None:
    fake = fast_fake(clock=FakeClock(datetime.now(KST)))  # the bot runs on the real clock
    db_url = f"sqlite:///{tmp_path / 'live.db'}"
    settings = write_settings(tmp_path)
    with FakeKISServer(fake) as server:
        env = env_for_subprocess(kis_env(server.base_url, tmp_path / "tokens"))
        bot = Bot(["live", "--strategy", "day_trader", "--db", db_url], env, settings)
        try:
            # the scheduler runs: SIGTERM now stops a trading bot
            bot.wait_for("jobs planned, trading starts", "market closed; next session")
            bot.proc.send_signal(signal.SIGTERM)
            assert bot.wait(timeout_s=60) == 0, bot.tail()
        finally:
            bot.close()
    output = bot.output
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
