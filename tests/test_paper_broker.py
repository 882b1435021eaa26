"""PaperBroker fill rules, worked by hand.

Every expected number is computed in the test from the rule it checks (commission
``floor(amount × 0.00015)``, sell tax ``floor(amount × rate on the settlement date)``), never
read back from ``utils.fees``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from api.paper import PaperBroker
from framework.errors import InsufficientFundsError, OrderRejectedError
from framework.types import OrderRequest, OrderSide, OrderStatus, OrderType
from utils.clock import KST, Clock
from utils.fees import FeeModel
from utils.symbols import Market, Symbol, SymbolTable

CODE = "005930"
T0 = datetime(2024, 6, 3, 15, 30, tzinfo=KST)  # a Monday close
DAY = timedelta(days=1)


def commission(amount: int) -> int:
    """0.015 % truncated to the won, in integer arithmetic."""
    return amount * 15 // 100_000


def make_broker(cash: int, *, at: datetime = T0, **kwargs: Any) -> tuple[PaperBroker, Clock]:
    clock = Clock()
    clock.set(at)
    return PaperBroker(cash, clock=clock, **kwargs), clock


_seq = iter(range(1, 1_000_000))


def order(
    broker: PaperBroker,
    side: OrderSide,
    qty: int,
    limit: int | None = None,
    *,
    cid: str | None = None,
    code: str = CODE,
) -> tuple[str, str]:
    """Submit; returns (client id, broker id)."""
    cid = cid or f"T-{next(_seq):07d}"
    request = OrderRequest(
        client_order_id=cid,
        stock_code=code,
        side=side,
        order_type=OrderType.MARKET if limit is None else OrderType.LIMIT,
        qty=qty,
        price=limit,
    )
    return cid, broker.submit_order(request)


def bar(broker: PaperBroker, when: datetime, o: int, h: int, lo: int, c: int, code: str = CODE):
    return broker.process_bar(code, when, o, h, lo, c)


def hold(broker: PaperBroker, clock: Clock, qty: int, price: int, at: datetime = T0) -> datetime:
    """Buy ``qty`` at market on the bar after ``at`` (open ``price``); returns that bar's time."""
    clock.set(at)
    order(broker, OrderSide.BUY, qty)
    fill_time = at + DAY
    (fill,) = bar(broker, fill_time, price, price, price, price)
    assert fill.qty == qty
    clock.set(fill_time)
    return fill_time


# --- market orders ---------------------------------------------------------------------


def test_market_buy_fills_at_next_bar_open_with_truncated_commission():
    broker, _ = make_broker(10_000_000)
    cid, bid = order(broker, OrderSide.BUY, 10)

    fills = bar(broker, T0 + DAY, 72_300, 73_000, 72_000, 72_800)

    assert len(fills) == 1
    fill = fills[0]
    assert (fill.qty, fill.price, fill.side) == (10, 72_300, OrderSide.BUY)
    # 723,000 × 0.00015 = 108.45 → 108
    assert fill.commission_krw == 108
    assert fill.tax_krw == 0
    assert (fill.client_order_id, fill.broker_order_id, fill.time) == (cid, bid, T0 + DAY)
    assert broker.cash_krw == 10_000_000 - 723_000 - 108 == 9_276_892
    assert broker.holding_qty(CODE) == 10
    (holding,) = broker.get_holdings()
    assert holding.avg_price == 72_300
    assert holding.current_price == 72_800
    balance = broker.get_balance()
    assert balance.holdings_value_krw == 10 * 72_800
    assert balance.total_equity_krw == 9_276_892 + 728_000
    state = broker.get_order(bid)
    assert (state.status, state.filled_qty, state.fills) == (OrderStatus.FILLED, 10, (fill,))
    assert not broker.has_pending(CODE)


def test_order_never_fills_on_the_bar_it_was_placed_on():
    broker, clock = make_broker(10_000_000)
    t1 = T0 + DAY
    clock.set(t1)  # order placed at the time of bar t1 …
    _, bid = order(broker, OrderSide.BUY, 10)

    assert bar(broker, t1, 72_300, 73_000, 72_000, 72_800) == []  # … so bar t1 skips it
    assert broker.get_order(bid).status is OrderStatus.SUBMITTED
    assert broker.cash_krw == 10_000_000

    (fill,) = bar(broker, t1 + DAY, 71_900, 72_000, 71_000, 71_500)
    assert (fill.qty, fill.price, fill.time) == (10, 71_900, t1 + DAY)


def test_order_placed_after_a_bar_time_is_not_filled_by_that_older_bar():
    broker, clock = make_broker(10_000_000)
    clock.set(T0 + 2 * DAY)
    order(broker, OrderSide.BUY, 1)
    assert bar(broker, T0 + DAY, 72_300, 72_300, 72_300, 72_300) == []
    assert broker.has_pending(CODE)


def test_bar_of_another_stock_does_not_fill():
    broker, _ = make_broker(10_000_000)
    order(broker, OrderSide.BUY, 1)
    assert bar(broker, T0 + DAY, 50_000, 50_000, 50_000, 50_000, code="000660") == []
    assert broker.has_pending(CODE)


def test_sell_worked_example_2024():
    """Module docstring of utils.fees: sell 10 @ 72,350 in 2024."""
    broker, clock = make_broker(1_000_000)
    t1 = hold(broker, clock, 10, 70_000)
    cash_before = broker.cash_krw
    assert cash_before == 1_000_000 - 700_000 - 105  # 700,000 × 0.00015 = 105

    order(broker, OrderSide.SELL, 10)
    (fill,) = bar(broker, t1 + DAY, 72_350, 72_500, 72_000, 72_400)

    assert (fill.qty, fill.price, fill.side) == (10, 72_350, OrderSide.SELL)
    assert fill.commission_krw == 108  # floor(723,500 × 0.00015) = floor(108.525)
    assert fill.tax_krw == 1_302  # floor(723,500 × 0.0018) = floor(1,302.3)
    assert broker.cash_krw - cash_before == 722_090
    assert broker.holding_qty(CODE) == 0
    assert broker.get_holdings() == []


def test_market_process_quote_fills_at_the_quote():
    broker, _ = make_broker(1_000_000)
    order(broker, OrderSide.BUY, 2)
    (fill,) = broker.process_quote(CODE, T0 + timedelta(minutes=1), 61_200)
    # 122,400 × 0.00015 = 18.36
    assert (fill.qty, fill.price, fill.commission_krw) == (2, 61_200, 18)


# --- limit orders ----------------------------------------------------------------------


def test_limit_buy_fills_when_low_touches_limit_at_the_limit():
    broker, _ = make_broker(10_000_000)
    _, bid = order(broker, OrderSide.BUY, 5, 72_000)

    assert bar(broker, T0 + DAY, 72_500, 73_000, 72_100, 72_600) == []  # low above limit
    assert broker.get_order(bid).status is OrderStatus.SUBMITTED

    (fill,) = bar(broker, T0 + 2 * DAY, 72_500, 72_600, 72_000, 72_200)  # low == limit
    assert (fill.qty, fill.price) == (5, 72_000)
    assert broker.cash_krw == 10_000_000 - 360_000 - 54  # 360,000 × 0.00015 = 54


def test_limit_buy_gap_through_fills_at_the_better_open():
    broker, _ = make_broker(10_000_000)
    order(broker, OrderSide.BUY, 5, 72_000)
    (fill,) = bar(broker, T0 + DAY, 71_500, 71_800, 71_000, 71_200)
    assert fill.price == 71_500


def test_limit_sell_fills_when_high_touches_limit_at_the_limit():
    broker, clock = make_broker(1_000_000)
    t1 = hold(broker, clock, 10, 70_000)
    _, bid = order(broker, OrderSide.SELL, 10, 73_000)

    assert bar(broker, t1 + DAY, 72_500, 72_900, 72_000, 72_800) == []
    assert broker.get_order(bid).status is OrderStatus.SUBMITTED
    (fill,) = bar(broker, t1 + 2 * DAY, 72_500, 73_000, 72_400, 72_900)
    assert (fill.qty, fill.price) == (10, 73_000)
    assert fill.commission_krw == 109  # 730,000 × 0.00015 = 109.5
    assert fill.tax_krw == 1_314  # 730,000 × 0.0018 = 1,314


def test_limit_sell_gap_through_fills_at_the_better_open():
    broker, clock = make_broker(1_000_000)
    t1 = hold(broker, clock, 10, 70_000)
    order(broker, OrderSide.SELL, 10, 73_000)
    (fill,) = bar(broker, t1 + DAY, 74_000, 74_500, 73_500, 74_200)
    assert fill.price == 74_000


def test_limit_buy_price_is_rounded_down_to_the_tick():
    broker, _ = make_broker(10_000_000)
    order(broker, OrderSide.BUY, 1, 72_345)  # 100-won band → 72,300

    # an unrounded 72,345 limit would fill on a low of 72,340; the rounded one must not
    assert bar(broker, T0 + DAY, 72_500, 72_600, 72_340, 72_400) == []
    (fill,) = bar(broker, T0 + 2 * DAY, 72_500, 72_600, 72_300, 72_400)
    assert fill.price == 72_300


def test_limit_sell_price_is_rounded_up_to_the_tick():
    broker, clock = make_broker(1_000_000)
    t1 = hold(broker, clock, 1, 70_000)
    order(broker, OrderSide.SELL, 1, 72_345)  # 100-won band → 72,400

    assert bar(broker, t1 + DAY, 72_000, 72_350, 71_900, 72_100) == []
    (fill,) = bar(broker, t1 + 2 * DAY, 72_000, 72_400, 71_900, 72_100)
    assert fill.price == 72_400


def test_open_limit_buy_holds_its_cost_out_of_orderable_cash():
    broker, _ = make_broker(1_000_000)
    order(broker, OrderSide.BUY, 10, 72_300)
    balance = broker.get_balance()
    assert balance.cash_krw == 1_000_000
    assert balance.orderable_krw == 1_000_000 - 723_000 - 108


def test_limit_buy_costing_more_than_cash_is_refused():
    broker, _ = make_broker(723_107)  # 10 × 72,300 + 108 = 723,108
    with pytest.raises(InsufficientFundsError):
        order(broker, OrderSide.BUY, 10, 72_300)
    assert not broker.has_pending(CODE)
    order(broker, OrderSide.BUY, 9, 72_300)  # 650,700 + 97 fits


# --- cash limits -----------------------------------------------------------------------


def test_market_buy_is_cut_to_the_shares_cash_affords():
    broker, _ = make_broker(1_000_000)
    cid, _ = order(broker, OrderSide.BUY, 20)

    (fill,) = bar(broker, T0 + DAY, 72_300, 72_500, 72_000, 72_400)

    # 13 × 72,300 = 939,900 + 140 fits; 14 × 72,300 = 1,012,200 does not
    assert fill.qty == 13
    assert fill.commission_krw == 140  # 939,900 × 0.00015 = 140.985
    assert broker.cash_krw == 1_000_000 - 939_900 - 140 == 59_960
    state = broker.find_order(cid)
    assert state is not None
    assert (state.status, state.qty, state.filled_qty) == (OrderStatus.CANCELLED, 20, 13)
    assert not broker.has_pending(CODE)


def test_cut_counts_the_commission_to_the_won():
    broker, _ = make_broker(723_107)  # one won short of 10 × 72,300 + 108
    order(broker, OrderSide.BUY, 10)
    (fill,) = bar(broker, T0 + DAY, 72_300, 72_300, 72_300, 72_300)
    assert fill.qty == 9
    assert broker.cash_krw == 723_107 - 650_700 - 97  # 650,700 × 0.00015 = 97.605

    broker2, _ = make_broker(723_108)
    order(broker2, OrderSide.BUY, 10)
    (fill2,) = bar(broker2, T0 + DAY, 72_300, 72_300, 72_300, 72_300)
    assert fill2.qty == 10
    assert broker2.cash_krw == 0


def test_buy_with_no_affordable_share_is_cancelled_without_a_fill():
    broker, _ = make_broker(50_000)
    cid, _ = order(broker, OrderSide.BUY, 1)

    assert bar(broker, T0 + DAY, 72_300, 72_500, 72_000, 72_400) == []

    state = broker.find_order(cid)
    assert state is not None
    assert (state.status, state.filled_qty, state.fills) == (OrderStatus.CANCELLED, 0, ())
    assert broker.cash_krw == 50_000
    assert broker.holding_qty(CODE) == 0
    assert not broker.has_pending(CODE)


def test_buying_power_callback_caps_the_fill():
    seen: list[str] = []

    def power(request: OrderRequest) -> int:
        seen.append(request.client_order_id)
        return 500_000

    broker, _ = make_broker(10_000_000, buying_power=power)
    cid, _ = order(broker, OrderSide.BUY, 10)
    (fill,) = bar(broker, T0 + DAY, 72_300, 72_300, 72_300, 72_300)
    # 6 × 72,300 + 65 = 433,865 ≤ 500,000 < 7 × 72,300 = 506,100
    assert fill.qty == 6
    assert seen == [cid]
    assert broker.cash_krw == 10_000_000 - 433_800 - 65


def test_two_buys_on_one_bar_never_overdraw_cash():
    broker, _ = make_broker(1_000_000)
    order(broker, OrderSide.BUY, 10)
    order(broker, OrderSide.BUY, 10)
    first, second = bar(broker, T0 + DAY, 72_300, 72_300, 72_300, 72_300)
    assert first.qty == 10  # 723,108
    # 276,892 left: 3 × 72,300 + 32 = 216,932 fits, 4 × 72,300 = 289,200 does not
    assert second.qty == 3
    assert broker.cash_krw == 1_000_000 - 723_108 - 216_932 == 59_960


# --- sells beyond holdings ---------------------------------------------------------------


def test_selling_without_holdings_is_rejected():
    broker, _ = make_broker(1_000_000)
    with pytest.raises(OrderRejectedError):
        order(broker, OrderSide.SELL, 1)
    assert not broker.has_pending(CODE)


def test_selling_more_than_held_is_rejected_counting_open_sells():
    broker, clock = make_broker(1_000_000)
    hold(broker, clock, 10, 70_000)
    with pytest.raises(OrderRejectedError):
        order(broker, OrderSide.SELL, 11)
    order(broker, OrderSide.SELL, 6, 80_000)
    with pytest.raises(OrderRejectedError):
        order(broker, OrderSide.SELL, 5)  # only 4 are not already offered
    order(broker, OrderSide.SELL, 4)


# --- slippage --------------------------------------------------------------------------


def test_slippage_moves_market_fills_against_the_trader():
    broker, clock = make_broker(10_000_000, slippage_ticks=2)
    order(broker, OrderSide.BUY, 10)
    (buy,) = bar(broker, T0 + DAY, 72_300, 72_300, 72_300, 72_300)
    assert buy.price == 72_500  # two 100-won ticks up

    clock.set(T0 + DAY)
    order(broker, OrderSide.SELL, 10)
    (sell,) = bar(broker, T0 + 2 * DAY, 72_300, 72_300, 72_300, 72_300)
    assert sell.price == 72_100


def test_slippage_does_not_move_limit_fills():
    broker, _ = make_broker(10_000_000, slippage_ticks=3)
    order(broker, OrderSide.BUY, 1, 72_000)
    (fill,) = bar(broker, T0 + DAY, 72_500, 72_600, 71_900, 72_000)
    assert fill.price == 72_000


def test_buy_slippage_crossing_a_band_stays_on_the_tick_grid():
    broker, _ = make_broker(10_000_000, slippage_ticks=2)
    order(broker, OrderSide.BUY, 1)
    (fill,) = bar(broker, T0 + DAY, 1_999, 1_999, 1_999, 1_999)
    assert fill.price == 2_005  # 1,999 → 2,000 (1-won tick) → 2,005 (5-won tick)


def test_sell_slippage_crossing_a_band_moves_one_tick():
    broker, clock = make_broker(10_000_000, slippage_ticks=1)
    order(broker, OrderSide.BUY, 1)
    bar(broker, T0 + DAY, 1_000, 1_000, 1_000, 1_000)
    clock.set(T0 + DAY)
    order(broker, OrderSide.SELL, 1)
    (fill,) = bar(broker, T0 + 2 * DAY, 2_000, 2_000, 2_000, 2_000)
    assert fill.price == 1_999


# --- sell tax by settlement date (T+2 KRX sessions) and market ---------------------------


@pytest.mark.parametrize(
    ("sell_day", "tax"),
    [
        (datetime(2022, 12, 27, 10, 0, tzinfo=KST), 1_150),  # settles 12-29: 0.23 %
        (datetime(2022, 12, 28, 10, 0, tzinfo=KST), 1_000),  # settles 2023-01-02: 0.20 %
        (datetime(2023, 1, 2, 10, 0, tzinfo=KST), 1_000),  # 0.20 %
        (datetime(2024, 12, 26, 10, 0, tzinfo=KST), 900),  # settles 12-30: 0.18 %
        (datetime(2024, 12, 27, 10, 0, tzinfo=KST), 750),  # settles 2025-01-02: 0.15 %
        (datetime(2025, 12, 30, 10, 0, tzinfo=KST), 1_000),  # settles 2026-01-05: 0.20 %
        (datetime(2026, 1, 2, 10, 0, tzinfo=KST), 1_000),  # 0.20 %
    ],
)
def test_sell_tax_rate_follows_the_settlement_date(sell_day: datetime, tax: int):
    start = sell_day - 3 * DAY
    broker, clock = make_broker(1_000_000, at=start)
    t1 = hold(broker, clock, 10, 50_000, at=start)
    cash_before = broker.cash_krw
    order(broker, OrderSide.SELL, 10)
    assert t1 < sell_day

    (fill,) = bar(broker, sell_day, 50_000, 50_000, 50_000, 50_000)

    assert fill.tax_krw == tax  # on 500,000 KRW
    assert fill.commission_krw == 75
    assert broker.cash_krw - cash_before == 500_000 - 75 - tax


def test_flat_sell_tax_override_ignores_the_year():
    start = datetime(2022, 12, 26, 10, 0, tzinfo=KST)
    broker, clock = make_broker(1_000_000, at=start, fees=FeeModel(sell_tax_rate="0.0018"))
    t1 = hold(broker, clock, 10, 50_000, at=start)
    order(broker, OrderSide.SELL, 10)
    (fill,) = bar(broker, t1 + DAY, 50_000, 50_000, 50_000, 50_000)
    assert fill.time.year == 2022
    assert fill.tax_krw == 900  # 500,000 × 0.0018, not the 2022 rate 0.23 %


def test_custom_commission_rate_truncates():
    broker, _ = make_broker(10_000_000, fees=FeeModel(commission_rate="0.000140527"))
    order(broker, OrderSide.BUY, 10)
    (fill,) = bar(broker, T0 + DAY, 72_300, 72_300, 72_300, 72_300)
    assert fill.commission_krw == 101  # 723,000 × 0.000140527 = 101.601…


# --- cancel and lookup ------------------------------------------------------------------


def test_cancel_order_stops_the_fill_and_frees_orderable_cash():
    broker, _ = make_broker(1_000_000)
    _, bid = order(broker, OrderSide.BUY, 10, 72_300)

    broker.cancel_order(bid, CODE)

    state = broker.get_order(bid)
    assert (state.status, state.filled_qty) == (OrderStatus.CANCELLED, 0)
    assert broker.get_balance().orderable_krw == 1_000_000
    assert bar(broker, T0 + DAY, 72_000, 72_000, 72_000, 72_000) == []
    assert broker.cash_krw == 1_000_000
    with pytest.raises(OrderRejectedError):
        broker.cancel_order(bid, CODE)  # already final
    with pytest.raises(OrderRejectedError):
        broker.cancel_order("P999999999", CODE)


def test_cancelled_sell_frees_its_shares_for_a_new_sell():
    broker, clock = make_broker(1_000_000)
    hold(broker, clock, 10, 70_000)
    _, bid = order(broker, OrderSide.SELL, 10, 90_000)
    with pytest.raises(OrderRejectedError):
        order(broker, OrderSide.SELL, 1)
    broker.cancel_order(bid, CODE)
    order(broker, OrderSide.SELL, 10)


def test_partial_cancel_leaves_the_rest_resting():
    broker, _ = make_broker(1_000_000)
    _, bid = order(broker, OrderSide.BUY, 10, 72_000)

    broker.cancel_order(bid, CODE, qty=4)

    state = broker.get_order(bid)
    assert (state.status, state.qty, state.filled_qty) == (OrderStatus.SUBMITTED, 6, 0)
    # only the 6 resting shares hold cash: 432,000 + floor(64.8)
    assert broker.get_balance().orderable_krw == 1_000_000 - 432_000 - 64
    fills = bar(broker, T0 + DAY, 72_000, 72_000, 72_000, 72_000)
    assert [(f.qty, f.price) for f in fills] == [(6, 72_000)]
    assert broker.cash_krw == 1_000_000 - 432_000 - 64
    state = broker.get_order(bid)
    assert (state.status, state.qty, state.filled_qty) == (OrderStatus.FILLED, 6, 6)
    assert not broker.has_pending(CODE)


@pytest.mark.parametrize("qty", [10, 11, None])
def test_cancel_of_all_that_is_unfilled_closes_the_order(qty: int | None):
    broker, _ = make_broker(1_000_000)
    _, bid = order(broker, OrderSide.BUY, 10, 72_000)
    broker.cancel_order(bid, CODE, qty=qty)
    assert broker.get_order(bid).status is OrderStatus.CANCELLED
    assert not broker.has_pending(CODE)


def test_partial_cancel_of_a_sell_frees_those_shares():
    broker, clock = make_broker(1_000_000)
    hold(broker, clock, 10, 70_000)
    _, bid = order(broker, OrderSide.SELL, 10, 90_000)
    broker.cancel_order(bid, CODE, qty=4)
    with pytest.raises(OrderRejectedError):
        order(broker, OrderSide.SELL, 5)
    order(broker, OrderSide.SELL, 4)


def test_find_order_by_client_id():
    broker, _ = make_broker(1_000_000)
    cid, bid = order(broker, OrderSide.BUY, 3, 50_000, cid="S1-0000042")

    state = broker.find_order("S1-0000042")

    assert state is not None
    assert (state.broker_order_id, state.client_order_id) == (bid, cid)
    assert (state.status, state.qty, state.filled_qty) == (OrderStatus.SUBMITTED, 3, 0)
    assert broker.find_order("S1-0000043") is None

    (fill,) = bar(broker, T0 + DAY, 50_000, 50_000, 50_000, 50_000)
    state = broker.find_order(cid)
    assert state is not None
    assert (state.status, state.filled_qty, state.fills) == (OrderStatus.FILLED, 3, (fill,))


def test_duplicate_client_order_id_is_rejected():
    broker, _ = make_broker(1_000_000)
    order(broker, OrderSide.BUY, 1, cid="DUP-1")
    with pytest.raises(OrderRejectedError):
        order(broker, OrderSide.BUY, 1, cid="DUP-1")
    assert len(bar(broker, T0 + DAY, 1_000, 1_000, 1_000, 1_000)) == 1


def test_get_quote_after_a_bar_is_its_close():
    broker, _ = make_broker(0)
    bar(broker, T0 + DAY, 1_000, 1_100, 900, 1_050)
    assert broker.get_quote(CODE).price == 1_050


def test_negative_starting_cash_is_refused():
    with pytest.raises(ValueError):
        PaperBroker(-1)


# --- order state and listing -------------------------------------------------------------


def test_order_state_describes_the_order():
    broker, clock = make_broker(1_000_000)
    _, limit_id = order(broker, OrderSide.BUY, 10, 72_050)  # rounded down to the tick
    clock.set(T0 + timedelta(seconds=5))
    _, market_id = order(broker, OrderSide.BUY, 2)
    broker.cancel_order(limit_id, CODE, qty=4)

    limit, market = broker.get_order(limit_id), broker.get_order(market_id)

    assert (limit.stock_code, limit.side, limit.price, limit.ordered_at) == (
        CODE, OrderSide.BUY, 72_000, T0)
    assert limit.cancelled_qty == 4
    assert (market.price, market.ordered_at, market.cancelled_qty) == (
        None, T0 + timedelta(seconds=5), 0)
    broker.cancel_order(limit_id, CODE)
    assert broker.get_order(limit_id).cancelled_qty == 10  # 4 earlier + the 6 resting


def test_cut_buy_counts_the_unfilled_rest_as_cancelled():
    broker, _ = make_broker(1_000_000)
    cid, _ = order(broker, OrderSide.BUY, 20)
    bar(broker, T0 + DAY, 72_300, 72_500, 72_000, 72_400)
    state = broker.find_order(cid)
    assert state is not None
    assert (state.filled_qty, state.cancelled_qty) == (13, 7)


def test_list_orders_of_a_day():
    broker, clock = make_broker(1_000_000)
    _, first = order(broker, OrderSide.BUY, 1, 70_000)
    _, second = order(broker, OrderSide.BUY, 1, 60_000)
    bar(broker, T0 + timedelta(minutes=1), 70_000, 70_000, 69_000, 69_500)  # fills the first
    clock.set(T0 + DAY)
    _, third = order(broker, OrderSide.BUY, 1, 50_000)

    today = broker.list_orders()
    yesterday = broker.list_orders(T0.date())
    still_open = broker.list_orders(T0.date(), open_only=True)

    assert [s.broker_order_id for s in today] == [third]
    assert [s.broker_order_id for s in yesterday] == [first, second]
    assert [s.broker_order_id for s in still_open] == [second]
    assert broker.list_orders((T0 + 2 * DAY).date()) == []


def test_restart_helpers_are_harmless_defaults():
    broker, _ = make_broker(1_000_000)
    cid, bid = order(broker, OrderSide.BUY, 1, 70_000)
    request = OrderRequest(cid, CODE, OrderSide.BUY, OrderType.LIMIT, 1, 70_000)
    broker.restore_order(bid, cid, filled_qty=0, filled_amount_krw=0, day=T0.date())
    assert broker.match_order(request, T0) is None
    assert broker.get_order(bid).fills == ()


# --- markets: ETF tax, ticks by date and market, buying power of market buys ---------------

SYMBOLS = SymbolTable(
    [
        Symbol("005930", "삼성전자", Market.KOSPI),
        Symbol("091990", "셀트리온헬스케어", Market.KOSDAQ),
        Symbol("069500", "KODEX 200", Market.ETF),
    ]
)


def test_an_etf_sale_pays_no_tax_a_stock_sale_does():
    fees = FeeModel(symbols=SYMBOLS)
    broker, clock = make_broker(10_000_000, fees=fees)
    for code in ("069500", "005930"):
        clock.set(T0)
        order(broker, OrderSide.BUY, 10, code=code)
        bar(broker, T0 + DAY, 30_000, 30_000, 30_000, 30_000, code=code)
    clock.set(T0 + DAY)
    order(broker, OrderSide.SELL, 10, code="069500")
    order(broker, OrderSide.SELL, 10, code="005930")
    (etf,) = bar(broker, T0 + 2 * DAY, 30_000, 30_000, 30_000, 30_000, code="069500")
    (stock,) = bar(broker, T0 + 2 * DAY, 30_000, 30_000, 30_000, 30_000, code="005930")
    assert etf.tax_krw == 0
    assert stock.tax_krw == 300_000 * 18 // 10_000  # 2024: 0.18 %
    assert etf.commission_krw == stock.commission_krw == commission(300_000)


@pytest.mark.parametrize(
    ("code", "at", "limit", "side", "expected"),
    [
        ("091990", datetime(2022, 6, 2, 10, tzinfo=KST), 152_345, OrderSide.BUY, 152_300),
        ("005930", datetime(2022, 6, 2, 10, tzinfo=KST), 152_345, OrderSide.BUY, 152_000),
        ("005930", datetime(2023, 6, 2, 10, tzinfo=KST), 152_345, OrderSide.BUY, 152_300),
        ("005930", datetime(2022, 6, 2, 10, tzinfo=KST), 1_502, OrderSide.SELL, 1_505),
        ("005930", datetime(2023, 6, 2, 10, tzinfo=KST), 1_502, OrderSide.SELL, 1_502),
        ("069500", datetime(2022, 6, 2, 10, tzinfo=KST), 31_233, OrderSide.BUY, 31_230),
    ],
)
def test_limit_prices_are_rounded_on_the_grid_of_the_day_and_market(
    code: str, at: datetime, limit: int, side: OrderSide, expected: int
):
    broker, clock = make_broker(100_000_000, at=at, fees=FeeModel(symbols=SYMBOLS))
    if side is OrderSide.SELL:
        hold(broker, clock, 5, limit, at=at)
    _, bid = order(broker, side, 1, limit, code=code)
    assert broker.get_order(bid).price == expected


def test_a_market_buy_holds_the_upper_limit_price_and_is_refused_beyond_it():
    broker, _ = make_broker(1_000_000)
    bar(broker, T0 - DAY, 50_000, 50_000, 50_000, 50_000)  # base: last close 50,000
    upper = 65_000  # 50,000 × 1.3 on the 100-won grid
    fits = 1_000_000 // (upper + upper * 15 // 100_000)  # 15 shares
    with pytest.raises(InsufficientFundsError, match="upper limit"):
        order(broker, OrderSide.BUY, fits + 1)  # 16 × 50,000 would fit in cash, KIS refuses
    _, bid = order(broker, OrderSide.BUY, fits)
    held = fits * upper + commission(fits * upper)
    assert broker.get_balance().orderable_krw == 1_000_000 - held
    (fill,) = bar(broker, T0 + DAY, 51_000, 51_000, 51_000, 51_000)
    assert fill.qty == fits
    assert broker.get_order(bid).status is OrderStatus.FILLED
    spent = fits * 51_000 + commission(fits * 51_000)
    assert broker.get_balance().orderable_krw == broker.cash_krw == 1_000_000 - spent


def test_slippage_on_an_off_grid_data_price_does_not_snap_it_to_the_grid():
    broker, _ = make_broker(10_000_000, slippage_ticks=2)
    order(broker, OrderSide.BUY, 1)
    (fill,) = bar(broker, T0 + DAY, 5_123, 5_200, 5_100, 5_150)  # split-adjusted open
    assert fill.price == 5_123 + 2 * 10  # two 10-won ticks, still off the grid
