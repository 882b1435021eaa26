"""Repository on a real SQLite file and a real PostgreSQL database: orders, fills,
positions, equity, events, restart.

Every test taking ``repo`` / ``db_url`` runs on both back ends (``[sqlite]`` on a file in
``tmp_path``, ``[postgresql]`` on a fresh database of the server in
``KIS_TRADER_TEST_PG_URL``, skipped without one unless ``KIS_TRADER_REQUIRE_PG=1``).
Tests of SQLite engine settings use ``sqlite_url`` only.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from core.journal import DatabaseJournal, position_fields
from core.portfolio import Position
from db.engine import database_url, make_engine
from db.repository import Repository
from framework.types import Fill, Order, OrderSide, OrderStatus, OrderType, SignalType
from utils.clock import KST

T0 = datetime(2024, 3, 4, 9, 0, tzinfo=KST)
MAX_KRW = 10**13
BACKENDS = ("sqlite", "postgresql")


def _clock() -> datetime:
    return T0


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'trader.db'}"


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    """A new, empty database: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return sqlite_url
    return str(request.getfixturevalue("pg_db_url"))


@pytest.fixture
def repo(db_url: str) -> Iterator[Repository]:
    r = Repository(db_url, clock=_clock)
    yield r
    r.close()


@pytest.fixture
def run_id(repo: Repository) -> str:
    return repo.create_run("backtest", {"cash": 10_000_000}, T0)


def _order(cid: str = "o-1", **kw: object) -> Order:
    base: dict[str, object] = {
        "client_order_id": cid,
        "strategy": "momentum",
        "stock_code": "005930",
        "side": OrderSide.BUY,
        "order_type": OrderType.LIMIT,
        "qty": 10,
        "price": 71_000,
        "created_at": T0,
        "updated_at": T0,
        "reasons": ("golden cross",),
        "metadata": {"rsi": 28.5},
        "signal_type": SignalType.BUY,
    }
    base.update(kw)
    return Order(**base)  # type: ignore[arg-type]


def _fill(fid: str, cid: str = "o-1", qty: int = 4, price: int = 71_000) -> Fill:
    return Fill(
        fill_id=fid,
        client_order_id=cid,
        stock_code="005930",
        side=OrderSide.BUY,
        qty=qty,
        price=price,
        time=T0 + timedelta(seconds=5),
        commission_krw=42,
        broker_order_id="B-1",
    )


def test_order_saved_before_send_then_updated_keeps_history_in_order(repo, run_id):
    order = _order()
    repo.save_order(run_id, order, note="before send")
    assert repo.get_order("o-1").status is OrderStatus.PENDING_NEW

    order.status, order.broker_order_id = OrderStatus.SUBMITTED, "B-1"
    order.updated_at = T0 + timedelta(seconds=1)
    repo.save_order(run_id, order, note="accepted")
    repo.save_order(run_id, order, note="same status again")  # no history row
    order.status, order.filled_qty, order.filled_amount_krw = (
        OrderStatus.PARTIALLY_FILLED,
        4,
        284_000,
    )
    order.avg_fill_price, order.updated_at = 71_000.0, T0 + timedelta(seconds=5)
    repo.save_order(run_id, order)
    order.status, order.filled_qty, order.filled_amount_krw = OrderStatus.FILLED, 10, 710_500
    order.avg_fill_price, order.commission_krw = 71_050.0, 106
    order.updated_at = T0 + timedelta(seconds=9)
    repo.save_order(run_id, order, note="done")

    stored = repo.get_order("o-1")
    assert stored == order
    history = repo.get_order_history("o-1")
    assert [h[0] for h in history] == [
        OrderStatus.PENDING_NEW,
        OrderStatus.SUBMITTED,
        OrderStatus.PARTIALLY_FILLED,
        OrderStatus.FILLED,
    ]
    assert [h[2] for h in history] == ["before send", "accepted", "", "done"]
    assert [h[1] for h in history] == sorted(h[1] for h in history)
    assert all(h[1].tzinfo is not None and h[1].utcoffset() == timedelta(hours=9) for h in history)
    assert repo.get_open_orders(run_id) == []


def test_open_orders_and_orders_frame(repo, run_id):
    repo.save_order(run_id, _order("a"))
    repo.save_order(run_id, _order("b", status=OrderStatus.SUBMITTED, broker_order_id="B-2"))
    repo.save_order(run_id, _order("c", status=OrderStatus.CANCELLED))
    repo.save_order(
        run_id, _order("d", order_type=OrderType.MARKET, price=None, status=OrderStatus.UNKNOWN)
    )

    assert [o.client_order_id for o in repo.get_open_orders()] == ["a", "b", "d"]
    df = repo.get_orders(run_id)
    assert list(df["client_order_id"]) == ["a", "b", "c", "d"]
    assert df["price"].isna().tolist() == [False, False, False, True]
    assert str(df["created_at"].dt.tz) == "Asia/Seoul"
    assert df.loc[0, "metadata"] == {"rsi": 28.5}


def test_bulk_orders_write_initial_and_final_history(repo, run_id):
    orders = [
        _order(
            f"bt-{i}",
            status=OrderStatus.FILLED,
            filled_qty=10,
            updated_at=T0 + timedelta(minutes=i),
        )
        for i in range(300)
    ]
    orders.append(_order("bt-open"))

    assert repo.save_orders_bulk(run_id, orders) == 301

    assert len(repo.get_orders(run_id)) == 301
    history = repo.get_order_history("bt-7")
    assert [(s, at) for s, at, _ in history] == [
        (OrderStatus.PENDING_NEW, T0),
        (OrderStatus.FILLED, T0 + timedelta(minutes=7)),
    ]
    assert [s for s, _, _ in repo.get_order_history("bt-open")] == [OrderStatus.PENDING_NEW]


def test_same_fill_twice_is_stored_once(repo, run_id):
    assert repo.save_fill(run_id, _fill("F-1"), "momentum") is True
    assert repo.save_fill(run_id, _fill("F-1"), "momentum") is False
    repo.save_fills_bulk(run_id, [("momentum", _fill("F-1")), ("momentum", _fill("F-2", qty=6))])

    df = repo.get_fills(run_id)
    assert list(df["fill_id"]) == ["F-1", "F-2"]
    assert df["amount_krw"].tolist() == [284_000, 426_000]
    assert str(df["time"].dt.tz) == "Asia/Seoul"


def test_position_open_update_close_then_reopen(repo, run_id):
    common = {"strategy": "momentum", "stock_code": "005930"}
    first = repo.save_position(
        run_id,
        **common,
        qty=10,
        avg_price=71_000.0,
        cost_basis_krw=710_106,
        status="holding",
        opened_at=T0,
        stop_loss=68_000,
        reasons=["golden cross"],
        metadata={"atr": 1200},
    )
    later = T0 + timedelta(days=1)
    same = repo.save_position(
        run_id,
        **common,
        qty=15,
        avg_price=71_333.3333,
        cost_basis_krw=1_070_160,
        status="holding",
        opened_at=later,
        target_price=80_000.5,
    )
    assert same == first
    [pos] = repo.get_positions(run_id, strategy="momentum")
    assert (pos["qty"], pos["avg_price"], pos["opened_at"]) == (15, 71_333.3333, T0)
    assert pos["target_price"] == 80_000.5

    closed = repo.save_position(
        run_id,
        **common,
        qty=0,
        avg_price=71_333.3333,
        cost_basis_krw=0,
        status="closed",
        opened_at=T0,
        closed_at=later,
        realized_pnl_krw=-12_345,
    )
    assert closed == first
    assert repo.get_positions(run_id) == []
    reopened = repo.save_position(
        run_id,
        **common,
        qty=1,
        avg_price=70_000.0,
        cost_basis_krw=70_010,
        status="holding",
        opened_at=later,
    )
    assert reopened != first
    rows = repo.get_positions(run_id, status=None)
    assert [(r["status"], r["realized_pnl_krw"]) for r in rows] == [
        ("closed", -12_345),
        ("holding", 0),
    ]
    assert rows[0]["closed_at"] == later


def test_position_rejects_bad_input(repo, run_id):
    with pytest.raises(ValueError, match="closed_at"):
        repo.save_position(
            run_id,
            strategy="s",
            stock_code="005930",
            qty=0,
            avg_price=0,
            cost_basis_krw=0,
            status="closed",
            opened_at=T0,
        )
    with pytest.raises(ValueError, match="status"):
        repo.save_position(
            run_id,
            strategy="s",
            stock_code="005930",
            qty=1,
            avg_price=1,
            cost_basis_krw=1,
            status="open",
            opened_at=T0,
        )
    with pytest.raises(ValueError, match="tz-aware"):
        repo.save_position(
            run_id,
            strategy="s",
            stock_code="005930",
            qty=1,
            avg_price=1,
            cost_basis_krw=1,
            status="holding",
            opened_at=datetime(2024, 1, 1),  # noqa: DTZ001
        )


def test_equity_round_trip_in_seoul_time_and_upsert(repo, run_id):
    # Given in UTC: the instants must survive, shown in Asia/Seoul.
    start = datetime(2024, 3, 4, 0, 0, tzinfo=UTC)
    rows = [
        (start + timedelta(minutes=i), 1_000_000 - i, i * 10, 1_000_000 + 9 * i) for i in range(500)
    ]
    assert repo.save_equity_snapshots(run_id, reversed(rows), chunk_size=64) == 500
    repo.save_equity_snapshots(run_id, [(start, 1, 2, 3)])  # same time again: overwritten

    df = repo.get_equity(run_id)
    assert str(df.index.tz) == "Asia/Seoul"
    assert df.index.is_monotonic_increasing
    assert df.index[0] == start
    assert df.index[0].hour == 9
    assert df.iloc[0].tolist() == [1, 2, 3]
    assert df.iloc[-1].tolist() == [1_000_000 - 499, 4_990, 1_000_000 + 9 * 499]
    assert all(str(t) == "int64" for t in df.dtypes)
    assert repo.get_equity("no-such-run").empty


def test_naive_times_and_fractional_money_are_refused(repo, run_id):
    naive = datetime(2024, 3, 4, 9, 0)  # noqa: DTZ001
    with pytest.raises(ValueError, match="tz-aware"):
        repo.save_equity_snapshots(run_id, [(naive, 1, 1, 2)])
    with pytest.raises(ValueError, match="tz-aware"):
        repo.save_order(run_id, _order(created_at=naive))
    with pytest.raises(TypeError):
        repo.save_equity_snapshots(run_id, [(T0, 1_000_000.5, 0, 1_000_000)])
    with pytest.raises(TypeError):
        repo.save_order(run_id, _order(commission_krw=10.7))
    assert repo.get_equity(run_id).empty
    assert repo.get_order("o-1") is None


def test_events_and_runs(repo, run_id):
    repo.log_event(
        "reconcile",
        "qty differs",
        run_id=run_id,
        level="warning",
        data={"code": "005930", "db": 10, "broker": 9},
        at=T0,
    )
    repo.log_event("startup", "hello")

    assert [e["kind"] for e in repo.get_events()] == ["reconcile", "startup"]
    [event] = repo.get_events(run_id=run_id, kind="reconcile")
    assert event["data"] == {"code": "005930", "db": 10, "broker": 9}
    assert (event["level"], event["at"]) == ("warning", T0)

    repo.finish_run(run_id, T0 + timedelta(hours=6), {"return_pct": 1.5})
    run = repo.get_run(run_id)
    assert run["summary"] == {"return_pct": 1.5}
    assert run["config"] == {"cash": 10_000_000}
    assert [r["run_id"] for r in repo.list_runs(mode="backtest")] == [run_id]
    assert repo.list_runs(mode="live") == []
    with pytest.raises(KeyError):
        repo.finish_run("missing", T0, {})
    with pytest.raises(ValueError, match="mode"):
        repo.create_run("paper", {}, T0)
    repo.upsert_strategy("momentum", True, {"k": 1})
    repo.upsert_strategy("momentum", False, {"k": 2})
    [strategy] = repo.get_strategies()
    assert (strategy["enabled"], strategy["config"]) == (False, {"k": 2})


def test_second_repository_on_same_database_sees_everything(db_url, repo, run_id):
    repo.save_order(run_id, _order("live-1", status=OrderStatus.SUBMITTED, broker_order_id="B"))
    repo.save_fill(run_id, _fill("F-9", cid="live-1"), "momentum")
    repo.save_position(
        run_id,
        strategy="momentum",
        stock_code="005930",
        qty=4,
        avg_price=71_000.0,
        cost_basis_krw=284_042,
        status="holding",
        opened_at=T0,
        stop_loss=68_000.0,
    )
    repo.close()

    restarted = Repository(db_url)
    try:
        [open_order] = restarted.get_open_orders()
        assert open_order == _order("live-1", status=OrderStatus.SUBMITTED, broker_order_id="B")
        assert restarted.get_positions()[0]["stop_loss"] == 68_000.0
        assert len(restarted.get_fills(run_id)) == 1
        assert restarted.get_run(run_id)["mode"] == "backtest"
    finally:
        restarted.close()


def test_concurrent_save_order_loses_nothing(repo, run_id):
    n_threads, per_thread = 8, 25
    errors: list[BaseException] = []
    barrier = threading.Barrier(n_threads)

    def work(t: int) -> None:
        try:
            barrier.wait()
            for i in range(per_thread):
                order = _order(f"t{t}-{i}")
                repo.save_order(run_id, order)
                order.status = OrderStatus.SUBMITTED
                repo.save_order(run_id, order)
                repo.save_order(run_id, _order("shared", status=OrderStatus.SUBMITTED))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()

    assert errors == []
    assert len(repo.get_orders(run_id)) == n_threads * per_thread + 1
    assert len(repo.get_order_history("t3-7")) == 2
    assert [s for s, _, _ in repo.get_order_history("shared")] == [OrderStatus.SUBMITTED]


@pytest.fixture(scope="module", params=BACKENDS)
def shared_repo(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Repository, str]]:
    def open_repo(url: str) -> Iterator[tuple[Repository, str]]:
        r = Repository(url, clock=_clock)
        yield r, r.create_run("backtest", {}, T0)
        r.close()

    if request.param == "sqlite":
        yield from open_repo(f"sqlite:///{tmp_path_factory.mktemp('money') / 'money.db'}")
        return
    with request.getfixturevalue("pg_fresh_database")() as url:
        yield from open_repo(url)


money = st.integers(min_value=0, max_value=MAX_KRW)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    price=st.integers(1, MAX_KRW),
    commission=money,
    tax=money,
    cash=money,
    held=money,
    pnl=st.integers(-MAX_KRW, MAX_KRW),
    qty=st.integers(1, 10**9),
    n=st.integers(0, 10**9),
)
def test_money_round_trips_exactly(shared_repo, price, commission, tax, cash, held, pnl, qty, n):
    repo, run_id = shared_repo
    cid = uuid.uuid4().hex
    # A fill's amount (qty x price) is money too: keep it within the exact range tested
    # (the fills frame is int64, and no trade is worth more than 10^13 KRW).
    fill_qty = 1 + qty % (MAX_KRW // price)
    order = _order(
        cid,
        qty=qty,
        price=price,
        commission_krw=commission,
        tax_krw=tax,
        filled_amount_krw=price * 3,
        filled_qty=3,
        avg_fill_price=float(price),
    )
    repo.save_order(run_id, order)
    fill = Fill(
        fill_id=cid,
        client_order_id=cid,
        stock_code="005930",
        side=OrderSide.SELL,
        qty=fill_qty,
        price=price,
        time=T0,
        commission_krw=commission,
        tax_krw=tax,
    )
    repo.save_fill(run_id, fill, "momentum")
    at = T0 + timedelta(seconds=n)
    repo.save_equity_snapshots(run_id, [(at, cash, held, cash + held)])
    pos_id = repo.save_position(
        run_id,
        strategy=cid,
        stock_code="005930",
        qty=qty,
        avg_price=71_234.5678,
        cost_basis_krw=price * 7,
        status="holding",
        opened_at=T0,
        realized_pnl_krw=pnl,
    )

    got = repo.get_order(cid)
    assert (got.price, got.commission_krw, got.tax_krw, got.filled_amount_krw, got.qty) == (
        price,
        commission,
        tax,
        price * 3,
        qty,
    )
    fills = repo.get_fills(run_id).set_index("fill_id")
    assert int(fills.loc[cid, "price"]) == price
    assert int(fills.loc[cid, "amount_krw"]) == fill_qty * price
    assert int(fills.loc[cid, "tax_krw"]) == tax
    assert repo.get_equity(run_id).loc[at].tolist() == [cash, held, cash + held]
    [pos] = [p for p in repo.get_positions(run_id, strategy=cid) if p["id"] == pos_id]
    assert (pos["cost_basis_krw"], pos["realized_pnl_krw"]) == (price * 7, pnl)
    assert pos["avg_price"] == 71_234.5678


def test_database_url_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("DATABASE_URL", "postgres://u:p@db/kis")
    assert database_url("sqlite:///x.db") == "sqlite:///x.db"
    assert database_url() == "postgresql://u:p@db/kis"
    monkeypatch.delenv("DATABASE_URL")
    monkeypatch.chdir(tmp_path)
    assert database_url() == f"sqlite:///{tmp_path / 'kis_trader.db'}"


def test_sqlite_engine_uses_wal_foreign_keys_and_busy_timeout(sqlite_url):
    engine = make_engine(sqlite_url, busy_timeout_s=5)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
            assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 5000
    finally:
        engine.dispose()


# ------------------------------------------------------------ live-trading additions


def test_replacement_order_fields_round_trip(db_url, repo, run_id):
    original = _order("o-1", status=OrderStatus.CANCELLED, broker_order_id="B-1")
    replacement = _order("o-1-r2", replaces="o-1", attempt=2, status=OrderStatus.SUBMITTED)
    repo.save_order(run_id, original)
    repo.save_order(run_id, replacement)
    repo.save_orders_bulk(run_id, [_order("bt-r1", replaces="bt", attempt=1)])

    assert repo.get_order("o-1") == original
    assert (original.replaces, original.attempt) == (None, 0)
    assert repo.get_order("o-1-r2") == replacement
    assert [(o.client_order_id, o.replaces, o.attempt) for o in repo.get_open_orders()] == [
        ("o-1-r2", "o-1", 2),
        ("bt-r1", "bt", 1),
    ]
    df = repo.get_orders(run_id).set_index("client_order_id")
    assert df.loc["o-1-r2", "replaces"] == "o-1"
    assert pd.isna(df.loc["o-1", "replaces"])
    assert df["attempt"].tolist() == [0, 2, 1]
    assert str(df["attempt"].dtype) == "int64"

    with pytest.raises(ValueError, match="attempt"):
        repo.save_order(run_id, _order("bad", attempt=-1))
    with pytest.raises(TypeError):
        repo.save_order(run_id, _order("bad", attempt=1.5))
    assert repo.get_order("bad") is None

    replacement.attempt, replacement.status = 3, OrderStatus.FILLED  # updated in place
    repo.save_order(run_id, replacement)
    repo.close()
    restarted = Repository(db_url)
    try:
        assert restarted.get_order("o-1-r2").attempt == 3
    finally:
        restarted.close()


def test_position_peak_price_is_stored_and_replaced(repo, run_id):
    common = {"strategy": "trail", "stock_code": "005930", "status": "holding", "opened_at": T0}
    pos_id = repo.save_position(
        run_id, **common, qty=10, avg_price=70_000.0, cost_basis_krw=700_000
    )
    assert repo.get_positions(run_id)[0]["peak_price"] is None
    repo.save_position(
        run_id, **common, qty=10, avg_price=70_000.0, cost_basis_krw=700_000, peak_price=72_500.5
    )
    [pos] = repo.get_positions(run_id)
    assert (pos["id"], pos["peak_price"]) == (pos_id, 72_500.5)
    repo.save_position(
        run_id, **common, qty=10, avg_price=70_000.0, cost_basis_krw=700_000, peak_price=74_000
    )
    assert repo.get_positions(run_id)[0]["peak_price"] == 74_000.0


def test_journal_position_fields_are_accepted(repo, run_id):
    """The engine's journal (backtest and live) passes ``position_fields`` as keywords."""
    position = Position(
        "trail",
        "000660",
        qty=5,
        cost_basis_krw=600_000,
        opened_at=T0,
        stop_loss=110_000.0,
        reasons=("breakout",),
        metadata={"atr": 2_000},
        peak_price=125_000.0,
    )
    assert "peak_price" in position_fields(position)
    journal = DatabaseJournal(repo, run_id)
    journal.position(position)
    [held] = repo.get_positions(run_id, strategy="trail")
    assert (held["qty"], held["avg_price"], held["peak_price"]) == (5, 120_000.0, 125_000.0)
    assert (held["reasons"], held["metadata"]) == (("breakout",), {"atr": 2_000})

    position.qty, position.cost_basis_krw, position.realized_pnl_krw = 0, 0, 24_000
    journal.position(position, closed_at=T0 + timedelta(days=3))
    [closed] = repo.get_positions(run_id, status="closed")
    assert (closed["id"], closed["realized_pnl_krw"]) == (held["id"], 24_000)
    assert closed["closed_at"] == T0 + timedelta(days=3)


def test_ensure_run_creates_once_and_keeps_the_first(db_url, repo):
    live_id = "live-12345678-01"
    assert repo.ensure_run("live", {"account": "12345678-01"}, T0, live_id) is True
    later = T0 + timedelta(days=1)
    assert repo.ensure_run("live", {"account": "changed"}, later, live_id) is False
    run = repo.get_run(live_id)
    assert (run["mode"], run["config"], run["started_at"]) == (
        "live",
        {"account": "12345678-01"},
        T0,
    )
    repo.save_order(live_id, _order("live-1", status=OrderStatus.SUBMITTED))
    repo.close()

    restarted = Repository(db_url, clock=_clock)  # the process starts again, same run id
    try:
        assert restarted.ensure_run("live", {}, later, live_id) is False
        assert [o.client_order_id for o in restarted.get_open_orders(live_id)] == ["live-1"]
        assert len(restarted.list_runs()) == 1
        with pytest.raises(ValueError, match="mode"):
            restarted.ensure_run("paper", {}, T0, "x")
        with pytest.raises(ValueError, match="empty"):
            restarted.ensure_run("live", {}, T0, "")
        with pytest.raises(ValueError, match="tz-aware"):
            restarted.ensure_run("live", {}, datetime(2024, 1, 1), "y")  # noqa: DTZ001
        assert restarted.get_run("x") is None
    finally:
        restarted.close()


def test_get_fill_ids_per_run_and_overall(repo, run_id):
    other = repo.create_run("live", {}, T0)
    assert repo.get_fill_ids() == set()
    repo.save_fill(run_id, _fill("F-1"), "momentum")
    repo.save_fills_bulk(run_id, [("momentum", _fill("F-2")), ("momentum", _fill("F-1"))])
    repo.save_fill(other, _fill("F-3"), "momentum")

    assert repo.get_fill_ids(run_id) == {"F-1", "F-2"}
    assert repo.get_fill_ids(other) == {"F-3"}
    assert repo.get_fill_ids() == {"F-1", "F-2", "F-3"}
    assert repo.get_fill_ids("no-such-run") == set()


def test_get_last_equity_and_minute_snapshot_upsert(repo, run_id):
    assert repo.get_last_equity(run_id) is None
    minutes = [T0 + timedelta(minutes=i) for i in range(5)]
    repo.save_equity_snapshots(
        run_id, [(t, 1_000 + i, 10 * i, 1_000 + 11 * i) for i, t in enumerate(minutes)]
    )
    # live trading writes each minute and may restart: the same minute again replaces it
    repo.save_equity_snapshots(run_id, [(minutes[4], 7, 8, 15)])
    repo.save_equity_snapshots(run_id, [(minutes[4], 9, 8, 17)])

    assert repo.get_last_equity(run_id) == {
        "at": minutes[4],
        "cash_krw": 9,
        "holdings_value_krw": 8,
        "equity_krw": 17,
    }
    last = repo.get_last_equity(run_id, before=minutes[2] + timedelta(seconds=30))
    assert last == {
        "at": minutes[2],
        "cash_krw": 1_002,
        "holdings_value_krw": 20,
        "equity_krw": 1_022,
    }
    assert repo.get_last_equity(run_id, before=minutes[1])["at"] == minutes[1]  # inclusive
    # the same instant given in UTC
    assert repo.get_last_equity(run_id, before=minutes[3].astimezone(UTC))["at"] == minutes[3]
    assert repo.get_last_equity(run_id, before=minutes[0] - timedelta(seconds=1)) is None
    assert repo.get_last_equity("no-such-run") is None
    assert str(repo.get_last_equity(run_id)["at"].tzinfo) == "Asia/Seoul"
    assert len(repo.get_equity(run_id)) == 5
    with pytest.raises(ValueError, match="tz-aware"):
        repo.get_last_equity(run_id, before=datetime(2024, 3, 4, 9, 3))  # noqa: DTZ001


def test_concurrent_first_save_of_one_position_keeps_one_holding_row(repo, run_id):
    n_threads = 8
    errors: list[BaseException] = []
    ids: list[int] = []
    barrier = threading.Barrier(n_threads)

    def work(t: int) -> None:
        try:
            barrier.wait()
            for i in range(10):
                ids.append(
                    repo.save_position(
                        run_id,
                        strategy="shared",
                        stock_code="005930",
                        qty=1 + t + i,
                        avg_price=70_000.0,
                        cost_basis_krw=70_000 * (1 + t + i),
                        status="holding",
                        opened_at=T0,
                        peak_price=71_000.0 + t,
                    )
                )
                repo.upsert_strategy("shared", bool(t % 2), {"t": t})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()

    assert errors == []
    assert len(set(ids)) == 1
    assert len(repo.get_positions(run_id, status=None)) == 1
    assert len(repo.get_strategies()) == 1
