"""Serving the dashboard with uvicorn on its own thread (in the bot's process or alone).

The server's event loop runs on a daemon thread; page requests read the database and the
session's figures (the session's lock is held only for the short reads and the controls), so
a slow or failing dashboard never holds up a trading job.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import uvicorn

from dashboard.security import check_bind

logger = logging.getLogger(__name__)


class DashboardServer:
    """``app`` on ``host:port`` (port 0: a free port, see :attr:`port` after :meth:`start`).

    Raises ``ConfigError`` at construction for a non-loopback ``host`` without ``token``.
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 8080,
                 token: str | None = None):
        check_bind(host, token)
        self.host = host
        config = uvicorn.Config(app, host=host, port=port, log_level="warning",
                                access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, name="dashboard", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            self.server.run()
        except BaseException as exc:  # a port in use: logged; trading goes on
            self.error = exc
            logger.exception("dashboard server stopped")

    @property
    def port(self) -> int:
        for server in getattr(self.server, "servers", []) or []:
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        return int(self.server.config.port)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 60.0) -> None:
        """Start serving; returns once the socket listens. Raises ``RuntimeError`` when the
        server could not start (the port is taken) within ``timeout_s``."""
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"dashboard did not start on {self.host}: {self.error}")
            time.sleep(0.05)
        logger.info("dashboard on %s", self.url)

    def stop(self, timeout_s: float = 10.0) -> None:
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(timeout_s)
