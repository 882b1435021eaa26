"""``python main.py live`` / ``reconcile`` run in-process (``main.main``) against the fake
KIS over HTTP on 127.0.0.1, and a started live session driven from outside: Telegram
commands end to end, bad quotes and bad daily bars.

The harness (fake KIS + fake Telegram + env + probe strategy + SQLite file) is the one of
``tests/e2e/harness.py``.
"""

from __future__ import annotations

import io
import math
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import main
from core.live import LiveSession, SteppedRunner, clean_bars
from core.risk import TradingState
from framework.types import OrderStatus, Signal, SignalType
from notifier.formatting import format_krw
from tests.e2e.harness import (
    CHAT_ID,
    DRY_BOOK,
    LIVE_BOOK,
    NOW,
    OTHER_CHAT_ID,
    Harness,
    closed_rows,
    dead_url,
    harness,
    holding_rows,
    probe,
    seed_position,
)
from utils.ticks import round_to_tick


@pytest.fixture(autouse=True)
def _telegram_user_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake Telegram's sender may send commands."""
    from tests.fakes.telegram_server import USER_ID

    monkeypatch.setenv("TELEGRAM_ALLOWED_USER_IDS", str(USER_ID))


@pytest.fixture
def kis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    with harness(tmp_path, monkeypatch) as h:
        yield h


@pytest.fixture
def quiet_kis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    """The harness without Telegram (what a plain ``python main.py`` run would have), whose
    fake clock is also the default clock of ``main.build_live_session`` (the fake's tokens
    and market hours follow its clock, not the wall clock)."""
    with harness(tmp_path, monkeypatch, telegram=False) as h:
        monkeypatch.setattr("utils.clock.now", h.fake.clock)
        yield h


@pytest.fixture
def keep_signal_handlers() -> Iterator[None]:
    """``cmd_live`` installs SIGINT/SIGTERM handlers in this process: put pytest's back."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def cli(h: Harness, *args: str, settings: Path | None = None) -> int:
    return main.main(
        [
            "--settings",
            str(settings or h.settings_path),
            "--strategies-dir",
            str(h.strategies),
            *args,
            "--db",
            h.db_url,
        ]
    )


def error_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert lines, "nothing on stderr"
    assert lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


# --- python main.py reconcile --------------------------------------------------------------


def test_reconcile_command_prints_positions_differences_and_cash(
    quiet_kis: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    h = quiet_kis
    price = h.fake.market.price("005930")
    repo = h.repo()
    try:
        seed_position(repo, "005930", 10, price)
        seed_position(repo, "035720", 4, 40_000)
    finally:
        repo.close()
    h.hold("005930", 10, price)
    h.hold("000660", 3, 250_000)
    cash = h.fake.account().cash_krw

    assert cli(h, "reconcile") == 0
    out = capsys.readouterr().out
    assert "reconciliation at 20" in out
    assert ": ok" in out
    assert "positions restored from the database: 2" in out
    assert f"cash (account): {cash:,} KRW" in out
    lines = out.splitlines()
    assert any(ln.split()[:3] == ["matched", "005930", "[probe]"] for ln in lines), out
    assert any(ln.split()[:3] == ["adopted", "000660", "[unmanaged]"] for ln in lines), out
    assert any(ln.split()[:3] == ["closed_outside", "035720", "[probe]"] for ln in lines), out
    assert h.order_cash_requests() == 0  # it reads only
    repo = h.repo()
    try:  # and it wrote what it found to the book
        assert holding_rows(repo) == {("probe", "005930"): 10, ("unmanaged", "000660"): 3}
        assert [r["stock_code"] for r in closed_rows(repo)] == ["035720"]
    finally:
        repo.close()


def test_reconcile_command_with_the_broker_down_exits_2(
    quiet_kis: Harness, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KIS_BASE_URL", dead_url())
    assert cli(quiet_kis, "reconcile") == 2
    captured = capsys.readouterr()
    line = error_line(captured.err)
    assert "reconciliation failed" in line
    assert "reconciliation at" not in captured.out  # no report of a book never checked


# --- python main.py live: refusals before anything is sent ---------------------------------


def test_live_on_the_real_account_without_confirmation_sends_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with harness(tmp_path, monkeypatch, env="real", telegram=False) as h:
        monkeypatch.setattr("sys.stdin", io.StringIO(""))  # not a terminal
        assert cli(h, "live") == 2
        line = error_line(capsys.readouterr().err)
        assert "--confirm-real" in line
        assert h.fake.stats.requests == 0
        assert h.fake.stats.tokens_issued == 0
        assert not (tmp_path / "book.db").exists()


def test_live_on_the_real_account_refused_at_the_prompt_sends_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    with harness(tmp_path, monkeypatch, env="real", telegram=False) as h:
        monkeypatch.setattr("sys.stdin", Terminal("yes\n"))
        assert cli(h, "live") == 2
        captured = capsys.readouterr()
        assert "Type REAL to continue" in captured.out
        assert "real trading not confirmed" in error_line(captured.err)
        assert h.fake.stats.requests == 0


def test_malformed_settings_file_exits_2_naming_the_file_and_the_keys(
    quiet_kis: Harness, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad" / "settings.yaml"
    bad.parent.mkdir()
    bad.write_text(
        "risk:\n  cooldown_s: soon\nlive:\n  shedule:\n    quote_interval_s: 10\n",
        encoding="utf-8",
    )
    assert cli(quiet_kis, "live", settings=bad) == 2
    err = capsys.readouterr().err
    error_line(err)
    assert f"{bad}: live.shedule: unknown key; did you mean 'schedule'?" in err
    assert f"{bad}: risk.cooldown_s: " in err
    assert "'soon'" in err
    assert quiet_kis.fake.stats.requests == 0


# --- python main.py live --dry-run ---------------------------------------------------------


def stepped_scheduler(
    h: Harness,
    monkeypatch: pytest.MonkeyPatch,
    before: Callable[[LiveSession], Any],
    *,
    run_day: bool = True,
) -> list[LiveSession]:
    """Make ``cmd_live`` run on the fake's clock (``quiet_kis`` made ``utils.clock.now`` the
    fake's): ``ScheduledRunner`` becomes a :class:`SteppedRunner` over the rest of the day, after
    ``before(session)``. Returns the list the sessions run are appended to."""
    runs: list[LiveSession] = []

    class Stepped:
        def __init__(self, session: LiveSession, say: Any = None):
            self.session = session

        def run(self) -> None:
            runs.append(self.session)
            before(self.session)
            if run_day:
                SteppedRunner(self.session, h.fake.advance).run_day()

    monkeypatch.setattr("core.live.ScheduledRunner", Stepped)
    return runs


def _plan_two_buys(session: LiveSession) -> None:
    plan = probe(session).plan
    plan["005930"] = Signal(SignalType.BUY, "005930", qty=10, reasons=("dry buy",))
    price = session.quote_source.get_quotes(["035720"])["035720"].price
    plan["035720"] = Signal(
        SignalType.BUY, "035720", qty=20, limit_price=round_to_tick(price * 1.05, "up")
    )  # a marketable limit


def test_dry_run_day_sends_no_order_to_kis_and_books_paper_fills(
    quiet_kis: Harness,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    keep_signal_handlers: None,
) -> None:
    h = quiet_kis
    runs = stepped_scheduler(h, monkeypatch, _plan_two_buys)
    assert cli(h, "live", "--dry-run") == 0
    assert "dry run (simulated orders)" in capsys.readouterr().out
    [session] = runs
    assert h.fake.clock() > NOW.replace(hour=15, minute=30)  # the whole day ran
    assert h.order_cash_requests() == 0
    assert h.fake.account().holdings == {}
    assert probe(session).calls[:2] == ["on_init", "on_market_open"]
    assert probe(session).calls.count("on_order_filled") == 2
    repo = h.repo()
    try:
        assert repo.get_run(DRY_BOOK) is not None
        assert repo.get_run(LIVE_BOOK) is None
        orders = repo.get_orders(DRY_BOOK)
        assert sorted(zip(orders["stock_code"], orders["status"], strict=True)) == [
            ("005930", "filled"),
            ("035720", "filled"),
        ]
        assert orders["broker_order_id"].str.startswith("P").all()  # the PaperBroker's ids
        fills = repo.get_fills(DRY_BOOK)
        assert sorted(zip(fills["stock_code"], fills["qty"], strict=True)) == [
            ("005930", 10),
            ("035720", 20),
        ]
        assert holding_rows(repo, DRY_BOOK) == {("probe", "005930"): 10, ("probe", "035720"): 20}
        paper: Any = session.trader._broker
        last = repo.get_last_equity(DRY_BOOK)
        assert last is not None
        assert last["cash_krw"] == paper.cash_krw
        assert paper.cash_krw < 50_000_000  # it started from the settings' dry-run cash
    finally:
        repo.close()


def test_dry_run_restarted_continues_from_the_book(
    quiet_kis: Harness,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    keep_signal_handlers: None,
) -> None:
    h = quiet_kis
    stepped_scheduler(h, monkeypatch, _plan_two_buys)
    assert cli(h, "live", "--dry-run") == 0
    capsys.readouterr()
    repo = h.repo()
    try:
        last = repo.get_last_equity(DRY_BOOK)
        assert last is not None
    finally:
        repo.close()
    seen: dict[str, Any] = {}

    def look(session: LiveSession) -> None:
        paper: Any = session.trader._broker
        seen["cash"] = paper.cash_krw
        seen["holdings"] = {x.stock_code: x.qty for x in paper.get_holdings()}
        session.run_job("open")
        session.run_job("account")

    runs = stepped_scheduler(h, monkeypatch, look, run_day=False)
    assert cli(h, "live", "--dry-run") == 0
    out = capsys.readouterr().out
    assert seen == {"cash": last["cash_krw"], "holdings": {"005930": 10, "035720": 20}}
    assert "positions restored from the database: 2" in out
    for kind in ("adopted", "closed_outside", "qty_adjusted"):
        assert kind not in out, out
    [session] = runs
    assert session.trader._portfolio.qty("probe", "005930") == 10
    assert session.trader._portfolio.qty("probe", "035720") == 20
    assert session.trader.cash_krw == last["cash_krw"]
    assert h.order_cash_requests() == 0
    repo = h.repo()
    try:
        assert repo.get_events(DRY_BOOK, kind="account_mismatch") == []
        assert repo.get_events(DRY_BOOK, kind="reconcile_difference") == []
    finally:
        repo.close()


def test_dry_run_seeds_the_paper_account_with_every_strategy_holding(quiet_kis: Harness) -> None:
    h = quiet_kis
    repo = h.repo()
    try:
        seed_position(repo, "005930", 10, 60_000, run_id=DRY_BOOK)
        seed_position(repo, "005930", 5, 58_000, run_id=DRY_BOOK, strategy="retired")
        repo.save_equity_snapshots(DRY_BOOK, [(NOW.replace(hour=9), 1_234_567, 890_000, 2_124_567)])
    finally:
        repo.close()
    session = h.build(dry_run=True)
    paper: Any = session.trader._broker
    assert paper.cash_krw == 1_234_567
    assert paper.holding_qty("005930") == 15
    report = session.start()
    assert report.changes == []
    assert session.trader._portfolio.qty("probe", "005930") == 10
    assert session.trader._portfolio.qty("retired", "005930") == 5


def test_dry_run_restarted_with_a_resting_order_starts(quiet_kis: Harness) -> None:
    h = quiet_kis
    first = h.build(dry_run=True)
    first.start()
    first.run_job("open")
    limit = round_to_tick(first.trader.prices["035720"] * 0.9, "down")
    probe(first).plan["035720"] = Signal(SignalType.BUY, "035720", qty=5, limit_price=limit)
    first.run_job("signals")
    [resting] = first.trader.open_orders()
    first.run_job("account")
    h.end(first)  # stopped with the simulated order resting

    second = h.build(dry_run=True)
    second.start()  # the simulated order died with its process: it must not block a restart
    assert second.started
    assert second.trader.open_orders() == []
    repo = h.repo()
    try:
        order = repo.get_order(resting.client_order_id)
        assert order is not None
        assert order.status.is_final
        assert order.filled_qty == 0
    finally:
        repo.close()
    second.run_job("signals")
    assert h.order_cash_requests() == 0


# --- Telegram commands against a running session -------------------------------------------


def _say(h: Harness, text: str, chat_id: int = CHAT_ID) -> None:
    assert h.tg is not None
    h.tg.push_command(text, chat_id=chat_id)


def _wait_count(h: Harness, needle: str, count: int) -> list[str]:
    assert h.tg is not None
    found = h.tg.wait_for(lambda: sum(needle in t for t in h.texts()) >= count, timeout_s=15)
    assert found, f"fewer than {count} messages with {needle!r}: {h.texts()}"
    return [t for t in h.texts() if needle in t]


def test_telegram_commands_control_and_report_the_session(kis: Harness) -> None:
    assert kis.tg is not None
    price = kis.fake.market.price("005930")
    repo = kis.repo()
    try:
        seed_position(repo, "005930", 10, price, stop_loss=float(price - 5000))
    finally:
        repo.close()
    kis.hold("005930", 10, price)
    session = kis.build()
    session.start()
    session.run_job("open")
    limit = round_to_tick(session.trader.prices["035720"] * 0.9, "down")
    probe(session).plan["035720"] = Signal(SignalType.BUY, "035720", qty=5, limit_price=limit)
    session.run_job("signals")
    [resting] = session.trader.open_orders()
    assert kis.order_cash_requests() == 1
    # pending updates are dropped at start: talk once the bot polls
    tg = kis.tg
    assert tg.wait_for(lambda: tg.call_count("getUpdates") >= 1, timeout_s=15)

    _say(kis, "/pause")
    kis.wait_text("거래를 중지했습니다 (HALTED)")
    assert session.risk.state is TradingState.HALTED
    kis.wait_text("⏸️ 거래 상태: HALTED")
    probe(session).plan["005930"] = Signal(SignalType.BUY, "005930", qty=1)
    session.run_job("signals")
    assert kis.order_cash_requests() == 1, "a buy went out while halted"
    assert session.trader.slots["probe"].rejections["trading is halted"] == 1

    _say(kis, "/resume")
    kis.wait_text("거래를 재개했습니다 (ACTIVE)")
    assert session.risk.state is TradingState.ACTIVE

    _say(kis, "/reduce_only")
    kis.wait_text("청산 주문만 허용합니다 (REDUCE_ONLY)")
    assert session.risk.state is TradingState.REDUCE_ONLY

    status = session.status()
    _say(kis, "/status")
    text = kis.wait_text("📋 자동매매 상태")
    assert "모드: 모의투자 · live" in text
    assert "REDUCE_ONLY" in text
    assert "장: 개장" in text
    assert f"평가자산: {format_krw(status['equity_krw'])}" in text
    assert f"현금: {format_krw(status['cash_krw'])}" in text
    assert "• probe: 활성" in text

    _say(kis, "/positions")
    text = kis.wait_text("📦 보유 종목")
    assert text.splitlines()[0] == "📦 보유 종목 1개"
    assert "• 삼성전자(005930) [probe]" in text
    assert f"10주 · 평단 {format_krw(price)}" in text
    assert f"손절 {format_krw(price - 5000)}" in text

    _say(kis, "/orders")
    text = kis.wait_text("📝 미체결 주문")
    assert text.splitlines()[0] == "📝 미체결 주문 1건"
    assert f"• 매수 카카오(035720) 5주 @ {format_krw(limit)}" in text
    assert resting.client_order_id in text

    pnl = session.pnl()
    _say(kis, "/pnl")
    text = kis.wait_text("💰 오늘 손익")
    assert f"시작 자산: {format_krw(pnl['start_equity_krw'])}" in text
    assert f"평가자산: {format_krw(pnl['equity_krw'])}" in text

    # another chat is ignored: nothing changes and nothing is answered there
    _say(kis, "/pause", chat_id=OTHER_CHAT_ID)
    _say(kis, "/stop", chat_id=OTHER_CHAT_ID)
    _say(kis, "/status")  # answered after the two above were handled (in order)
    _wait_count(kis, "📋 자동매매 상태", 2)
    assert session.risk.state is TradingState.REDUCE_ONLY
    assert not session.stop_requested.is_set()
    assert kis.tg.texts(OTHER_CHAT_ID) == []

    _say(kis, "/stop")
    kis.wait_text("종료 요청을 받았습니다")
    assert kis.tg.wait_for(session.stop_requested.is_set, timeout_s=15)


# --- bad prices ----------------------------------------------------------------------------


def test_a_zero_price_is_skipped_and_the_other_codes_trade(kis: Harness) -> None:
    price = kis.fake.market.price("005380")
    repo = kis.repo()
    try:
        seed_position(repo, "005380", 10, price)
    finally:
        repo.close()
    kis.hold("005380", 10, price)
    session = kis.build()
    session.start()
    session.run_job("open")
    before = session.trader.prices["005930"]

    kis.fake.set_price("005930", 0)  # the fake answers stck_prpr "0" for it
    kis.fake.set_price("005380", round_to_tick(price * 0.9))  # below the probe's 5 % stop
    session.run_job("quotes")
    repo = kis.repo()
    try:
        bad = repo.get_events(LIVE_BOOK, kind="bad_quote")
        failed = repo.get_events(LIVE_BOOK, kind="job_failed")
    finally:
        repo.close()
    assert failed == []
    assert [e["message"].split(":")[0] for e in bad] == ["005930"]
    assert session.trader.prices["005930"] == before  # the bad quote was not used
    assert session.trader.prices["005380"] == round_to_tick(price * 0.9)
    assert kis.order_cash_requests() == 1  # the stop loss of 005380 was sent
    [sell] = [o for o in kis.fake.account().orders if o.code == "005380"]
    assert sell.side == "01"
    assert sell.qty == 10

    probe(session).plan["035720"] = Signal(SignalType.BUY, "035720", qty=3)
    session.run_job("signals")
    assert kis.order_cash_requests() == 2  # trading of the other codes goes on
    session.run_job("fills")
    assert session.trader._portfolio.qty("probe", "035720") == 3
    assert session.trader.open_orders() == []
    assert {o.status for o in session.trader._orders.orders.values()} == {OrderStatus.FILLED}


def test_clean_bars_drops_rows_with_missing_or_non_positive_prices() -> None:
    index = pd.date_range("2025-06-09", periods=7, freq="D", tz="Asia/Seoul")
    frame = pd.DataFrame(
        {
            "open": [100.0, np.nan, 100.0, 100.0, 100.0, 100.0, 101.0],
            "high": [110.0, 110.0, np.inf, 110.0, 110.0, 110.0, 111.0],
            "low": [90.0, 90.0, 90.0, 0.0, 90.0, 90.0, 91.0],
            "close": [105.0, 105.0, 105.0, 105.0, -5.0, None, 106.0],
            "volume": [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, np.nan],
        },
        index=index,
    )
    cleaned = clean_bars(frame)
    assert list(cleaned.index) == [index[0], index[6]]
    assert cleaned["close"].tolist() == [105.0, 106.0]
    assert clean_bars(frame.iloc[:0]).empty


def test_strategies_never_see_bad_daily_bars(
    quiet_kis: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = quiet_kis.build()
    market: Any = session.market
    real = market.get_daily_bars
    spoiled: list[pd.Timestamp] = []

    def glitchy(code: str, start: Any = None, end: Any = None) -> pd.DataFrame:
        frame = real(code, start, end).copy()
        frame.iloc[-3, frame.columns.get_loc("close")] = np.nan
        frame.iloc[-5, frame.columns.get_loc("open")] = 0
        spoiled[:] = [frame.index[-3], frame.index[-5]]
        return frame

    monkeypatch.setattr(market, "get_daily_bars", glitchy)
    session.start()
    session.run_job("open")
    session.run_job("signals")
    seen = probe(session).seen["005930"]
    assert len(seen["index"]) == session.settings.live.history_days + 1  # plus today's bar
    assert not set(spoiled) & set(seen["index"])
    for key in ("open", "high", "low", "close"):
        assert all(math.isfinite(v) and v > 0 for v in seen[key]), key


def test_dry_run_restarted_books_the_fills_of_the_new_process(
    quiet_kis: Harness,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    keep_signal_handlers: None,
) -> None:
    """A second dry-run process numbers its paper orders and fills anew: its ids must not
    collide with the first process's ids in the fill journal, or its fills would be skipped."""
    h = quiet_kis
    stepped_scheduler(h, monkeypatch, _plan_two_buys)
    assert cli(h, "live", "--dry-run") == 0

    def sell_some(session: LiveSession) -> None:
        plan = probe(session).plan
        plan["005930"] = Signal(SignalType.SELL, "005930", qty=10, reasons=("dry sell",))
        plan["035720"] = Signal(SignalType.SELL, "035720", qty=5, reasons=("dry sell",))

    runs = stepped_scheduler(h, monkeypatch, sell_some)
    assert cli(h, "live", "--dry-run") == 0
    capsys.readouterr()
    [session] = runs
    assert probe(session).calls.count("on_order_filled") == 2
    repo = h.repo()
    try:
        fills = repo.get_fills(DRY_BOOK)
        assert fills["fill_id"].is_unique
        assert sorted(zip(fills["stock_code"], fills["side"], fills["qty"], strict=True)) == [
            ("005930", "buy", 10),
            ("005930", "sell", 10),
            ("035720", "buy", 20),
            ("035720", "sell", 5),
        ]
        assert holding_rows(repo, DRY_BOOK) == {("probe", "035720"): 15}
    finally:
        repo.close()
    assert session.trader.position("probe", "005930") is None
