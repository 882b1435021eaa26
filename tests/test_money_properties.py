"""Hypothesis properties of the money code: fills, funds, fees, ticks.

Expected values come from small reference models written here (integer/Fraction
arithmetic and an independent tick table), never from the code under test.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.paper import PaperBroker
from core.fund_manager import FundManager
from core.journal import MemoryJournal
from core.order_manager import OrderManager
from core.portfolio import OverfillError, Portfolio
from framework.errors import FundsError, InsufficientFundsError, OrderRejectedError
from framework.executor import OrderExecutor, OrderState
from framework.types import Fill, OrderRequest, OrderSide, OrderStatus, OrderType
from utils.clock import KST, Clock
from utils.fees import FeeModel, fee_krw
from utils.market_calendar import settlement_date
from utils.ticks import add_ticks, is_valid_tick, round_to_tick, tick_size

CODES = ("005930", "000660")

# --- independent reference: KRX tick table and fees ------------------------------------

_TICKS = ((2_000, 1), (5_000, 5), (20_000, 10), (50_000, 50), (200_000, 100), (500_000, 500))
_KOSPI_OLD = ((1_000, 1), (5_000, 5), (10_000, 10), (50_000, 50), (100_000, 100), (500_000, 500))


def ref_tick(price: int, day: date | None = None) -> int:
    """KOSPI tick: the 2023-01-25 table, or the one before it for an earlier ``day``."""
    table = _KOSPI_OLD if day is not None and day < date(2023, 1, 25) else _TICKS
    for upper, tick in table:
        if price < upper:
            return tick
    return 1_000


def ref_down(price: int, day: date | None = None) -> int:
    return price - price % ref_tick(price, day)


def ref_up(price: int, day: date | None = None) -> int:
    return price + (-price) % ref_tick(price, day)


def ref_move(price: int, ticks: int, day: date | None = None) -> int:
    """``price`` moved ``ticks`` KRX ticks (negative = down), not below 1; off the grid it
    stays off the grid."""
    for _ in range(abs(ticks)):
        if ticks > 0:
            price += ref_tick(price, day)
        elif price > 1:
            price = max(1, price - ref_tick(price - 1, day))
    return price


def floor_fee(amount: int, rate: Fraction) -> int:
    return amount * rate.numerator // rate.denominator


def ref_tax_rate(trade_day: date) -> Fraction:
    """KOSPI sell tax by the settlement date (T+2 KRX sessions)."""
    day = settlement_date(trade_day)
    if day < date(2019, 6, 3):
        return Fraction("0.0030")
    if day.year <= 2020:
        return Fraction("0.0025")
    if day.year <= 2022:
        return Fraction("0.0023")
    return {2023: Fraction("0.0020"), 2024: Fraction("0.0018"), 2025: Fraction("0.0015")}.get(
        day.year, Fraction("0.0020")
    )


def ref_upper_limit(base: int, day: date) -> int:
    """상한가 since 2015-06-15: base × 1.3 rounded down to the tick."""
    return ref_down(base * 13 // 10, day)


def ref_affordable(cash: int, price: int, rate: Fraction) -> int:
    """Most whole shares with q × price + floor(q × price × rate) ≤ cash (brute force down)."""
    q = cash // price
    while q > 0 and q * price + floor_fee(q * price, rate) > cash:
        q -= 1
    return q


RATES = ("0", "0.00015", "0.000140527", "0.0005")
SETTINGS = settings(max_examples=150, deadline=None)

# --- PaperBroker: conservation across any fill sequence -----------------------------------


@dataclass
class RefOrder:
    cid: str
    code: str
    side: OrderSide
    qty: int
    limit: int | None  # already on the grid (rounded by the reference)
    created: datetime


@st.composite
def scenarios(draw):
    base = {code: draw(st.integers(1_500, 300_000)) for code in CODES}
    steps = []
    for _ in range(draw(st.integers(1, 50))):
        kind = draw(st.sampled_from(("order", "order", "bar", "bar", "bar", "cancel")))
        code = draw(st.sampled_from(CODES))
        if kind == "order":
            side = draw(st.sampled_from((OrderSide.BUY, OrderSide.SELL)))
            qty = draw(st.integers(1, 30 if side is OrderSide.BUY else 8))
            limit = None
            if draw(st.booleans()):  # limit within ±8 % of the base, possibly off the grid
                limit = max(1, int(base[code] * draw(st.floats(0.92, 1.08))))
            steps.append(("order", code, side, qty, limit))
        elif kind == "bar":
            o, c, hi, lo = (
                ref_down(max(1, int(base[code] * draw(st.floats(0.9, 1.1))))) for _ in range(4)
            )
            # 0 minutes: a bar at the very time of the orders just placed
            minutes = draw(st.sampled_from((0, 1, 30, 390, 1_440, 4_320)))
            steps.append(("bar", code, o, max(o, c, hi), min(o, c, lo), c, minutes))
        else:
            part = draw(st.one_of(st.none(), st.integers(1, 30)))
            steps.append(("cancel", code, draw(st.integers(0, 100)), part))
    return steps


@SETTINGS
@given(
    steps=scenarios(),
    cash0=st.one_of(st.integers(0, 2_000_000), st.integers(10_000_000, 100_000_000)),
    rate=st.sampled_from(RATES),
    slippage=st.sampled_from((0, 0, 1, 3)),
    start=st.one_of(
        st.dates(date(2022, 6, 1), date(2026, 6, 1)),
        st.sampled_from((date(2022, 12, 27), date(2024, 12, 27), date(2025, 12, 27))),
    ),
)
def test_paper_broker_conserves_money_across_any_fill_sequence(
    steps, cash0, rate, slippage, start
):
    commission_rate = Fraction(rate)
    clock = Clock()
    now = datetime(start.year, start.month, start.day, 15, 30, tzinfo=KST)
    clock.set(now)
    broker = PaperBroker(
        cash0, fees=FeeModel(commission_rate=rate), slippage_ticks=slippage, clock=clock
    )
    portfolio = Portfolio()

    cash = cash0
    held = dict.fromkeys(CODES, 0)
    last_close: dict[str, int] = {}

    def held_for(qty: int, limit: int | None, code: str) -> int:
        """Buying power a buy holds: at its limit, a market buy at the upper limit."""
        if limit is None:
            base = last_close.get(code)
            unit = ref_upper_limit(base, now.date()) if base else 0
        else:
            unit = limit
        return qty * unit + floor_fee(qty * unit, commission_rate)
    pending: list[RefOrder] = []
    fees_paid = signed_value = 0
    seq = 0

    for step in steps:
        kind, code = step[0], step[1]
        if kind == "order":
            _, _, side, qty, limit = step
            seq += 1
            cid = f"P-{seq:07d}"
            today = now.date()
            grid = (
                None
                if limit is None
                else (ref_down if side is OrderSide.BUY else ref_up)(limit, today)
            )
            free_to_sell = held[code] - sum(
                o.qty for o in pending if o.code == code and o.side is OrderSide.SELL
            )
            request = OrderRequest(cid, code, side, OrderType.MARKET if limit is None
                                   else OrderType.LIMIT, qty, limit)
            if side is OrderSide.SELL and qty > free_to_sell:
                with pytest.raises(OrderRejectedError):
                    broker.submit_order(request)
            elif side is OrderSide.BUY and (grid is not None or code in last_close) and (
                held_for(qty, grid, code) > cash - sum(
                    held_for(o.qty, o.limit, o.code) for o in pending if o.side is OrderSide.BUY
                )
            ):
                with pytest.raises(InsufficientFundsError):
                    broker.submit_order(request)
            else:
                broker.submit_order(request)
                pending.append(RefOrder(cid, code, side, qty, grid, now))
        elif kind == "cancel":
            if pending:
                victim = pending[step[2] % len(pending)]
                part = step[3]  # None: cancel all that is unfilled
                state = broker.find_order(victim.cid)
                assert state is not None
                broker.cancel_order(state.broker_order_id, victim.code, part)
                if part is not None and part < victim.qty:
                    victim.qty -= part  # the rest keeps resting
                else:
                    pending.remove(victim)
        else:
            _, _, o, hi, lo, c, minutes = step
            now += timedelta(minutes=minutes)
            clock.set(now)
            # the reference fills first, in submission order
            expected = []
            for ref in [p for p in pending if p.code == code and p.created < now]:
                if ref.limit is None:
                    price = ref_move(
                        o, slippage if ref.side is OrderSide.BUY else -slippage, now.date()
                    )
                elif ref.side is OrderSide.BUY:
                    price = min(o, ref.limit) if lo <= ref.limit else None
                else:
                    price = max(o, ref.limit) if hi >= ref.limit else None
                if price is None:
                    continue
                pending.remove(ref)
                qty = ref.qty
                if ref.side is OrderSide.BUY:
                    qty = min(qty, ref_affordable(cash, price, commission_rate))
                    if qty == 0:
                        continue  # cancelled for cash
                amount = qty * price
                comm = floor_fee(amount, commission_rate)
                tax = 0 if ref.side is OrderSide.BUY else floor_fee(
                    amount, ref_tax_rate(now.date())
                )
                if ref.side is OrderSide.BUY:
                    cash -= amount + comm
                    held[code] += qty
                    signed_value -= amount
                else:
                    cash += amount - comm - tax
                    held[code] -= qty
                    signed_value += amount
                fees_paid += comm + tax
                expected.append((ref.cid, ref.side, qty, price, comm, tax))

            cash_before = broker.cash_krw
            held_before = broker.holding_qty(code)
            fills = broker.process_bar(code, now, o, hi, lo, c)
            last_close[code] = c

            got = [(f.client_order_id, f.side, f.qty, f.price, f.commission_krw, f.tax_krw)
                   for f in fills]
            assert got == expected
            deltas = [
                -(f.qty * f.price + f.commission_krw) if f.side is OrderSide.BUY
                else f.qty * f.price - f.commission_krw - f.tax_krw
                for f in fills
            ]
            assert broker.cash_krw - cash_before == sum(deltas)
            assert broker.holding_qty(code) - held_before == sum(
                f.qty if f.side is OrderSide.BUY else -f.qty for f in fills
            )
            for f in fills:
                assert f.time == now
                portfolio.apply_fill("s", f)
        assert broker.cash_krw == cash >= 0
        for c_ in CODES:
            assert broker.holding_qty(c_) == held[c_] >= 0

    # orders the reference still holds open are open at the broker, and only those
    for ref in pending:
        state = broker.find_order(ref.cid)
        assert state is not None
        assert state.status is OrderStatus.SUBMITTED
    equity = cash + sum(held[code] * last_close.get(code, 0) for code in CODES)
    assert equity == cash0 + signed_value - fees_paid + sum(
        held[code] * last_close.get(code, 0) for code in CODES
    )
    assert broker.cash_krw + broker.holdings_value_krw() == equity
    assert broker.get_balance().total_equity_krw == equity
    holdings = {h.stock_code: h for h in broker.get_holdings()}
    for code in CODES:
        assert portfolio.qty("s", code) == held[code]
        pos = portfolio.get("s", code)
        if held[code]:
            assert pos is not None
            assert holdings[code].qty == pos.qty
            assert holdings[code].avg_price == pos.avg_price
        else:
            assert pos is None
            assert code not in holdings


# --- FundManager: no won allocated twice --------------------------------------------------

fund_ops = st.lists(
    st.one_of(
        st.tuples(st.just("reserve"), st.integers(1, 3_000_000)),
        st.tuples(st.just("commit"), st.integers(0, 20), st.integers(0, 3_000_000)),
        st.tuples(st.just("release"), st.integers(0, 20)),
        st.tuples(st.just("credit"), st.integers(0, 2_000_000)),
    ),
    max_size=60,
)


@SETTINGS
@given(cash0=st.integers(0, 10_000_000), ops=fund_ops)
def test_fund_manager_never_hands_out_the_same_won_twice(cash0, ops):
    fm = FundManager(cash0)
    cash = cash0
    remaining: dict[int, int] = {}  # reservation id → KRW not yet spent
    ids: list[int | None] = [None]

    for op in ops:
        free = cash - sum(remaining.values())
        if op[0] == "reserve":
            amount = op[1]
            if amount > free:
                with pytest.raises(FundsError):
                    fm.reserve("s", "005930", amount)
            else:
                res = fm.reserve("s", "005930", amount)
                assert (res.amount_krw, res.remaining_krw) == (amount, amount)
                remaining[res.reservation_id] = amount
                ids.append(res.reservation_id)
        elif op[0] == "commit":
            rid, cost = ids[op[1] % len(ids)], op[2]
            from_res = min(cost, remaining.get(rid, 0)) if rid is not None else 0
            assert fm.spendable_krw(rid) == (remaining.get(rid, 0) if rid else 0) + free
            if cost - from_res > free:
                with pytest.raises(FundsError):
                    fm.commit_buy(rid, cost)
            else:
                fm.commit_buy(rid, cost)
                cash -= cost
                if rid in remaining:
                    remaining[rid] -= from_res
        elif op[0] == "release":
            rid = ids[op[1] % len(ids)]
            expected_back = remaining.pop(rid, 0) if rid is not None else 0
            assert fm.release(rid) == expected_back
        else:
            fm.credit(op[1])
            cash += op[1]

        reserved = sum(remaining.values())
        assert reserved <= cash
        assert fm.cash_krw == cash >= 0
        assert fm.reserved_krw == reserved
        assert fm.free_krw == cash - reserved
        assert sum(r.remaining_krw for r in fm.reservations()) == reserved

    for rid in list(remaining):
        fm.release(rid)
    assert fm.reserved_krw == 0
    assert fm.free_krw == fm.cash_krw == cash


@settings(max_examples=25, deadline=None)
@given(
    cash0=st.integers(0, 5_000_000),
    asks=st.lists(st.lists(st.integers(1, 400_000), min_size=1, max_size=20),
                  min_size=2, max_size=6),
    spend=st.integers(0, 100),
)
def test_concurrent_reservations_never_exceed_cash(cash0, asks, spend):
    fm = FundManager(cash0)
    start = threading.Barrier(len(asks))
    granted: list[list[tuple[int, int, int]]] = [[] for _ in asks]  # (id, amount, spent)
    refused = [0] * len(asks)

    def worker(i: int) -> None:
        start.wait()
        for amount in asks[i]:
            try:
                res = fm.reserve(f"s{i}", "005930", amount)
            except FundsError:
                refused[i] += 1
                continue
            cost = amount * spend // 100
            if cost:
                fm.commit_buy(res.reservation_id, cost)  # within the reservation: never fails
            granted[i].append((res.reservation_id, amount, cost))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(asks))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    rows = [row for rows in granted for row in rows]
    assert len(rows) + sum(refused) == sum(len(a) for a in asks)
    assert len({rid for rid, _, _ in rows}) == len(rows)
    assert sum(amount for _, amount, _ in rows) <= cash0
    spent = sum(cost for _, _, cost in rows)
    assert fm.cash_krw == cash0 - spent
    assert fm.reserved_krw == sum(amount - cost for _, amount, cost in rows) <= fm.cash_krw
    for rid, _, _ in rows:
        fm.release(rid)
    assert fm.free_krw == fm.cash_krw == cash0 - spent


@SETTINGS
@given(
    cash0=st.integers(0, 10_000_000),
    held=st.integers(0, 10_000_000),
    amount=st.integers(1, 20_000_000),
)
def test_reserve_up_to_free_sets_aside_what_the_free_cash_allows(cash0, held, amount):
    fm = FundManager(cash0)
    if 0 < held <= cash0:
        fm.reserve("other", "000660", held)
    free = fm.free_krw
    if min(amount, free) <= 0:
        with pytest.raises(ValueError):
            fm.reserve("s", "005930", amount, up_to_free=True)
        return
    res = fm.reserve("s", "005930", amount, up_to_free=True)
    assert res.amount_krw == min(amount, free)  # as min(amount, free_krw) then reserve()
    assert fm.free_krw == free - res.amount_krw >= 0


# --- fees --------------------------------------------------------------------------------

rates = st.decimals(min_value=0, max_value=Decimal("0.05"), places=9)


@SETTINGS
@given(amount=st.integers(0, 10**13), rate=rates)
def test_fee_is_the_truncated_product(amount, rate):
    fee = fee_krw(amount, rate)
    exact = amount * Fraction(rate)
    assert fee >= 0
    assert fee <= exact < fee + 1
    assert FeeModel(commission_rate=rate).commission(amount) == fee


@SETTINGS
@given(amount=st.integers(0, 10**12), day=st.dates(date(2015, 1, 1), date(2035, 12, 31)))
def test_sell_tax_follows_the_dated_table(amount, day):
    tax = FeeModel().sell_tax(amount, day, "005930")
    assert tax == floor_fee(amount, ref_tax_rate(day)) >= 0


@SETTINGS
@given(cash=st.integers(0, 10**10), price=st.integers(1, 2_000_000), rate=st.sampled_from(RATES))
def test_max_affordable_qty_is_the_largest_that_fits(cash, price, rate):
    fees = FeeModel(commission_rate=rate)
    qty = fees.max_affordable_qty(cash, price)
    fraction = Fraction(rate)

    def cost(q: int) -> int:
        return q * price + floor_fee(q * price, fraction)

    assert qty >= 0
    assert cost(qty) <= cash
    assert cost(qty + 1) > cash


# --- ticks -------------------------------------------------------------------------------

prices = st.integers(1, 3_000_000)
directions = st.sampled_from(("down", "up", "nearest"))


@SETTINGS
@given(price=prices, direction=directions)
def test_round_to_tick_is_idempotent_and_on_the_grid(price, direction):
    once = round_to_tick(price, direction)
    assert round_to_tick(once, direction) == once
    assert is_valid_tick(once)
    assert once % ref_tick(once) == 0


@SETTINGS
@given(price=prices)
def test_round_down_and_up_bracket_the_price(price):
    down, up, nearest = (round_to_tick(price, d) for d in ("down", "up", "nearest"))
    assert down == ref_down(price) <= price <= ref_up(price) == up
    assert nearest in (down, up)
    assert tick_size(price) == ref_tick(price)
    assert is_valid_tick(price) == (price % ref_tick(price) == 0)


@SETTINGS
@given(cents=st.integers(100, 300_000_000))
def test_round_fractional_prices_bracket(cents):
    price = cents / 100
    down, up = round_to_tick(price, "down"), round_to_tick(price, "up")
    assert down <= price <= up
    assert is_valid_tick(down)
    assert is_valid_tick(up)


@SETTINGS
@given(price=prices, n=st.integers(1, 30))
def test_add_ticks_round_trips_on_valid_prices(price, n):
    valid = ref_down(price)
    up_one = add_ticks(valid, 1)
    assert up_one == valid + ref_tick(valid)
    assert is_valid_tick(up_one)
    assert add_ticks(up_one, -1) == valid
    assert add_ticks(add_ticks(valid, n), -n) == valid


# --- OrderManager: duplicates, overfills, average price -----------------------------------


class _NullExecutor(OrderExecutor):
    def submit_order(self, request: OrderRequest) -> str:
        return "B1"

    def cancel_order(self, broker_order_id: str, stock_code: str, qty: int | None = None) -> None:
        raise OrderRejectedError("not supported")

    def get_order(self, broker_order_id: str) -> OrderState:
        raise OrderRejectedError("not supported")


@SETTINGS
@given(
    qty=st.integers(1, 100),
    raw_fills=st.lists(st.tuples(st.integers(1, 60), st.integers(1_000, 200_000)),
                       min_size=1, max_size=12),
    side=st.sampled_from((OrderSide.BUY, OrderSide.SELL)),
)
def test_fills_deduplicated_overfills_refused_average_within_range(qty, raw_fills, side):
    t0 = datetime(2024, 6, 3, 9, 0, tzinfo=KST)
    clock = Clock()
    clock.set(t0)
    journal = MemoryJournal()
    om = OrderManager(_NullExecutor(), journal, clock, "S1")
    order = om.create(strategy="s", stock_code="005930", side=side,
                      order_type=OrderType.MARKET, qty=qty, price=None)
    om.submit(order)
    fills = tuple(
        Fill(f"F{i}", order.client_order_id, "005930", side, q, p, t0 + timedelta(seconds=i),
             commission_krw=q * p * 15 // 100_000)
        for i, (q, p) in enumerate(raw_fills)
    )
    # reference: a fill is taken iff it fits in what is left
    taken, left = [], qty
    for f in fills:
        if f.qty <= left:
            taken.append(f)
            left -= f.qty
    state = OrderState("B1", OrderStatus.PARTIALLY_FILLED, qty, qty - left, fills,
                       order.client_order_id)

    assert om.apply_state(order, state) == taken
    snapshot = (order.filled_qty, order.filled_amount_krw, order.avg_fill_price,
                order.commission_krw, order.status, order.updated_at)
    history, events = list(journal.history), list(journal.events)

    assert om.apply_state(order, state) == []  # the same report again changes nothing
    for f in fills:
        if f in taken:
            assert om.apply_fill(order, f) is False
    assert (order.filled_qty, order.filled_amount_krw, order.avg_fill_price,
            order.commission_krw, order.status, order.updated_at) == snapshot
    assert journal.history == history
    assert [e for e in journal.events if e["kind"] != "overfill_refused"] == [
        e for e in events if e["kind"] != "overfill_refused"
    ]

    assert order.filled_qty == sum(f.qty for f in taken) <= qty
    assert order.filled_amount_krw == sum(f.qty * f.price for f in taken)
    assert order.commission_krw == sum(f.commission_krw for f in taken)
    if not taken:
        assert order.status is OrderStatus.SUBMITTED
    else:
        assert order.status is (
            OrderStatus.FILLED if left == 0 else OrderStatus.PARTIALLY_FILLED
        )
    refused = len(fills) - len(taken)
    assert len([e for e in events if e["kind"] == "overfill_refused"]) == refused
    if not taken:
        assert order.avg_fill_price == 0
        return
    lo, hi = min(f.price for f in taken), max(f.price for f in taken)
    assert lo <= order.avg_fill_price <= hi
    assert order.avg_fill_price == pytest.approx(
        sum(f.qty * f.price for f in taken) / order.filled_qty, rel=1e-12
    )


@SETTINGS
@given(
    buys=st.lists(st.tuples(st.integers(1, 50), st.integers(1_000, 200_000)),
                  min_size=1, max_size=10),
    sell_extra=st.integers(1, 10),
)
def test_portfolio_average_entry_within_range_and_overfill_refused(buys, sell_extra):
    t0 = datetime(2024, 6, 3, 9, 0, tzinfo=KST)
    portfolio = Portfolio()
    for i, (q, p) in enumerate(buys):
        portfolio.apply_fill("s", Fill(f"B{i}", "c", "005930", OrderSide.BUY, q, p, t0))
    total = sum(q for q, _ in buys)
    pos = portfolio.get("s", "005930")
    assert pos is not None
    assert pos.qty == total
    assert pos.cost_basis_krw == sum(q * p for q, p in buys)
    assert min(p for _, p in buys) <= pos.avg_price <= max(p for _, p in buys)

    too_many = Fill("S0", "c", "005930", OrderSide.SELL, total + sell_extra, 100_000, t0)
    with pytest.raises(OverfillError):
        portfolio.apply_fill("s", too_many)
    assert portfolio.qty("s", "005930") == total
    assert pos.cost_basis_krw == sum(q * p for q, p in buys)

    _, trip = portfolio.apply_fill(
        "s", Fill("S1", "c", "005930", OrderSide.SELL, total, 100_000, t0)
    )
    assert trip is not None
    assert trip.qty == total
    assert trip.pnl_krw == total * 100_000 - sum(q * p for q, p in buys)
    assert portfolio.get("s", "005930") is None
