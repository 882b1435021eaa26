"""A fake KIS WebSocket (real-time trades and fill notices) on 127.0.0.1, written from
``KIS_API_FACTS.md`` §6.

``FakeKISWebSocket(fake)`` serves ``ws://127.0.0.1:<port>/tryitout`` for the accounts of a
:class:`~tests.fakes.kis_server.FakeKIS` (approval keys from its ``/oauth2/Approval``):

* registrations (``tr_type`` ``"1"``/``"2"``) answered with ``OPSP0000`` ``SUBSCRIBE
  SUCCESS`` / ``OPSP0001`` ``UNSUBSCRIBE SUCCESS``, ``OPSP0002`` already subscribed,
  ``OPSP0003`` not subscribed, ``OPSP0008`` beyond ``max_registrations`` (41), a bad
  approval key refused, a second session of an app key refused with ``OPSP8996`` and
  closed; every reply carries a 32-character key and 16-character iv (per session);
* trades: :meth:`push_tick` sends ``0|H0STCNT0|001|<46 fields>`` to the sessions that
  registered the code;
* fill notices: every fill of a registered account (auto-fill, ``fill_order``,
  ``late_fill``) sends ``1|H0STCNI9|001|<base64 AES-256-CBC of 26 fields>`` (``H0STCNI0`` on
  a real fake) to the sessions registered with the account's HTS ID
  (:attr:`hts_ids`, default ``{"fakehts": DEFAULT_APP_KEY}``);
* ``PINGPONG``: :meth:`ping` sends it; echoes are counted in ``stats.pongs``;
* faults: :meth:`disconnect_all` (connections dropped at once), :meth:`send_raw` (any
  text, e.g. garbage), ``duplicate_notices`` (each notice sent twice), ``reorder_notices``
  (each notice held back until the next one), ``wrong_key`` (notices encrypted with a key
  other than the one in the reply).

Everything is thread-safe: the server runs its own asyncio loop in a daemon thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from api.kis_ws import TRADE_FIELDS, encrypt_notice

from .account import BUY, FakeAccount, FakeOrder
from .kis_server import DEFAULT_APP_KEY, FakeKIS

DEFAULT_HTS_ID = "fakehts"


def wait_until(predicate: Callable[[], bool], timeout_s: float = 60.0) -> bool:
    """Poll ``predicate`` every 10 ms until it holds or ``timeout_s`` passes (a generous
    deadline for a condition, never a measure of speed); returns its last value."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()
MAX_REGISTRATIONS = 41


@dataclass
class WSServerStats:
    connections: int = 0
    refused_sessions: int = 0
    registrations: int = 0
    refused: int = 0
    ticks_sent: int = 0
    notices_sent: int = 0
    pings: int = 0
    pongs: int = 0
    disconnects_forced: int = 0
    by_msg_cd: dict[str, int] = field(default_factory=dict)


@dataclass(eq=False)
class _Session:
    ws: ServerConnection
    app_key: str = ""
    key: str = field(default_factory=lambda: secrets.token_hex(16))
    iv: str = field(default_factory=lambda: secrets.token_hex(8))
    trades: set[str] = field(default_factory=set)
    notices: set[str] = field(default_factory=set)  # HTS IDs

    @property
    def count(self) -> int:
        return len(self.trades) + len(self.notices)


def _reply(tr_id: str, tr_key: str, rt_cd: str, msg_cd: str, msg1: str, session: _Session,
           encrypt: str = "N") -> str:
    return json.dumps({
        "header": {"tr_id": tr_id, "tr_key": tr_key, "encrypt": encrypt},
        "body": {"rt_cd": rt_cd, "msg_cd": msg_cd, "msg1": msg1,
                 "output": {"iv": session.iv, "key": session.key}},
    })


def trade_fields(code: str, at: datetime, price: int, qty: int, cum_volume: int,
                 open_: int, high: int, low: int) -> list[str]:
    """The 46 fields of one ``H0STCNT0`` record (the used ones filled in)."""
    f = ["0"] * TRADE_FIELDS
    f[0], f[1], f[2] = code, at.strftime("%H%M%S"), str(price)
    f[7], f[8], f[9] = str(open_), str(high), str(low)
    f[12], f[13] = str(qty), str(cum_volume)
    f[33] = at.strftime("%Y%m%d")
    return f


def notice_fields(acct: FakeAccount, order: FakeOrder, qty: int, price: int, at: datetime,
                  hts_id: str) -> list[str]:
    """The 26 fields of one fill notice (``CNTG_YN = 2``)."""
    f = [""] * 26
    f[0], f[1], f[2], f[3] = hts_id, acct.account_no.replace("-", ""), order.odno, ""
    f[4] = "02" if order.side == BUY else "01"
    f[5], f[6], f[7], f[8] = "0", order.ord_dvsn, "0", order.code
    f[9], f[10], f[11] = str(qty), str(price), at.strftime("%H%M%S")
    f[12], f[13], f[14], f[15] = "0", "2", "2", "00950"
    f[16], f[24], f[25] = str(order.qty), order.name, str(order.price)
    return f


class FakeKISWebSocket:
    """See the module docstring. Use as a context manager; :attr:`url` is the base URL
    (``KIS_WS_URL``)."""

    def __init__(self, fake: FakeKIS, *, hts_ids: dict[str, str] | None = None,
                 max_registrations: int = MAX_REGISTRATIONS) -> None:
        self.fake = fake
        self.hts_ids = dict(hts_ids or {DEFAULT_HTS_ID: DEFAULT_APP_KEY})
        self.max_registrations = max_registrations
        self.notice_tr = "H0STCNI9" if fake.env == "virtual" else "H0STCNI0"
        self.stats = WSServerStats()
        self.duplicate_notices = False
        self.reorder_notices = False
        self.wrong_key = False
        self._held: list[tuple[_Session, str]] = []
        self._sessions: list[_Session] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self.port = 0
        fake.on_fill.append(self._on_fill)

    # --- lifecycle -------------------------------------------------------------------
    def __enter__(self) -> FakeKISWebSocket:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()),
                                        name="fake-kis-ws", daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("fake WebSocket did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(ValueError):
            self.fake.on_fill.remove(self._on_fill)
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(30)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with serve(self._handler, "127.0.0.1", 0, ping_interval=None) as server:
            self._server = server
            self.port = next(iter(server.sockets)).getsockname()[1]
            self._ready.set()
            await self._stop.wait()
            server.close()

    # --- control (any thread) --------------------------------------------------------
    def sessions(self) -> int:
        with self._lock:
            return len(self._sessions)

    def registered(self, app_key: str = DEFAULT_APP_KEY) -> tuple[set[str], set[str]]:
        """(trade codes, HTS IDs) registered by the session of ``app_key``."""
        with self._lock:
            for s in self._sessions:
                if s.app_key == app_key:
                    return set(s.trades), set(s.notices)
        return set(), set()

    def push_tick(self, code: str, price: int, qty: int = 1, *, at: datetime | None = None,
                  cum_volume: int = 0) -> int:
        """Send one trade of ``code`` to every session that registered it; returns how many
        sessions it went to."""
        at = at or self.fake.clock()
        text = "0|H0STCNT0|001|" + "^".join(
            trade_fields(code, at, price, qty, cum_volume, price, price, price))
        with self._lock:
            targets = [s for s in self._sessions if code in s.trades]
        for s in targets:
            self._send(s, text)
        self.stats.ticks_sent += len(targets)
        return len(targets)

    def send_raw(self, text: str) -> None:
        """Send ``text`` as is to every session."""
        with self._lock:
            targets = list(self._sessions)
        for s in targets:
            self._send(s, text)

    def ping(self) -> None:
        """Send a ``PINGPONG`` to every session."""
        now = self.fake.clock().strftime("%Y%m%d%H%M%S")
        self.stats.pings += 1
        self.send_raw(json.dumps({"header": {"tr_id": "PINGPONG", "datetime": now}}))

    def disconnect_all(self) -> int:
        """Drop every connection at once (no close handshake); returns how many."""
        with self._lock:
            targets = list(self._sessions)
        loop = self._loop
        for s in targets:
            if loop is not None:
                loop.call_soon_threadsafe(s.ws.transport.abort)
        self.stats.disconnects_forced += len(targets)
        return len(targets)

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float = 30.0) -> bool:
        return wait_until(predicate, timeout_s)

    # --- internals -------------------------------------------------------------------
    def _send(self, s: _Session, text: str) -> None:
        loop = self._loop
        if loop is None:
            return

        async def go() -> None:
            with contextlib.suppress(ConnectionClosed):
                await s.ws.send(text)

        with contextlib.suppress(RuntimeError):
            asyncio.run_coroutine_threadsafe(go(), loop)

    def _on_fill(self, acct: FakeAccount, order: FakeOrder, qty: int, price: int) -> None:
        hts = [h for h, k in self.hts_ids.items() if k == acct.app_key]
        if not hts:
            return
        at = self.fake.clock()
        with self._lock:
            targets = [(s, h) for s in self._sessions for h in hts if h in s.notices]
        for s, h in targets:
            key = secrets.token_hex(16) if self.wrong_key else s.key
            plain = "^".join(notice_fields(acct, order, qty, price, at, h))
            text = f"1|{self.notice_tr}|001|" + encrypt_notice(plain, key, s.iv)
            out = [text, text] if self.duplicate_notices else [text]
            for t in out:
                if self.reorder_notices:
                    with self._lock:
                        held = self._held
                        self._held = [] if held else [(s, t)]
                    if not held:
                        continue  # held back until the next notice
                    self._send(s, t)  # the later one first ...
                    self.stats.notices_sent += 1
                    self._flush(held)  # ... then the earlier one
                    continue
                self._send(s, t)
                self.stats.notices_sent += 1

    def _flush(self, held: list[tuple[_Session, str]]) -> None:
        for s, text in held:
            self._send(s, text)
            self.stats.notices_sent += 1

    def flush_held(self) -> None:
        """Send the notice held back by ``reorder_notices``."""
        with self._lock:
            held, self._held = self._held, []
        self._flush(held)

    async def _handler(self, ws: ServerConnection) -> None:
        if ws.request is None or ws.request.path != "/tryitout":
            await ws.close(1008, "path")
            return
        session = _Session(ws)
        self.stats.connections += 1
        try:
            async for message in ws:
                if isinstance(message, bytes):
                    continue
                await self._on_message(session, message)
        except ConnectionClosed:
            pass
        finally:
            with self._lock:
                if session in self._sessions:
                    self._sessions.remove(session)

    async def _on_message(self, s: _Session, message: str) -> None:
        try:
            data: dict[str, Any] = json.loads(message)
            header = data["header"]
        except (ValueError, KeyError, TypeError):
            return
        if header.get("tr_id") == "PINGPONG":
            self.stats.pongs += 1
            return
        try:
            tr_id = str(data["body"]["input"]["tr_id"])
            tr_key = str(data["body"]["input"]["tr_key"])
        except (KeyError, TypeError):
            await s.ws.send(_reply("", "", "1", "OPSP0007", "JSON PARSING ERROR", s))
            return
        app_key = self.fake.approval_keys.get(str(header.get("approval_key", "")))
        if app_key is None:
            await s.ws.send(_reply(tr_id, tr_key, "1", "OPSP0011", "invalid approval", s))
            return
        if not s.app_key:
            with self._lock:
                taken = any(o.app_key == app_key for o in self._sessions)
                if not taken:
                    s.app_key = app_key
                    self._sessions.append(s)
            if taken:
                self.stats.refused_sessions += 1
                await s.ws.send(_reply(tr_id, tr_key, "1", "OPSP8996", "ALREADY IN USE appkey",
                                       s))
                await s.ws.close()
                return
        await self._register(s, tr_id, tr_key, str(header.get("tr_type", "")))

    async def _register(self, s: _Session, tr_id: str, tr_key: str, tr_type: str) -> None:
        if tr_id == "H0STCNT0":
            bucket = s.trades
        elif tr_id == self.notice_tr:
            bucket = s.notices
        else:
            await s.ws.send(_reply(tr_id, tr_key, "1", "OPSP0007", "invalid tr_id", s))
            return
        with self._lock:
            if tr_type == "1":
                if tr_key in bucket:
                    answer = ("1", "OPSP0002", "ALREADY IN SUBSCRIBE")
                elif s.count >= self.max_registrations:
                    answer = ("1", "OPSP0008", "MAX SUBSCRIBE OVER")
                    self.stats.refused += 1
                else:
                    bucket.add(tr_key)
                    self.stats.registrations += 1
                    answer = ("0", "OPSP0000", "SUBSCRIBE SUCCESS")
            elif tr_type == "2":
                if tr_key in bucket:
                    bucket.discard(tr_key)
                    answer = ("0", "OPSP0001", "UNSUBSCRIBE SUCCESS")
                else:
                    answer = ("1", "OPSP0003", "UNSUBSCRIBE ERROR(not found!)")
            else:
                answer = ("1", "OPSP0007", "invalid tr_type")
            self.stats.by_msg_cd[answer[1]] = self.stats.by_msg_cd.get(answer[1], 0) + 1
        encrypt = "Y" if bucket is s.notices else "N"
        await s.ws.send(_reply(tr_id, tr_key, *answer, s, encrypt=encrypt))


__all__ = ["DEFAULT_HTS_ID", "FakeKISWebSocket", "WSServerStats", "notice_fields",
           "trade_fields", "wait_until"]
