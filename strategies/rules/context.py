"""Per-strategy state of the rule engine: position state machine, flags and counters.

Each :class:`~strategies.rules.strategy.RuleStrategy` instance owns one
:class:`ExecutionContext`; nothing is shared between strategies, so one strategy's
``pyramiding_paused`` flag never affects another. The context is plain data and can be
saved to / restored from a JSON file (:meth:`ExecutionContext.save`,
:meth:`ExecutionContext.load`), written atomically (temporary file + ``os.replace``).

Position state machine, per stock::

    READY --first buy fill--> ACTIVE --position back to 0 shares--> CLOSED --next tick--> READY

Leaving CLOSED starts a new *cycle*: per-cycle execution counts, the trailing-stop peak and
flags set with ``reset_on: exit`` are cleared. Exit time and price are kept for cooldown
and re-entry rules.
"""

from __future__ import annotations

import enum
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

FlagValue = bool | int | float | str
STATE_VERSION = 1


class PositionState(enum.Enum):
    """Where a stock is in its trade cycle (see the module docstring)."""

    READY = "READY"
    ACTIVE = "ACTIVE"
    CLOSED = "CLOSED"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


@dataclass
class StockState:
    """Rule-engine state of one stock inside one strategy.

    Attributes
    ----------
    state:
        :class:`PositionState`.
    cycle:
        Number of the current trade cycle (starts at 0, +1 each time CLOSED → READY).
    counts_cycle, counts_day, counts_total:
        Rule id → executions in this cycle / today / ever (see ``ExecutionContext.record``).
    entries_today, orders_today:
        Buy orders filled today that opened a position; orders of any side filled today.
    last_entry_at, last_exit_at:
        Time of the last position opening / full exit (tz-aware).
    last_exit_price, last_sell_price:
        KRW per share of the last full exit / of the last sell fill (partial or full).
    peak_price:
        Highest close (KRW) seen while ACTIVE in this cycle (for trailing stops).
    trailing_pct:
        Trail in percent armed by the ``arm_trailing_stop`` action, or ``None``.
    flags:
        Stock-scoped context flags.
    """

    state: PositionState = PositionState.READY
    cycle: int = 0
    counts_cycle: dict[str, int] = field(default_factory=dict)
    counts_day: dict[str, int] = field(default_factory=dict)
    counts_total: dict[str, int] = field(default_factory=dict)
    entries_today: int = 0
    orders_today: int = 0
    last_entry_at: datetime | None = None
    last_exit_at: datetime | None = None
    last_exit_price: float | None = None
    last_sell_price: float | None = None
    peak_price: float | None = None
    trailing_pct: float | None = None
    flags: dict[str, FlagValue] = field(default_factory=dict)

    def count(self, rule_id: str, window: str = "cycle") -> int:
        """Executions of ``rule_id`` in ``window`` (``cycle``, ``day`` or ``total``)."""
        table = {"cycle": self.counts_cycle, "day": self.counts_day, "total": self.counts_total}
        return table[window].get(rule_id, 0)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = self.state.value
        for key in ("last_entry_at", "last_exit_at"):
            data[key] = _iso(getattr(self, key))
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StockState:
        data = dict(data)
        data["state"] = PositionState(data.get("state", "READY"))
        for key in ("last_entry_at", "last_exit_at"):
            data[key] = _dt(data.get(key))
        return cls(**data)


@dataclass
class ExecutionContext:
    """Flags and counters of one strategy: a scratch pad shared by its rules.

    ``flags`` are strategy-scoped; ``stocks[code].flags`` stock-scoped. ``reset_on`` maps a
    flag name to when it is cleared automatically: ``"exit"`` (when that stock's cycle ends;
    strategy-scoped flags when any position closes) or ``"day"`` (at the first tick of a new
    trading day). ``day`` is the trading date the day counters belong to.
    """

    flags: dict[str, FlagValue] = field(default_factory=dict)
    stocks: dict[str, StockState] = field(default_factory=dict)
    reset_on: dict[str, str] = field(default_factory=dict)
    day: date | None = None

    # --- access ------------------------------------------------------------------------
    def stock(self, code: str) -> StockState:
        """State of ``code`` (created READY on first use)."""
        st = self.stocks.get(code)
        if st is None:
            st = self.stocks[code] = StockState()
        return st

    def get_flag(self, name: str, code: str | None = None, default: FlagValue = False) -> FlagValue:
        """Value of a flag: stock-scoped when ``code`` is given, else strategy-scoped."""
        table = self.flags if code is None else self.stock(code).flags
        return table.get(name, default)

    def set_flag(self, name: str, value: FlagValue, code: str | None = None,
                 reset_on: str | None = None) -> None:
        """Set a flag (stock-scoped when ``code`` is given); see ``reset_on`` above."""
        table = self.flags if code is None else self.stock(code).flags
        table[name] = value
        if reset_on and reset_on != "never":
            self.reset_on[name] = reset_on

    def clear_flag(self, name: str, code: str | None = None) -> None:
        table = self.flags if code is None else self.stock(code).flags
        table.pop(name, None)

    # --- transitions ---------------------------------------------------------------------
    def roll_day(self, today: date) -> bool:
        """Start a new trading day: reset day counters and ``reset_on: day`` flags."""
        if self.day == today:
            return False
        self.day = today
        for st in self.stocks.values():
            st.counts_day.clear()
            st.entries_today = 0
            st.orders_today = 0
            self._reset_flags(st.flags, "day")
        self._reset_flags(self.flags, "day")
        return True

    def _reset_flags(self, table: dict[str, FlagValue], when: str) -> None:
        for name in [n for n in table if self.reset_on.get(n) == when]:
            del table[name]

    def sync(self, code: str, qty: int, price: float, now: datetime) -> PositionState:
        """Advance the state machine of ``code`` from the engine's position (``qty`` shares).

        Called at the start of each tick, before the rules are evaluated. Returns the state
        the rules see: READY or ACTIVE (CLOSED is left here and a new cycle starts).
        """
        st = self.stock(code)
        if qty > 0:
            if st.state is not PositionState.ACTIVE:
                self._open(st, now)
            st.peak_price = price if st.peak_price is None else max(st.peak_price, price)
            return st.state
        if st.state is PositionState.ACTIVE:  # closed without our fill callback
            self._close(st, now, price)
        if st.state is PositionState.CLOSED:
            self._new_cycle(st)
        return st.state

    def _open(self, st: StockState, now: datetime) -> None:
        if st.state is PositionState.CLOSED:
            self._new_cycle(st)
        st.state = PositionState.ACTIVE
        st.last_entry_at = now

    def _close(self, st: StockState, now: datetime, price: float) -> None:
        st.state = PositionState.CLOSED
        st.last_exit_at = now
        st.last_exit_price = price

    def _new_cycle(self, st: StockState) -> None:
        st.state = PositionState.READY
        st.cycle += 1
        st.counts_cycle.clear()
        st.peak_price = None
        st.trailing_pct = None
        self._reset_flags(st.flags, "exit")
        self._reset_flags(self.flags, "exit")

    def record(self, code: str, rule_id: str) -> None:
        """Count one execution of ``rule_id`` on ``code`` (cycle, day and total)."""
        st = self.stock(code)
        for table in (st.counts_cycle, st.counts_day, st.counts_total):
            table[rule_id] = table.get(rule_id, 0) + 1

    def on_fill(self, code: str, *, buy: bool, price: float, qty_after: int,
                now: datetime, first_fill_of_order: bool) -> None:
        """Apply one of our fills: counters, entry/exit times, READY→ACTIVE→CLOSED."""
        st = self.stock(code)
        if first_fill_of_order:
            st.orders_today += 1
        if buy:
            if st.state is not PositionState.ACTIVE and qty_after > 0:
                self._open(st, now)
                if first_fill_of_order:
                    st.entries_today += 1
            return
        st.last_sell_price = price
        if qty_after == 0 and st.state is PositionState.ACTIVE:
            self._close(st, now, price)

    # --- persistence -------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "day": self.day.isoformat() if self.day else None,
            "flags": dict(self.flags),
            "reset_on": dict(self.reset_on),
            "stocks": {code: st.to_json() for code, st in sorted(self.stocks.items())},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExecutionContext:
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported context version {data.get('version')!r}")
        return cls(
            flags=dict(data.get("flags", {})),
            stocks={c: StockState.from_json(s) for c, s in data.get("stocks", {}).items()},
            reset_on=dict(data.get("reset_on", {})),
            day=date.fromisoformat(data["day"]) if data.get("day") else None,
        )

    def save(self, path: Path) -> None:
        """Write the context as JSON to ``path`` atomically (parent folders created)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.to_json(), ensure_ascii=False, indent=1, sort_keys=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: Path) -> ExecutionContext:
        """Read a context saved by :meth:`save`; an empty context when ``path`` is missing.

        Raises ``ValueError`` for a file that is not a context of this version.
        """
        if not path.is_file():
            return cls()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON: {exc}") from exc
        return cls.from_json(data)
