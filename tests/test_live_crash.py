"""Crash test: the bot process is killed (SIGKILL) at random points of a simulated day and
restarted, again and again. Nothing may be sent twice and no fill may be lost: at the close
the database equals the fake account exactly."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from db.repository import Repository
from tests.e2e.day import CODES, DAY, DayScript, check_book, env_for_subprocess, kis_env
from tests.fakes.clock import FakeClock
from tests.fakes.harness import fast_fake
from tests.fakes.kis_server import FakeKISServer

REPO = Path(__file__).resolve().parent.parent
KILLS = 12


class Bot:
    """One bot process; its output lines are collected by a reader thread."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path):
        self.log = log
        with log.open("w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.e2e.bot_process", *args],
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        self.lines: list[str] = []
        self.started = threading.Event()
        self.stderr = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.strip())
            if line.startswith("started"):
                self.started.set()

    def kill_now(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)

    def wait(self, timeout: float) -> int:
        rc = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=30)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self.stderr = self.log.read_text()
        return rc


def kill_times(rng: random.Random) -> list[datetime]:
    """Simulated times to kill at: around the first orders (09:00), around the stop loss
    (11:00) and anywhere in the day, in order."""
    day = DAY.replace(hour=9, minute=0)
    picks = [day + timedelta(seconds=rng.uniform(0, 180)) for _ in range(4)]
    picks += [day + timedelta(hours=2, seconds=rng.uniform(-30, 120)) for _ in range(3)]
    picks += [day + timedelta(seconds=rng.uniform(0, 6.6 * 3600)) for _ in range(KILLS - 7)]
    return sorted(picks)


@pytest.mark.timeout(900)
def test_killed_and_restarted_at_random_the_book_still_equals_the_account(
    tmp_path: Path,
) -> None:
    rng = random.Random(20250616)
    fake = fast_fake(clock=FakeClock(DAY), fill_qty_per_match=10, codes=CODES)
    fake.on_clock.append(DayScript(fake).after)
    targets = kill_times(rng)
    current: list[Bot] = []
    kills: list[str] = []

    def kill_when_due(now: datetime) -> None:
        # runs in the fake's server thread while the bot waits for its clock move: the
        # kill lands a few milliseconds later, inside whatever the bot does next
        if targets and now >= targets[0] and current:
            targets.pop(0)
            bot = current[-1]
            kills.append(f"{now:%H:%M:%S}")
            threading.Timer(rng.uniform(0.0, 0.05), bot.kill_now).start()

    fake.on_clock.append(kill_when_due)
    db_url = f"sqlite:///{tmp_path / 'live.db'}"
    restarts = 0
    with FakeKISServer(fake) as server:
        env = env_for_subprocess(kis_env(server.base_url, tmp_path / "tokens"))
        args = [server.base_url, db_url, str(tmp_path)]
        while True:
            bot = Bot(args, env, tmp_path / f"bot{restarts}.log")
            current.append(bot)
            rc = bot.wait(timeout=400)
            if rc == -signal.SIGKILL:
                restarts += 1
                continue
            assert rc == 0, bot.stderr[-3000:]
            assert "day complete" in bot.lines
            break
        print(f"killed at {', '.join(kills)}; {restarts} restarts")
        assert restarts >= 10
        repo = Repository(db_url)
        try:
            run_id = repo.list_runs("live")[0]["run_id"]
            book = check_book(repo, run_id, fake.account())
            events = repo.get_events(run_id=run_id)
        finally:
            repo.close()
    assert book["holdings"] == {"005930": 10, "035720": 25}
    started = [e for e in events if e["kind"] == "session_started"]
    assert len(started) == restarts + 1
