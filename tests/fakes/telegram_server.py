"""A fake Telegram Bot API server on loopback, for testing :mod:`notifier`.

Serves the subset the notifier uses (``getMe``, ``sendMessage``, ``getUpdates``,
``deleteWebhook``, plus ``close`` / ``logOut`` / ``setMyCommands``) on
``http://127.0.0.1:<free port>`` with :class:`http.server.ThreadingHTTPServer` and answers
``{"ok": true, "result": ...}`` in the real Bot API shapes (python-telegram-bot validates them).
Requests go to ``/bot<token>/<method>``; a wrong token gets 401, any other path 404. Bodies may
be form-encoded (what python-telegram-bot sends) or JSON, plus query-string parameters.

>>> with FakeTelegram() as tg:                 # doctest: +SKIP
...     notifier = Notifier(tg.token, 42, base_url=tg.base_url)
...     tg.push_command("/status", chat_id=42)  # an incoming message for getUpdates
...     assert tg.wait_for(lambda: tg.messages, timeout_s=10)

Fault switches: :meth:`FakeTelegram.fail_next` (answer the next n matching requests with an
error status) and :meth:`FakeTelegram.hang` (hold every request unanswered until switched off or
the server shuts down). ``getUpdates`` long polls: it answers at once when updates are queued,
after at most its ``timeout`` otherwise, and at once when the server shuts down.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

DEFAULT_TOKEN = "123456789:AAFakeSecretToken_for-tests-0123456789"
BOT_ID = 123456789
BOT_USERNAME = "kis_trader_test_bot"
USER_ID = 777000111

# form values that are plain strings; every other form value is JSON-encoded by the client
_TEXT_PARAMS = frozenset({"text", "parse_mode", "caption", "business_connection_id"})


@dataclass(frozen=True)
class SentMessage:
    """One ``sendMessage`` the fake accepted."""

    chat_id: int | str
    text: str
    message_id: int


@dataclass(frozen=True)
class ApiCall:
    """One request with a valid token: the Bot API method (as the client spelled it), its
    decoded parameters and when it arrived (``time.monotonic()``)."""

    method: str
    params: dict[str, Any]
    at: float


@dataclass
class _Fault:
    remaining: int
    status: int
    method: str | None
    retry_after: int | None


@dataclass
class _State:
    cond: threading.Condition = field(
        default_factory=lambda: threading.Condition(threading.RLock())
    )
    closing: bool = False
    hanging: bool = False
    hanging_now: int = 0
    unauthorized: int = 0
    calls: list[ApiCall] = field(default_factory=list)
    messages: list[SentMessage] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    faults: list[_Fault] = field(default_factory=list)
    next_update_id: int = 5_000
    next_message_id: int = 1


def _coerce(key: str, value: str) -> Any:
    if key in _TEXT_PARAMS:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 60  # a handler whose client vanished does not linger forever

    def setup(self) -> None:
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    # -- plumbing ---------------------------------------------------------------------------------

    def _params(self) -> dict[str, Any]:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        query = urlsplit(self.path).query
        params: dict[str, Any] = {k: _coerce(k, v) for k, v in parse_qsl(query, True)}
        ctype = (self.headers.get("content-type") or "").split(";")[0].strip().lower()
        if body and ctype == "application/json":
            decoded = json.loads(body)
            if isinstance(decoded, dict):
                params.update(decoded)
        elif body:
            params.update(
                {k: _coerce(k, v) for k, v in parse_qsl(body.decode("utf-8"), True)}
            )
        return params

    def _reply(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client gave up (timeout or cancellation)
            self.close_connection = True

    def _error(self, status: int, description: str, retry_after: int | None = None) -> None:
        payload: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
        if retry_after is not None:
            payload["parameters"] = {"retry_after": retry_after}
        self._reply(status, payload)

    def _handle(self) -> None:
        fake = self.server.fake
        state = fake._state
        try:
            params = self._params()
        except ValueError:
            self._error(400, "Bad Request: can't parse request body")
            return
        parts = urlsplit(self.path).path.strip("/").split("/")
        if len(parts) != 2 or not parts[0].startswith("bot"):
            self._error(404, "Not Found")
            return
        token, method = parts[0][3:], parts[1]
        if token != fake.token:
            with state.cond:
                state.unauthorized += 1
                state.cond.notify_all()
            self._error(401, "Unauthorized")
            return
        with state.cond:
            state.calls.append(ApiCall(method, params, time.monotonic()))
            state.cond.notify_all()
            if state.hanging:
                state.hanging_now += 1
                state.cond.notify_all()
                state.cond.wait_for(lambda: not state.hanging or state.closing)
                state.hanging_now -= 1
                state.cond.notify_all()
            if state.closing:
                self.close_connection = True
                return
            fault = fake._take_fault(method)
        if fault is not None:
            phrase = "Too Many Requests" if fault.status == 429 else "Internal Server Error"
            self._error(fault.status, phrase, fault.retry_after)
            return
        handler = _METHODS.get(method.lower())
        if handler is None:
            self._error(404, "Not Found: method not found")
            return
        try:
            result = handler(fake, params)
        except _ApiError as exc:
            self._error(exc.status, exc.description)
            return
        if result is _CLOSED:
            self.close_connection = True
            return
        self._reply(200, {"ok": True, "result": result})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    fake: FakeTelegram

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # clients that time out or are cancelled are normal in these tests


class _ApiError(Exception):
    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.description = description


_CLOSED = object()


# -- Bot API methods ------------------------------------------------------------------------------


def _bot_user() -> dict[str, Any]:
    return {
        "id": BOT_ID,
        "is_bot": True,
        "first_name": "KIS Trader",
        "username": BOT_USERNAME,
        "can_join_groups": False,
        "can_read_all_group_messages": False,
        "supports_inline_queries": False,
    }


def _chat(chat_id: int | str) -> dict[str, Any]:
    if isinstance(chat_id, int) and chat_id > 0:
        return {"id": chat_id, "type": "private", "first_name": "Trader"}
    if isinstance(chat_id, str) and chat_id.startswith("@"):
        return {"id": -1_000_000_000_001, "type": "channel", "title": chat_id[1:],
                "username": chat_id[1:]}
    return {"id": int(chat_id), "type": "group", "title": "Trading"}


def _get_me(fake: FakeTelegram, params: dict[str, Any]) -> Any:
    return _bot_user()


def _send_message(fake: FakeTelegram, params: dict[str, Any]) -> Any:
    chat_id = params.get("chat_id")
    text = params.get("text")
    if chat_id in (None, "") or not isinstance(text, str) or not text:
        raise _ApiError(400, "Bad Request: chat_id and a non-empty text are required")
    if len(text) > 4096:
        raise _ApiError(400, "Bad Request: message is too long")
    state = fake._state
    with state.cond:
        message_id = state.next_message_id
        state.next_message_id += 1
        state.messages.append(SentMessage(chat_id, text, message_id))
        state.cond.notify_all()
    return {
        "message_id": message_id,
        "date": int(time.time()),
        "chat": _chat(chat_id),
        "from": _bot_user(),
        "text": text,
    }


def _get_updates(fake: FakeTelegram, params: dict[str, Any]) -> Any:
    offset = params.get("offset")
    limit = int(params.get("limit") or 100)
    timeout = float(params.get("timeout") or 0)
    state = fake._state
    deadline = time.monotonic() + max(0.0, timeout)
    with state.cond:
        if isinstance(offset, int):
            if offset >= 0:  # confirms every update below the offset
                state.updates = [u for u in state.updates if u["update_id"] >= offset]
            else:  # keep only the last -offset updates
                state.updates = state.updates[offset:]
            state.cond.notify_all()
        while not state.updates and not state.closing:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            state.cond.wait(remaining)
        if state.closing:
            return _CLOSED
        return list(state.updates[:limit])


def _delete_webhook(fake: FakeTelegram, params: dict[str, Any]) -> Any:
    state = fake._state
    with state.cond:
        if params.get("drop_pending_updates") in (True, "true", "True", 1):
            state.updates.clear()
            state.cond.notify_all()
    return True


def _true(fake: FakeTelegram, params: dict[str, Any]) -> Any:
    return True


_METHODS: dict[str, Callable[[FakeTelegram, dict[str, Any]], Any]] = {
    "getme": _get_me,
    "sendmessage": _send_message,
    "getupdates": _get_updates,
    "deletewebhook": _delete_webhook,
    "setmycommands": _true,
    "close": _true,
    "logout": _true,
}


class FakeTelegram:
    """The fake Bot API, served while the context is open (``base_url`` gives its root).

    Everything here is thread-safe; state changes notify one condition variable, which
    :meth:`wait_for` polls.
    """

    def __init__(self, token: str = DEFAULT_TOKEN, host: str = "127.0.0.1", port: int = 0) -> None:
        self.token = token
        self._state = _State()
        self._server = _Server((host, port), _Handler)
        self._server.fake = self
        self.port = int(self._server.server_address[1])
        self.base_url = f"http://{host}:{self.port}"
        self._thread: threading.Thread | None = None

    def __enter__(self) -> FakeTelegram:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
            name="fake-telegram", daemon=True,
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._state.cond:  # release long polls and hung requests at once
            self._state.closing = True
            self._state.cond.notify_all()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # -- observation ------------------------------------------------------------------------------

    @property
    def messages(self) -> list[SentMessage]:
        """Copy of the accepted ``sendMessage`` calls, in order."""
        with self._state.cond:
            return list(self._state.messages)

    def texts(self, chat_id: int | str | None = None) -> list[str]:
        """Texts sent (to ``chat_id`` when given)."""
        return [m.text for m in self.messages if chat_id is None or m.chat_id == chat_id]

    @property
    def calls(self) -> list[ApiCall]:
        """Copy of every request that had the right token, in arrival order."""
        with self._state.cond:
            return list(self._state.calls)

    def call_count(self, method: str) -> int:
        """How many requests for ``method`` (case-insensitive) arrived with the right token."""
        wanted = method.lower()
        with self._state.cond:
            return sum(1 for c in self._state.calls if c.method.lower() == wanted)

    @property
    def unauthorized(self) -> int:
        """Requests refused for a wrong token."""
        with self._state.cond:
            return self._state.unauthorized

    @property
    def hanging_now(self) -> int:
        """Requests currently held by :meth:`hang`."""
        with self._state.cond:
            return self._state.hanging_now

    @property
    def pending_updates(self) -> int:
        """Updates queued and not yet confirmed by a ``getUpdates`` offset."""
        with self._state.cond:
            return len(self._state.updates)

    def wait_for(self, predicate: Callable[[], object], timeout_s: float = 10.0) -> bool:
        """Wait until ``predicate()`` is truthy (re-checked on every state change of the fake
        and at least every 20 ms, so predicates on other objects work too); False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._state.cond:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._state.cond.wait(min(remaining, 0.02))
            return True

    # -- control ----------------------------------------------------------------------------------

    def push_command(
        self, text: str, chat_id: int, *, user_id: int = USER_ID, date: int | None = None
    ) -> int:
        """Queue an incoming text message (an ``Update`` with ``message``) for ``getUpdates``;
        returns its update_id."""
        state = self._state
        with state.cond:
            update_id = state.next_update_id
            state.next_update_id += 1
            message_id = state.next_message_id
            state.next_message_id += 1
            message: dict[str, Any] = {
                "message_id": message_id,
                "date": int(time.time()) if date is None else date,
                "chat": _chat(chat_id),
                "from": {"id": user_id, "is_bot": False, "first_name": "Trader",
                         "language_code": "ko"},
                "text": text,
            }
            if text.startswith("/"):
                length = len(text.split()[0])
                message["entities"] = [{"type": "bot_command", "offset": 0, "length": length}]
            state.updates.append({"update_id": update_id, "message": message})
            state.cond.notify_all()
        return update_id

    def fail_next(
        self, n: int, status: int = 500, *, method: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        """Answer the next ``n`` requests (for ``method`` only, when given) with ``status`` and
        an ``{"ok": false}`` body (``parameters.retry_after`` when given, as for 429)."""
        with self._state.cond:
            self._state.faults.append(
                _Fault(n, status, method.lower() if method else None, retry_after)
            )

    def hang(self, on: bool = True) -> None:
        """Hold every request unanswered while on (requests already held are released, and
        then answered normally, when switched off; closed unanswered on shutdown)."""
        with self._state.cond:
            self._state.hanging = on
            self._state.cond.notify_all()

    def _take_fault(self, method: str) -> _Fault | None:
        for fault in self._state.faults:
            if fault.remaining > 0 and fault.method in (None, method.lower()):
                fault.remaining -= 1
                if fault.remaining == 0:
                    self._state.faults.remove(fault)
                return fault
        return None
