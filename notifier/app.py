"""The notifier: Telegram alerts and commands for one chat, on python-telegram-bot's
:class:`~telegram.ext.Application` run in the bot's process, never blocking trading.

Threading model
    :meth:`Notifier.start` starts one daemon thread that owns an asyncio event loop. On it run
    a sender task (drains a bounded in-memory FIFO queue, one message at a time, through the
    application's bot) and, when commands are on, the application: ``initialize`` (``getMe``,
    retried while the Bot API is unreachable), ``updater.start_polling`` (``deleteWebhook``
    dropping the updates sent while the bot was down, so a ``/stop`` from then is never
    carried out; then ``getUpdates`` long polls) and ``start`` (the handlers of
    :mod:`notifier.commands`). Callers on any thread only append to the queue under a short
    lock and wake the loop with ``call_soon_threadsafe``, so :meth:`Notifier.send` and
    :meth:`Notifier.on_event` never wait for the network.

Errors
    :meth:`Notifier.send` and :meth:`Notifier.on_event` never raise. A failed ``sendMessage``
    (network error, timeout, HTTP 5xx, 429 flood control) is tried ``retry_attempts`` times in
    all with exponential back-off (tenacity; a 429's ``retry_after`` is honoured), then counted
    in :attr:`Notifier.failed_count` and logged. Client errors (bad request, wrong token,
    blocked) are not retried. Delivery is at least once: a timed-out attempt may have arrived.
    :meth:`Notifier.stop` stops polling, flushes the queue for at most its timeout and always
    returns by then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any, Literal, TypeVar

from telegram.ext import Application
from telegram.request import HTTPXRequest

from framework.events import Event
from notifier.alerts import AlertMode, alert_modes, alert_of, split_text
from notifier.commands import CommandSet, Controller, start_polling, stop_polling
from notifier.formatting import Names
from notifier.transport import (
    DEFAULT_BASE_URL,
    Secret,
    build_application,
    describe,
    install_mask_filter,
    send_text,
)
from utils.log_masking import register_secret

logger = logging.getLogger(__name__)
_T = TypeVar("_T")
_Counter = Literal["sent", "dropped", "failed"]


class Notifier:
    """Telegram alerts and commands for one chat; see the module docstring.

    Args:
        token: bot token from @BotFather (secret: never logged, not in ``repr``).
        chat_id: the chat alerts go to and the only chat whose commands are obeyed (an int id,
            or ``"@channel"``).
        base_url: root of the Bot API (default ``https://api.telegram.org``); requests go to
            ``{base_url}/bot{token}/{method}``.
        alerts: alert kind -> ``True``/``"on"``, ``"silent"`` (sent without a notification
            sound) or ``False``/``"off"`` (see :data:`notifier.alerts.ALERT_KINDS`, plus
            ``"info"`` for :meth:`send`'s default kind); a missing kind is on.
        controls: carries the commands out (:class:`core.control.Controls`); without it (or
            with ``commands=False``, or without ``allowed_user_ids``) nothing is polled.
        allowed_user_ids: Telegram user ids whose commands are obeyed (in ``chat_id`` only).
            Empty or ``None``: commands off (said once at :meth:`start`), alerts still go out.
        names: stock code -> Korean name, asked before the symbol file.
        max_queue: queued messages beyond this are dropped and counted.
        send_timeout_s: connect/read/write timeout of one Telegram request, in seconds.
        poll_interval_s: how long one ``getUpdates`` long poll may wait on the server (whole
            seconds, at least 1; commands are answered as soon as they arrive either way).
        retry_attempts: attempts per message (first try included).
        retry_backoff_s: first back-off between attempts, doubled each time (at most 30 s).

    Raises:
        ValueError: an empty token or chat id, unknown alert kinds or modes, non-positive
            limits.
    """

    def __init__(
        self,
        token: str,
        chat_id: str | int,
        *,
        base_url: str | None = None,
        alerts: Mapping[str, bool | str] | None = None,
        controls: Controller | None = None,
        commands: bool = True,
        allowed_user_ids: Iterable[int] | None = None,
        names: Names | None = None,
        max_queue: int = 1000,
        send_timeout_s: float = 10.0,
        poll_interval_s: float = 1.0,
        retry_attempts: int = 3,
        retry_backoff_s: float = 1.0,
    ) -> None:
        if not isinstance(token, str) or not token.strip():
            raise ValueError("a Telegram bot token is required")
        if chat_id is None or (isinstance(chat_id, str) and not chat_id.strip()):
            raise ValueError("a Telegram chat id is required")
        self._alerts: dict[str, AlertMode] = alert_modes(alerts)
        if max_queue < 1 or send_timeout_s <= 0 or poll_interval_s <= 0 or retry_attempts < 1:
            raise ValueError("max_queue, send_timeout_s, poll_interval_s and retry_attempts "
                             "must be positive")
        if retry_backoff_s < 0:
            raise ValueError("retry_backoff_s must not be negative")
        self._token = Secret(token.strip())
        register_secret(self._token.reveal())
        self._chat_id: str | int = chat_id.strip() if isinstance(chat_id, str) else chat_id
        self._base_url = (base_url or DEFAULT_BASE_URL).rstrip("/")
        self._controls = controls
        self._allowed_users = frozenset(int(u) for u in (allowed_user_ids or ()))
        self._commands_wanted = bool(commands) and controls is not None
        self._commands = self._commands_wanted and bool(self._allowed_users)
        self._names = names
        self._max_queue = int(max_queue)
        self._send_timeout_s = float(send_timeout_s)
        self._poll_interval_s = float(poll_interval_s)
        self._long_poll_s = max(1, math.ceil(poll_interval_s))
        self._retry_attempts = int(retry_attempts)
        self._retry_backoff_s = float(retry_backoff_s)

        self._lock = threading.Lock()
        self._queue: deque[tuple[str, bool]] = deque()
        self._state = "new"  # new -> running -> stopping -> stopped
        self._counts = {"sent": 0, "dropped": 0, "failed": 0}
        self._full_logged = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._wakeup: asyncio.Event | None = None
        self._stop_requested: asyncio.Event | None = None
        self._flush_deadline = 0.0
        self._closing = False
        self._app: Application[Any, Any, Any, Any, Any, Any] | None = None
        self._requests: tuple[HTTPXRequest, ...] = ()
        self._command_set: CommandSet | None = None

    def __repr__(self) -> str:
        return (
            f"Notifier(chat_id={self._chat_id!r}, base_url={self._base_url!r}, "
            f"state={self._state!r}, commands={self._commands}, sent={self.sent_count}, "
            f"dropped={self.dropped_count}, failed={self.failed_count})"
        )

    # -- counters ---------------------------------------------------------------------------------

    @property
    def sent_count(self) -> int:
        """Messages delivered (alerts, free text and command answers)."""
        with self._lock:
            return self._counts["sent"]

    @property
    def dropped_count(self) -> int:
        """Messages never attempted: queue full, notifier not running, or still queued when
        :meth:`stop` ran out of time. Alert kinds switched off are not counted."""
        with self._lock:
            return self._counts["dropped"]

    @property
    def failed_count(self) -> int:
        """Messages attempted but not delivered (retries exhausted, a client error, or cut off
        by :meth:`stop`)."""
        with self._lock:
            return self._counts["failed"]

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        with self._lock:
            return self._state == "running"

    def _bump(self, counter: _Counter) -> None:
        with self._lock:
            self._counts[counter] += 1

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the background thread (sender, and the application's polling when commands
        are on). Does nothing when already running.

        Raises:
            RuntimeError: after :meth:`stop` (a notifier is not restartable).
            ValueError: a malformed ``base_url``.
        """
        with self._lock:
            if self._state == "running":
                return
            if self._state != "new":
                raise RuntimeError("a stopped Notifier cannot be started again")
            install_mask_filter()
            self._app, self._requests = build_application(
                self._base_url, self._token, self._send_timeout_s
            )
            if self._commands and self._controls is not None:
                self._command_set = CommandSet(
                    self._controls, self._reply, self._chat_id, self._allowed_users, self._names
                )
                self._command_set.install(self._app)
            self._loop = asyncio.new_event_loop()
            self._wakeup = asyncio.Event()
            self._stop_requested = asyncio.Event()
            self._thread = threading.Thread(target=self._run, name="telegram-notifier",
                                            daemon=True)
            self._state = "running"
            self._thread.start()
        logger.info("telegram notifier started (commands %s)", "on" if self._commands else "off")
        if self._commands_wanted and not self._commands:
            logger.warning(
                "telegram commands are off: set TELEGRAM_ALLOWED_USER_IDS to the numeric user "
                "ids allowed to send them (alerts still go out)"
            )

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop polling, flush queued messages (for at most ``timeout_s`` seconds in all) and
        close the HTTP clients. Returns within ``timeout_s`` even when Telegram hangs; messages
        still queued then are dropped and counted. Idempotent; never raises."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        with self._lock:
            if self._state == "new":
                self._state = "stopped"
                return
            thread = self._thread
            if self._state == "running":
                self._state = "stopping"
                margin = min(0.5, 0.2 * max(0.0, timeout_s))
                if self._loop is not None:
                    with contextlib.suppress(RuntimeError):  # the loop already ended
                        self._loop.call_soon_threadsafe(self._begin_stop, deadline - margin)
        if thread is None or thread is threading.current_thread():
            return
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            logger.warning("telegram notifier did not finish within %.1f s", timeout_s)

    def __enter__(self) -> Notifier:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the public, non-blocking entry points ----------------------------------------------------

    def send(self, text: str, kind: str = "info") -> bool:
        """Queue ``text`` for the chat. Never blocks and never raises.

        Returns False when the message is dropped: its ``kind`` is off, the queue holds
        ``max_queue`` messages, or the notifier is not running.
        """
        try:
            mode = self._alerts.get(kind, "on")
            if mode == "off":
                return False
            return self._enqueue(str(text), silent=mode == "silent", from_loop=False)
        except Exception:
            logger.exception("telegram send failed before queueing")
            return False

    def on_event(self, event: Event) -> None:
        """Engine event subscriber (``build_engine(subscribers=[notifier.on_event])``): the
        typed event's alert kind and Korean text (:func:`notifier.alerts.alert_of`), queued.
        Never blocks, never raises."""
        try:
            alert = alert_of(event, self._names)
            if alert is not None:
                self.send(alert[1], alert[0])
        except Exception:
            logger.exception("telegram on_event failed for %s", event.kind)

    def _reply(self, text: str) -> bool:
        """A command's answer, queued from the event loop."""
        return self._enqueue(text, silent=False, from_loop=True)

    def _enqueue(self, text: str, *, silent: bool, from_loop: bool) -> bool:
        if not text.strip():
            return False
        with self._lock:
            accepting = self._state == "running" or (from_loop and self._state == "stopping")
            if not accepting or self._loop is None or self._wakeup is None:
                self._counts["dropped"] += 1
                return False
            if len(self._queue) >= self._max_queue:
                self._counts["dropped"] += 1
                if not self._full_logged:
                    self._full_logged = True
                    logger.warning("telegram queue full (%d); dropping messages", self._max_queue)
                return False
            self._queue.append((text, silent))
            if from_loop:
                self._wakeup.set()
            else:
                try:
                    self._loop.call_soon_threadsafe(self._wakeup.set)
                except RuntimeError:  # the loop has ended
                    self._queue.pop()
                    self._counts["dropped"] += 1
                    return False
        return True

    # -- the background thread --------------------------------------------------------------------

    def _run(self) -> None:
        loop = _need(self._loop)
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._main())
        except BaseException:
            logger.exception("telegram notifier loop crashed")
        finally:
            with self._lock:
                self._state = "stopped"
                leftover = len(self._queue)
                self._queue.clear()
                self._counts["dropped"] += leftover
            if leftover:
                logger.warning("telegram notifier stopped with %d unsent messages", leftover)
            try:
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for task in pending:
                    task.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                asyncio.set_event_loop(None)
                loop.close()

    def _begin_stop(self, flush_deadline: float) -> None:
        self._flush_deadline = flush_deadline
        if self._stop_requested is not None:
            self._stop_requested.set()

    async def _main(self) -> None:
        stop_requested, wakeup = _need(self._stop_requested), _need(self._wakeup)
        sender = asyncio.create_task(self._sender(), name="telegram-sender")
        commands = (
            asyncio.create_task(
                start_polling(_need(self._app), self._long_poll_s, self._poll_interval_s),
                name="telegram-commands",
            )
            if self._command_set is not None else None
        )
        try:
            await stop_requested.wait()
        finally:
            if commands is not None:
                commands.cancel()
                await asyncio.gather(commands, return_exceptions=True)
                budget = max(0.5, self._flush_deadline - time.monotonic())
                await stop_polling(_need(self._app), budget)
                if self._command_set is not None:
                    self._command_set.close()
            self._closing = True
            wakeup.set()
            budget = max(0.0, self._flush_deadline - time.monotonic())
            try:
                await asyncio.wait_for(sender, budget)
            except TimeoutError:
                logger.warning("telegram notifier: flushing the queue timed out")
            except Exception:
                logger.exception("telegram sender failed")
            await self._close_clients()

    async def _close_clients(self) -> None:
        try:
            await asyncio.wait_for(
                asyncio.gather(*(r.shutdown() for r in self._requests), return_exceptions=True),
                1.0,
            )
        except TimeoutError:
            logger.warning("telegram notifier: closing the HTTP clients timed out")

    # -- sending ----------------------------------------------------------------------------------

    def _pop(self) -> tuple[str, bool] | None:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
            self._full_logged = False
            return None

    async def _sender(self) -> None:
        wakeup = _need(self._wakeup)
        while True:
            item = self._pop()
            if item is not None:
                await self._deliver(*item)
                continue
            if self._closing:
                return
            wakeup.clear()
            with self._lock:
                if self._queue:
                    continue
            await wakeup.wait()

    async def _deliver(self, text: str, silent: bool) -> None:
        try:
            for part in split_text(text):
                await self._send_part(part, silent)
        except asyncio.CancelledError:
            self._bump("failed")
            raise
        except Exception as exc:
            self._bump("failed")
            logger.warning("telegram message not delivered: %s", describe(exc))
        else:
            self._bump("sent")

    async def _send_part(self, text: str, silent: bool) -> None:
        await send_text(_need(self._app).bot, self._chat_id, text, silent=silent,
                        attempts=self._retry_attempts, backoff_s=self._retry_backoff_s)


def _need(value: _T | None) -> _T:
    if value is None:
        raise RuntimeError("the notifier is not started")
    return value
