"""Run-time reload of the strategies' ``config.yaml`` and ``config/settings.yaml``.

``/reload`` (Telegram), the dashboard's reload button and ``SIGHUP`` all call
:meth:`Reloader.reload`. Everything is read and validated first; only when every file is
valid is anything applied, under the session's lock (between two jobs):

* a strategy whose ``config.yaml`` changed gets a new instance with the new parameters,
  universe, risk management and allocation (``on_init`` is called on it); its open positions,
  trade counts and stored state are kept;
* ``enabled`` follows :mod:`core.switches` (a changed ``enabled`` in the file drops a switch);
* a new strategy folder is added; a folder that disappeared switches its strategy off (its
  positions stay in the book and keep their exits);
* from ``settings.yaml``: the global risk limits and the order timeouts apply at once; the
  schedule's intervals from the next trading day's plan.

A file that does not validate (a typo, a bad value, a broken ``strategy.py``) refuses the whole
reload: the error is returned and journaled (``reload_refused``), and trading goes on with
the old configuration. A new, broken folder that no running strategy comes from is reported
and skipped, as at start-up.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from config.settings import Settings, load_settings
from core.live import risk_limits
from core.operator_events import ConfigReloaded, ReloadRefused
from core.order_manager import OrderPolicy
from framework.errors import KisTraderError
from strategies.base import BaseStrategy
from strategies.config import StrategyLoader

if TYPE_CHECKING:
    from core.live import LiveSession

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReloadResult:
    """What a reload did: ``ok`` False means it was refused and nothing changed."""

    ok: bool
    message: str
    changes: tuple[str, ...] = ()
    skipped: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "message": self.message, "changes": list(self.changes),
                "skipped": list(self.skipped)}


class Reloader:
    """Reloads the configuration of ``session`` from ``strategies_dir`` and
    ``settings_path`` (``None``: ``config/settings.yaml``, as at start)."""

    def __init__(self, session: LiveSession, strategies_dir: Path,
                 settings_path: Path | None = None):
        self.session = session
        self.strategies_dir = strategies_dir
        self.settings_path = settings_path

    def reload(self, by: str) -> ReloadResult:
        """Re-read and apply; never raises for bad files (see the module docstring)."""
        try:
            settings, fresh, skipped = self._read()
        except KisTraderError as exc:
            return self._refuse(str(exc), by)
        except Exception as exc:  # a strategy's constructor: user code
            return self._refuse(f"{type(exc).__name__}: {exc}", by)
        with self.session.lock:
            changes = self._apply(settings, fresh)
        message = "configuration reloaded: " + ("; ".join(changes) if changes else "no change")
        self.session.trader.publish(ConfigReloaded(
            at=self.session.clock(), message=message, by=by, changes=tuple(changes),
            skipped=tuple(skipped),
        ))
        logger.info("%s", message)
        return ReloadResult(True, message, tuple(changes), tuple(skipped))

    def _refuse(self, error: str, by: str) -> ReloadResult:
        message = f"reload refused, the old configuration stays: {error}"
        logger.warning("%s", message)
        self.session.trader.publish(ReloadRefused(
            at=self.session.clock(), message=message, level="warning", by=by, error=error
        ))
        return ReloadResult(False, message)

    def _read(self) -> tuple[Settings, dict[str, BaseStrategy], list[str]]:
        """Validate everything; raises ``ConfigError`` (or what a constructor raises)."""
        settings = load_settings(self.settings_path)
        running = set(self.session.trader.slots)
        fresh: dict[str, BaseStrategy] = {}
        skipped: list[str] = []
        for item in StrategyLoader(root=self.strategies_dir).discover():
            if not item.ok:
                if item.name in running:
                    raise KisTraderError(f"strategy {item.name}: {item.error}")
                skipped.append(f"{item.name}: {item.error}")
                continue
            fresh[item.name] = item.create()
        return settings, fresh, skipped

    def _apply(self, settings: Settings, fresh: dict[str, BaseStrategy]) -> list[str]:
        session, trader = self.session, self.session.trader
        changes: list[str] = []
        for name, strategy in fresh.items():
            slot = trader.slots.get(name)
            new_config = strategy.config.model_dump(mode="json")
            added = slot is None
            if slot is not None and slot.strategy.config.model_dump(mode="json") == new_config:
                continue
            before = slot.enabled if slot is not None else None
            slot = trader.install(strategy, enabled=before if before is not None else True)
            changes.append(f"{name} added" if added else f"{name} config changed")
            session.apply_switch(slot)
            if slot.enabled != before:
                changes.append(f"{name} {'on' if slot.enabled else 'off'}")
            session.repository.upsert_strategy(name, slot.enabled, new_config)
        for name, slot in trader.slots.items():
            if name not in fresh and slot.enabled:
                slot.enabled = False
                changes.append(f"{name} off (its folder is gone)")
        if settings.risk != session.settings.risk:
            session.risk.limits = risk_limits(settings)
            changes.append("risk limits")
        orders = settings.live.orders
        if orders != session.settings.live.orders:
            trader.order_policy = OrderPolicy(
                orders.buy_timeout_s, orders.sell_timeout_s, orders.max_replacements
            )
            changes.append("order timeouts")
        if settings.live.schedule != session.settings.live.schedule:
            changes.append("schedule (from the next trading day)")
        session.settings = settings
        return changes


__all__ = ["ReloadResult", "Reloader"]
