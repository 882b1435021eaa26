"""Serves the fake KIS app over real HTTP on loopback (``ThreadingHTTPServer``, HTTP/1.1).

The app may raise :class:`FakeTimeout` (hold the connection, then close it unanswered) or
:class:`FakeDrop` (close it at once); everything else is its ``httpx.Response``.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx


class FakeTimeout(Exception):
    """The app wants the connection held ``hold_s`` seconds and then closed unanswered."""

    def __init__(self, hold_s: float) -> None:
        super().__init__(f"hold {hold_s} s")
        self.hold_s = hold_s


class FakeDrop(Exception):
    """The app wants the connection closed without an answer."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        # headers and body go out in two writes: without NODELAY, Nagle + delayed ACK
        # would add ~40 ms to every answer on a kept-alive connection
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().setup()

    def _handle(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        content = self.rfile.read(length) if length else b""
        url = f"http://{self.server.host_port}{self.path}"
        headers = [(k, v) for k, v in self.headers.items() if k.lower() != "host"]
        request = httpx.Request(self.command, url, headers=headers, content=content)
        try:
            response = self.server.app(request)
        except FakeTimeout as exc:
            self.close_connection = True
            time.sleep(exc.hold_s)
            return
        except FakeDrop:
            self.close_connection = True
            return
        payload = response.content
        try:
            self.send_response(response.status_code)
            for key, value in response.headers.items():
                if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = _handle
    do_POST = _handle

    def log_message(self, format: str, *args: Any) -> None:
        return


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    app: Callable[[httpx.Request], httpx.Response]
    host_port: str

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # a client that went away (timeouts in tests) is not an error here


class FakeKISServer:
    """Serves an app (a :class:`~tests.fakes.kis_server.FakeKIS`) on
    ``http://127.0.0.1:<port>`` while the context is open; ``base_url`` gives the URL."""

    def __init__(
        self,
        app: Callable[[httpx.Request], httpx.Response],
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.app = app
        self._server = _Server((host, port), _Handler)
        self._server.app = app
        self.port = int(self._server.server_address[1])
        self._server.host_port = f"{host}:{self.port}"
        self.base_url = f"http://{host}:{self.port}"
        self._thread: threading.Thread | None = None

    def __enter__(self) -> FakeKISServer:
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
