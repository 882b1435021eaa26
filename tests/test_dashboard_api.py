"""The dashboard's JSON API and its security, on a live session against the fake KIS:
reads match the database, writes need the token and the CSRF value, and a non-loopback
bind without a token refuses to start."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from dashboard.app import create_app
from dashboard.security import Guard
from dashboard.server import DashboardServer
from framework.errors import ConfigError
from tests.operate import live_session

TOKEN = "test-dashboard-token-1234"
REPO = Path(__file__).resolve().parent.parent


class Served:
    """The app behind a real uvicorn on 127.0.0.1 (a free port) and an httpx client."""

    def __init__(self, app: object, token: str | None = None):
        self.server = DashboardServer(app, "127.0.0.1", 0, token)

    def __enter__(self) -> httpx.Client:
        self.server.start()
        self.client = httpx.Client(base_url=self.server.url, timeout=60.0)
        return self.client

    def __exit__(self, *exc: object) -> None:
        self.client.close()
        self.server.stop()


def test_a_non_loopback_bind_without_a_token_refuses_to_start() -> None:
    app = object()
    with pytest.raises(ConfigError, match="DASHBOARD_TOKEN"):
        DashboardServer(app, "0.0.0.0", 0, token=None)
    DashboardServer(app, "127.0.0.1", 0, token=None)  # loopback: fine without one


def test_the_dashboard_command_refuses_a_public_bind_without_a_token(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, str(REPO / "main.py"), "dashboard", "--host", "0.0.0.0",
         "--db", f"sqlite:///{tmp_path / 'x.db'}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: dashboard: binding to 0.0.0.0 exposes the account beyond this machine; set "
        "DASHBOARD_TOKEN (see .env.example) or bind to 127.0.0.1"
    ]


def test_reads_show_the_database_and_writes_need_token_and_csrf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with live_session(tmp_path, monkeypatch) as live:
        live.run_day()
        app = create_app(live.session.repository, controls=live.controls, token=TOKEN)
        with Served(app, TOKEN) as client:
            _reads_and_writes(live, client)


def _reads_and_writes(live, client: httpx.Client) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    csrf = Guard(TOKEN).csrf()

    assert client.get("/api/positions").status_code == 401
    positions = client.get("/api/positions", headers=auth).json()
    db = {
        (r["strategy"], r["stock_code"]): int(r["qty"])
        for r in live.session.repository.get_positions(live.session.run_id)
    }
    assert {(p["strategy"], p["code"]): p["qty"] for p in positions} == db
    assert db
    for p in positions:  # day_trader: stop_loss_pct 0.05, take_profit_pct 0.5
        assert p["stop_loss"] == pytest.approx(p["avg_price"] * 0.95)
        assert p["target_price"] == pytest.approx(p["avg_price"] * 1.5)
    orders = client.get("/api/orders", headers=auth, params={"side": "sell"}).json()
    assert orders
    assert all(o["side"] == "sell" for o in orders)
    assert "/api/strategies/{name}/switch" in client.get("/openapi.json").json()["paths"]

    url, body = "/api/strategies/day_trader/switch", {"on": False}
    assert client.post(url, json=body).status_code == 403  # no token
    assert client.post(url, json=body, headers=auth).status_code == 403  # no CSRF
    bad = {**auth, "X-CSRF-Token": "0" * 64}
    assert client.post(url, json=body, headers=bad).status_code == 403
    assert live.session.trader.slots["day_trader"].enabled is True
    ok = client.post(url, json=body, headers={**auth, "X-CSRF-Token": csrf})
    assert ok.status_code == 200, ok.text
    assert live.session.trader.slots["day_trader"].enabled is False

    refused = client.post("/api/sell", json={"code": "999999"},
                          headers={**auth, "X-CSRF-Token": csrf})
    assert refused.status_code == 400
    assert refused.json()["detail"] == "999999 is not held"


def test_without_a_token_the_dashboard_is_read_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with live_session(tmp_path, monkeypatch) as live, Served(
        create_app(live.session.repository, controls=live.controls)
    ) as client:
        _read_only(live, client)


def _read_only(live, client: httpx.Client) -> None:
    assert client.get("/api/strategies").status_code == 200
    answer = client.post("/api/state", json={"state": "halted"})
    assert answer.status_code == 403
    assert "read-only" in answer.json()["detail"]
    assert live.session.risk.state.value == "active"
    for page in ("/", "/strategies", "/positions", "/orders", "/runs", "/events"):
        assert client.get(page).status_code == 200, page
