"""Typed engine events (:mod:`framework.events`, :mod:`core.operator_events`) -> Telegram
alerts: which alert kind an event is, its Korean text, and whether it goes out loud, silent
(delivered without a notification sound) or not at all.

Per alert kind the mode is ``"on"`` (``True``), ``"silent"`` or ``"off"`` (``False``);
``Notifier(alerts={"fill": "silent", "order_sent": False})``. A kind not named is on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal

from framework.events import Event, OrderCancelled, OrderFilled
from notifier.formatting import (
    Names,
    format_cancel,
    format_circuit_breaker,
    format_daily_report,
    format_error,
    format_fill,
    format_order_sent,
    format_reconcile,
    format_rejected,
    format_risk_exit,
    format_session_started,
    format_session_stopped,
    format_state_changed,
    named,
)

logger = logging.getLogger(__name__)

AlertMode = Literal["on", "silent", "off"]

ALERT_KINDS: Final[tuple[str, ...]] = (
    "start", "stop", "order_sent", "fill", "cancel", "error", "circuit_breaker", "reconcile",
    "daily_report", "risk",
)
"""Alert kinds whose mode can be set (plus ``"info"``: free text sent with ``send``)."""

EVENT_ALERT_KINDS: Final[Mapping[str, str]] = {
    "session_started": "start",
    "session_stopped": "stop",
    "order_sent": "order_sent",
    "order_filled": "fill",
    "order_cancelled": "cancel",
    "order_rejected": "error",
    "strategy_error": "error",
    "strategy_isolated": "error",
    "circuit_breaker": "circuit_breaker",
    "reconcile": "reconcile",
    "daily_report": "daily_report",
    "risk_exit": "risk",
    "risk_limit": "risk",
    "state_changed": "risk",
}
"""Event kind -> alert kind; any other event is an ``error`` alert when its level is error or
critical, and not alerted otherwise."""

_FORMATTERS: Final[Mapping[str, Callable[[Mapping[str, Any]], str]]] = {
    "session_started": format_session_started,
    "session_stopped": format_session_stopped,
    "order_sent": format_order_sent,
    "order_filled": format_fill,
    "order_cancelled": format_cancel,
    "order_rejected": format_rejected,
    "circuit_breaker": format_circuit_breaker,
    "reconcile": format_reconcile,
    "daily_report": format_daily_report,
    "risk_exit": format_risk_exit,
    "risk_limit": format_risk_exit,
    "state_changed": format_state_changed,
}


def alert_modes(alerts: Mapping[str, bool | str] | None) -> dict[str, AlertMode]:
    """``{"fill": "silent", "cancel": False}`` -> ``{"fill": "silent", "cancel": "off"}``.

    Raises:
        ValueError: an unknown kind, or a mode other than on / silent / off / true / false.
    """
    unknown = sorted(set(alerts or {}) - {*ALERT_KINDS, "info"})
    if unknown:
        raise ValueError(f"unknown alert kinds {unknown}; known: {', '.join(ALERT_KINDS)}")
    modes: dict[str, AlertMode] = {}
    for kind, value in (alerts or {}).items():
        if value is True or value == "on":
            modes[kind] = "on"
        elif value is False or value == "off":
            modes[kind] = "off"
        elif value == "silent":
            modes[kind] = "silent"
        else:
            raise ValueError(f"telegram.alerts.{kind}: {value!r}; expected on, silent or off")
    return modes


def event_data(event: Event) -> dict[str, Any]:
    """The fields of ``event`` as the formatters read them: ``level`` added; for a fill
    ``qty``/``price`` are the fill's, for a cancel ``qty`` is the unfilled rest."""
    data = event.data()
    data["level"] = event.level
    if isinstance(event, OrderFilled):
        data["qty"], data["price"] = event.fill_qty, event.fill_price
    elif isinstance(event, OrderCancelled):
        data["qty"] = event.unfilled_qty
    return data


def format_event(
    kind: str, message: str, data: Mapping[str, Any], names: Names | None = None
) -> tuple[str, str] | None:
    """``(alert kind, Korean text)`` for an event's kind, message and fields, or ``None``
    when it is not alerted (see :data:`EVENT_ALERT_KINDS`). ``names`` maps a stock code to its
    name before the symbol file is asked."""
    data = named(data if isinstance(data, Mapping) else {}, names)
    alert = EVENT_ALERT_KINDS.get(kind)
    if alert is None:
        if str(data.get("level") or "").lower() not in ("error", "critical"):
            return None
        return "error", format_error(message, data)
    formatter = _FORMATTERS.get(kind)
    if formatter is not None:
        return alert, formatter(data)
    return alert, format_error(message, data, isolated=kind == "strategy_isolated")


def alert_of(event: Event, names: Names | None = None) -> tuple[str, str] | None:
    """:func:`format_event` of a typed event; a formatter that fails still gives a one-line
    ``ℹ️ kind: message`` alert of the event's kind."""
    try:
        return format_event(event.kind, event.message, event_data(event), names)
    except Exception:
        logger.exception("could not format engine event %s", event.kind)
        alert = EVENT_ALERT_KINDS.get(event.kind)
        return None if alert is None else (alert, f"ℹ️ {event.kind}: {event.message}")


MAX_MESSAGE_CHARS: Final = 4000  # Telegram's limit is 4096; longer texts go out in parts


def split_text(text: str, limit: int = MAX_MESSAGE_CHARS) -> list[str]:
    """Split a long text into parts of at most ``limit`` characters, at line breaks if possible."""
    if len(text) <= limit:
        return [text]
    parts: list[str] = []
    current = ""
    for line in text.split("\n"):
        while len(line) > limit:
            if current:
                parts.append(current)
                current = ""
            parts.append(line[:limit])
            line = line[limit:]
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) > limit:
            parts.append(current)
            current = line
        else:
            current = candidate
    if current:
        parts.append(current)
    return [p for p in parts if p.strip()]
