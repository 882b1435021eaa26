"""Restart reconciliation (:func:`core.reconcile.reconcile`) through a live session wired by
:func:`main.build_live_session` against the fake KIS over HTTP on 127.0.0.1 (and a fake
Telegram Bot API): the database's book is seeded, the fake account is changed, a new session
starts and each rule of the reconciliation is checked in the database, the engine, the
journal and the alerts. The harness is in ``tests/e2e/harness.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from core.live import LiveSession
from core.reconcile import ReconcileError, ReconcileReport
from core.risk import ExitPolicy
from core.trader import UNMANAGED
from framework.types import Order, OrderSide, OrderStatus, OrderType, Signal, SignalType
from tests.e2e.harness import (
    CODES,
    LIVE_BOOK,
    NOW,
    Harness,
    closed_rows,
    dead_url,
    harness,
    holding_rows,
    probe,
    seed_position,
)
from tests.fakes.harness import make_settings
from utils.ticks import round_to_tick


@pytest.fixture
def kis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    with harness(tmp_path, monkeypatch) as h:
        yield h


@dataclass
class Restart:
    """What one restart over a mixed book found and left behind."""

    h: Harness
    session: LiveSession
    report: ReconcileReport
    prices: dict[str, int]
    holding: dict[tuple[str, str], int]
    closed: list[dict[str, Any]]
    events: list[dict[str, Any]]
    alert: str


@pytest.fixture(scope="module")
def restart(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Restart]:
    """Book and account before the restart (shares)::

    code    database                    account
    005930  probe 10                    10      matched
    000660  -                           5       adopted as unmanaged
    035720  probe 25                    -       closed outside the bot
    005380  probe 10                    15      surplus 5 -> unmanaged
    000270  probe 4, unmanaged 2        9       surplus 3 -> unmanaged (now 5)
    035420  probe 10, unmanaged 3       8       shortfall 5: unmanaged 3 first, probe 2
    """
    tmp = tmp_path_factory.mktemp("restart")
    with pytest.MonkeyPatch.context() as mp, harness(tmp, mp) as h:
        prices = {code: h.fake.market.price(code) for code in CODES}
        repo = h.repo()
        try:
            seed_position(
                repo,
                "005930",
                10,
                prices["005930"],
                stop_loss=float(prices["005930"] - 3000),
                target_price=float(prices["005930"] + 9000),
                reasons=("golden cross", "volume up"),
                metadata={"sma_fast": 71.5},
                peak_price=float(prices["005930"] + 500),
            )
            seed_position(repo, "035720", 25, prices["035720"])
            seed_position(repo, "005380", 10, prices["005380"])
            seed_position(repo, "000270", 4, prices["000270"])
            seed_position(repo, "000270", 2, prices["000270"] - 2000, strategy=UNMANAGED)
            seed_position(repo, "035420", 10, prices["035420"])
            seed_position(
                repo,
                "035420",
                3,
                prices["035420"],
                strategy=UNMANAGED,
                opened_at=NOW.replace(hour=9, minute=1),
            )
        finally:
            repo.close()
        h.hold("005930", 10, prices["005930"])
        h.hold("000660", 5, prices["000660"] - 1000)
        h.hold("005380", 15, prices["005380"])
        h.hold("000270", 9, prices["000270"])
        h.hold("035420", 8, prices["035420"])
        session = h.build()
        report = session.start()
        alert = h.wait_text("재시작 대사")
        repo = h.repo()
        try:
            yield Restart(
                h=h,
                session=session,
                report=report,
                prices=prices,
                holding=holding_rows(repo),
                closed=closed_rows(repo),
                events=repo.get_events(run_id=LIVE_BOOK, kind="reconcile_difference"),
                alert=alert,
            )
        finally:
            repo.close()


def _diffs(report: ReconcileReport, code: str) -> list[tuple[str, str | None, Any, Any]]:
    return [
        (d.kind, d.strategy, d.db_qty, d.account_qty) for d in report.differences if d.code == code
    ]


def test_matched_position_is_restored_with_strategy_exits_and_reasons(restart: Restart) -> None:
    p = restart.prices["005930"]
    assert _diffs(restart.report, "005930") == [("matched", "probe", 10, 10)]
    pos = restart.session.trader.position("probe", "005930")
    assert pos is not None
    assert (pos.qty, pos.cost_basis_krw) == (10, 10 * p)
    assert (pos.stop_loss, pos.target_price) == (p - 3000, p + 9000)
    assert pos.reasons == ("golden cross", "volume up")
    assert pos.metadata == {"sma_fast": 71.5}
    assert pos.peak_price == p + 500
    assert pos.opened_at == NOW.replace(hour=9, minute=5)
    # the strategy sees it as its own position
    view = probe(restart.session).get_position("005930")
    assert view is not None
    assert view.qty == 10
    assert restart.holding[("probe", "005930")] == 10
    assert not [e for e in restart.events if e["data"]["code"] == "005930"]


def test_account_holding_missing_from_the_book_is_adopted_as_unmanaged(restart: Restart) -> None:
    avg = restart.prices["000660"] - 1000
    assert _diffs(restart.report, "000660") == [("adopted", UNMANAGED, 0, 5)]
    pos = restart.session.trader.position(UNMANAGED, "000660")
    assert pos is not None
    assert pos.qty == 5
    assert pos.avg_price == pytest.approx(avg)
    assert restart.holding[(UNMANAGED, "000660")] == 5
    # managed with live.unmanaged from the settings file, not the built-in defaults
    assert restart.session.trader.exit_policy(UNMANAGED) == ExitPolicy(0.07, 0.3, None)


def test_book_position_missing_from_the_account_is_closed(restart: Restart) -> None:
    assert _diffs(restart.report, "035720") == [("closed_outside", "probe", 25, 0)]
    assert restart.session.trader.position("probe", "035720") is None
    assert ("probe", "035720") not in restart.holding
    [row] = [r for r in restart.closed if r["stock_code"] == "035720"]
    assert row["strategy"] == "probe"
    assert row["qty"] == 0
    assert row["closed_at"] == NOW


def test_surplus_in_the_account_goes_to_unmanaged(restart: Restart) -> None:
    assert _diffs(restart.report, "005380") == [("qty_adjusted", None, 10, 15)]
    assert restart.holding[("probe", "005380")] == 10
    assert restart.holding[(UNMANAGED, "005380")] == 5


def test_surplus_is_added_to_an_existing_unmanaged_position(restart: Restart) -> None:
    p = restart.prices["000270"]
    assert _diffs(restart.report, "000270") == [("qty_adjusted", None, 6, 9)]
    assert restart.holding[("probe", "000270")] == 4
    assert restart.holding[(UNMANAGED, "000270")] == 5
    pos = restart.session.trader.position(UNMANAGED, "000270")
    assert pos is not None
    assert pos.cost_basis_krw == 2 * (p - 2000) + 3 * p  # the new shares at the account's avg


def test_shortfall_is_taken_from_unmanaged_first(restart: Restart) -> None:
    assert _diffs(restart.report, "035420") == [("qty_adjusted", None, 13, 8)]
    assert restart.holding[("probe", "035420")] == 8
    assert (UNMANAGED, "035420") not in restart.holding
    [row] = [r for r in restart.closed if r["stock_code"] == "035420"]
    assert row["strategy"] == UNMANAGED
    assert row["qty"] == 0
    portfolio = restart.session.trader._portfolio
    assert portfolio.qty("probe", "035420") == 8
    assert portfolio.get(UNMANAGED, "035420") is None


def test_book_equals_the_account_after_the_restart(restart: Restart) -> None:
    book: dict[str, int] = {}
    for (_, code), qty in restart.holding.items():
        book[code] = book.get(code, 0) + qty
    account = {c: h.qty for c, h in restart.h.fake.account().holdings.items() if h.qty > 0}
    assert book == account
    assert restart.report.cash_krw == restart.h.fake.account().cash_krw
    assert restart.session.trader.cash_krw == restart.h.fake.account().cash_krw


def test_every_difference_is_journaled_and_alerted_in_korean(restart: Restart) -> None:
    journaled = sorted((e["data"]["change"], e["data"]["code"]) for e in restart.events)
    assert journaled == [
        ("adopted", "000660"),
        ("closed_outside", "035720"),
        ("qty_adjusted", "000270"),
        ("qty_adjusted", "005380"),
        ("qty_adjusted", "035420"),
    ]
    assert all(e["level"] == "warning" for e in restart.events)
    lines = restart.alert.splitlines()
    assert lines[0] == "🔄 재시작 대사: 차이 5건"
    body = "\n".join(lines[1:])
    assert "• 계좌 보유분 편입: SK하이닉스(000660) [unmanaged] DB 0주 → 계좌 5주" in body
    [closed] = [ln for ln in lines if ln.startswith("• 외부 청산: ")]
    assert "035720" in closed
    assert "[probe] DB 25주 → 계좌 0주" in closed
    assert "• 수량 조정: 현대차(005380) DB 10주 → 계좌 15주" in body
    assert "• 수량 조정: NAVER(035420) DB 13주 → 계좌 8주" in body
    assert "• 수량 조정: 기아(000270) DB 6주 → 계좌 9주" in body
    assert "005930" not in body  # a match is no difference


# --- an adopted holding is protected by the default exits --------------------------------


def test_adopted_holding_is_sold_by_the_unmanaged_stop_loss(kis: Harness) -> None:
    price = kis.fake.market.price("000660")
    kis.hold("000660", 5, price)
    session = kis.build()
    session.start()
    session.run_job("open")
    assert kis.order_cash_requests() == 0
    kis.fake.set_price("000660", round_to_tick(price * 0.94))  # -6 %: inside the 7 % stop
    session.run_job("quotes")
    assert kis.order_cash_requests() == 0
    kis.fake.set_price("000660", round_to_tick(price * 0.92))  # -8 %: stop loss
    session.run_job("quotes")
    assert kis.order_cash_requests() == 1
    session.run_job("fills")
    assert "000660" not in kis.fake.account().holdings or (
        kis.fake.account().holdings["000660"].qty == 0
    )
    assert session.trader.position(UNMANAGED, "000660") is None
    repo = kis.repo()
    try:
        orders = repo.get_orders(LIVE_BOOK)
        [sell] = orders.itertuples()
        assert (sell.strategy, sell.side, sell.order_type, sell.qty) == (
            UNMANAGED,
            "sell",
            "market",
            5,
        )
        assert sell.status == "filled"
        assert "stop_loss" in sell.reasons[0]
        [row] = closed_rows(repo)
        assert (row["strategy"], row["stock_code"], row["qty"]) == (UNMANAGED, "000660", 0)
        assert holding_rows(repo) == {}
    finally:
        repo.close()
    kis.wait_text("🛡️ 손절 발동: SK하이닉스(000660)")


# --- open orders --------------------------------------------------------------------------


def test_fills_made_while_the_bot_was_down_are_applied_exactly_once(kis: Harness) -> None:
    first = kis.build()
    first.start()
    first.run_job("open")
    price = int(first.trader.prices["005930"])
    limit = round_to_tick(price * 0.97, "down")  # rests below the market
    probe(first).plan["005930"] = Signal(
        SignalType.BUY,
        "005930",
        confidence=80.0,
        qty=10,
        limit_price=limit,
        reasons=("test buy",),
        stop_loss=float(limit - 2000),
    )
    first.run_job("signals")
    [resting] = kis.fake.account().open_orders()
    assert (resting.code, resting.qty, resting.price) == ("005930", 10, limit)
    kis.end(first)  # the process dies with the order resting

    def restart() -> tuple[ReconcileReport, LiveSession]:
        session = kis.build()
        report = session.reconcile_only()
        kis.end(session)
        return report, session

    def fills() -> list[tuple[str, int]]:
        repo = kis.repo()
        try:
            frame = repo.get_fills(LIVE_BOOK)
            return [(str(r.stock_code), int(r.qty)) for r in frame.itertuples()]
        finally:
            repo.close()

    kis.fake.fill_order(resting.odno, 4)  # while down
    report, session = restart()
    assert report.fills_applied == 1  # one execution, of 4 shares
    assert fills() == [("005930", 4)]
    assert session.trader._portfolio.qty("probe", "005930") == 4
    assert [d.kind for d in report.differences] == ["matched"]

    report, session = restart()  # nothing new happened: nothing is applied again
    assert report.fills_applied == 0
    assert fills() == [("005930", 4)]
    assert session.trader._portfolio.qty("probe", "005930") == 4
    open_orders = [(o.client_order_id, o.filled_qty) for o in session.trader.open_orders()]
    assert len(open_orders) == 1
    assert open_orders[0][1] == 4

    kis.fake.fill_order(resting.odno)  # the other 6, while down again
    report, session = restart()
    assert report.fills_applied == 1
    assert fills() == [("005930", 4), ("005930", 6)]
    assert session.trader._portfolio.qty("probe", "005930") == 10

    report, session = restart()
    assert report.fills_applied == 0
    assert report.orders_restored == 0
    assert fills() == [("005930", 4), ("005930", 6)]
    repo = kis.repo()
    try:
        [order] = repo.get_orders(LIVE_BOOK).itertuples()
        assert (order.status, order.filled_qty) == ("filled", 10)
        assert holding_rows(repo) == {("probe", "005930"): 10}
    finally:
        repo.close()
    assert kis.order_cash_requests() == 1


def test_a_fill_applied_after_a_restart_keeps_the_signal_stop_loss(kis: Harness) -> None:
    first = kis.build()
    first.start()
    first.run_job("open")
    limit = round_to_tick(first.trader.prices["005930"] * 0.97, "down")
    probe(first).plan["005930"] = Signal(
        SignalType.BUY,
        "005930",
        qty=10,
        limit_price=limit,
        stop_loss=float(limit - 2000),
        target_price=float(limit + 9000),
    )
    first.run_job("signals")
    [resting] = kis.fake.account().open_orders()
    kis.end(first)
    kis.fake.fill_order(resting.odno)  # while down
    session = kis.build()
    session.start()
    pos = session.trader.position("probe", "005930")
    assert pos is not None
    assert pos.qty == 10
    assert (pos.stop_loss, pos.target_price) == (limit - 2000, limit + 9000)


def _pending(cid: str, code: str, qty: int, price: int | None) -> Order:
    return Order(
        client_order_id=cid,
        strategy="probe",
        stock_code=code,
        side=OrderSide.BUY,
        order_type=OrderType.MARKET if price is None else OrderType.LIMIT,
        qty=qty,
        price=price,
        created_at=NOW,
        updated_at=NOW,
        reasons=("written before the crash",),
    )


def test_pending_orders_are_adopted_if_they_reached_the_broker_else_rejected(
    kis: Harness,
) -> None:
    reached = _pending("Lcrash-0000001", "005930", 3, None)
    lost = _pending(
        "Lcrash-0000002", "035720", 7, round_to_tick(kis.fake.market.price("035720") * 0.9, "down")
    )
    repo = kis.repo()
    try:
        repo.ensure_run("live", {}, NOW, LIVE_BOOK)
        repo.save_order(LIVE_BOOK, reached, note="created")
        repo.save_order(LIVE_BOOK, lost, note="created")
    finally:
        repo.close()
    # the process sent the first one and died before writing the answer down
    from api.kis_broker import KISBroker

    with KISBroker(
        make_settings(kis.tmp / "tokens", kis.base_url), clock=kis.fake.clock, sleep=lambda _s: None
    ) as other:
        odno = other.submit_order(reached.to_request())
    assert kis.order_cash_requests() == 1
    assert kis.fake.account().holdings["005930"].qty == 3  # a market order: filled at once

    session = kis.build()
    report = session.start()
    assert kis.order_cash_requests() == 1, "an order was sent again"
    resolved = {d.detail.split()[0]: d for d in report.differences if d.kind == "order_resolved"}
    assert set(resolved) == {reached.client_order_id, lost.client_order_id}
    assert f"found at the broker as {odno}" in resolved[reached.client_order_id].detail
    assert "rejected" in resolved[lost.client_order_id].detail
    assert report.fills_applied == 1
    assert session.trader._portfolio.qty("probe", "005930") == 3
    assert [d.kind for d in report.differences if d.code == "005930"][-1] == "matched"
    assert session.trader.open_orders() == []
    repo = kis.repo()
    try:
        adopted, rejected = (
            repo.get_order(reached.client_order_id),
            repo.get_order(lost.client_order_id),
        )
        assert adopted is not None
        assert rejected is not None
        assert (adopted.status, adopted.broker_order_id, adopted.filled_qty) == (
            OrderStatus.FILLED,
            odno,
            3,
        )
        assert (rejected.status, rejected.broker_order_id) == (OrderStatus.REJECTED, None)
        notes = [n for _, _, n in repo.get_order_history(lost.client_order_id)]
        assert any("never reached the broker" in n for n in notes)
        assert len(repo.get_fills(LIVE_BOOK)) == 1
        assert holding_rows(repo) == {("probe", "005930"): 3}
    finally:
        repo.close()
    alert = kis.wait_text("주문 정리")
    assert "Lcrash-0000002" in alert


# --- a broker that cannot be read: nothing trades -----------------------------------------


def _assert_nothing_traded(kis: Harness, session: LiveSession) -> None:
    assert not session.started
    assert probe(session).calls == []
    session.run_job("open")
    session.run_job("signals")
    assert probe(session).calls == []
    assert kis.order_cash_requests() == 0


def test_broker_errors_during_reconciliation_stop_the_start(kis: Harness) -> None:
    repo = kis.repo()
    try:
        seed_position(repo, "005930", 10, 70_000)
        repo.save_order(LIVE_BOOK, _pending("Lcrash-0000009", "035720", 7, None), note="created")
    finally:
        repo.close()
    kis.hold("005930", 10, 70_000)
    session = kis.build()
    probe(session).plan["005930"] = Signal(SignalType.BUY, "005930", qty=1)
    kis.fake.inject("http_500", count=50)
    with pytest.raises(ReconcileError):
        session.start()
    _assert_nothing_traded(kis, session)
    repo = kis.repo()
    try:
        order = repo.get_order("Lcrash-0000009")
        assert order is not None
        assert order.status is OrderStatus.PENDING_NEW
        assert repo.get_events(LIVE_BOOK, kind="session_started") == []
    finally:
        repo.close()


def test_an_unreachable_broker_stops_the_start(
    kis: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KIS_BASE_URL", dead_url())
    session = kis.build()
    with pytest.raises(ReconcileError):
        session.start()
    _assert_nothing_traded(kis, session)
    assert kis.fake.stats.requests == 0
