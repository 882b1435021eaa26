"""The live bot in its own process, over the fake KIS on loopback: the crash test kills it.

    python -m tests.e2e.bot_process <fake base url> <database url> <work dir>

Wired by :func:`main.build_live_session` like ``python main.py live``; its clock is the
fake's (read once, then moved by ``POST /_fake/advance``), so a restarted process carries on
at the simulated time where the killed one stopped. Prints ``started`` once reconciliation
is done and ``day complete`` at the end (exit 0).
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

import httpx

from core.live import SteppedRunner
from main import build_live_session
from tests.e2e.day import DAY, STRATEGIES, settings_for


class RemoteClock:
    """The fake KIS's clock, cached between the moves this process makes."""

    def __init__(self, client: httpx.Client):
        self.client = client
        self._now = datetime.fromisoformat(client.get("/_fake/clock").json()["now"])

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        answer = self.client.post("/_fake/advance", json={"seconds": seconds})
        answer.raise_for_status()
        self._now = datetime.fromisoformat(answer.json()["now"])


def main(argv: list[str]) -> int:
    base_url, db_url, workdir = argv
    client = httpx.Client(base_url=base_url, timeout=30.0)
    clock = RemoteClock(client)
    parts = build_live_session(
        settings_for(Path(workdir)),
        strategies_dir=STRATEGIES,
        db_url=db_url,
        clock=clock.now,
        kis_overrides={"requests_per_s": 1000, "retry_wait_s": 0.0, "timeout_s": 2.0},
        broker_options={"sleep": lambda _s: None},
    )
    session = parts.session
    try:
        report = session.start()
        print(f"started {len(report.changes)}", flush=True)
        SteppedRunner(session, clock.advance).run_day(DAY.date())
        session.stop("end of the simulated day")
    finally:
        parts.close()
        client.close()
    print("day complete", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
