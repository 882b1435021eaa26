"""KISBroker against the fake KIS over real HTTP: account, orders, fills, paging, charts."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pandas as pd
import pytest

from framework.errors import (
    BrokerError,
    DataError,
    InsufficientFundsError,
    OrderRejectedError,
    UnknownOrderOutcomeError,
)
from framework.types import OrderRequest, OrderSide, OrderStatus, OrderType
from tests.fakes import FakeClock
from tests.fakes.clock import KST
from tests.fakes.harness import fast_fake, http_broker
from tests.fakes.market import data_dir, load_daily_csv

BALANCE = "/uapi/domestic-stock/v1/trading/inquire-balance"
CCLD = "/uapi/domestic-stock/v1/trading/inquire-daily-ccld"
ORDER = "/uapi/domestic-stock/v1/trading/order-cash"
DAILY = "/uapi/domestic-stock/v1/quotations/inquire-daily-itemchartprice"
MINUTE = "/uapi/domestic-stock/v1/quotations/inquire-time-itemchartprice"


def buy(cid: str, qty: int, price: int | None, code: str = "005930") -> OrderRequest:
    kind = OrderType.LIMIT if price else OrderType.MARKET
    return OrderRequest(cid, code, OrderSide.BUY, kind, qty, price)


def test_balance_and_holdings_over_several_pages(tmp_path: Path) -> None:
    fake = fast_fake()
    holdings = {f"9{i:05d}": (i + 1, 1_000) for i in range(45)}
    for code in holdings:
        fake.market.add_stock(code, f"TEST{code}", 1_200)
    fake.add_account("PSFAKEAPPKEY0000000000000000000000000", "fake-app-secret-" + "x" * 40,
                     "50000000-01", cash_krw=5_000_000, holdings=holdings)
    with http_broker(fake, tmp_path) as (broker, _):
        got = broker.get_holdings()
        balance = broker.get_balance()
    assert fake.stats.by_path[BALANCE] == 6  # 20 + 20 + 5 rows, twice
    assert sorted(h.stock_code for h in got) == sorted(holdings)
    assert {h.stock_code: h.qty for h in got} == {c: q for c, (q, _) in holdings.items()}
    assert got[0].avg_price == 1_000
    assert got[0].current_price == 1_200
    value = sum(q for q, _ in holdings.values()) * 1_200
    assert (balance.cash_krw, balance.orderable_krw, balance.holdings_value_krw) == (
        5_000_000, 5_000_000, value)


def test_order_partial_fill_then_fill(tmp_path: Path) -> None:
    fake = fast_fake(auto_fill=False)
    cash0 = fake.account().cash_krw
    with http_broker(fake, tmp_path) as (broker, _):
        odno = broker.submit_order(buy("p-1", 10, 57_000))
        assert broker.get_order(odno).status is OrderStatus.SUBMITTED
        assert broker.get_balance().orderable_krw < cash0  # held for the open buy

        fake.fill_order(odno, 4, 56_900)
        state = broker.get_order(odno)
        assert (state.status, state.filled_qty) == (OrderStatus.PARTIALLY_FILLED, 4)
        assert [(f.qty, f.price) for f in state.fills] == [(4, 56_900)]

        fake.fill_order(odno)  # the rest at the limit
        state = broker.get_order(odno)
        again = broker.get_order(odno)
        holdings = broker.get_holdings()
    assert (state.status, state.filled_qty, state.client_order_id) == (OrderStatus.FILLED, 10,
                                                                       "p-1")
    assert [(f.qty, f.price) for f in state.fills] == [(4, 56_900), (6, 57_000)]
    assert len({f.fill_id for f in state.fills}) == 2
    assert again.fills == state.fills
    assert [(h.stock_code, h.qty) for h in holdings] == [("005930", 10)]
    amount = 4 * 56_900 + 6 * 57_000
    assert fake.account().cash_krw == cash0 - amount - fake.account().fees_paid_krw
    assert sum(f.commission_krw for f in state.fills) <= fake.account().fees_paid_krw + 1


def test_auto_fill_follows_the_price(tmp_path: Path) -> None:
    fake = fast_fake(fill_qty_per_match=3)
    with http_broker(fake, tmp_path) as (broker, _):
        odno = broker.submit_order(buy("a-1", 5, 55_000))
        assert broker.get_order(odno).status is OrderStatus.SUBMITTED
        fake.set_price("005930", 54_800)  # marketable: 3 shares in this matching pass
        assert fake.order(odno).filled_qty == 3
        state = broker.get_order(odno)  # every request runs a matching pass: 2 more
        assert (state.status, state.filled_qty) == (OrderStatus.FILLED, 5)
        assert [(f.qty, f.price) for f in state.fills] == [(5, 54_800)]
        sell = broker.submit_order(OrderRequest("a-2", "005930", OrderSide.SELL,
                                                OrderType.MARKET, 5))
        state = broker.get_order(sell)
    assert fake.order(odno).filled_qty == 5
    assert state.status is OrderStatus.PARTIALLY_FILLED or state.status is OrderStatus.FILLED


def test_revise_and_cancel(tmp_path: Path) -> None:
    fake = fast_fake(auto_fill=False)
    with http_broker(fake, tmp_path) as (broker, _):
        odno = broker.submit_order(buy("r-1", 10, 56_000))
        fake.fill_order(odno, 2)
        new = broker.revise_order(odno, "005930", 56_500)
        old_state, new_state = broker.get_order(odno), broker.get_order(new)
        broker.cancel_order(new, "005930")
        cancelled = broker.get_order(new)
        with pytest.raises(OrderRejectedError):
            broker.cancel_order(new, "005930")  # nothing left
        orders = broker.list_orders()
    assert new != odno
    assert (old_state.status, old_state.filled_qty) == (OrderStatus.CANCELLED, 2)
    assert (old_state.qty, old_state.cancelled_qty, old_state.price) == (10, 8, 56_000)
    assert (new_state.status, new_state.qty) == (OrderStatus.SUBMITTED, 8)
    assert (new_state.price, new_state.cancelled_qty, new_state.client_order_id) == (
        56_500, 0, "r-1")
    assert cancelled.status is OrderStatus.CANCELLED
    assert cancelled.cancelled_qty == 8
    assert {s.broker_order_id for s in orders} == {odno, new}


def test_order_state_describes_the_order(tmp_path: Path) -> None:
    fake = fast_fake(auto_fill=False)
    with http_broker(fake, tmp_path) as (broker, _):
        limit = broker.submit_order(buy("o-1", 2, 56_000))
        fake.advance(3)
        market = broker.submit_order(OrderRequest("o-2", "000660", OrderSide.BUY,
                                                  OrderType.MARKET, 1))
        states = {s.broker_order_id: s for s in broker.list_orders()}
    first, second = states[limit], states[market]
    assert (first.stock_code, first.side, first.price) == ("005930", OrderSide.BUY, 56_000)
    assert first.ordered_at == datetime(2025, 6, 16, 9, 30, tzinfo=KST)
    assert (second.stock_code, second.side, second.price) == ("000660", OrderSide.BUY, None)
    assert second.ordered_at == datetime(2025, 6, 16, 9, 30, 3, tzinfo=KST)
    assert (first.client_order_id, second.client_order_id) == ("o-1", "o-2")


def test_quote_names_come_from_the_chart_header_once(tmp_path: Path) -> None:
    fake = fast_fake(auto_fill=False)
    with http_broker(fake, tmp_path, max_read_retries=0) as (broker, _):
        quote = broker.get_quote("005930")
        again = broker.get_quote("005930")
        quotes = broker.get_quotes(["005930", "000660"])
        lookups = fake.stats.by_path[DAILY]
        fake.inject("http_500", path="inquire-daily-itemchartprice")
        unnamed = broker.get_quote("035720")  # the name lookup failed: the quote did not
        named = broker.get_quote("035720")
        lower_limit = fake.market.limits("005380")[1]
        odno = broker.submit_order(buy("q-1", 1, lower_limit, code="005380"))
        broker.get_order(odno)  # the order row names the stock
        before = fake.stats.by_path[DAILY]
        from_order = broker.get_quote("005380")
        after = fake.stats.by_path[DAILY]
    assert (quote.name, again.name) == ("삼성전자", "삼성전자")
    assert {c: q.name for c, q in quotes.items()} == {"005930": "삼성전자", "000660": "SK하이닉스"}
    assert lookups == 2  # one per code
    assert (unnamed.name, unnamed.price > 0, named.name) == (None, True, "카카오")
    assert from_order.name == "현대차"
    assert after == before


def test_daily_orders_paged(tmp_path: Path) -> None:
    fake = fast_fake(auto_fill=False)
    with http_broker(fake, tmp_path) as (broker, _):
        ids = [broker.submit_order(buy(f"d-{i}", 1, 50_000 + 100 * (i % 5))) for i in range(35)]
        before = fake.stats.by_path[CCLD]
        orders = broker.list_orders(open_only=True)
    assert fake.stats.by_path[CCLD] - before == 3  # 15 + 15 + 5 rows (virtual page size)
    assert [o.broker_order_id for o in orders] == ids


def test_unknown_outcome_after_timeout_is_resolved(tmp_path: Path) -> None:
    fake = fast_fake(auto_fill=False)
    with http_broker(fake, tmp_path, timeout_s=0.3) as (broker, _):
        broker.submit_order(buy("u-0", 1, 50_000))  # another order that must not match
        fake.inject("timeout", path="order-cash", after_processing=True, hold_s=1.0)
        with pytest.raises(UnknownOrderOutcomeError):
            broker.submit_order(buy("u-1", 3, 56_000))
        assert fake.stats.by_path[ORDER] == 2  # not retried
        found = broker.find_order("u-1")

        fake.inject("timeout", path="order-cash", after_processing=False, hold_s=1.0)
        with pytest.raises(UnknownOrderOutcomeError):
            broker.submit_order(buy("u-2", 3, 56_000))
        missing = broker.find_order("u-2")
    placed = [o for o in fake.account().orders if o.qty == 3]
    assert found is not None
    assert found.broker_order_id == placed[0].odno
    assert (found.client_order_id, found.qty, found.status) == ("u-1", 3, OrderStatus.SUBMITTED)
    assert len(placed) == 1
    assert missing is None


def test_business_rejections(tmp_path: Path) -> None:
    fake = fast_fake()
    with http_broker(fake, tmp_path) as (broker, _):
        with pytest.raises(InsufficientFundsError):
            broker.submit_order(buy("f-1", 10_000, 57_000))
        with pytest.raises(OrderRejectedError) as bad_tick:
            broker.submit_order(buy("f-2", 1, 57_050))
        with pytest.raises(OrderRejectedError):
            broker.submit_order(OrderRequest("f-3", "005930", OrderSide.SELL,
                                             OrderType.LIMIT, 1, 57_000))
        fake.clock.set(datetime(2025, 6, 16, 16, 0, tzinfo=KST))
        with pytest.raises(OrderRejectedError) as closed:
            broker.submit_order(buy("f-4", 1, 57_000))
    assert bad_tick.value.code == "APBK0506"
    assert closed.value.code == "40580000"
    assert broker.breaker.state == "closed"


def test_real_tr_refused_by_the_virtual_host(tmp_path: Path) -> None:
    fake = fast_fake()
    with (
        http_broker(fake, tmp_path, env="real") as (broker, _),
        pytest.raises(BrokerError, match="모의투자 TR") as err,
    ):
        broker.get_balance()
    assert type(err.value) is BrokerError  # not transient: not retried
    assert fake.stats.by_path[BALANCE] == 1


def test_quotes(tmp_path: Path) -> None:
    fake = fast_fake()
    with http_broker(fake, tmp_path) as (broker, _):
        quotes = broker.get_quotes(["005930", "000660", "005930"])
        with pytest.raises(DataError):
            broker.get_quote("999999")
    assert set(quotes) == {"005930", "000660"}
    q = quotes["005930"]
    assert q.prev_close == 58_300
    assert q.open == 58_000
    assert q.low is not None
    assert q.low <= q.price <= (q.high or 0)
    assert q.time == fake.clock()


def test_daily_bars_paged_backwards(tmp_path: Path) -> None:
    fake = fast_fake()
    with http_broker(fake, tmp_path) as (broker, _):
        bars = broker.get_daily_bars("000660", date(2024, 1, 1), date(2025, 6, 13))
        with pytest.raises(DataError):
            broker.get_daily_bars("999999", date(2024, 1, 1), date(2024, 2, 1))
    truth = [r for r in load_daily_csv(next(
        (data_dir() / "krx" / "daily_2023_2025").glob("000660_*.csv")))
        if date(2024, 1, 1) <= r[0] <= date(2025, 6, 13)]
    assert fake.stats.by_path[DAILY] == 4 + 1  # 100+100+100+n rows, then the unknown code
    assert list(bars.columns) == ["open", "high", "low", "close", "volume"]
    assert str(bars.index.tz) == "Asia/Seoul"
    assert bars.index.is_monotonic_increasing
    assert bars.index.is_unique
    assert len(bars) == len(truth)
    assert [int(x) for x in bars.iloc[0]] == list(truth[0][1:])
    assert bars.index[-1] == pd.Timestamp("2025-06-13", tz="Asia/Seoul")


def test_minute_bars_today(tmp_path: Path) -> None:
    fake = fast_fake(clock=FakeClock(datetime(2025, 6, 16, 10, 30, tzinfo=KST)))
    with http_broker(fake, tmp_path) as (broker, _):
        bars = broker.get_minute_bars("005930")
        with pytest.raises(DataError):
            broker.get_minute_bars("005930", date(2025, 6, 13))
    assert len(bars) == 91  # 09:00 .. 10:30
    assert fake.stats.by_path[MINUTE] == 4  # 30 + 30 + 30 + 1
    assert bars.index[0] == pd.Timestamp("2025-06-16 09:00", tz="Asia/Seoul")
    assert bars.index.is_monotonic_increasing
    assert bars.index.is_unique
    assert int(bars["open"].iloc[0]) == 58_000


def test_fill_fees_are_estimated_by_market_and_settlement_date(tmp_path: Path) -> None:
    fake = fast_fake()
    fake.market.add_stock("069500", "KODEX 200", 35_000)
    fake.add_account("PSFEESAPPKEY000000000000000000000000", "fake-app-secret-" + "y" * 40,
                     "50000001-01", holdings={"069500": (10, 30_000), "005930": (10, 50_000)})
    with http_broker(fake, tmp_path, app_key="PSFEESAPPKEY000000000000000000000000",
                     app_secret="fake-app-secret-" + "y" * 40, account_no="50000001-01"
                     ) as (broker, _):
        states = {}
        for code in ("069500", "005930"):
            oid = broker.submit_order(OrderRequest(f"f-{code}", code, OrderSide.SELL,
                                                   OrderType.MARKET, 10))
            states[code] = broker.get_order(oid)
    etf, stock = (states[c].fills for c in ("069500", "005930"))
    assert sum(f.tax_krw for f in etf) == 0  # ETFs pay no transaction tax
    assert sum(f.qty for f in etf) == sum(f.qty for f in stock) == 10
    assert date(2025, 1, 1) < fake.clock().date() < date(2025, 12, 20)  # settles in 2025
    assert all(f.tax_krw == f.qty * f.price * 15 // 10_000 for f in stock)  # KOSPI 2025: 0.15 %
    assert all(f.commission_krw == f.qty * f.price * 140527 // 1_000_000_000 for f in etf + stock)
