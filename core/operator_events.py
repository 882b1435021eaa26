"""Events of the operator's controls (:mod:`core.control`, :mod:`core.reload`,
:mod:`core.switches`), journaled like every engine event (:mod:`framework.events`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from framework.events import Event


@dataclass(frozen=True, kw_only=True, slots=True)
class SwitchDropped(Event):
    """``enabled`` changed in config.yaml: the strategy's stored switch no longer holds."""

    kind: ClassVar[str] = "strategy_switch_dropped"

    enabled: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class ConfigReloaded(Event):
    """A reload applied; ``changes`` says what changed (empty: nothing)."""

    kind: ClassVar[str] = "config_reloaded"

    by: str
    changes: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class ReloadRefused(Event):
    """A reload was refused; the old configuration stays."""

    kind: ClassVar[str] = "reload_refused"

    by: str
    error: str


@dataclass(frozen=True, kw_only=True, slots=True)
class StopRequested(Event):
    """An operator asked the bot to stop."""

    kind: ClassVar[str] = "stop_requested"

    by: str


__all__ = ["ConfigReloaded", "ReloadRefused", "StopRequested", "SwitchDropped"]
