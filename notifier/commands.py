"""The bot's commands: python-telegram-bot :class:`~telegram.ext.CommandHandler`\\ s behind a
chat and user allow-list, each carried out through :class:`core.control.Controls` (the
engine's façade; the writes are journaled there, naming ``telegram``).

==========================  ========================================================
command                     effect / answer
==========================  ========================================================
``/status``                 mode, trading state, market, equity, cash, strategies
``/positions`` ``/orders``  the holdings; the open orders
``/pnl`` ``/daily``         today's P&L; today's report (equity, trades, fills)
``/balance``                cash, holdings' value and equity
``/pause`` ``/resume``      trading state HALTED / ACTIVE; ``/reduce_only`` sells only
``/stop``                   the bot stops after the current job
``/strategies``             every strategy: trades or not, its switch, holdings, P&L
``/strategy NAME on|off``   the strategy's on/off switch (:mod:`core.switches`), at once
``/sell CODE [STRATEGY]``   asks for ``/confirm`` (same user, within :data:`CONFIRM_S` s),
                            then sells every strategy's holding of CODE (or STRATEGY's)
``/reload``                 re-reads config.yaml and settings.yaml; an invalid file is
                            refused with the error and the old configuration stays
``/help``                   the list above (also for unknown commands and plain text)
==========================  ========================================================

Only messages of the notifier's chat are looked at (others are logged at warning with their
chat id and never answered), and only the senders in ``allowed_user_ids`` are obeyed: anyone
else in that chat is refused, logged and told so once. The controls run on one worker thread,
so neither a slow control nor the session's lock ever holds up the event loop (alerts go on).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from telegram import Update
from telegram.error import InvalidToken, TelegramError
from telegram.ext import Application, CommandHandler, MessageHandler, filters

from core.control import ControlError
from core.reload import ReloadResult
from notifier.answers import (
    COMMANDS,
    CONFIRM_S,
    HELP_TEXT,
    format_balance,
    format_daily,
    format_orders,
    format_pnl,
    format_positions,
    format_reload,
    format_sell_question,
    format_status,
    format_strategies,
    format_switched,
)
from notifier.formatting import KO, Names, mappings, named
from notifier.transport import describe

logger = logging.getLogger(__name__)

BY = "telegram"
"""Who the journal says used a control sent from Telegram."""


class Controller(Protocol):
    """What the commands read and change: :class:`core.control.Controls`. Called from the
    commands' worker thread."""

    def status(self) -> dict[str, Any]: ...
    def positions(self) -> list[dict[str, Any]]: ...
    def pnl(self) -> dict[str, Any]: ...
    def orders(self) -> list[dict[str, Any]]: ...
    def set_state(self, state: str, by: str) -> str: ...
    def request_stop(self, by: str) -> str: ...
    def strategies(self) -> list[dict[str, Any]]: ...
    def switch(self, name: str, on: bool, by: str) -> str: ...
    def holdings_of(self, code: str, strategy: str | None = None) -> list[dict[str, Any]]: ...
    def sell(self, code: str, strategy: str | None, by: str) -> str: ...
    def daily_report(self) -> dict[str, Any]: ...
    def balance(self) -> dict[str, int]: ...
    def reload(self, by: str) -> ReloadResult: ...


def chat_filter(chat_id: int | str) -> filters.Chat:
    """The filter of the notifier's chat: a numeric id, or ``"@name"`` of a public chat."""
    if isinstance(chat_id, int):
        return filters.Chat(chat_id=chat_id)
    if chat_id.lstrip("-").isdigit():
        return filters.Chat(chat_id=int(chat_id))
    return filters.Chat(username=chat_id.lstrip("@"))


def parse_user_ids(text: str | None, name: str = "TELEGRAM_ALLOWED_USER_IDS") -> frozenset[int]:
    """``"123, 456"`` -> ``{123, 456}`` (empty or ``None`` -> empty). Raises ``ValueError``
    naming ``name`` and the bad item for anything but comma-separated numeric ids."""
    ids: set[int] = set()
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        if not item.isdigit():
            raise ValueError(
                f"{name}: {item!r} is not a numeric Telegram user id "
                "(expected e.g. 123456789,987654321)"
            )
        ids.add(int(item))
    return frozenset(ids)


class CommandSet:
    """The handlers of the commands above, for one chat.

    Args:
        controller: carries the commands out (:class:`core.control.Controls`).
        reply: queues an answer for the chat; called on the event loop's thread.
        chat_id: the one chat whose messages are handled.
        allowed_user_ids: the senders obeyed there.
        names: stock code -> name, before the symbol file.
        clock: monotonic seconds, for the ``/sell`` confirmation's deadline.
    """

    def __init__(
        self,
        controller: Controller,
        reply: Callable[[str], object],
        chat_id: int | str,
        allowed_user_ids: Iterable[int],
        names: Names | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.controller = controller
        self._reply = reply
        self._chat = chat_filter(chat_id)
        self._users = frozenset(int(u) for u in allowed_user_ids)
        self._names = names
        self._clock = clock
        self._refused: set[int] = set()
        self._pending: tuple[str, str | None, int | None, float] | None = None
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="telegram-command")

    def install(self, application: Application[Any, Any, Any, Any, Any, Any]) -> None:
        """Add the handlers to ``application`` (group 0, tried in this order: other chats,
        strangers, the commands, then the help for everything else)."""
        users = filters.User(user_id=self._users)
        application.add_handler(MessageHandler(~self._chat, self._other_chat))
        application.add_handler(MessageHandler(self._chat & ~users, self._stranger))
        allowed = self._chat & users
        for name in COMMANDS:
            application.add_handler(CommandHandler(name, self._command, filters=allowed))
        application.add_handler(MessageHandler(allowed, self._help))

    def close(self) -> None:
        """Drop the commands not yet started; a running one finishes on its own."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- handlers ---------------------------------------------------------------------------------

    async def _other_chat(self, update: Update, context: Any) -> None:
        chat = update.effective_chat
        logger.warning("ignored a telegram message from unauthorized chat %s",
                       chat.id if chat else "?")

    async def _stranger(self, update: Update, context: Any) -> None:
        message, user = update.effective_message, update.effective_user
        word = ((message.text or "") if message else "").split(maxsplit=1)[:1]
        logger.warning(
            "refused telegram %r from user %s in chat %s: not in TELEGRAM_ALLOWED_USER_IDS",
            (word[0] if word else "")[:40], user.id if user else None,
            update.effective_chat.id if update.effective_chat else None,
        )
        if user is not None and user.id not in self._refused:
            self._refused.add(user.id)  # told once, so a group is not flooded
            self._reply(KO["not_allowed"])

    async def _help(self, update: Update, context: Any) -> None:
        message = update.effective_message
        word = ((message.text or "") if message else "").split(maxsplit=1)[:1]
        _, _, target = (word[0] if word else "").partition("@")
        if target and target.lower() != (context.bot.username or "").lower():
            return  # a command for another bot in the group
        self._reply(HELP_TEXT)

    async def _command(self, update: Update, context: Any) -> None:
        message = update.effective_message
        text = (message.text or "") if message else ""
        name = text.split(maxsplit=1)[0][1:].partition("@")[0].lower()
        args = list(context.args or ())
        user = update.effective_user.id if update.effective_user else None
        if name == "help":
            self._reply(HELP_TEXT)
            return
        if name == "stop":  # acknowledge first: the session may stop this notifier right away
            self._reply(KO["stop_ack"])
        action = getattr(self, f"_do_{name}")
        loop = asyncio.get_running_loop()
        try:
            answer = await loop.run_in_executor(self._executor, action, args, user)
        except ControlError as exc:
            answer = f"⚠️ {exc}"
        except Exception as exc:
            logger.exception("telegram command /%s failed", name)
            answer = KO["command_failed"].format(command=f"/{name}", error=describe(exc))
        if answer:
            self._reply(answer)

    # -- the commands (on the worker thread) -------------------------------------------------------

    def _do_status(self, args: list[str], user: int | None) -> str:
        return format_status(self.controller.status())

    def _do_positions(self, args: list[str], user: int | None) -> str:
        rows = mappings(self.controller.positions())
        return format_positions([named(p, self._names) for p in rows])

    def _do_pnl(self, args: list[str], user: int | None) -> str:
        return format_pnl(self.controller.pnl())

    def _do_orders(self, args: list[str], user: int | None) -> str:
        return format_orders([named(o, self._names) for o in mappings(self.controller.orders())])

    def _do_pause(self, args: list[str], user: int | None) -> str:
        self.controller.set_state("halted", BY)
        return KO["pause"]

    def _do_resume(self, args: list[str], user: int | None) -> str:
        self.controller.set_state("active", BY)
        return KO["resume"]

    def _do_reduce_only(self, args: list[str], user: int | None) -> str:
        self.controller.set_state("reduce_only", BY)
        return KO["reduce_only"]

    def _do_stop(self, args: list[str], user: int | None) -> str:
        self.controller.request_stop(BY)
        return ""  # already acknowledged

    def _do_strategies(self, args: list[str], user: int | None) -> str:
        return format_strategies(self.controller.strategies())

    def _do_strategy(self, args: list[str], user: int | None) -> str:
        if len(args) != 2 or args[1].lower() not in ("on", "off"):
            return "사용법: /strategy 이름 on|off"
        on = args[1].lower() == "on"
        self.controller.switch(args[0], on, BY)
        return format_switched(args[0], on)

    def _do_sell(self, args: list[str], user: int | None) -> str:
        if not 1 <= len(args) <= 2:
            return "사용법: /sell 종목코드 [전략]"
        code, strategy = args[0], (args[1] if len(args) == 2 else None)
        held = [named(p, self._names) for p in self.controller.holdings_of(code, strategy)]
        if not held:
            whose = f" ({strategy})" if strategy else ""
            return f"⚠️ {code}{whose}: 보유하고 있지 않습니다."
        with self._lock:
            self._pending = (code, strategy, user, self._clock() + CONFIRM_S)
        return format_sell_question(code, held)

    def _do_confirm(self, args: list[str], user: int | None) -> str:
        with self._lock:
            pending = self._pending
            if pending is not None and pending[2] != user:
                return "⚠️ 매도를 요청한 사용자만 /confirm 할 수 있습니다."
            self._pending = None
        if pending is None or self._clock() > pending[3]:
            return "⚠️ 확인할 매도가 없습니다 (시간이 지났거나 요청이 없습니다)."
        code, strategy, _user, _deadline = pending
        return f"📤 {self.controller.sell(code, strategy, BY)}"

    def _do_daily(self, args: list[str], user: int | None) -> str:
        return format_daily(self.controller.daily_report())

    def _do_balance(self, args: list[str], user: int | None) -> str:
        return format_balance(self.controller.balance())

    def _do_reload(self, args: list[str], user: int | None) -> str:
        result = self.controller.reload(BY)
        return format_reload(result.ok, result.message, result.changes)


async def start_polling(
    app: Application[Any, Any, Any, Any, Any, Any], long_poll_s: int, backoff_s: float
) -> None:
    """``initialize`` (``getMe``), ``updater.start_polling`` (``deleteWebhook`` dropping the
    updates sent while the bot was down, then ``getUpdates`` long polls of ``long_poll_s``
    seconds) and ``start`` (the handlers), retried after ``backoff_s`` seconds doubling (at most
    30 s) until done. Gives up, logged, when the token is rejected."""
    failures = 0
    while True:
        try:
            await app.initialize()
            if app.updater is None:
                raise RuntimeError("the application has no updater")
            await app.updater.start_polling(
                poll_interval=0.0, timeout=long_poll_s, allowed_updates=["message"],
                drop_pending_updates=True, error_callback=_polling_error,
            )
            await app.start()
        except InvalidToken:
            logger.error("telegram rejected the bot token; commands are off")
            return
        except TelegramError as exc:
            failures += 1
            level = logging.WARNING if failures == 1 else logging.DEBUG
            logger.log(level, "telegram command setup failed (%s); retrying", describe(exc))
            await asyncio.sleep(min(backoff_s * 2 ** min(failures - 1, 8), 30.0))
        else:
            logger.info("telegram commands on for @%s (pending updates dropped)",
                        app.bot.username)
            return


def _polling_error(exc: TelegramError) -> None:
    logger.warning("telegram getUpdates failed (%s)", describe(exc))


async def stop_polling(app: Application[Any, Any, Any, Any, Any, Any], budget_s: float) -> None:
    """Stop polling and the handlers within ``budget_s`` seconds (a hung Bot API cannot hold
    up the stop); never raises."""
    try:
        async with asyncio.timeout(budget_s):
            if app.updater is not None and app.updater.running:
                await app.updater.stop()
            if app.running:
                await app.stop()
    except TimeoutError:
        logger.warning("telegram notifier: stopping the command polling timed out")
    except Exception:
        logger.exception("telegram notifier: stopping the command polling failed")


__all__ = [
    "BY", "CommandSet", "Controller", "chat_filter", "parse_user_ids", "start_polling",
    "stop_polling",
]
