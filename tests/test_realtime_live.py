"""A live session with the KIS WebSocket feed, wired as ``python main.py live`` wires it,
against the fake KIS over HTTP and the fake KIS WebSocket on 127.0.0.1: registrations within
the limit, exits on ticks, every fill notice applied once (also when a poll sees the same
fill), forced disconnects without a lost fill, and REST when the socket is down."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from config.settings import load_settings
from core.live import LiveSession
from core.realtime import RealtimeFeed
from main import LiveParts, build_live_session
from tests.e2e.day import check_book, kis_env
from tests.fakes.clock import FakeClock
from tests.fakes.harness import fast_fake
from tests.fakes.kis_server import FakeKIS, FakeKISServer
from tests.fakes.ws_server import DEFAULT_HTS_ID, FakeKISWebSocket, wait_until
from utils.market_calendar import KST

START = datetime(2025, 6, 16, 9, 0, 30, tzinfo=KST)
CODES = ["005930", "000660", "035720"]
WAIT_S = 60.0

STRATEGY = '''
from framework.types import Signal, SignalType
from strategies.base import BaseStrategy
from utils.ticks import round_to_tick


class PlanStrategy(BaseStrategy):
    numpy_bars = True  # reads the numpy Bars window (data["close"][-1])

    def generate_signal(self, stock_code, data, timeframe):
        plan = self.params.get(stock_code)
        pos = self.get_position(stock_code)
        if plan is None or self.trades_today >= len(self.params) or (pos and pos.qty):
            return Signal(SignalType.HOLD, stock_code)
        qty, offset = plan
        price = data["close"][-1]
        limit = None if offset is None else round_to_tick(price * (1 + offset / 100), "down")
        return Signal(SignalType.BUY, stock_code, confidence=80.0, qty=qty, limit_price=limit)
'''


SETTINGS_YAML = """
live:
  orders:
    buy_timeout_s: 36000
    sell_timeout_s: 36000
  history_days: 30
"""


def write_strategy(folder: Path, plan: dict[str, list[Any]]) -> Path:
    root = folder / "strategies"
    (root / "plan").mkdir(parents=True)
    (root / "plan" / "strategy.py").write_text(STRATEGY, encoding="utf-8")
    lines = [f'  "{code}": [{qty}, {"null" if off is None else off}]'
             for code, (qty, off) in plan.items()]
    universe = ", ".join(f'"{c}"' for c in plan)
    (root / "plan" / "config.yaml").write_text(
        "enabled: true\n"
        f"universe: [{universe}]\n"
        "timeframe: daily\n"
        "parameters:\n" + "\n".join(lines) + "\n"
        "risk_management:\n  stop_loss_pct: 0.05\n  take_profit_pct: 0.5\n"
        "  max_position_size: 0.5\n  max_daily_trades: 10\n",
        encoding="utf-8",
    )
    return root




@contextmanager
def live_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plan: dict[str, list[Any]], *,
    ws_url: str | None = None, max_registrations: int = 40, fake: FakeKIS | None = None,
    strategies_dir: Path | None = None, settings_yaml: str = "",
) -> Iterator[tuple[LiveSession, FakeKIS, FakeKISWebSocket]]:
    fake = fake or fast_fake(clock=FakeClock(START), codes=CODES)
    (tmp_path / "settings.yaml").write_text(settings_yaml or SETTINGS_YAML, encoding="utf-8")
    settings = load_settings(tmp_path / "settings.yaml")
    with FakeKISServer(fake) as rest, FakeKISWebSocket(fake) as ws:
        for key, value in kis_env(rest.base_url, tmp_path / "tokens").items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("KIS_WS_URL", ws_url or ws.url)
        monkeypatch.setenv("KIS_HTS_ID", DEFAULT_HTS_ID)
        parts: LiveParts = build_live_session(
            settings,
            strategies_dir=strategies_dir or write_strategy(tmp_path, plan),
            db_url=f"sqlite:///{tmp_path / 'live.db'}",
            clock=fake.clock,
            alerts=False,
            kis_overrides={"requests_per_s": 1000, "retry_wait_s": 0.0, "timeout_s": 5.0},
            broker_options={"sleep": lambda _s: None},
            ws_options={"min_backoff_s": 0.02, "max_backoff_s": 0.2,
                        "max_registrations": max_registrations},
        )
        try:
            parts.session.start()
            yield parts.session, fake, ws
        finally:
            parts.session.stop("end of test")
            parts.close()


def feed_of(session: LiveSession) -> RealtimeFeed:
    assert session.realtime is not None
    return session.realtime


def fills_in_db(session: LiveSession) -> int:
    return len(session.repository.get_fills(session.run_id))


def reconcile(session: LiveSession, fake: FakeKIS) -> None:
    """The ``fills`` job at its reconciling cadence (30 s while the socket is live)."""
    fake.advance(31)
    session.run_job("fills")


def test_subscribes_within_the_limit_and_splits_the_rest_to_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = {c: [5, None] for c in CODES}
    with live_session(tmp_path, monkeypatch, plan, max_registrations=3) as (session, fake, ws):
        feed = feed_of(session)
        assert wait_until(lambda: feed.live)
        trades, notices = ws.registered()
        assert notices == {DEFAULT_HTS_ID}
        assert len(trades) + len(notices) == 3  # the budget, the fill notice included
        status = session.status()["realtime"]
        assert status["ws_symbols"] == 2
        assert status["rest_symbols"] == 1
        rest_code = status["rest"][0]
        session.run_job("open")
        before = fake.stats.by_path["/uapi/domestic-stock/v1/quotations/inquire-price"]
        session.run_job("quotes")
        # only the symbol without ticks is read over REST
        after = fake.stats.by_path["/uapi/domestic-stock/v1/quotations/inquire-price"]
        assert after - before == 1
        assert rest_code in session.trader.prices
        session.run_job("signals")
        feed.sync()
        assert wait_until(lambda: feed.sync() and len(session.trader.positions()) == 3)
        # holdings come first in the registrations once the book holds them
        feed.plan()
        assert wait_until(lambda: set(ws.registered()[0]) <= set(CODES))


def test_trades_on_ticks_and_applies_each_notice_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = {"005930": [10, None], "000660": [4, None]}
    with live_session(tmp_path, monkeypatch, plan) as (session, fake, ws):
        feed = feed_of(session)
        assert wait_until(lambda: feed.live and ws.registered()[0] == set(plan))
        ws.duplicate_notices = True
        session.run_job("open")
        session.run_job("signals")  # two market buys: filled at once, notices pushed
        assert wait_until(lambda: feed.sync() and feed.notices_applied == 2)
        assert feed.notices == 4  # every notice came twice
        assert fills_in_db(session) == 2
        reconcile(session, fake)  # a poll of the same fills: nothing new
        session.run_job("account")
        assert fills_in_db(session) == 2
        pos = session.trader.position("plan", "000660")
        assert pos is not None
        # a tick 8 % under the entry: the stop loss sells at once, without any job
        drop = int(pos.avg_price * 0.92)
        fake.set_price("000660", drop)
        quotes = fake.stats.by_path["/uapi/domestic-stock/v1/quotations/inquire-price"]
        ws.push_tick("000660", drop, 3)
        assert wait_until(lambda: feed.sync() and session.trader.position("plan", "000660")
                          is None)
        assert feed.exits == 1
        assert fake.stats.by_path["/uapi/domestic-stock/v1/quotations/inquire-price"] == quotes
        assert fills_in_db(session) == 3
        reconcile(session, fake)
        session.run_job("account")
        assert fills_in_db(session) == 3
        # a tick of a stock held but above its stop: no exit
        ws.push_tick("005930", int(session.trader.position("plan", "005930").avg_price))
        assert wait_until(lambda: feed.sync() and feed.ticks == 2)
        assert feed.exits == 1
        session.run_job("close")
        check_book(session.repository, session.run_id, fake.account())


def test_partial_fills_by_notice_and_poll_out_of_order_apply_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = {"005930": [10, -3.0]}  # a resting limit buy
    with live_session(tmp_path, monkeypatch, plan) as (session, fake, ws):
        feed = feed_of(session)
        assert wait_until(lambda: feed.live)
        session.run_job("open")
        session.run_job("signals")
        (order,) = session.trader.open_orders()
        odno = order.broker_order_id
        assert odno is not None
        ws.reorder_notices = True
        ws.duplicate_notices = True
        fake.fill_order(odno, 2)
        fake.fill_order(odno, 3)
        assert wait_until(lambda: feed.sync() and order.filled_qty == 5)
        fake.fill_order(odno, 1)  # held back by the fake ...
        reconcile(session, fake)  # ... so the poll finds it first
        assert order.filled_qty == 6
        ws.flush_held()  # the late notice changes nothing
        assert wait_until(lambda: feed.sync() and feed.notices >= 6)
        assert order.filled_qty == 6
        fake.fill_order(odno, 4)
        ws.flush_held()
        assert wait_until(lambda: feed.sync() and order.filled_qty == 10)
        reconcile(session, fake)
        session.run_job("account")
        fills = session.repository.get_fills(session.run_id)
        assert int(fills["qty"].sum()) == 10
        assert fake.order(odno).filled_qty == 10
        check_book(session.repository, session.run_id, fake.account())


def test_five_forced_disconnects_lose_no_fill(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = {"005930": [20, -3.0]}
    with live_session(tmp_path, monkeypatch, plan) as (session, fake, ws):
        feed = feed_of(session)
        client = feed.client
        assert wait_until(lambda: feed.live)
        session.run_job("open")
        session.run_job("signals")
        (order,) = session.trader.open_orders()
        odno = order.broker_order_id
        assert odno is not None
        for n in range(1, 6):
            assert ws.disconnect_all() == 1
            assert wait_until(lambda n=n: client.stats.disconnects == n)
            fake.fill_order(odno, 1)  # while the socket is down (or still going down)
            assert wait_until(lambda n=n: feed.live and client.stats.connects == n + 1)
            assert wait_until(lambda n=n: feed.sync() and order.filled_qty >= 2 * n - 1)
            assert wait_until(lambda: ws.registered() == ({"005930"}, {DEFAULT_HTS_ID}))
            # a notice within 120 s of a poll of the same order waits for the next poll (a
            # clock behind the exchange's never counts a polled fill twice): 121 s later
            fake.advance(121)
            fake.fill_order(odno, 1)  # while it is up: by notice
            assert wait_until(lambda n=n: feed.sync() and order.filled_qty == 2 * n)
        assert feed.notices_applied >= 5
        reconcile(session, fake)
        session.run_job("account")
        fills = session.repository.get_fills(session.run_id)
        assert len(fills) == 10
        assert int(fills["qty"].sum()) == 10
        check_book(session.repository, session.run_id, fake.account())


def test_rest_fallback_when_the_websocket_is_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = {"005930": [10, None], "000660": [4, None]}
    with live_session(tmp_path, monkeypatch, plan, ws_url="ws://127.0.0.1:9") as (
        session, fake, _ws,
    ):
        feed = feed_of(session)
        assert not feed.live
        session.run_job("open")
        before = fake.stats.by_path["/uapi/domestic-stock/v1/quotations/inquire-price"]
        session.run_job("quotes")
        assert fake.stats.by_path["/uapi/domestic-stock/v1/quotations/inquire-price"] > before
        session.run_job("signals")
        session.run_job("fills")
        assert len(session.trader.positions()) == 2
        pos = session.trader.position("plan", "000660")
        assert pos is not None
        fake.set_price("000660", int(pos.avg_price * 0.9))
        session.run_job("quotes")  # the stop loss on a REST quote
        session.run_job("fills")
        assert session.trader.position("plan", "000660") is None
        assert feed.should_poll_fills(fake.clock())  # every fills job polls
        session.run_job("close")
        check_book(session.repository, session.run_id, fake.account())


def test_refused_approval_key_keeps_trading_on_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fake = fast_fake(clock=FakeClock(START), codes=CODES)
    fake.refuse_approval = True
    plan = {"005930": [10, None]}
    caplog.set_level("WARNING", logger="api.kis_ws")
    with live_session(tmp_path, monkeypatch, plan, fake=fake) as (session, _fake, _ws):
        feed = feed_of(session)
        assert wait_until(lambda: feed.client.stats.approval_failures >= 1)  # type: ignore[attr-defined]
        session.run_job("open")
        session.run_job("signals")
        session.run_job("fills")
        assert session.trader.position("plan", "005930") is not None
        assert not feed.live
    assert "approval key refused" in caplog.text
    assert "REST polling" in caplog.text
