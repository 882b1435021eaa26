"""Every fill applied once: the faults that used to lose or double a fill, each against a
live session wired like ``python main.py live`` over the fake KIS on 127.0.0.1.

Each test checks, per strategy, that the strategy's holdings equal the fills it owns, that
the book's holdings equal the account's and that the cash follows the account to the won.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from api.kis_notice import parse_fill_notice
from core.live import LiveSession
from core.trader import UNMANAGED
from framework.executor import ExecutionNotice
from framework.types import Fill, OrderSide, OrderStatus, Signal, SignalType
from tests.e2e.harness import (
    LIVE_BOOK,
    NOW,
    ORDER_CASH,
    Harness,
    harness,
    holding_rows,
    probe,
)
from utils.ticks import round_to_tick


@pytest.fixture
def kis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    with harness(tmp_path, monkeypatch, telegram=False) as h:
        yield h


def started(kis: Harness) -> LiveSession:
    session = kis.build()
    session.start()
    session.run_job("open")
    return session


def buy(session: LiveSession, code: str, qty: int, *, limit: int | None = None) -> None:
    probe(session).plan[code] = Signal(
        SignalType.BUY, code, confidence=80.0, qty=qty, limit_price=limit, reasons=("test",)
    )
    session.run_job("signals")


def resting_limit(kis: Harness, code: str) -> int:
    return round_to_tick(kis.fake.market.price(code) * 0.97, "down")


def assert_book(kis: Harness, session: LiveSession) -> None:
    """Per strategy: positions = net of its fills; the sum = the account; cash to the won."""
    repo = kis.repo()
    try:
        owned: Counter[tuple[str, str]] = Counter()
        for r in repo.get_fill_journal(LIVE_BOOK):
            owned[(r["strategy"], r["stock_code"])] += r["qty"] if r["side"] == "buy" else -r["qty"]
        rows = holding_rows(repo)
        fills = repo.get_fills(LIVE_BOOK)
        orders = repo.get_orders(LIVE_BOOK)
    finally:
        repo.close()
    assert +owned == Counter(rows), f"positions {rows} are not the fills' {dict(+owned)}"
    engine = {(p.strategy, p.stock_code): p.qty for p in session.trader.positions()}
    assert engine == rows
    account = kis.fake.account()
    by_code: Counter[str] = Counter()
    for (_, code), qty in rows.items():
        by_code[code] += qty
    assert by_code == Counter({c: h.qty for c, h in account.holdings.items() if h.qty})
    broker_filled = sum(o.filled_qty for o in account.orders if not o.cancel_record)
    assert int(fills["qty"].sum()) == broker_filled, "a fill is missing or doubled"
    assert int(orders["filled_qty"].sum()) == broker_filled
    session.run_job("account")
    assert session.trader.cash_krw == account.cash_krw


def events(kis: Harness, kind: str) -> list[dict[str, Any]]:
    repo = kis.repo()
    try:
        return repo.get_events(run_id=LIVE_BOOK, kind=kind)
    finally:
        repo.close()


# --- an order's answer lost after KIS filled it ----------------------------------------------


@pytest.mark.parametrize("fault", ["http_500", "malformed_json", "timeout"])
def test_an_order_filled_behind_a_lost_answer_is_booked_once(kis: Harness, fault: str) -> None:
    session = started(kis)
    cash_before = session.trader.cash_krw
    kis.fake.inject(fault, path=ORDER_CASH, after_processing=True, hold_s=0.0)
    buy(session, "005930", 5)  # market: KIS fills it at once, the answer is lost
    assert kis.order_cash_requests() == 1
    [order] = session.trader._orders.orders.values()
    assert (order.status, order.filled_qty) == (OrderStatus.FILLED, 5)
    assert session.trader._portfolio.qty("probe", "005930") == 5
    assert session.trader.cash_krw < cash_before  # the cost was booked
    session.run_job("signals")  # the strategy is not flat: nothing is bought again
    assert kis.order_cash_requests() == 1
    repo = kis.repo()
    try:
        [ledger] = repo.get_cash_ledger(LIVE_BOOK)
        [fill] = repo.get_fills(LIVE_BOOK).itertuples()
    finally:
        repo.close()
    assert ledger["amount_krw"] == -(int(fill.qty) * int(fill.price) + int(fill.commission_krw))
    assert_book(kis, session)


# --- an acknowledgement without an order number ---------------------------------------------


def test_an_ack_without_an_order_number_is_resolved_through_the_order_list(
    kis: Harness,
) -> None:
    session = started(kis)
    other = resting_limit(kis, "035720")
    buy(session, "035720", 3, limit=other)  # a resting order that must keep being tracked
    kis.fake.inject("no_odno", path=ORDER_CASH, after_processing=True)
    buy(session, "005930", 4)
    orders = {o.stock_code: o for o in session.trader._orders.orders.values()}
    blank = orders["005930"]
    assert blank.broker_order_id, "an order was recorded with a blank broker id"
    assert blank.broker_order_id == kis.fake.account().orders[-1].odno
    assert (blank.status, blank.filled_qty) == (OrderStatus.FILLED, 4)
    resting = kis.fake.account().open_orders()[0]
    kis.fake.fill_order(resting.odno, 2)
    session.run_job("fills")  # one bad answer never stops the polling of the others
    assert session.trader._portfolio.qty("probe", "035720") == 2
    kis.end(session)
    again = kis.build()
    again.start()  # the next start does not refuse
    assert again.started
    assert kis.order_cash_requests() == 2
    assert_book(kis, again)


def test_one_order_that_cannot_be_read_does_not_stop_the_others(kis: Harness) -> None:
    session = started(kis)
    buy(session, "035720", 3, limit=resting_limit(kis, "035720"))
    buy(session, "005930", 2, limit=resting_limit(kis, "005930"))
    first, second = sorted(session.trader.open_orders(), key=lambda o: o.client_order_id)
    first.broker_order_id = "9999999999"  # KIS does not know it: every read of it fails
    kis.fake.fill_order(kis.fake.account().orders[1].odno)
    session.run_job("fills")
    assert session.trader._portfolio.qty("probe", second.stock_code) == 2
    assert events(kis, "order_poll_failed")


# --- a fill after the order showed cancelled -------------------------------------------------


@pytest.mark.parametrize("when", ["while_watched", "after_the_watch"])
def test_a_fill_after_the_order_showed_cancelled_is_recorded(kis: Harness, when: str) -> None:
    session = started(kis)
    buy(session, "005930", 10, limit=resting_limit(kis, "005930"))
    [resting] = kis.fake.account().open_orders()
    kis.fake.fill_order(resting.odno, 4)
    kis.fake.end_of_day()  # the rest is cancelled; the order shows cancelled
    session.run_job("fills")
    [order] = session.trader._orders.orders.values()
    assert (order.status, order.filled_qty) == (OrderStatus.CANCELLED, 4)
    if when == "after_the_watch":
        kis.fake.advance(session.trader._orders.settle_s + 60)
        session.run_job("fills")  # no longer watched
    kis.fake.late_fill(resting.odno, 3)  # the exchange had filled 3 before the cancel
    session.run_job("fills" if when == "while_watched" else "account")
    assert order.filled_qty == 7
    assert order.status is OrderStatus.CANCELLED
    assert session.trader._portfolio.qty("probe", "005930") == 7
    assert events(kis, "account_mismatch") == []
    assert_book(kis, session)
    kis.end(session)
    again = kis.build()
    report = again.start()
    assert again.trader._portfolio.qty("probe", "005930") == 7
    assert UNMANAGED not in {d.strategy for d in report.differences}


def test_a_late_fill_while_the_bot_was_down_is_applied_at_restart(kis: Harness) -> None:
    session = started(kis)
    buy(session, "005930", 10, limit=resting_limit(kis, "005930"))
    [resting] = kis.fake.account().open_orders()
    kis.fake.end_of_day()
    session.run_job("fills")
    kis.end(session)
    kis.fake.late_fill(resting.odno, 5)
    again = kis.build()
    report = again.start()
    assert report.fills_applied == 1
    assert again.trader._portfolio.qty("probe", "005930") == 5
    assert [d.kind for d in report.differences] == ["matched"]
    assert_book(kis, again)


# --- the database cannot be written -----------------------------------------------------------


def test_a_fill_during_a_write_failure_is_applied_on_the_next_poll(
    kis: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = started(kis)
    alerts: list[str] = []
    session.trader.subscribe(lambda event: alerts.append(event.kind))
    buy(session, "005930", 6, limit=resting_limit(kis, "005930"))
    [resting] = kis.fake.account().open_orders()
    kis.fake.fill_order(resting.odno, 6)
    repo = session.repository
    disk_full = OperationalError("INSERT", {}, Exception("database or disk is full"))

    def fail(*_a: Any, **_k: Any) -> Any:
        raise disk_full

    for name in ("record_fill", "save_order", "log_event", "save_equity_snapshots",
                 "save_state", "record_cash"):
        monkeypatch.setattr(repo, name, fail)
    session.run_job("fills")  # never raises
    session.run_job("account")
    buy(session, "035720", 1)  # no order may be sent while nothing can be written
    assert kis.order_cash_requests() == 1
    assert alerts.count("storage_error") == 1
    [order] = session.trader._orders.orders.values()
    assert order.filled_qty == 0, "the fill was applied in memory without its write"
    assert session.trader._portfolio.qty("probe", "005930") == 0
    monkeypatch.undo()
    session.run_job("fills")  # retried from the broker
    assert (order.status, order.filled_qty) == (OrderStatus.FILLED, 6)
    assert session.trader._portfolio.qty("probe", "005930") == 6
    assert session.trader.storage_error is None
    assert_book(kis, session)


def test_a_kill_between_any_two_writes_of_a_fill_leaves_all_or_nothing(kis: Harness) -> None:
    session = started(kis)
    buy(session, "005930", 8, limit=resting_limit(kis, "005930"))
    [resting] = kis.fake.account().open_orders()
    kis.fake.fill_order(resting.odno, 8)
    engine = session.repository.engine
    armed = {"left": -1, "seen": 0}

    def die(*_a: Any, **_k: Any) -> None:
        if armed["left"] < 0:
            return
        armed["seen"] += 1
        if armed["left"] == 0:
            raise OperationalError("kill", {}, Exception("process killed here"))
        armed["left"] -= 1

    event.listen(engine, "before_cursor_execute", die)
    try:
        statements = None
        for k in range(30):
            armed.update(left=k, seen=0)
            before = _tables(kis)
            session.run_job("fills")
            if armed["left"] > 0 or session.trader._portfolio.qty("probe", "005930"):
                statements = k
                break
            assert _tables(kis) == before, f"a write survived a kill at statement {k}"
        assert statements is not None
        assert statements >= 4
    finally:
        armed["left"] = -1
        event.remove(engine, "before_cursor_execute", die)
    session.run_job("fills")
    assert session.trader._portfolio.qty("probe", "005930") == 8
    kis.end(session)
    again = kis.build()
    again.start()
    assert_book(kis, again)


def _tables(kis: Harness) -> tuple[Any, ...]:
    repo = kis.repo()
    try:
        return (
            len(repo.get_fill_journal(LIVE_BOOK)),
            holding_rows(repo),
            len(repo.get_cash_ledger(LIVE_BOOK)),
            tuple(repo.get_orders(LIVE_BOOK)["filled_qty"]),
        )
    finally:
        repo.close()


def test_the_same_fill_twice_writes_nothing(kis: Harness) -> None:
    session = started(kis)
    buy(session, "005930", 2)
    session.run_job("fills")
    [order] = session.trader._orders.orders.values()
    repo = session.repository
    [row] = repo.get_fill_journal(LIVE_BOOK)
    fill = Fill(row["fill_id"], order.client_order_id, "005930", OrderSide.BUY, 2,
                row["price"], row["time"])
    position = {"strategy": "probe", "stock_code": "005930", "qty": 2, "avg_price": 1.0,
                "cost_basis_krw": 2, "opened_at": NOW, "status": "holding", "closed_at": None}
    assert not repo.record_fill(LIVE_BOOK, order=order, note="again", fill=fill,
                                position=position, cash_delta_krw=-1)
    assert len(repo.get_cash_ledger(LIVE_BOOK)) == 1
    assert_book(kis, session)


# --- a notice and a poll of the same execution -----------------------------------------------


def _notice(odno: str, code: str, qty: int, price: int, hhmmss: str) -> ExecutionNotice:
    fields = ["cust", "acct", odno, "", "02", "0", "00", "0", code, str(qty), str(price),
              hhmmss, "0", "2", "2", "00950", "10", "name", "", "", "", "", "", "", "", ""]
    notice = parse_fill_notice("^".join(fields), NOW.date())
    assert notice is not None
    return notice


def test_a_notice_and_a_poll_of_the_same_execution_apply_once(kis: Harness) -> None:
    session = started(kis)
    limit = resting_limit(kis, "005930")
    buy(session, "005930", 10, limit=limit)
    [resting] = kis.fake.account().open_orders()
    trader = session.trader
    kis.fake.fill_order(resting.odno, 4, limit)
    first = _notice(resting.odno, "005930", 4, limit, "093001")
    fill = trader.apply_notice(first)  # the notice comes first
    assert fill is not None
    assert fill.qty == 4
    assert trader.apply_notice(first) is None  # the same notice again
    session.run_job("fills")  # the poll sees the same execution
    assert trader._portfolio.qty("probe", "005930") == 4
    kis.fake.fill_order(resting.odno, 3, limit)
    session.run_job("fills")  # now the poll comes first
    assert trader.apply_notice(_notice(resting.odno, "005930", 3, limit, "093105")) is None
    assert trader._portfolio.qty("probe", "005930") == 7
    kis.fake.fill_order(resting.odno, 1, limit)
    kis.fake.fill_order(resting.odno, 2, limit)
    session.run_job("fills")  # one poll sees two executions as one change of 3
    for qty, at in ((1, "093201"), (2, "093202")):
        assert trader.apply_notice(_notice(resting.odno, "005930", qty, limit, at)) is None
    assert trader._portfolio.qty("probe", "005930") == 10
    assert_book(kis, session)


def test_acknowledgement_notices_are_not_fills() -> None:
    fields = ["c", "a", "0000010001", "", "02", "0", "00", "0", "005930", "10", "70000",
              "093000", "0", "1", "1", "00950", "10"]
    assert parse_fill_notice("^".join(fields), NOW.date()) is None


# --- a restart rebuilds positions from the fills ---------------------------------------------


def test_shares_the_fills_explain_are_never_relabelled_unmanaged(kis: Harness) -> None:
    session = started(kis)
    buy(session, "005930", 10)
    session.run_job("fills")
    kis.end(session)
    repo = kis.repo()
    try:  # a book damaged as an older version left it: 6 of the strategy's 10 unmanaged
        repo.save_position(LIVE_BOOK, strategy="probe", stock_code="005930", qty=4,
                           avg_price=70_000.0, cost_basis_krw=280_000, status="holding",
                           opened_at=NOW)
        repo.save_position(LIVE_BOOK, strategy=UNMANAGED, stock_code="005930", qty=6,
                           avg_price=70_000.0, cost_basis_krw=420_000, status="holding",
                           opened_at=NOW)
    finally:
        repo.close()
    again = kis.build()
    again.start()
    assert again.trader._portfolio.qty("probe", "005930") == 10
    assert again.trader.position(UNMANAGED, "005930") is None
    assert_book(kis, again)


def test_an_order_filled_without_its_fill_row_is_completed_at_restart(kis: Harness) -> None:
    session = started(kis)
    buy(session, "005930", 6, limit=resting_limit(kis, "005930"))
    [resting] = kis.fake.account().open_orders()
    [order] = session.trader._orders.orders.values()
    kis.end(session)
    kis.fake.fill_order(resting.odno, 6)
    broken = order.copy()  # what the old three-commit write left after a kill
    broken.status, broken.filled_qty, broken.filled_amount_krw = OrderStatus.FILLED, 6, 1
    repo = kis.repo()
    try:
        repo.save_order(LIVE_BOOK, broken, note="filled without its fill")
    finally:
        repo.close()
    again = kis.build()
    report = again.start()
    assert report.fills_applied == 1
    assert again.trader._portfolio.qty("probe", "005930") == 6
    assert_book(kis, again)


# --- state that must survive a restart --------------------------------------------------------


def test_strategy_state_and_the_high_water_mark_survive_a_restart(kis: Harness) -> None:
    session = started(kis)
    probe(session).save_state({"entries": [1, 2], "note": "한글"})
    session.trader._risk.peak_equity_krw = 10**12
    session.run_job("account")
    with pytest.raises(TypeError):
        probe(session).save_state({"bad": object()})
    kis.end(session)
    again = kis.build()
    again.start()
    assert probe(again).load_state() == {"entries": [1, 2], "note": "한글"}
    again.run_job("open")
    assert again.trader._risk.peak_equity_krw == 10**12


def test_a_pending_replacement_survives_a_restart(kis: Harness) -> None:
    session = started(kis)
    buy(session, "005930", 5, limit=resting_limit(kis, "005930"))
    [order] = session.trader.open_orders()
    session.trader.order_policy = type(session.trader.order_policy)(60.0, 60.0, 1)
    kis.fake.advance(120)
    session.trader.manage_timeouts()  # the cancel is sent; the re-placement awaits it
    kis.end(session)
    again = kis.build()
    again.trader.order_policy = type(again.trader.order_policy)(60.0, 60.0, 1)
    again.start()
    again.run_job("open")  # prices are known: the re-placement follows
    again.run_job("fills")
    replaced = [o for o in again.trader._orders.orders.values() if o.replaces]
    assert [(o.replaces, o.qty) for o in replaced] == [(order.client_order_id, 5)]
    assert kis.order_cash_requests() == 2

