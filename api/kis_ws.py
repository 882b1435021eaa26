"""KIS WebSocket client: real-time trades (``H0STCNT0``) and fill notices (``H0STCNI0`` real,
``H0STCNI9`` virtual), per ``KIS_API_FACTS.md`` §2.3 and §6.

Session
-------
* An approval key from ``POST /oauth2/Approval`` (body ``grant_type``, ``appkey``,
  ``secretkey``; answer ``approval_key``), then ``<ws_base_url>/tryitout`` (plain ``ws://``,
  no WebSocket pings: KIS sends its own ``PINGPONG`` JSON, which is echoed back).
* One text frame per registration: ``{"header": {"approval_key", "custtype": "P",
  "tr_type": "1" | "2", "content-type": "utf-8"}, "body": {"input": {"tr_id", "tr_key"}}}``;
  ``tr_key`` is the stock code for trades and the HTS ID for fill notices.
* KIS allows one session per app key and 41 registrations per session (all TRs together).
  This client refuses to register beyond ``max_registrations`` (default 40, the fill
  notice included); the caller decides which symbols get the slots.
* Control replies are JSON: ``rt_cd``/``msg_cd``/``msg1`` and, for the fill notice, the
  ``output.key`` (32 characters) and ``output.iv`` (16) of its AES-256-CBC encryption.
* Data frames are ``<enc>|<tr_id>|<count>|<payload>``: ``count`` records of ``^``-joined
  fields (46 per ``H0STCNT0`` record); fill notices arrive encrypted (base64, PKCS#7).
* A dropped connection is re-opened with a doubling back-off (``min_backoff_s`` ..
  ``max_backoff_s``) and every registration is sent again.

Faults never stop the client: a malformed frame, an unknown tr_id, a notice that does not
decrypt with the key of its reply, a refused registration or approval key are each logged
(once per kind and cause) and counted in :attr:`KISWebSocket.stats`; the engine keeps trading
on REST polling for whatever the socket does not deliver.

Threads: :meth:`KISWebSocket.start` runs an asyncio loop in a daemon thread. The callbacks
(``on_tick``, ``on_notice``, ``on_state``) are called on that thread and must return quickly
(hand the work to a queue).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import httpx
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from api.kis_auth import get_logger, register_secret
from api.kis_notice import NOTICE_TR_IDS, parse_fill_notice
from api.kis_schemas import KST, to_int
from api.kis_settings import KISSettings
from framework.errors import AuthError, BrokerError, DataError
from framework.executor import ExecutionNotice
from framework.realtime import Tick

log = get_logger(__name__)

APPROVAL_PATH = "/oauth2/Approval"
WS_PATH = "/tryitout"
TR_TRADES = "H0STCNT0"
TR_NOTICE_REAL = "H0STCNI0"
TR_NOTICE_VIRTUAL = "H0STCNI9"
TRADE_FIELDS = 46
"""Fields of one ``H0STCNT0`` record (``examples_llm/domestic_stock/ccnl_krx``)."""
KIS_MAX_REGISTRATIONS = 41
DEFAULT_MAX_REGISTRATIONS = 40
APPROVAL_MAX_AGE_S = 12 * 3600.0
"""An approval key older than this is replaced at the next connect (KIS's lifetime is not
documented; the official sample re-issues after 24 h)."""
MSG_ALREADY_IN_USE = "OPSP8996"
MSG_ALREADY_SUBSCRIBED = "OPSP0002"
MSG_MAX_EXCEEDED = "OPSP0008"


def notice_tr_id(settings: KISSettings) -> str:
    """``H0STCNI0`` on a real account, ``H0STCNI9`` on a virtual one."""
    return TR_NOTICE_REAL if settings.is_real else TR_NOTICE_VIRTUAL


def request_approval_key(
    settings: KISSettings, transport: httpx.BaseTransport | None = None
) -> str:
    """A WebSocket approval key: ``POST /oauth2/Approval`` on the REST host.

    Raises :class:`~framework.errors.AuthError` when KIS refuses (or answers without an
    ``approval_key``) and :class:`~framework.errors.BrokerError` when it cannot be reached.
    """
    body = {
        "grant_type": "client_credentials",
        "appkey": settings.app_key.get_secret_value(),
        "secretkey": settings.app_secret.get_secret_value(),
    }
    timeout = httpx.Timeout(settings.timeout_s, connect=settings.connect_timeout_s)
    try:
        with httpx.Client(
            base_url=settings.rest_base_url, timeout=timeout, transport=transport
        ) as http:
            response = http.post(APPROVAL_PATH, json=body)
    except httpx.HTTPError as exc:
        raise BrokerError(f"approval key: KIS out of reach ({type(exc).__name__})") from exc
    try:
        data = response.json()
    except ValueError:
        data = {}
    key = data.get("approval_key") if isinstance(data, dict) else None
    if response.status_code != 200 or not isinstance(key, str) or not key:
        what = ""
        if isinstance(data, dict):
            what = str(data.get("error_description") or data.get("message") or data.get("msg1")
                       or "")
        raise AuthError(
            f"approval key refused (HTTP {response.status_code}{': ' + what if what else ''})"
        )
    register_secret(key)
    return key


def decrypt_notice(cipher_text: str, key: str, iv: str) -> str:
    """Plain text of an encrypted payload: base64 of AES-256-CBC with ``key`` (32 chars)
    and ``iv`` (16 chars) as UTF-8 bytes, PKCS#7 padding. Raises ``DataError`` when the
    text does not decrypt (wrong key/iv, cut frame)."""
    try:
        raw = base64.b64decode(cipher_text, validate=True)
        decryptor = Cipher(algorithms.AES(key.encode()), modes.CBC(iv.encode())).decryptor()
        padded = decryptor.update(raw) + decryptor.finalize()
        unpadder = padding.PKCS7(128).unpadder()
        return (unpadder.update(padded) + unpadder.finalize()).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot decrypt ({type(exc).__name__})") from None


def encrypt_notice(plain: str, key: str, iv: str) -> str:
    """The inverse of :func:`decrypt_notice` (used by the fake server and tests)."""
    padder = padding.PKCS7(128).padder()
    data = padder.update(plain.encode("utf-8")) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key.encode()), modes.CBC(iv.encode())).encryptor()
    return base64.b64encode(encryptor.update(data) + encryptor.finalize()).decode()


def parse_trades(count: int, payload: str, day: date | None = None) -> list[Tick]:
    """The trades of one ``H0STCNT0`` frame: ``count`` records of 46 ``^``-joined fields.

    Used fields: 0 code, 1 ``HHMMSS``, 2 price, 7/8/9 the day's open/high/low, 12 shares of
    this trade, 13 the day's volume, 33 the business date ``YYYYMMDD`` (``day`` when
    empty). Raises ``DataError`` for a wrong field count or a bad price, volume or time.
    """
    fields = payload.split("^")
    if count < 1 or len(fields) != count * TRADE_FIELDS:
        raise DataError(
            f"{TR_TRADES} frame has {len(fields)} fields for {count} record(s), expected "
            f"{count * TRADE_FIELDS}"
        )
    ticks = []
    for k in range(count):
        f = fields[k * TRADE_FIELDS : (k + 1) * TRADE_FIELDS]
        code, hhmmss, ymd = f[0].strip(), f[1].strip(), f[33].strip()
        price, qty = to_int(f[2]), to_int(f[12])
        if len(code) != 6 or price <= 0 or qty < 0:
            raise DataError(f"{TR_TRADES} record {code!r} with price {f[2]!r}, volume {f[12]!r}")
        if len(hhmmss) != 6 or not hhmmss.isdigit():
            raise DataError(f"{TR_TRADES} time {hhmmss!r} is not HHMMSS")
        try:
            on = datetime.strptime(ymd, "%Y%m%d").date() if ymd else day  # noqa: DTZ007
        except ValueError:
            raise DataError(f"{TR_TRADES} date {ymd!r} is not YYYYMMDD") from None
        if on is None:
            raise DataError(f"{TR_TRADES} record without a date")
        at = datetime(on.year, on.month, on.day, int(hhmmss[:2]), int(hhmmss[2:4]),
                      int(hhmmss[4:]), tzinfo=KST)
        ticks.append(Tick(code, at, price, qty, to_int(f[13]), to_int(f[7]), to_int(f[8]),
                          to_int(f[9])))
    return ticks


@dataclass
class WSStats:
    """Counters of one client (since start; every field an int or a Counter)."""

    connects: int = 0
    disconnects: int = 0
    frames: int = 0
    ticks: int = 0
    notices: int = 0
    acknowledgements: int = 0
    pingpongs: int = 0
    malformed: int = 0
    approval_failures: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    """Refused registrations by ``msg_cd``."""
    errors: Counter[str] = field(default_factory=Counter)
    """Faults by kind: ``malformed``, ``unknown_tr_id``, ``decrypt``, ``notice_fields`` …"""


class KISWebSocket:
    """The one WebSocket session of an app key. See the module docstring.

    Parameters
    ----------
    settings:
        Credentials, ``env``, ``ws_base_url`` and ``hts_id`` (``None``: no fill notices).
    on_tick, on_notice:
        Called with each :class:`~framework.realtime.Tick` and each
        :class:`~framework.executor.ExecutionNotice` (the socket's thread).
    on_state:
        Called with ``True`` once a (re)connected session has sent its registrations and
        ``False`` when it drops.
    approval:
        Returns an approval key (default :func:`request_approval_key`).
    clock:
        Tz-aware now (KST): the day of fill notices.
    max_registrations:
        Registrations allowed (1..41, default 40: KIS allows 41, its samples stop at 40).
    min_backoff_s, max_backoff_s:
        Reconnect back-off, doubling from the first to the second (seconds).
    """

    def __init__(
        self,
        settings: KISSettings,
        *,
        on_tick: Callable[[Tick], object] | None = None,
        on_notice: Callable[[ExecutionNotice], object] | None = None,
        on_state: Callable[[bool], object] | None = None,
        approval: Callable[[], str] | None = None,
        clock: Callable[[], datetime] | None = None,
        max_registrations: int = DEFAULT_MAX_REGISTRATIONS,
        min_backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        open_timeout_s: float = 10.0,
    ):
        if not 1 <= max_registrations <= KIS_MAX_REGISTRATIONS:
            raise ValueError(f"max_registrations must be 1..{KIS_MAX_REGISTRATIONS}")
        self.settings = settings
        self.on_tick = on_tick
        self.on_notice = on_notice
        self.on_state = on_state
        self._approval = approval or (lambda: request_approval_key(settings))
        self._clock = clock or (lambda: datetime.now(KST))
        self.max_registrations = max_registrations
        self.min_backoff_s = min_backoff_s
        self.max_backoff_s = max_backoff_s
        self.open_timeout_s = open_timeout_s
        self.url = settings.ws_base_url + WS_PATH
        self.notice_tr = notice_tr_id(settings)
        self.hts_id = settings.hts_id.get_secret_value() if settings.hts_id else None
        self.stats = WSStats()
        self._wanted: list[str] = []
        self._registered: set[str] = set()  # codes the server confirmed
        self._refused: set[str] = set()
        self._keys: dict[str, tuple[str, str]] = {}  # tr_id -> (key, iv)
        self.notice_registered = False
        self.connected = False
        self._approval_key: str | None = None
        self._approval_at: datetime | None = None
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ws: ClientConnection | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._said: set[str] = set()

    # --- public (any thread) -------------------------------------------------------------
    def start(self) -> None:
        """Connect in the background (returns at once)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="kis-ws", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Close the session and end the thread (idempotent)."""
        self._stop.set()
        loop, ws = self._loop, self._ws
        if loop is not None and ws is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                asyncio.run_coroutine_threadsafe(ws.close(), loop)
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    @property
    def capacity(self) -> int:
        """Stock codes that fit next to the fill notice (``max_registrations`` − 1 with an
        HTS ID)."""
        return self.max_registrations - (1 if self.hts_id else 0)

    def set_symbols(self, codes: Iterable[str]) -> list[str]:
        """Register the trades of ``codes`` (in priority order; at most :attr:`capacity`,
        the rest is returned and not registered) and drop the others. Takes effect at once
        when connected, else at the next connect."""
        ordered = list(dict.fromkeys(codes))
        kept, rest = ordered[: self.capacity], ordered[self.capacity :]
        with self._lock:
            self._wanted = kept
        loop = self._loop
        if loop is not None and self.connected and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                asyncio.run_coroutine_threadsafe(self._sync_registrations(), loop)
        return rest

    @property
    def symbols(self) -> list[str]:
        """Codes whose trades the server confirmed, sorted."""
        with self._lock:
            return sorted(self._registered)

    @property
    def refused_symbols(self) -> list[str]:
        with self._lock:
            return sorted(self._refused)

    @property
    def live(self) -> bool:
        """Connected, and fill notices registered (when an HTS ID is set)."""
        return self.connected and (self.notice_registered or not self.hts_id)

    # --- the loop ------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception:  # the socket never takes the process down
            log.exception("WebSocket client stopped on an error; trading goes on over REST")

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        backoff = self.min_backoff_s
        while not self._stop.is_set():
            ok = await self._session()
            if self._stop.is_set():
                break
            backoff = self.min_backoff_s if ok else min(self.max_backoff_s, backoff * 2)
            await self._sleep(backoff)

    async def _sleep(self, seconds: float) -> None:
        end = asyncio.get_running_loop().time() + seconds
        while not self._stop.is_set():
            left = end - asyncio.get_running_loop().time()
            if left <= 0:
                return
            await asyncio.sleep(min(left, 0.05))

    async def _session(self) -> bool:
        """One connection; ``True`` when it got as far as registering (so the back-off
        starts again from its minimum)."""
        issued = self._approval_at
        if issued is not None and (self._clock() - issued).total_seconds() > APPROVAL_MAX_AGE_S:
            self._approval_key = None
        if self._approval_key is None:
            try:
                self._approval_key = await asyncio.to_thread(self._approval)
                self._approval_at = self._clock()
            except (BrokerError, ValueError) as exc:
                self.stats.approval_failures += 1
                self._say("approval", f"WebSocket approval key failed: {exc}; trading goes on "
                          "over REST polling, retrying with back-off", logging.WARNING)
                return False
        try:
            async with connect(
                self.url, ping_interval=None, open_timeout=self.open_timeout_s,
                close_timeout=2, max_size=2**20,
            ) as ws:
                self._ws = ws
                self.stats.connects += 1
                with self._lock:
                    self._registered.clear()
                    self._refused.clear()
                self.notice_registered = False
                self._keys.clear()
                if self.hts_id:
                    await self._send(ws, self.notice_tr, self.hts_id, "1")
                for code in self._snapshot_wanted():
                    await self._send(ws, TR_TRADES, code, "1")
                    with self._lock:
                        self._registered.add(code)  # optimistic; a refusal removes it
                self.connected = True
                self._said.discard("disconnect")
                log.info("WebSocket connected (%s): %d symbols%s", self.url,
                         len(self._snapshot_wanted()), " and fill notices" if self.hts_id else "")
                self._state(True)
                async for message in ws:
                    self._on_message(ws, message)
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
            self._say("connect", f"WebSocket {self.url} unreachable ({type(exc).__name__}: "
                      f"{exc}); trading goes on over REST polling", logging.WARNING)
            return False
        except ConnectionClosed:
            pass
        finally:
            was = self.connected
            self.connected = False
            self.notice_registered = False
            self._ws = None
            if was:
                self.stats.disconnects += 1
                self._state(False)
        if not self._stop.is_set():
            self._say("disconnect", "WebSocket disconnected; reconnecting (REST polling "
                      "covers the gap)", logging.WARNING)
        return True

    def _snapshot_wanted(self) -> list[str]:
        with self._lock:
            return list(self._wanted)

    async def _sync_registrations(self) -> None:
        ws = self._ws
        if ws is None:
            return
        with self._lock:
            wanted = set(self._wanted)
            add = [c for c in self._wanted if c not in self._registered]
            drop = [c for c in self._registered if c not in wanted]
            self._registered.difference_update(drop)
            self._registered.update(add)
        try:
            for code in drop:
                await self._send(ws, TR_TRADES, code, "2")
            for code in add:
                await self._send(ws, TR_TRADES, code, "1")
        except ConnectionClosed:
            return

    async def _send(self, ws: ClientConnection, tr_id: str, tr_key: str, tr_type: str) -> None:
        message = {
            "header": {
                "approval_key": self._approval_key or "",
                "custtype": "P",
                "tr_type": tr_type,
                "content-type": "utf-8",
            },
            "body": {"input": {"tr_id": tr_id, "tr_key": tr_key}},
        }
        await ws.send(json.dumps(message))

    def _state(self, up: bool) -> None:
        if self.on_state is None:
            return
        try:
            self.on_state(up)
        except Exception:
            log.exception("WebSocket state handler failed")

    # --- frames --------------------------------------------------------------------------
    def _on_message(self, ws: ClientConnection, message: str | bytes) -> None:
        self.stats.frames += 1
        if isinstance(message, bytes):
            try:
                message = message.decode("utf-8")
            except UnicodeDecodeError:
                self._bad("malformed", "WebSocket frame is not UTF-8 text")
                return
        if message[:1] in ("0", "1"):
            self._on_data(message)
        else:
            self._on_control(ws, message)

    def _on_control(self, ws: ClientConnection, message: str) -> None:
        try:
            data = json.loads(message)
            header = data["header"]
            tr_id = str(header["tr_id"])
        except (ValueError, KeyError, TypeError):
            self._bad("malformed", f"WebSocket control frame is not KIS JSON: {message[:60]!r}")
            return
        if tr_id == "PINGPONG":
            self.stats.pingpongs += 1
            task = asyncio.get_running_loop().create_task(ws.send(message))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            return
        body: dict[str, Any] = data["body"] if isinstance(data.get("body"), dict) else {}
        tr_key = str(header.get("tr_key", ""))
        rt_cd, msg_cd, msg1 = (str(body.get(k, "")) for k in ("rt_cd", "msg_cd", "msg1"))
        if rt_cd == "0" or msg_cd == MSG_ALREADY_SUBSCRIBED:
            output: dict[str, Any] = (
                body["output"] if isinstance(body.get("output"), dict) else {}
            )
            key, iv = str(output.get("key", "")), str(output.get("iv", ""))
            if key and iv:
                self._keys[tr_id] = (key, iv)
            if tr_id in NOTICE_TR_IDS and not msg1.upper().startswith("UNSUB"):
                self.notice_registered = True
                log.info("fill notices registered (%s)", tr_id)
            return
        if msg_cd == MSG_ALREADY_IN_USE:
            self._say("in_use", f"WebSocket refused: the app key already has a session "
                      f"({msg_cd} {msg1}); trading goes on over REST polling", logging.WARNING)
            return
        self.stats.refused[msg_cd or "?"] += 1
        if tr_id == TR_TRADES:
            with self._lock:
                self._registered.discard(tr_key)
                self._refused.add(tr_key)
        self._say(f"refused:{msg_cd}:{tr_id}", f"WebSocket registration {tr_id} {tr_key} "
                  f"refused ({msg_cd} {msg1}); polled over REST instead", logging.WARNING)

    def _on_data(self, message: str) -> None:
        parts = message.split("|", 3)
        if len(parts) != 4 or not parts[2].isdigit():
            self._bad("malformed", f"WebSocket data frame is not enc|tr_id|count|data: "
                      f"{message[:40]!r}")
            return
        enc, tr_id, count, payload = parts[0], parts[1], int(parts[2]), parts[3]
        if tr_id == TR_TRADES:
            try:
                ticks = parse_trades(count, payload, self._clock().date())
            except DataError as exc:
                self._bad("trade_fields", f"WebSocket trade frame dropped: {exc}")
                return
            self.stats.ticks += len(ticks)
            if self.on_tick is not None:
                for tick in ticks:
                    self.on_tick(tick)
            return
        if tr_id in NOTICE_TR_IDS:
            self._on_notice_frame(enc, tr_id, payload)
            return
        self._bad("unknown_tr_id", f"WebSocket frame of unknown tr_id {tr_id!r} ignored")

    def _on_notice_frame(self, enc: str, tr_id: str, payload: str) -> None:
        if enc == "1":
            key_iv = self._keys.get(tr_id)
            if key_iv is None:
                self._bad("decrypt", f"fill notice {tr_id} before its key; the next poll "
                          "reads the fill")
                return
            try:
                payload = decrypt_notice(payload, *key_iv)
            except DataError as exc:
                self._bad("decrypt", f"fill notice {tr_id} {exc} with the key/iv of its "
                          "subscribe reply; fills come from polling")
                return
        try:
            notice = parse_fill_notice(payload, self._clock().astimezone(KST).date())
        except DataError as exc:
            self._bad("notice_fields", f"fill notice dropped: {exc}; fills come from polling")
            return
        if notice is None:
            self.stats.acknowledgements += 1
            return
        self.stats.notices += 1
        if self.on_notice is not None:
            self.on_notice(notice)

    def _bad(self, kind: str, message: str) -> None:
        self.stats.malformed += 1
        self.stats.errors[kind] += 1
        self._say(kind, message, logging.WARNING)

    def _say(self, kind: str, message: str, level: int) -> None:
        """Log a fault at ``level`` the first time, then at DEBUG (a storm of garbage
        frames must not flood the log)."""
        if kind in self._said:
            log.debug("%s", message)
            return
        self._said.add(kind)
        log.log(level, "%s", message)

    def status(self) -> dict[str, Any]:
        """Counters and registrations, for ``/status``."""
        s = self.stats
        return {
            "connected": self.connected,
            "fill_notices": self.notice_registered,
            "symbols": self.symbols,
            "refused": self.refused_symbols,
            "connects": s.connects,
            "disconnects": s.disconnects,
            "frames": s.frames,
            "ticks": s.ticks,
            "notices": s.notices,
            "malformed": s.malformed,
            "errors": dict(s.errors),
        }


__all__ = [
    "DEFAULT_MAX_REGISTRATIONS",
    "KIS_MAX_REGISTRATIONS",
    "TRADE_FIELDS",
    "TR_TRADES",
    "KISWebSocket",
    "WSStats",
    "decrypt_notice",
    "encrypt_notice",
    "notice_tr_id",
    "parse_trades",
    "request_approval_key",
]
