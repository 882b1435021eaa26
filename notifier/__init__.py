"""Telegram for the live bot: alerts on the engine's typed events and the operator's commands,
on python-telegram-bot's ``Application`` (:mod:`notifier.app`); the alerts' kinds and modes
(:mod:`notifier.alerts`), their Korean texts (:mod:`notifier.formatting`), the commands
(:mod:`notifier.commands`) and their answers (:mod:`notifier.answers`)."""

from notifier.alerts import ALERT_KINDS, EVENT_ALERT_KINDS, alert_of, event_data, format_event
from notifier.answers import COMMANDS, CONFIRM_S, HELP_TEXT
from notifier.app import Notifier
from notifier.commands import CommandSet, Controller, parse_user_ids
from notifier.transport import DEFAULT_BASE_URL

__all__ = [
    "ALERT_KINDS",
    "COMMANDS",
    "CONFIRM_S",
    "DEFAULT_BASE_URL",
    "EVENT_ALERT_KINDS",
    "HELP_TEXT",
    "CommandSet",
    "Controller",
    "Notifier",
    "alert_of",
    "event_data",
    "format_event",
    "parse_user_ids",
]
