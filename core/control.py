"""The operator's controls of a running live session, shared by the dashboard and Telegram.

Every control takes the session's lock (it runs between two jobs, never inside one), is
journaled as an event naming who used it (``by``: ``dashboard``, ``telegram``, ``signal``)
and raises :class:`ControlError` with one line for the user when it cannot be done:

==========================  ==================================================================
control                     effect
==========================  ==================================================================
``set_state(state)``        ``active`` / ``halted`` (pause) / ``reduce_only`` (sells only)
``request_stop()``          the runner stops after the current job (``stop_requested``)
``switch(name, on)``        the strategy's on/off switch (:mod:`core.switches`), at once
``sell(code, strategy)``    sell at market every strategy's holding of ``code`` (or only
                            ``strategy``'s), also while paused; their open orders go first
``reload()``                :class:`core.reload.Reloader` (config.yaml and settings.yaml)
==========================  ==================================================================
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core.operator_events import StopRequested
from core.reload import Reloader, ReloadResult
from core.risk import TradingState
from framework.errors import KisTraderError
from framework.events import Event, StrategyDisabled, StrategyEnabled

if TYPE_CHECKING:
    from core.live import LiveSession


class ControlError(KisTraderError):
    """A control that cannot be done; the message says why."""


class Controls:
    """Controls of ``session``; ``reloader`` is needed for :meth:`reload`."""

    def __init__(self, session: LiveSession, reloader: Reloader | None = None):
        self.session = session
        self.reloader = reloader

    # --- reads --------------------------------------------------------------------------
    def strategies(self) -> list[dict[str, Any]]:
        """One row per strategy: ``name``, ``enabled`` (trades), ``file_enabled``
        (config.yaml), ``switch`` (``"on"``/``"off"`` or ``None``), ``active`` (not isolated),
        ``trades_today``, ``errors``, ``positions`` (count), ``value_krw``,
        ``unrealized_krw``, ``realized_krw``."""
        s = self.session
        with s.lock:
            positions = s.positions()
            realized: dict[str, int] = {}
            for trip in s.trader.round_trips():
                realized[trip.strategy] = realized.get(trip.strategy, 0) + trip.pnl_krw
            rows = []
            for slot in s.trader.slots.values():
                mine = [p for p in positions if p["strategy"] == slot.name]
                switch = s.switches.get(slot.name)
                in_force = switch is not None and (
                    switch.file_enabled == slot.strategy.config.enabled
                )
                rows.append({
                    "name": slot.name,
                    "enabled": slot.enabled,
                    "file_enabled": slot.strategy.config.enabled,
                    "switch": ("on" if switch.enabled else "off") if switch and in_force
                    else None,
                    "active": slot.active,
                    "trades_today": slot.trades_today,
                    "errors": slot.errors,
                    "positions": len(mine),
                    "value_krw": sum(round(p["qty"] * p["price"]) for p in mine),
                    "unrealized_krw": sum(p["pnl_krw"] for p in mine),
                    "realized_krw": realized.get(slot.name, 0),
                })
            return rows

    def status(self) -> dict[str, Any]:
        """:meth:`core.live.LiveSession.status`: mode, env, trading state, market, next
        event, equity and cash (KRW), one row per strategy."""
        with self.session.lock:
            return self.session.status()

    def positions(self) -> list[dict[str, Any]]:
        """:meth:`core.live.LiveSession.positions`, marked to the last quotes."""
        with self.session.lock:
            return self.session.positions()

    def pnl(self) -> dict[str, Any]:
        """Today's P&L (:meth:`core.live.LiveSession.pnl`)."""
        with self.session.lock:
            return self.session.pnl()

    def orders(self) -> list[dict[str, Any]]:
        """The open orders (:meth:`core.live.LiveSession.orders`)."""
        with self.session.lock:
            return self.session.orders()

    def daily_report(self) -> dict[str, Any]:
        """Today's report (:meth:`core.live.LiveSession.daily_report`)."""
        with self.session.lock:
            return self.session.daily_report(self.session.clock())

    def balance(self) -> dict[str, int]:
        """``cash_krw``, ``holdings_krw`` (marked to the last quotes), ``equity_krw``."""
        with self.session.lock:
            cash, equity = self.session.trader.cash_krw, self.session.trader.equity_krw()
        return {"cash_krw": cash, "holdings_krw": equity - cash, "equity_krw": equity}

    # --- writes -------------------------------------------------------------------------
    def set_state(self, state: str, by: str) -> str:
        try:
            value = TradingState(state)
        except ValueError:
            names = ", ".join(s.value for s in TradingState)
            message = f"unknown trading state {state!r}; expected one of {names}"
            raise ControlError(message) from None
        with self.session.lock:
            self.session.set_trading_state(value, by=by)
        return f"trading state {value.value}"

    def request_stop(self, by: str) -> str:
        self.session.trader.publish(StopRequested(
            at=self.session.clock(), message=f"stop requested ({by})", level="warning", by=by
        ))
        self.session.request_stop(f"stop requested ({by})")
        return "stopping after the current job"

    def switch(self, name: str, on: bool, by: str) -> str:
        s = self.session
        with s.lock:
            slot = s.trader.slots.get(name)
            if slot is None:
                known = ", ".join(s.trader.slots) or "none"
                raise ControlError(f"unknown strategy {name!r}; running: {known}")
            s.switches.set(name, on, slot.strategy.config.enabled, by, s.clock())
            slot.enabled = on
            s.repository.upsert_strategy(name, on, slot.strategy.config.model_dump(mode="json"))
            word = "on" if on else "off"
            message = f"{name} switched {word} ({by})"
            event: Event = (
                StrategyEnabled(at=s.clock(), message=message, level="warning", strategy=name,
                                by=by)
                if on else
                StrategyDisabled(at=s.clock(), message=message, level="warning", strategy=name,
                                 reason=f"switched off ({by})")
            )
            s.trader.publish(event)
        return f"{name} switched {word}"

    def holdings_of(self, code: str, strategy: str | None = None) -> list[dict[str, Any]]:
        """The positions :meth:`sell` would sell (``strategy``, ``code``, ``qty``,
        ``price``); empty when none."""
        return [
            p for p in self.positions()
            if p["code"] == code and (strategy is None or p["strategy"] == strategy)
        ]

    def sell(self, code: str, strategy: str | None, by: str) -> str:
        """Sell now, at market; raises :class:`ControlError` when nothing is held."""
        s = self.session
        with s.lock:
            targets = [
                p for p in s.trader.open_positions()
                if p.stock_code == code and (strategy is None or p.strategy == strategy)
            ]
            if not targets:
                whose = f" by {strategy}" if strategy else ""
                raise ControlError(f"{code} is not held{whose}")
            sent: list[str] = []
            waiting: list[str] = []
            for pos in targets:
                order = s.trader.sell_position(pos.strategy, code, reason="manual")
                (sent if order is not None else waiting).append(pos.strategy)
        parts = []
        if sent:
            parts.append(f"sell of {code} sent for {', '.join(sent)}")
        if waiting:
            parts.append(f"{', '.join(waiting)}: an exit is working or open orders are being "
                         "cancelled first")
        return "; ".join(parts)

    def reload(self, by: str) -> ReloadResult:
        if self.reloader is None:
            raise ControlError("reload is not available in this process")
        return self.reloader.reload(by)


__all__ = ["ControlError", "Controls"]
