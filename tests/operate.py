"""A live session on the fake KIS (over HTTP on 127.0.0.1) wired as ``python main.py live``
wires it, with its operator controls, for the switch, reload and dashboard tests."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from config.settings import load_settings
from core.control import Controls
from core.live import LiveSession, SteppedRunner
from main import build_live_session
from tests.e2e.day import CODES, DAY, STRATEGIES, DayScript, kis_env, write_settings
from tests.fakes.clock import FakeClock
from tests.fakes.harness import fast_fake
from tests.fakes.kis_server import FakeKISServer


@dataclass
class Live:
    session: LiveSession
    controls: Controls
    fake: Any
    strategies_dir: Path
    settings_path: Path
    db_url: str

    def run_day(self) -> None:
        SteppedRunner(self.session, self.fake.advance).run_day(DAY.date())

    def orders_of(self, strategy: str) -> list[Any]:
        frame = self.session.repository.get_orders(self.session.run_id)
        return [] if frame.empty else list(frame[frame["strategy"] == strategy].itertuples())

    def config(self, name: str = "day_trader") -> Path:
        return self.strategies_dir / name / "config.yaml"


@contextmanager
def live_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, fake: Any = None, start: bool = True
) -> Iterator[Live]:
    """The scripted day's bot (``day_trader`` from a copy of its folder) on a fresh fake KIS,
    started unless ``start=False``; closed on exit."""
    strategies_dir = tmp_path / "strategies"
    if not (strategies_dir / "day_trader").exists():
        shutil.copytree(STRATEGIES / "day_trader", strategies_dir / "day_trader")
    fake = fake or fast_fake(clock=FakeClock(DAY), fill_qty_per_match=10, codes=CODES)
    settings_path = tmp_path / "settings.yaml"
    if not settings_path.exists():
        write_settings(tmp_path)
    db_url = f"sqlite:///{tmp_path / 'live.db'}"
    with FakeKISServer(fake) as server:
        for key, value in kis_env(server.base_url, tmp_path / "tokens").items():
            monkeypatch.setenv(key, value)
        parts = build_live_session(
            load_settings(settings_path),
            strategies_dir=strategies_dir,
            db_url=db_url,
            clock=fake.clock,
            alerts=False,
            kis_overrides={"requests_per_s": 1000, "retry_wait_s": 0.0, "timeout_s": 5.0},
            broker_options={"sleep": lambda _s: None},
            settings_path=settings_path,
        )
        session = parts.session
        if not getattr(fake, "_scripted", False):
            fake.on_clock.append(DayScript(fake).after)
            fake._scripted = True
        try:
            if start:
                session.start()
            yield Live(session, parts.controls, fake, strategies_dir, settings_path, db_url)
        finally:
            session.stop("end of test")
            parts.close()
