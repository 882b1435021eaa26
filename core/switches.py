"""Strategy on/off switches that take effect at once and survive a restart.

A switch is set from the dashboard or Telegram (``/strategy NAME on|off``). It overrides
``enabled`` of the strategy's ``config.yaml`` **until ``enabled`` itself is changed in the
file**: the switch remembers the file's value when it was set, and as soon as the file says
something else (at a restart or a reload) the file wins and the switch is dropped.

========================  ==================  ============  =========================
file ``enabled``          switch set with      switch        strategy trades
========================  ==================  ============  =========================
true                      file true            off           no
true → false (edited)     file true            (dropped)     no (the file's false)
false                     file false           on            yes
false → true (edited)     file false           (dropped)     yes (the file's true)
========================  ==================  ============  =========================

A switched-off strategy is asked for no signal and so sends no new order; the protective
exits (stop loss, take profit, trailing stop, time cut) of its open positions keep working,
and "sell now" still sells them. Switches are stored in the engine state of the book
(``journal.save_state("switch:<name>")``) and every change is journaled as an event
(``strategy_switched``, ``strategy_switch_dropped``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

PREFIX = "switch:"


class StateStore(Protocol):
    """The engine-state part of a journal (:class:`core.journal.DatabaseJournal`)."""

    def save_state(self, name: str, state: dict[str, Any]) -> None: ...

    def load_state(self, name: str) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Switch:
    """One stored switch: ``enabled`` set by ``by`` at ``at`` while the file said
    ``file_enabled``."""

    enabled: bool
    file_enabled: bool
    by: str
    at: str

    def to_json(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "file_enabled": self.file_enabled, "by": self.by,
                "at": self.at}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Switch | None:
        if not isinstance(data.get("enabled"), bool) or not isinstance(
            data.get("file_enabled"), bool
        ):
            return None
        return cls(data["enabled"], data["file_enabled"], str(data.get("by", "")),
                   str(data.get("at", "")))


class StrategySwitches:
    """Reads and writes the switches of one book; see the module docstring."""

    def __init__(self, store: StateStore):
        self.store = store

    def get(self, name: str) -> Switch | None:
        return Switch.from_json(self.store.load_state(PREFIX + name))

    def effective(
        self, name: str, file_enabled: bool, *, drop: bool = True
    ) -> tuple[bool, Switch | None, bool]:
        """Whether ``name`` trades given the file's ``enabled``: ``(enabled, switch in
        force or None, dropped)``; ``dropped`` is True when a stored switch is overtaken
        because the file's ``enabled`` changed since it was set (cleared unless
        ``drop=False``)."""
        switch = self.get(name)
        if switch is None:
            return file_enabled, None, False
        if switch.file_enabled != file_enabled:
            if drop:
                self.store.save_state(PREFIX + name, {})
            return file_enabled, None, True
        return switch.enabled, switch, False

    def set(self, name: str, enabled: bool, file_enabled: bool, by: str, at: datetime) -> Switch:
        """Store the switch of ``name`` (``file_enabled``: the file's value now)."""
        switch = Switch(enabled, file_enabled, by, at.isoformat())
        self.store.save_state(PREFIX + name, switch.to_json())
        return switch


__all__ = ["PREFIX", "StateStore", "StrategySwitches", "Switch"]
