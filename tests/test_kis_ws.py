"""The KIS WebSocket client against the fake KIS WebSocket on 127.0.0.1: approval key,
registrations within the limit, trades, encrypted fill notices, PINGPONG, reconnects and the
faults that must never stop it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.kis_ws import (
    KISWebSocket,
    decrypt_notice,
    encrypt_notice,
    parse_trades,
    request_approval_key,
)
from framework.errors import AuthError, DataError
from framework.executor import ExecutionNotice
from framework.realtime import Tick
from tests.fakes import FakeKIS, FakeKISServer
from tests.fakes.harness import fast_fake, make_settings
from tests.fakes.ws_server import DEFAULT_HTS_ID, FakeKISWebSocket, trade_fields, wait_until


class Received:
    def __init__(self) -> None:
        self.ticks: list[Tick] = []
        self.notices: list[ExecutionNotice] = []
        self.states: list[bool] = []
        self.lock = threading.Lock()

    def tick(self, t: Tick) -> None:
        with self.lock:
            self.ticks.append(t)

    def notice(self, n: ExecutionNotice) -> None:
        with self.lock:
            self.notices.append(n)

    def state(self, up: bool) -> None:
        with self.lock:
            self.states.append(up)


@pytest.fixture
def fake() -> FakeKIS:
    return fast_fake()


@pytest.fixture
def servers(fake: FakeKIS) -> Iterator[tuple[FakeKISServer, FakeKISWebSocket]]:
    with FakeKISServer(fake) as rest, FakeKISWebSocket(fake) as ws:
        yield rest, ws


def make_client(fake: FakeKIS, rest: FakeKISServer, ws: FakeKISWebSocket, tmp_path: Path,
                got: Received, **kwargs: object) -> KISWebSocket:
    settings = make_settings(tmp_path, rest.base_url, ws_url=ws.url,
                             hts_id=kwargs.pop("hts_id", DEFAULT_HTS_ID))
    return KISWebSocket(settings, on_tick=got.tick, on_notice=got.notice, on_state=got.state,
                        clock=fake.clock, min_backoff_s=0.02, max_backoff_s=0.2,
                        **kwargs)  # type: ignore[arg-type]


def place_buy(fake: FakeKIS, code: str, qty: int, price: int) -> str:
    """A resting limit buy placed directly in the fake account; returns its ODNO."""
    from tests.fakes.account import BUY, FakeOrder

    acct = fake.account()
    order = FakeOrder(odno=acct.next_odno(), orgno="00950", ord_dt=fake.clock().strftime("%Y%m%d"),
                      ord_tmd=fake.clock().strftime("%H%M%S"), code=code, name="삼성전자",
                      side=BUY, ord_dvsn="00", qty=qty, price=price)
    acct.orders.append(order)
    return order.odno


def test_approval_key_from_the_rest_host(fake: FakeKIS, servers, tmp_path: Path) -> None:
    rest, _ = servers
    key = request_approval_key(make_settings(tmp_path, rest.base_url))
    assert fake.approval_keys[key] == fake.account().app_key
    fake.refuse_approval = True
    with pytest.raises(AuthError, match="approval key refused"):
        request_approval_key(make_settings(tmp_path, rest.base_url))


def test_trades_and_encrypted_fill_notices(fake: FakeKIS, servers, tmp_path: Path) -> None:
    rest, ws = servers
    got = Received()
    client = make_client(fake, rest, ws, tmp_path, got)
    assert client.set_symbols(["005930", "000660"]) == []
    client.start()
    try:
        assert wait_until(lambda: client.live and ws.registered()[0] == {"005930", "000660"})
        assert ws.registered()[1] == {DEFAULT_HTS_ID}
        assert ws.push_tick("005930", 71_500, 12, cum_volume=1_000) == 1
        assert ws.push_tick("035420", 200_000) == 0  # not registered: not sent
        assert wait_until(lambda: len(got.ticks) == 1)
        tick = got.ticks[0]
        assert (tick.stock_code, tick.price_krw, tick.qty, tick.cum_volume) == (
            "005930", 71_500, 12, 1_000)
        assert tick.time == fake.clock().replace(microsecond=0)
        odno = place_buy(fake, "005930", 10, 70_000)
        fake.fill_order(odno, 4, 69_900)
        fake.fill_order(odno, 6, 70_000)
        assert wait_until(lambda: len(got.notices) == 2)
        first, second = got.notices
        assert (first.broker_order_id, first.qty, first.price) == (odno, 4, 69_900)
        assert (second.qty, second.price, second.stock_code) == (6, 70_000, "005930")
        assert client.stats.malformed == 0
    finally:
        client.stop()
    assert got.states[0] is True
    assert got.states[-1] is False


def test_pingpong_is_answered(fake: FakeKIS, servers, tmp_path: Path) -> None:
    rest, ws = servers
    client = make_client(fake, rest, ws, tmp_path, Received())
    client.start()
    try:
        assert wait_until(lambda: client.live)
        ws.ping()
        ws.ping()
        assert wait_until(lambda: ws.stats.pongs == 2)
        assert client.stats.pingpongs == 2
    finally:
        client.stop()


def test_reconnects_and_registers_again_after_each_drop(fake: FakeKIS, servers,
                                                        tmp_path: Path) -> None:
    rest, ws = servers
    got = Received()
    client = make_client(fake, rest, ws, tmp_path, got)
    client.set_symbols(["005930"])
    client.start()
    try:
        for n in range(1, 6):
            assert wait_until(lambda n=n: client.live and client.stats.connects == n)
            assert wait_until(lambda: ws.registered()[0] == {"005930"})
            assert ws.disconnect_all() == 1
            assert wait_until(lambda n=n: client.stats.disconnects == n)
        assert wait_until(lambda: client.live and ws.registered() == ({"005930"},
                                                                      {DEFAULT_HTS_ID}))
        odno = place_buy(fake, "005930", 3, 70_000)
        fake.fill_order(odno)
        assert wait_until(lambda: len(got.notices) == 1)
        assert ws.sessions() == 1
    finally:
        client.stop()


def test_registration_budget_and_the_servers_limit(fake: FakeKIS, tmp_path: Path) -> None:
    codes = [f"{n:06d}" for n in range(100, 150)]
    with FakeKISServer(fake) as rest, FakeKISWebSocket(fake, max_registrations=6) as ws:
        got = Received()
        client = make_client(fake, rest, ws, tmp_path, got)
        assert client.capacity == 39  # 40 with the fill notice
        rest_codes = client.set_symbols(codes)
        assert rest_codes == codes[39:]
        client.start()
        try:
            # the fake allows 6 here: 5 codes next to the notice, the rest refused
            assert wait_until(lambda: client.stats.refused["OPSP0008"] == 34)
            assert len(client.symbols) == 5
            assert len(client.refused_symbols) == 34
            trades, notices = ws.registered()
            assert len(trades) + len(notices) == 6
        finally:
            client.stop()
    with pytest.raises(ValueError, match=r"1\.\.41"):
        KISWebSocket(make_settings(tmp_path), max_registrations=42)


def test_symbols_change_while_connected(fake: FakeKIS, servers, tmp_path: Path) -> None:
    rest, ws = servers
    client = make_client(fake, rest, ws, tmp_path, Received())
    client.set_symbols(["005930", "000660"])
    client.start()
    try:
        assert wait_until(lambda: ws.registered()[0] == {"005930", "000660"})
        client.set_symbols(["000660", "035420"])
        assert wait_until(lambda: ws.registered()[0] == {"000660", "035420"})
        assert ws.stats.by_msg_cd.get("OPSP0001") == 1
    finally:
        client.stop()


def test_bad_frames_are_counted_and_never_fatal(fake: FakeKIS, servers, tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    rest, ws = servers
    got = Received()
    client = make_client(fake, rest, ws, tmp_path, got)
    client.set_symbols(["005930"])
    caplog.set_level(logging.WARNING, logger="api.kis_ws")
    client.start()
    try:
        assert wait_until(lambda: client.live)
        ws.send_raw("garbage {")
        ws.send_raw("0|H0STCNT0|001|005930^093000^71500")  # wrong field count
        ws.send_raw("0|H0STASP9|001|" + "^".join(["1"] * 10))  # unknown tr_id
        ws.send_raw("1|H0STCNI9|001|bm90IGVuY3J5cHRlZA==")  # does not decrypt
        ws.send_raw("0|H0STCNT0|x|y")
        assert wait_until(lambda: client.stats.malformed == 5)
        errors = client.stats.errors
        assert errors["malformed"] == 2
        assert errors["trade_fields"] == 1
        assert errors["unknown_tr_id"] == 1
        assert errors["decrypt"] == 1
        ws.push_tick("005930", 71_000)
        assert wait_until(lambda: len(got.ticks) == 1)  # still working
        ws.wrong_key = True
        odno = place_buy(fake, "005930", 1, 70_000)
        fake.fill_order(odno)
        # (a wrong key fails the padding check, or yields no 26-field text)
        assert wait_until(lambda: client.stats.malformed == 6)
        assert client.stats.errors["decrypt"] + client.stats.errors["notice_fields"] == 2
        assert got.notices == []
        assert client.connected
    finally:
        client.stop()
    text = caplog.text
    assert "unknown tr_id 'H0STASP9'" in text
    assert "expected 46" in text
    assert "with the key/iv of its subscribe reply" in text
    assert "Traceback" not in text


def test_one_session_per_app_key(fake: FakeKIS, servers, tmp_path: Path,
                                 caplog: pytest.LogCaptureFixture) -> None:
    rest, ws = servers
    first = make_client(fake, rest, ws, tmp_path, Received())
    second = make_client(fake, rest, ws, tmp_path, Received())
    caplog.set_level(logging.WARNING, logger="api.kis_ws")
    first.start()
    try:
        assert wait_until(lambda: first.live)
        second.start()
        assert wait_until(lambda: ws.stats.refused_sessions >= 1)
        assert wait_until(lambda: "already has a session" in caplog.text)
        assert ws.sessions() == 1
        assert not second.live
    finally:
        second.stop()
        first.stop()


def test_approval_failure_is_one_line_and_retried(fake: FakeKIS, servers, tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    rest, ws = servers
    fake.refuse_approval = True
    client = make_client(fake, rest, ws, tmp_path, Received())
    caplog.set_level(logging.WARNING, logger="api.kis_ws")
    client.start()
    try:
        assert wait_until(lambda: client.stats.approval_failures >= 3)
        lines = [r for r in caplog.records if "approval key" in r.getMessage()]
        assert len(lines) == 1
        assert "REST polling" in lines[0].getMessage()
        assert not client.connected
        fake.refuse_approval = False
        assert wait_until(lambda: client.live)
    finally:
        client.stop()


def test_unreachable_websocket_is_not_fatal(fake: FakeKIS, tmp_path: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="api.kis_ws")
    with FakeKISServer(fake) as rest:
        settings = make_settings(tmp_path, rest.base_url, ws_url="ws://127.0.0.1:9",
                                 hts_id=DEFAULT_HTS_ID)
        client = KISWebSocket(settings, min_backoff_s=0.01, max_backoff_s=0.05)
        client.start()
        try:
            assert wait_until(lambda: "unreachable" in caplog.text)
            assert not client.live
        finally:
            client.stop()
        assert client.stats.connects == 0


def test_trade_frame_parsing_and_aes_round_trip() -> None:
    from datetime import datetime

    from utils.clock import KST

    at = datetime(2025, 6, 16, 9, 1, 2, tzinfo=KST)
    one = trade_fields("005930", at, 71_500, 7, 900, 71_000, 72_000, 70_500)
    two = trade_fields("000660", at, 200_000, 3, 10, 199_000, 201_000, 198_000)
    ticks = parse_trades(2, "^".join(one + two))
    assert [(t.stock_code, t.price_krw, t.qty, t.time) for t in ticks] == [
        ("005930", 71_500, 7, at), ("000660", 200_000, 3, at)]
    assert (ticks[0].open_krw, ticks[0].high_krw, ticks[0].low_krw) == (71_000, 72_000, 70_500)
    with pytest.raises(DataError, match="92 fields for 1"):
        parse_trades(1, "^".join(one + two))
    key, iv = "k" * 32, "i" * 16
    text = "한글^12^" * 20
    assert decrypt_notice(encrypt_notice(text, key, iv), key, iv) == text
    with pytest.raises(DataError, match="cannot decrypt"):
        decrypt_notice(encrypt_notice(text, key, iv), "x" * 32, iv)


def test_an_old_approval_key_is_replaced_at_the_next_connect(fake: FakeKIS, servers,
                                                             tmp_path: Path) -> None:
    rest, ws = servers
    client = make_client(fake, rest, ws, tmp_path, Received())
    client.start()
    try:
        assert wait_until(lambda: client.live)
        ws.disconnect_all()
        assert wait_until(lambda: client.live and client.stats.connects == 2)
        assert len(fake.approval_keys) == 1  # reused within its age
        fake.clock.advance(hours=13)
        ws.disconnect_all()
        assert wait_until(lambda: client.live and client.stats.connects == 3)
        assert len(fake.approval_keys) == 2
    finally:
        client.stop()
