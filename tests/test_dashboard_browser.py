"""The dashboard in a real headless Chromium (Debian's ``chromium``, driven by Playwright
with ``executable_path``: no browser is downloaded) in front of a live session on the fake
KIS: the positions table shows what the database holds, a strategy switched off in the page
sends no new order the next trading day while the other one trades, and every page is
screenshot (into ``KIS_TRADER_SCREENSHOTS`` when set, else the test's folder)."""

from __future__ import annotations

import os
import shutil
from datetime import date
from pathlib import Path

import pytest

from core.live import SteppedRunner
from dashboard.app import PAGES, create_app
from dashboard.server import DashboardServer
from tests.e2e.day import STRATEGIES
from tests.operate import live_session
from tests.test_report_browser import _chromium

TOKEN = "browser-test-token-5678"
NEXT_DAY = date(2025, 6, 17)
WAIT_MS = 120_000  # generous: a busy machine


def test_the_dashboard_in_chromium_shows_the_book_and_switches_a_strategy_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exe = _chromium()
    sync_api = pytest.importorskip("playwright.sync_api")
    shots = Path(os.environ.get("KIS_TRADER_SCREENSHOTS") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    for name in ("day_trader", "day_trader_b"):
        shutil.copytree(STRATEGIES / "day_trader", tmp_path / "strategies" / name)
    with live_session(tmp_path, monkeypatch) as live:
        live.run_day()
        server = DashboardServer(
            create_app(live.session.repository, controls=live.controls, token=TOKEN),
            "127.0.0.1", 0, TOKEN,
        )
        server.start()
        try:
            with sync_api.sync_playwright() as pw:
                browser = pw.chromium.launch(
                    executable_path=exe, headless=True, args=["--no-sandbox", "--disable-gpu"]
                )
                page = browser.new_page(viewport={"width": 1300, "height": 900})
                page.set_default_timeout(WAIT_MS)
                page.on("dialog", lambda dialog: dialog.accept())
                page.goto(server.url + "/")
                assert page.url.endswith("/login")
                page.fill("input[name=token]", TOKEN)
                page.click("button[type=submit]")
                page.wait_for_selector("#overview")

                page.goto(server.url + "/positions")
                shown = {}
                for row in page.query_selector_all("#positions tr[data-code]"):
                    key = (row.get_attribute("data-strategy"), row.get_attribute("data-code"))
                    shown[key] = int(row.query_selector("td.qty").inner_text())
                in_db = {
                    (r["strategy"], r["stock_code"]): int(r["qty"])
                    for r in live.session.repository.get_positions(live.session.run_id)
                }
                assert in_db
                assert shown == in_db

                page.goto(server.url + "/strategies")
                page.click('tr[data-strategy="day_trader"] button.switch')
                page.wait_for_selector('tr[data-strategy="day_trader"] td.enabled:text("off")')
                assert live.session.trader.slots["day_trader"].enabled is False
                assert live.session.trader.slots["day_trader_b"].enabled is True

                switched_at = live.session.clock()
                SteppedRunner(live.session, live.fake.advance).run_day(NEXT_DAY)
                page.goto(server.url + "/events")
                page.wait_for_selector("#equity polyline")
                for name in PAGES:
                    page.goto(server.url + ("/" if name == "overview" else f"/{name}"))
                    page.wait_for_load_state("load")
                    if name == "events":
                        page.wait_for_selector("#equity polyline")
                    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
                browser.close()
        finally:
            server.stop()

        def after(strategy: str) -> list[object]:
            return [o for o in live.orders_of(strategy) if o.created_at > switched_at]

        assert after("day_trader") == []
        assert after("day_trader_b"), "the strategy left on trades the next day"
    for name in PAGES:
        assert (shots / f"{name}.png").stat().st_size > 10_000
