"""Restart of the KIS adapter: restored orders, orders found again after a lost answer, and
the fake KIS's random faults and HTTP control API used to test a bot in another process."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from api.circuit_breaker import KISCircuitBreaker
from api.kis_broker import KISBroker
from framework.errors import (
    AuthError,
    OrderRejectedError,
    RateLimitError,
    TransientBrokerError,
    UnknownOrderOutcomeError,
)
from framework.executor import OrderExecutor, OrderState
from framework.types import OrderRequest, OrderSide, OrderStatus, OrderType
from tests.fakes import (
    DEFAULT_APP_KEY,
    DEFAULT_APP_SECRET,
    FakeClock,
    FakeKIS,
    FakeKISControl,
    FakeKISServer,
)
from tests.fakes.clock import KST
from tests.fakes.harness import fast_fake, make_settings, mock_broker

DAY = date(2025, 6, 16)
CODE = "005930"
PRICE = "/uapi/domestic-stock/v1/quotations/inquire-price"
ORDER = "/uapi/domestic-stock/v1/trading/order-cash"
TOKEN = "/oauth2/tokenP"


def buy(cid: str, qty: int, price: int | None) -> OrderRequest:
    kind = OrderType.LIMIT if price else OrderType.MARKET
    return OrderRequest(cid, CODE, OrderSide.BUY, kind, qty, price)


@contextmanager
def process(fake: FakeKIS, base_url: str, token_dir: Path, **overrides: object
            ) -> Iterator[KISBroker]:
    """One run of the bot: a fresh broker (nothing in memory) over HTTP."""
    broker = KISBroker(make_settings(token_dir, base_url, **overrides), clock=fake.clock,
                       sleep=lambda _s: None)
    try:
        yield broker
    finally:
        broker.close()


# --- restore_order -------------------------------------------------------------------
def test_restored_order_reports_only_the_fills_after_the_restart(tmp_path: Path) -> None:
    fake = fast_fake(fill_qty_per_match=4)
    fake.set_price(CODE, 56_000)  # a buy at 55,000 is not marketable
    with FakeKISServer(fake) as server:
        with process(fake, server.base_url, tmp_path) as first:
            sent_at = fake.clock()
            odno = first.submit_order(buy("r-1", 10, 55_000))
            fake.set_price(CODE, 54_800)  # one matching pass: 4 shares at 54,800
            fake.set_price(CODE, 56_000)
            before = first.get_order(odno)
        # the process dies; the database holds 4 shares for 219,200 KRW
        with process(fake, server.base_url, tmp_path) as second:
            second.restore_order(odno, "r-1", filled_qty=4, filled_amount_krw=4 * 54_800,
                                 day=DAY)
            unchanged = second.get_order(odno)
            fake.set_price(CODE, 54_900)  # 4 more at min(55,000, 54,900)
            fake.set_price(CODE, 56_000)
            after = second.get_order(odno)
            again = second.get_order(odno)
            found = second.find_order("r-1")
        with process(fake, server.base_url, tmp_path) as unrestored:
            naive = unrestored.get_order(odno)  # what a restart without restore would see

    assert [(f.fill_id, f.qty, f.price) for f in before.fills] == [
        (f"20250616-{odno}-4", 4, 54_800)]
    assert (unchanged.filled_qty, unchanged.fills, unchanged.client_order_id) == (4, (), "r-1")
    assert unchanged.status is OrderStatus.PARTIALLY_FILLED
    assert [(f.fill_id, f.qty, f.price, f.client_order_id, f.broker_order_id)
            for f in after.fills] == [(f"20250616-{odno}-8", 4, 54_900, "r-1", odno)]
    assert after.filled_qty == 8
    assert again.fills == after.fills
    assert found is not None
    assert found.broker_order_id == odno
    assert after.fills[0].commission_krw == int(4 * 54_900 * 0.000140527)
    assert (after.stock_code, after.side, after.price, after.cancelled_qty) == (
        CODE, OrderSide.BUY, 55_000, 0)
    assert after.ordered_at == sent_at.replace(microsecond=0)
    # the bug restore_order prevents: everything reported again as one fill
    assert [(f.qty, f.fill_id) for f in naive.fills] == [(8, f"20250616-{odno}-8")]


def test_restored_amount_differing_from_kis_is_replaced_by_kis_figures(tmp_path: Path) -> None:
    fake = fast_fake(auto_fill=False)
    broker = mock_broker(fake, tmp_path)
    odno = broker.submit_order(buy("a-1", 10, 57_000))
    fake.fill_order(odno, 4, 56_900)
    broker.close()
    restarted = mock_broker(fake, tmp_path)
    restarted.restore_order(odno, "a-1", filled_qty=4, filled_amount_krw=4 * 56_000, day=DAY)
    first = restarted.get_order(odno)  # same quantity: no fill, KIS's amount adopted
    fake.fill_order(odno, 6, 57_000)
    second = restarted.get_order(odno)
    restarted.close()
    assert first.fills == ()
    assert [(f.qty, f.price) for f in second.fills] == [(6, 57_000)]  # not 57,600


def test_restored_amount_too_large_falls_back_to_the_kis_average(tmp_path: Path) -> None:
    fake = fast_fake(auto_fill=False)
    broker = mock_broker(fake, tmp_path)
    odno = broker.submit_order(buy("a-2", 10, 57_000))
    fake.fill_order(odno, 5, 57_000)
    broker.close()
    restarted = mock_broker(fake, tmp_path)
    restarted.restore_order(odno, "a-2", filled_qty=4, filled_amount_krw=10**9, day=DAY)
    state = restarted.get_order(odno)
    restarted.close()
    assert [(f.qty, f.price, f.fill_id) for f in state.fills] == [
        (1, 57_000, f"20250616-{odno}-5")]


def test_restore_refuses_negative_figures_and_blocks_a_resubmit(tmp_path: Path) -> None:
    fake = fast_fake(auto_fill=False)
    broker = mock_broker(fake, tmp_path)
    with pytest.raises(ValueError, match="negative"):
        broker.restore_order("0000010001", "x-1", filled_qty=-1, filled_amount_krw=0, day=DAY)
    broker.restore_order("0000010001", "x-1", filled_qty=0, filled_amount_krw=0, day=DAY)
    with pytest.raises(OrderRejectedError, match="already submitted"):
        broker.submit_order(buy("x-1", 1, 50_000))
    broker.close()
    assert fake.stats.by_path[ORDER] == 0


# --- match_order ---------------------------------------------------------------------
def test_match_order_finds_an_order_whose_answer_was_lost(tmp_path: Path) -> None:
    fake = fast_fake(auto_fill=False)
    first = mock_broker(fake, tmp_path)
    other = first.submit_order(buy("m-0", 3, 56_000))  # same code, side, qty and price
    fake.advance(1)
    sent_at = fake.clock()
    fake.inject("timeout", path="order-cash", after_processing=True)
    with pytest.raises(UnknownOrderOutcomeError):
        first.submit_order(buy("m-1", 3, 56_000))
    lost = fake.account().orders[-1].odno
    first.close()  # the process dies with the order in the database as PENDING_NEW

    request = buy("m-1", 3, 56_000)
    fresh = mock_broker(fake, tmp_path)
    earliest = fresh.match_order(request, sent_at)
    fresh.close()
    second = mock_broker(fake, tmp_path)
    matched = second.match_order(request, sent_at, claimed={other})
    fake.fill_order(lost, 1, 55_900)
    state = second.get_order(lost)
    taken_by_m1 = second.match_order(buy("m-2", 3, 56_000), sent_at, claimed={other})
    nothing = [
        second.match_order(request, sent_at, claimed={other, lost}),
        second.match_order(buy("m-1", 4, 56_000), sent_at),
        second.match_order(buy("m-1", 3, 56_100), sent_at),
        second.match_order(request, sent_at + timedelta(minutes=11)),
        second.match_order(request, sent_at + timedelta(days=1)),
    ]
    found = second.find_order("m-1")
    second.close()

    assert lost != other
    assert earliest is not None
    assert earliest.broker_order_id == other  # the earliest wins when nothing is claimed
    assert matched is not None
    assert (matched.broker_order_id, matched.client_order_id) == (lost, "m-1")
    assert (matched.qty, matched.price, matched.status) == (3, 56_000, OrderStatus.SUBMITTED)
    assert [(f.client_order_id, f.qty, f.price) for f in state.fills] == [("m-1", 1, 55_900)]
    assert taken_by_m1 is None  # attributed to m-1 by this broker
    assert nothing == [None] * 5
    assert found is not None
    assert found.broker_order_id == lost


def test_match_order_needs_an_aware_time(tmp_path: Path) -> None:
    fake = fast_fake()
    broker = mock_broker(fake, tmp_path)
    with pytest.raises(ValueError, match="tz-aware"):
        broker.match_order(buy("n-1", 1, 50_000), datetime(2025, 6, 16, 9, 30))  # noqa: DTZ001
    broker.close()


class _Minimal(OrderExecutor):
    def submit_order(self, request: OrderRequest) -> str:
        return "1"

    def cancel_order(self, broker_order_id: str, stock_code: str, qty: int | None = None) -> None:
        return None

    def get_order(self, broker_order_id: str) -> OrderState:
        return OrderState(broker_order_id, OrderStatus.SUBMITTED, 1, 0)


def test_executor_defaults() -> None:
    executor = _Minimal()
    state = executor.get_order("1")
    assert (state.stock_code, state.side, state.price, state.ordered_at,
            state.cancelled_qty) == (None, None, None, None, 0)
    assert executor.match_order(buy("d-1", 1, 50_000), datetime.now(KST)) is None
    executor.restore_order("1", "d-1", filled_qty=0, filled_amount_krw=0, day=DAY)
    with pytest.raises(NotImplementedError):
        executor.list_orders()


# --- random faults -------------------------------------------------------------------
def test_random_faults_at_rate_one_hit_every_rest_call_but_not_the_token(tmp_path: Path
                                                                          ) -> None:
    fake = fast_fake(fault_rate=1.0, fault_kinds=("http_500",), fault_seed=1)
    broker = mock_broker(fake, tmp_path, max_read_retries=0)
    for _ in range(5):
        with pytest.raises(TransientBrokerError):
            broker.get_quote(CODE)
    broker.close()
    assert fake.stats.by_path[PRICE] == 5
    assert fake.stats.faults_by_kind == {"http_500": 5}
    assert fake.stats.faults_fired == 5
    assert fake.stats.by_path[TOKEN] == 1
    assert fake.stats.tokens_issued == 1


def test_random_faults_at_rate_zero_never_fire(tmp_path: Path) -> None:
    fake = fast_fake(fault_rate=0.0, fault_seed=1)
    broker = mock_broker(fake, tmp_path, max_read_retries=0)
    for i in range(10):
        broker.get_quote(CODE)
        broker.get_order(broker.submit_order(buy(f"z-{i}", 1, 50_000)))
    broker.close()
    assert fake.stats.faults_fired == 0
    assert sum(fake.stats.faults_by_kind.values()) == 0


def _raw_outcomes(seed: int, kinds: tuple[str, ...], calls: int = 40) -> list[str]:
    """Send ``calls`` quote requests straight to a fake in random-fault mode."""
    fake = fast_fake(fault_rate=0.5, fault_kinds=kinds, fault_seed=seed)
    out: list[str] = []
    with httpx.Client(transport=fake.transport(), base_url="http://fake") as http:
        token = http.post(TOKEN, json={"grant_type": "client_credentials",
                                       "appkey": DEFAULT_APP_KEY,
                                       "appsecret": DEFAULT_APP_SECRET}).json()["access_token"]
        headers = {"authorization": f"Bearer {token}", "appkey": DEFAULT_APP_KEY,
                   "appsecret": DEFAULT_APP_SECRET, "tr_id": "FHKST01010100"}
        for _ in range(calls):
            try:
                answer = http.get(PRICE, headers=headers,
                                  params={"FID_COND_MRKT_DIV_CODE": "J", "FID_INPUT_ISCD": CODE})
            except httpx.TimeoutException:
                out.append("timeout")
                continue
            try:
                out.append(f"{answer.status_code}:{answer.json().get('msg_cd', '')}")
            except ValueError:
                out.append(f"{answer.status_code}:not json")
    assert fake.stats.faults_fired == sum(fake.stats.faults_by_kind.values())
    assert set(fake.stats.faults_by_kind) <= set(kinds)
    return out


def test_random_faults_are_reproducible_with_a_seed() -> None:
    kinds = ("http_500", "timeout", "rate_limit", "malformed_json")
    first, again, other = (_raw_outcomes(7, kinds), _raw_outcomes(7, kinds),
                           _raw_outcomes(8, kinds))
    ok = "200:MCA00000"
    assert first == again
    assert first != other
    assert 0 < first.count(ok) < len(first)
    assert {"timeout", "500:EGW00201", "200:not json"} <= set(first)


def test_random_token_expired_really_expires_the_token(tmp_path: Path) -> None:
    fake = fast_fake(fault_rate=1.0, fault_kinds=("token_expired",), fault_seed=3)
    broker = mock_broker(fake, tmp_path, max_read_retries=0)
    with pytest.raises(AuthError):  # expired; a new token is refused within the minute
        broker.get_quote(CODE)
    fake.set_random_faults(0.0)
    fake.advance(61)
    quote = broker.get_quote(CODE)
    broker.close()
    assert quote.price > 0
    assert fake.stats.faults_by_kind == {"token_expired": 1}
    assert fake.stats.tokens_issued == 2  # the old token no longer counts as current


def test_random_order_faults_lose_the_answer_after_processing_half_of_the_time(
    tmp_path: Path,
) -> None:
    fake = fast_fake(auto_fill=False, fault_rate=1.0, fault_kinds=("http_500", "timeout"),
                     fault_seed=11)
    broker = KISBroker(make_settings(tmp_path), transport=fake.transport(), clock=fake.clock,
                       breaker=KISCircuitBreaker(fail_max=100), sleep=lambda _s: None)
    for i in range(20):
        with pytest.raises(UnknownOrderOutcomeError):
            broker.submit_order(buy(f"h-{i}", 1, 50_000))
    broker.close()
    placed = len(fake.account().orders)
    assert placed == fake.stats.faults_after_processing
    assert 4 <= placed <= 16
    assert fake.stats.faults_fired == 20


def test_random_gateway_refusals_never_hit_a_placed_order(tmp_path: Path) -> None:
    fake = fast_fake(auto_fill=False, fault_rate=1.0, fault_kinds=("rate_limit",),
                     fault_seed=5)
    broker = mock_broker(fake, tmp_path)
    for i in range(10):
        with pytest.raises(RateLimitError):
            broker.submit_order(buy(f"g-{i}", 1, 50_000))
    broker.close()
    assert fake.account().orders == []
    assert fake.stats.faults_after_processing == 0


def test_random_fault_settings_are_checked() -> None:
    fake = fast_fake()
    with pytest.raises(ValueError, match=r"0\.\.1"):
        fake.set_random_faults(1.5)
    with pytest.raises(ValueError, match="unknown fault"):
        fake.set_random_faults(0.1, kinds=("boom",))
    with pytest.raises(ValueError, match="at least one"):
        FakeKIS(fault_rate=0.1, fault_kinds=())


# --- control API over HTTP -----------------------------------------------------------
def test_control_api_over_http(tmp_path: Path) -> None:
    fake = fast_fake(clock=FakeClock(datetime(2025, 6, 16, 8, 59, tzinfo=KST)),
                     enforce_market_hours=False, rate_clock=lambda: 100.0)
    broker = mock_broker(fake, tmp_path)
    odno = broker.submit_order(buy("c-1", 2, 60_000))  # marketable, but before the open
    broker.close()
    fake.rate_limit_per_s = 1  # the rate window is frozen: KIS would refuse the next REST
    fake.set_random_faults(1.0)
    sent = fake.stats.requests
    path_price = fake.market.price(CODE)
    with (
        FakeKISServer(fake) as server,
        FakeKISControl(server.base_url) as control,
        httpx.Client(base_url=server.base_url) as http,
    ):
        clock = http.get("/_fake/clock")
        moved = control.advance(90)  # 09:00:30: the open order fills
        filled = fake.order(odno).filled_qty
        as_clock = control()
        set_to = control.set_price(CODE, 72_000)
        price_then = fake.market.price(CODE)
        back = control.set_price(CODE, None)
        errors = [
            http.post("/_fake/set_price", json={"code": "999999", "price": 1000}).status_code,
            http.post("/_fake/set_price", json={"code": CODE, "price": -5}).status_code,
            http.post("/_fake/set_price", json={"code": CODE, "price": "72000"}).status_code,
            http.post("/_fake/advance", json={"seconds": -1}).status_code,
            http.post("/_fake/advance", content=b"{not json").status_code,
            http.post("/_fake/advance", json={}).status_code,
            http.get("/_fake/advance").status_code,
            http.get("/_fake/nothing").status_code,
        ]
        for _ in range(20):  # never rate limited, never faulted
            assert http.get("/_fake/clock").status_code == 200
    assert clock.status_code == 200
    assert clock.json() == {"now": "2025-06-16T08:59:00+09:00"}
    assert moved == datetime(2025, 6, 16, 9, 0, 30, tzinfo=KST) == fake.clock()
    assert moved.utcoffset() == timedelta(hours=9)
    assert filled == 2
    assert as_clock == fake.clock()
    assert (set_to, price_then) == (72_000, 72_000)
    assert back == fake.market.price(CODE)
    assert fake.market.stocks[CODE].override is None
    assert path_price > 0
    assert errors == [404, 400, 400, 400, 400, 400, 405, 404]
    assert fake.stats.requests == sent
    assert not [p for p in fake.stats.by_path if p.startswith("/_fake")]
    assert fake.stats.faults_fired == 0
    assert fake.stats.control_requests == 5 + len(errors) + 20
