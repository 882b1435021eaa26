"""The paper venue's day orders and limit-locked bars (``PaperBroker.expire_session``,
``PaperBroker.locked_side``), the rules the backtest and a dry run share."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from api.paper import PaperBroker
from framework.types import OrderRequest, OrderSide, OrderStatus, OrderType
from tests.fakes.clock import KST, FakeClock

CODE = "005930"


def at(day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2025, 6, day, hour, minute, tzinfo=KST)


def broker_with_holding(clock: FakeClock) -> PaperBroker:
    paper = PaperBroker(10_000_000, clock=clock)
    paper.seed(10_000_000, {CODE: (10, 100_000)})
    paper.mark(CODE, 10_000)
    return paper


def order(paper: PaperBroker, side: OrderSide, cid: str, price: int | None = None) -> str:
    kind = OrderType.MARKET if price is None else OrderType.LIMIT
    return paper.submit_order(OrderRequest(cid, CODE, side, kind, 5, price))


def test_a_bar_locked_at_limit_up_fills_no_buy_and_a_locked_limit_down_no_sell() -> None:
    clock = FakeClock(at(16))
    paper = broker_with_holding(clock)
    buy = order(paper, OrderSide.BUY, "b1")
    sell = order(paper, OrderSide.SELL, "s1")
    assert paper.locked_side(CODE, at(17), 13_000, 13_000) is OrderSide.BUY
    paper.process_bar(CODE, at(17), 13_000, 13_000, 13_000, 13_000)  # +30 %, no range
    assert paper.get_order(buy).status is OrderStatus.SUBMITTED  # nobody sells into it
    assert paper.get_order(sell).status is OrderStatus.FILLED
    sell2 = order(paper, OrderSide.SELL, "s2")
    paper.mark(CODE, 10_000)
    assert paper.locked_side(CODE, at(18), 7_000, 7_000) is OrderSide.SELL
    paper.process_bar(CODE, at(18), 7_000, 7_000, 7_000, 7_000)  # −30 %: locked down
    assert paper.get_order(sell2).status is OrderStatus.SUBMITTED
    assert paper.get_order(buy).status is OrderStatus.FILLED


@pytest.mark.parametrize(
    ("day", "price", "locked"),
    [
        (date(2015, 6, 12), 11_500, OrderSide.BUY),  # ±15 % before 2015-06-15
        (date(2015, 6, 15), 11_500, None),
        (date(2015, 6, 15), 13_000, OrderSide.BUY),
        (date(2024, 1, 2), 11_000, None),  # a flat bar inside the limits is not locked
    ],
)
def test_the_daily_limit_is_15_pct_before_2015_06_15_and_30_pct_since(
    day: date, price: int, locked: OrderSide | None
) -> None:
    paper = PaperBroker(1_000_000)
    paper.mark(CODE, 10_000)
    when = datetime(day.year, day.month, day.day, tzinfo=KST)
    assert paper.locked_side(CODE, when, price, price) is locked


def test_a_resting_order_expires_at_the_close_of_the_session_it_rested_in() -> None:
    clock = FakeClock(at(16, 10))
    paper = broker_with_holding(clock)
    resting = order(paper, OrderSide.BUY, "b1", price=9_000)
    paper.process_quote(CODE, at(16, 11), 10_000)  # it rests in the 16th's session
    late = order(paper, OrderSide.BUY, "b2", price=9_000)  # placed after the last price
    assert paper.expire_session(date(2025, 6, 16)) == [resting]
    assert paper.get_order(resting).status is OrderStatus.EXPIRED
    assert paper.get_order(late).status is OrderStatus.SUBMITTED  # into the next session
    paper.process_quote(CODE, at(17, 9), 10_000)
    assert paper.expire_session(date(2025, 6, 17)) == [late]
    assert paper.get_balance().orderable_krw == paper.cash_krw  # nothing reserved any more
