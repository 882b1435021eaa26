"""The one secret-masking logging filter of kis-trader.

Adapters register the secrets they hold (KIS app key and secret, access tokens, the account
number, the Telegram bot token) with :func:`register_secret`; :class:`SecretMaskingFilter`
then replaces each of them, and its URL-quoted form, in a record's message, its traceback and
its stack text. ``main.py`` attaches the filter to its handlers; adapters attach it to the
loggers of the libraries they drive (httpx, httpcore, telegram) with
:func:`install_log_masking`.

A secret shows as its first two characters and ``***`` (``"PSabcdef…"`` → ``"PS***"``);
values of 4 characters or fewer are never registered (they would mask ordinary words).
"""

from __future__ import annotations

import logging
import threading
from urllib.parse import quote

_lock = threading.Lock()
_secrets: dict[str, str] = {}  # text to find -> its masked form


def mask(value: str) -> str:
    """``"PSabcdef…"`` -> ``"PS***"``; values of 4 characters or fewer -> ``"***"``."""
    return f"{value[:2]}***" if len(value) > 4 else "***"


def register_secret(*values: str) -> None:
    """Add values (of 4+ characters) that must never appear in a log line; their
    URL-quoted forms are masked too."""
    with _lock:
        for value in values:
            if value and len(value) >= 4:
                _secrets[value] = mask(value)
                _secrets.setdefault(quote(value, safe=""), mask(value))


def mask_text(text: str) -> str:
    """``text`` with every registered secret replaced by :func:`mask` of it."""
    if not _secrets:
        return text
    with _lock:
        pairs = sorted(_secrets.items(), key=lambda kv: len(kv[0]), reverse=True)
    for secret, masked in pairs:
        if secret in text:
            text = text.replace(secret, masked)
    return text


class SecretMaskingFilter(logging.Filter):
    """Masks registered secrets in a record's message, traceback and stack text. Never
    drops a record; a record that cannot be formatted is left to the handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is the handler's problem, not ours
            return True
        masked = mask_text(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info:
            text = record.exc_text or logging.Formatter().formatException(record.exc_info)
            masked = mask_text(text)
            if masked != text:
                record.exc_info, record.exc_text = None, masked
        if record.stack_info:
            record.stack_info = mask_text(record.stack_info)
        return True


FILTER = SecretMaskingFilter()
"""The filter instance every logger and handler shares."""


def install_log_masking(target: logging.Logger | logging.Handler) -> None:
    """Attach :data:`FILTER` to a logger or handler (idempotent)."""
    if FILTER not in target.filters:
        target.addFilter(FILTER)
