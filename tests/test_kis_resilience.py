"""Retries, error translation, the circuit breaker and EGW00201, against the fake KIS."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from api.circuit_breaker import BreakerEvent, KISCircuitBreaker, is_breaker_failure
from api.kis_broker import KISBroker
from api.kis_errors import check_response
from api.kis_http import KISClient, KISRateLimiter
from framework.errors import (
    AuthError,
    CircuitOpenError,
    InsufficientFundsError,
    OrderRejectedError,
    RateLimitError,
    TransientBrokerError,
    UnknownOrderOutcomeError,
)
from framework.types import OrderRequest, OrderSide, OrderStatus, OrderType
from tests.fakes.harness import fast_fake, http_broker, make_settings, mock_broker

PRICE = "/uapi/domestic-stock/v1/quotations/inquire-price"
ORDER = "/uapi/domestic-stock/v1/trading/order-cash"


def buy(cid: str, qty: int = 1, price: int = 56_000) -> OrderRequest:
    return OrderRequest(cid, "005930", OrderSide.BUY, OrderType.LIMIT, qty, price)


@pytest.mark.parametrize("kind", ["http_500", "malformed_json", "rate_limit", "drop"])
def test_reads_are_retried_a_bounded_number_of_times(tmp_path: Path, kind: str) -> None:
    fake = fast_fake()
    with http_broker(fake, tmp_path, max_read_retries=2) as (broker, _):
        fake.inject(kind, path="inquire-price", count=2)
        assert broker.get_quote("005930").price > 0
        fake.inject(kind, path="inquire-price", count=3)
        with pytest.raises(TransientBrokerError):
            broker.get_quote("005930")
    assert fake.stats.by_path[PRICE] == 3 + 3


@pytest.mark.parametrize(
    ("kind", "after"),
    [("http_500", False), ("malformed_json", True), ("drop", True), ("timeout", False)],
)
def test_orders_are_never_retried(tmp_path: Path, kind: str, after: bool) -> None:
    fake = fast_fake(auto_fill=False)
    broker = mock_broker(fake, tmp_path)
    fake.inject(kind, path="order-cash", after_processing=after)
    with pytest.raises(UnknownOrderOutcomeError):
        broker.submit_order(buy("n-1"))
    broker.close()
    assert fake.stats.by_path[ORDER] == 1
    assert len(fake.account().orders) == (1 if after else 0)


def test_order_not_sent_when_the_host_is_down(tmp_path: Path) -> None:
    fake = fast_fake()
    broker = mock_broker(fake, tmp_path)
    broker.get_quote("005930")  # token issued
    broker.close()
    with socket_closed_port() as url:
        down = KISBroker(make_settings(tmp_path, url), clock=fake.clock)
        with pytest.raises(TransientBrokerError, match="not sent") as err:
            down.submit_order(buy("d-1"))
        down.close()
    assert not isinstance(err.value, UnknownOrderOutcomeError)
    assert down.find_order("d-1") is None  # forgotten: safe to send again


def test_order_token_expired_refreshes_but_does_not_resend(tmp_path: Path) -> None:
    fake = fast_fake(auto_fill=False)
    broker = mock_broker(fake, tmp_path)
    broker.get_quote("005930")
    fake.advance(61)
    fake.expire_tokens()
    with pytest.raises(AuthError):
        broker.submit_order(buy("t-1"))
    odno = broker.submit_order(buy("t-1"))  # the gateway refused the first: not placed
    broker.close()
    assert fake.stats.by_path[ORDER] == 2
    assert [o.odno for o in fake.account().orders] == [odno]


def test_breaker_opens_on_5xx_and_lets_cancels_through(tmp_path: Path) -> None:
    fake = fast_fake(auto_fill=False)
    events: list[BreakerEvent] = []
    with http_broker(fake, tmp_path, max_read_retries=0) as (broker, _):
        broker.breaker.add_listener(events.append)
        odno = broker.submit_order(buy("b-1"))
        for _ in range(5):  # business rejections do not count
            with pytest.raises(InsufficientFundsError):
                broker.submit_order(buy("b-x", qty=100_000))
        assert broker.breaker.state == "closed"
        fake.inject("http_500", path="inquire-price", count=5)
        for _ in range(5):
            with pytest.raises(TransientBrokerError):
                broker.get_quote("005930")
        assert broker.breaker.state == "open"
        sent = fake.stats.requests
        with pytest.raises(CircuitOpenError):
            broker.get_quote("005930")
        with pytest.raises(CircuitOpenError):
            broker.submit_order(buy("b-2"))
        assert fake.stats.requests == sent  # nothing reached KIS
        broker.cancel_order(odno, "005930")  # cancels bypass the open breaker
    assert fake.order(odno).cancelled_qty == 1
    assert [(e.old_state, e.new_state) for e in events] == [("closed", "open")]


def test_breaker_half_open_trial_closes_it() -> None:
    events: list[BreakerEvent] = []
    breaker = KISCircuitBreaker(fail_max=1, reset_timeout_s=0, listener=events.append)
    with pytest.raises(TransientBrokerError), breaker.guard():
        raise TransientBrokerError("boom")
    assert breaker.state == "open"
    with breaker.guard():
        pass  # reset timeout 0: the trial call runs and succeeds
    assert breaker.state == "closed"
    assert [e.new_state for e in events] == ["open", "half-open", "closed"]
    assert not is_breaker_failure(RateLimitError("x"))
    assert is_breaker_failure(UnknownOrderOutcomeError("x"))
    assert not is_breaker_failure(OrderRejectedError("x"))


def test_listener_failure_does_not_break_calls() -> None:
    def bad(_event: BreakerEvent) -> None:
        raise RuntimeError("notifier down")

    breaker = KISCircuitBreaker(fail_max=1, listener=bad)
    with pytest.raises(TransientBrokerError), breaker.guard():
        raise TransientBrokerError("boom")
    assert breaker.state == "open"


def test_server_rate_limit_answers_egw00201_and_reads_back_off(tmp_path: Path) -> None:
    frozen = [100.0]
    fake = fast_fake(rate_limit_per_s=2, rate_clock=lambda: frozen[0])
    slept: list[float] = []
    client = KISClient(make_settings(tmp_path, max_read_retries=2, retry_wait_s=0.1),
                       transport=fake.transport(), clock=fake.clock,
                       limiter=KISRateLimiter(1000), sleep=slept.append)
    params = {"FID_COND_MRKT_DIV_CODE": "J", "FID_INPUT_ISCD": "005930"}
    client.get(PRICE, "FHKST01010100", params)
    client.get(PRICE, "FHKST01010100", params)
    with pytest.raises(RateLimitError) as err:
        client.get(PRICE, "FHKST01010100", params)
    client.close()
    assert err.value.code == "EGW00201"
    assert fake.stats.rate_limited == 3
    assert len(slept) == 2
    assert slept[1] > slept[0] > 0


def test_error_translation_table() -> None:
    def answer(status: int, body: object, kind: str = "read") -> Exception:
        response = httpx.Response(status, json=body)
        with pytest.raises(Exception) as err:
            check_response(response, kind=kind, what="t")  # type: ignore[arg-type]
        return err.value

    assert isinstance(answer(500, {"rt_cd": "1", "msg_cd": "EGW00201"}), RateLimitError)
    assert isinstance(answer(200, {"rt_cd": "1", "msg_cd": "EGW00201"}), RateLimitError)
    assert isinstance(answer(500, {"msg_cd": "EGW00123"}), AuthError)
    assert isinstance(answer(403, {"error_code": "EGW00133"}), AuthError)
    assert isinstance(answer(502, {"x": 1}, "order"), UnknownOrderOutcomeError)
    assert isinstance(answer(200, {"rt_cd": "1", "msg_cd": "APBK0952", "msg1": "x"}, "order"),
                      InsufficientFundsError)
    assert type(answer(200, {"rt_cd": "7", "msg_cd": "APAC0081"}, "order")) is OrderRejectedError
    ok = check_response(httpx.Response(200, json={"rt_cd": "1", "msg1": "조회할 자료가 없습니다"}),
                        kind="read", what="t")
    assert ok["rt_cd"] == "1"


def test_orders_found_after_restart_via_list(tmp_path: Path) -> None:
    fake = fast_fake(auto_fill=False)
    first = mock_broker(fake, tmp_path)
    odno = first.submit_order(buy("s-1", 2))
    first.close()
    second = mock_broker(fake, tmp_path)
    open_orders = second.list_orders(open_only=True)
    second.cancel_order(odno, "005930")  # looks up the branch number by itself
    state = second.get_order(odno)
    second.close()
    assert [o.broker_order_id for o in open_orders] == [odno]
    assert state.status is OrderStatus.CANCELLED


class socket_closed_port:
    """A loopback URL on which nothing listens."""

    def __enter__(self) -> str:
        import socket

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        return None
