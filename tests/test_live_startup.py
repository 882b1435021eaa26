"""Start-up of ``python main.py live``: each failure ends in one line that names the real
cause, and SIGTERM at every stage of start-up ends in a clean stop (exit 0)."""

from __future__ import annotations

import hashlib
import json
import signal
import threading
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import main
from framework.errors import TransientBrokerError
from tests.e2e.day import env_for_subprocess, kis_env
from tests.e2e.harness import Harness, dead_url, harness
from tests.fakes.clock import FakeClock
from tests.fakes.harness import fast_fake
from tests.fakes.kis_server import DEFAULT_APP_KEY, FakeKISServer
from tests.live_process import Bot, write_settings
from utils.market_calendar import KST


@pytest.fixture
def quiet_kis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    with harness(tmp_path, monkeypatch, telegram=False) as h:
        monkeypatch.setattr("utils.clock.now", h.fake.clock)
        yield h


@pytest.fixture(autouse=True)
def _keep_signal_handlers() -> Iterator[None]:
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def run_live(h: Harness, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    code = main.main(
        ["--settings", str(h.settings_path), "--strategies-dir", str(h.strategies),
         "live", *extra, "--db", h.db_url]
    )
    err = capsys.readouterr().err
    return code, err


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err  # never twice, never a traceback
    assert lines[0].startswith("error: "), err
    return lines[0]


class _Unauthorized(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = b'{"error": "unauthorized"}'
        self.send_response(401)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def unauthorized_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Unauthorized)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_closed_port_names_host_and_port(quiet_kis, monkeypatch, capsys) -> None:
    url = dead_url()
    monkeypatch.setenv("KIS_BASE_URL", url)
    code, err = run_live(quiet_kis, capsys)
    line = one_error_line(err)
    assert code == 2
    assert f"cannot connect to {url.removeprefix('http://')} (connection refused)" in line
    assert "once a minute" not in line


def test_dns_failure_is_named(quiet_kis, monkeypatch, capsys) -> None:
    monkeypatch.setenv("KIS_BASE_URL", "http://kis-trader-no-such-host.invalid:9443")
    code, err = run_live(quiet_kis, capsys)
    assert code == 2
    assert "DNS lookup of kis-trader-no-such-host.invalid failed" in one_error_line(err)


def test_tls_failure_is_named(quiet_kis, monkeypatch, capsys) -> None:
    where = quiet_kis.base_url.removeprefix("http://")
    monkeypatch.setenv("KIS_BASE_URL", f"https://{where}")  # TLS to a plain HTTP server
    code, err = run_live(quiet_kis, capsys)
    assert code == 2
    assert f"TLS handshake with {where} failed" in one_error_line(err)


def test_http_401_is_named(quiet_kis, monkeypatch, capsys, unauthorized_url) -> None:
    monkeypatch.setenv("KIS_BASE_URL", unauthorized_url)
    code, err = run_live(quiet_kis, capsys)
    line = one_error_line(err)
    assert code == 2
    assert "HTTP 401 Unauthorized" in line
    assert "KIS_APP_KEY" in line


def test_a_wrong_app_key_is_named(quiet_kis, monkeypatch, capsys) -> None:
    monkeypatch.setenv("KIS_APP_KEY", "PSWRONGKEY00000000000000000000000000")
    code, err = run_live(quiet_kis, capsys)
    line = one_error_line(err)
    assert code == 2
    assert "EGW00103" in line
    assert "KIS refused the app key or secret" in line


def test_a_dry_run_without_its_data_source_stops_at_start(quiet_kis, monkeypatch, capsys) -> None:
    url = dead_url()
    monkeypatch.setenv("KIS_BASE_URL", url)
    code, err = run_live(quiet_kis, capsys, "--dry-run")
    line = one_error_line(err)
    assert code == 2
    assert "dry run: KIS quotes are out of reach" in line
    assert f"cannot connect to {url.removeprefix('http://')}" in line


class _Flaky:
    """A quote source that is out of reach until ``up`` is set; counts its calls."""

    def __init__(self, real: Any):
        self.real, self.up, self.calls = real, False, 0

    def get_quotes(self, codes: Any) -> Any:
        self.calls += 1
        if not self.up:
            raise TransientBrokerError("inquire-price: not sent, cannot connect to x:1")
        return self.real.get_quotes(codes)


def test_a_dry_run_that_loses_kis_later_backs_off_with_one_alert(quiet_kis) -> None:
    h = quiet_kis
    session = h.build(dry_run=True)
    session.start()
    flaky = _Flaky(session.quote_source)
    session.quote_source = flaky
    for _ in range(6):  # every 10 s, as the schedule would
        session.run_job("quotes")
        h.fake.advance(10)
    # 10 s, 20 s, 40 s back-off: 3 tries in 60 s, not 6
    assert flaky.calls == 3
    assert session.failed_jobs == 3  # what the dashboard shows as "unreachable"
    flaky.up = True
    h.fake.advance(120)
    session.run_job("quotes")
    assert session.failed_jobs == 0
    repo = h.repo()
    try:
        kinds = [e["kind"] for e in repo.get_events(run_id=session.run_id)]
    finally:
        repo.close()
    assert kinds.count("broker_unreachable") == 1
    assert kinds.count("broker_recovered") == 1
    assert "job_failed" not in kinds
    h.end(session)


# --- SIGTERM at every stage of start-up (real processes) -----------------------------------

STAGES = [
    "start-up: wiring the session",
    "start-up: lease",
    "start-up: reconciling the book with the account",
    "requesting a new KIS access token",
    "reconciliation at",
    "trading day_trader",
    "KIS issues one access token a minute",  # waiting out the once-a-minute rule
]


@pytest.mark.parametrize("stage", STAGES)
def test_sigterm_at_each_start_up_stage_stops_cleanly(tmp_path: Path, stage: str) -> None:
    fake = fast_fake(clock=FakeClock(datetime.now(KST)))
    tokens = tmp_path / "tokens"
    if "one access token a minute" in stage:  # a token was just asked for by another run
        tokens.mkdir(mode=0o700)
        digest = hashlib.sha256(DEFAULT_APP_KEY.encode()).hexdigest()[:16]
        (tokens / f"virtual-{digest}.json").write_text(
            json.dumps({"env": "virtual", "last_request_at": datetime.now(KST).isoformat()})
        )
    db_url = f"sqlite:///{tmp_path / 'b.db'}"
    with FakeKISServer(fake) as server:
        env = env_for_subprocess(kis_env(server.base_url, tokens))
        bot = Bot(["live", "--strategy", "day_trader", "--db", db_url], env,
                  write_settings(tmp_path))
        try:
            bot.wait_for(stage)
            bot.proc.send_signal(signal.SIGTERM)
            assert bot.wait() == 0, bot.tail()
        finally:
            bot.close()
    assert "Traceback" not in bot.output
    assert "error:" not in bot.output
    # the lease went with it: the next start is not refused
    from core.lease import AccountLease
    from core.live import book_id
    from db.repository import Repository
    from tests.fakes.kis_server import DEFAULT_ACCOUNT_NO

    repo = Repository(db_url)
    try:
        lease = AccountLease(book_id("live", "virtual", DEFAULT_ACCOUNT_NO), repo.engine)
        lease.acquire()
        lease.release()
    finally:
        repo.close()
