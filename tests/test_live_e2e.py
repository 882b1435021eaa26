"""A whole simulated trading day through the live wiring, against the fake KIS over HTTP on
127.0.0.1 and a fake Telegram Bot API server; see ``tests/e2e/day.py`` for the script."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.live import SteppedRunner
from main import build_live_session
from tests.e2e.day import (
    CODES,
    DAY,
    DROP_CODE,
    PARTIAL_QTY,
    STRATEGIES,
    DayScript,
    check_book,
    kis_env,
    settings_for,
)
from tests.fakes.clock import FakeClock
from tests.fakes.harness import fast_fake
from tests.fakes.kis_server import FakeKISServer
from tests.fakes.telegram_server import FakeTelegram


@pytest.fixture(autouse=True)
def _telegram_user_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake Telegram's sender may send commands."""
    from tests.fakes.telegram_server import USER_ID

    monkeypatch.setenv("TELEGRAM_ALLOWED_USER_IDS", str(USER_ID))


CHAT_ID = 424242


def run_day(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    fault_rate: float = 0.0,
    db_url: str | None = None,
) -> dict[str, Any]:
    fake = fast_fake(clock=FakeClock(DAY), fill_qty_per_match=10, codes=CODES)
    settings = settings_for(tmp_path)
    db_url = db_url or f"sqlite:///{tmp_path / 'live.db'}"
    with FakeKISServer(fake) as server, FakeTelegram() as tg:
        for key, value in kis_env(server.base_url, tmp_path / "tokens").items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("TELEGRAM_BOT_TOKEN", tg.token)
        monkeypatch.setenv("TELEGRAM_CHAT_ID", str(CHAT_ID))
        monkeypatch.setenv("TELEGRAM_API_URL", tg.base_url)
        parts = build_live_session(
            settings,
            strategies_dir=STRATEGIES,
            db_url=db_url,
            clock=fake.clock,
            kis_overrides={"requests_per_s": 1000, "retry_wait_s": 0.0, "timeout_s": 2.0},
            broker_options={"sleep": lambda _s: None},
        )
        session = parts.session
        fake.on_clock.append(DayScript(fake).after)

        try:
            session.start()
            if fault_rate:
                fake.set_random_faults(fault_rate, seed=7)
            SteppedRunner(session, fake.advance).run_day(DAY.date())
            fake.set_random_faults(0.0)
            session.stop("end of the simulated day")
            book = check_book(session.repository, session.run_id, fake.account())
        finally:
            parts.close()
        return {
            "book": book,
            "session": session,
            "fake": fake,
            "texts": tg.texts(CHAT_ID),
            "db_url": db_url,
        }


def _orders(result: dict[str, Any]) -> Any:
    from db.repository import Repository

    repo = Repository(result["db_url"])
    try:
        return repo.get_orders(result["session"].run_id), repo
    except Exception:
        repo.close()
        raise


def test_a_whole_day_ends_with_the_database_equal_to_the_account(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run_day(tmp_path, monkeypatch)
    book = result["book"]
    # the script: 005930 and 035720 bought and held, 000660 bought then stopped out
    assert book["holdings"] == {"005930": 10, "035720": 25}
    orders, repo = _orders(result)
    try:
        history = {
            cid: [s.value for s, _, _ in repo.get_order_history(cid)]
            for cid in orders["client_order_id"]
        }
    finally:
        repo.close()
    replaced = orders[orders["attempt"] > 0]
    assert not replaced.empty, "the resting 005930 limit buy was never re-placed"
    assert set(replaced["stock_code"]) == {"005930"}
    original = orders[orders["client_order_id"] == replaced["replaces"].iloc[0]].iloc[0]
    assert original["status"] == "cancelled"
    assert "partially_filled" in history[original["client_order_id"]], "no partial fill"
    assert int(original["filled_qty"]) == PARTIAL_QTY
    assert int(replaced["qty"].iloc[0]) == 10 - PARTIAL_QTY
    stops = orders[(orders["side"] == "sell") & (orders["stock_code"] == DROP_CODE)]
    assert len(stops) == 1
    assert stops["order_type"].iloc[0] == "market"
    assert stops["status"].iloc[0] == "filled"
    assert "stop_loss" in stops["reasons"].iloc[0][0]
    # the broken strategy was isolated; the other one traded all day
    slots = result["session"].trader.slots
    assert not slots["broken"].active
    assert slots["day_trader"].active
    texts = result["texts"]
    for qty in (PARTIAL_QTY, 10 - PARTIAL_QTY):
        assert any(t.startswith(f"📈 매수 체결: 삼성전자(005930) {qty}주 @ ") for t in texts)
    assert any(t.startswith("📉 매도 체결: SK하이닉스(000660) 7주 @ ") for t in texts), texts
    assert any("오류" in t and "broken" in t for t in texts), "no error alert for broken"
    assert any(t.startswith("📊 일일 리포트 2025-06-16") for t in texts)


def test_the_day_completes_with_faults_on_one_call_in_ten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run_day(tmp_path, monkeypatch, fault_rate=0.10)
    assert result["fake"].stats.faults_fired > 20
    assert result["book"]["holdings"] == {"005930": 10, "035720": 25}


def test_the_day_on_postgresql_ends_with_the_same_book(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pg_db_url: str
) -> None:
    result = run_day(tmp_path, monkeypatch, db_url=pg_db_url)
    assert result["book"]["holdings"] == {"005930": 10, "035720": 25}
    orders, repo = _orders(result)
    repo.close()
    assert (orders["attempt"] > 0).any()
