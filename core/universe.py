"""Universe screening: which codes a strategy trades today (``universe:`` as a screen).

Run before each open, live (:class:`core.live.LiveSession`, the ``open`` job) and in a
backtest (:class:`core.backtest.Backtester`, before a day's first bar), for every strategy
whose config has a ``universe_screen`` (:class:`strategies.config.UniverseScreen`):

==============  ===============================================  ==========================
screen          live                                             backtest
==============  ===============================================  ==========================
``volume_rank`` KIS volume ranking (FHPST01710000, real only;    candidates ranked by the
                virtual: the backtest rule, with a warning)      previous day's volume
``condition``   the saved HTS condition (psearch, real only,     not possible (KIS keeps no
                ``KIS_HTS_ID``); virtual: candidates, warning     history): an error
``hook``        ``strategy.select_universe(day, data)``           the same, ``data`` = bars
                                                                 up to the previous close
==============  ===============================================  ==========================

The result is cut to ``cap`` codes, then ``include`` and the strategy's current holdings are
added: a position is never orphaned (its exits and the strategy's sell signals still run).
An empty screen, an unknown code or a failing screen is one warning event and the day goes
on with the includes and holdings. :attr:`UniverseScreens.history` keeps every day's
universe per strategy (the backtest writes it to ``universe.csv``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime
from typing import Any

import pandas as pd

from framework.errors import KisTraderError
from framework.events import Event as EngineEvent
from framework.events import Level, UniverseNote
from framework.types import validate_code

LiveScreen = Callable[[str, Any], list[str]]
"""``f(kind, screen) -> codes`` asking KIS (``kind`` ``volume_rank`` or ``condition``)."""



def rank_by_volume(data: Mapping[str, pd.DataFrame], codes: Iterable[str]) -> list[str]:
    """``codes`` ranked by the volume of their last bar in ``data``, highest first (codes
    without bars are left out; ties by code)."""
    scored = []
    for code in codes:
        frame = data.get(code)
        if frame is not None and len(frame):
            scored.append((-int(frame["volume"].iloc[-1]), code))
    return [code for _, code in sorted(scored)]


class UniverseScreens:
    """The screens of a set of strategy slots (``slots``: name → slot with ``.strategy``).

    Parameters
    ----------
    slots:
        The trader's slots; only strategies with ``config.universe_screen`` are screened.
    holdings:
        ``f(strategy_name) -> codes`` the strategy holds now.
    publish:
        The engine's event publisher: a failed, empty or bad screen is one
        :class:`~framework.events.UniverseNote`.
    clock:
        The engine's clock (tz-aware, Asia/Seoul).
    live_screen:
        KIS screens for live trading; ``None`` in a backtest.
    """

    def __init__(self, slots: Mapping[str, Any], holdings: Callable[[str], Iterable[str]],
                 publish: Callable[[EngineEvent], object], clock: Callable[[], datetime],
                 live_screen: LiveScreen | None = None) -> None:
        self.slots = {n: s for n, s in slots.items()
                      if getattr(s.strategy.config, "universe_screen", None) is not None}
        self.holdings = holdings
        self.publish = publish
        self.clock = clock
        self.live_screen = live_screen
        self.history: dict[str, dict[date, tuple[str, ...]]] = {n: {} for n in self.slots}
        self.today: dict[str, frozenset[str]] = {}

    def note(self, strategy: str, message: str, level: Level) -> None:
        self.publish(UniverseNote(at=self.clock(), message=message, level=level,
                                  strategy=strategy))

    def __bool__(self) -> bool:
        return bool(self.slots)

    def check_backtest(self) -> None:
        """``ConfigError`` for a screen a backtest cannot replay (condition search)."""
        from framework.errors import ConfigError

        for name, slot in self.slots.items():
            if slot.strategy.config.universe_screen.screen == "condition":
                raise ConfigError(f"{name}: universe screen 'condition' (HTS 조건검색) has no "
                                  "history at KIS, so a backtest cannot replay it; backtest "
                                  "with a volume_rank or hook screen")

    def reset(self) -> None:
        """Every screened strategy back to its whole pool (before loading live history)."""
        for slot in self.slots.values():
            slot.strategy.universe = tuple(slot.strategy.config.universe)

    def run(self, day: date, data: Mapping[str, pd.DataFrame]) -> dict[str, tuple[str, ...]]:
        """Screen every strategy for ``day`` on ``data`` (bars up to the previous close) and
        set ``strategy.universe``; returns name → today's universe."""
        out: dict[str, tuple[str, ...]] = {}
        for name, slot in self.slots.items():
            strategy = slot.strategy
            screen = strategy.config.universe_screen
            pool = [c for c in screen.candidates if c in data] or list(screen.candidates)
            try:
                picked = self._pick(name, strategy, screen, day, data, pool)
            except KisTraderError as exc:
                self.note(name, f"{name}: screen {screen.screen} failed on {day}: "
                                       f"{exc}; trading its includes and holdings", "warning")
                picked = []
            except Exception as exc:  # a strategy's hook: its failure stays its own
                self.note(name, f"{name}: select_universe failed on {day}: "
                                       f"{type(exc).__name__}: {exc}", "error")
                picked = []
            good: list[str] = []
            for code in picked:
                try:
                    validate_code(str(code))
                except ValueError:
                    self.note(name, f"{name}: screen gave {code!r}, not a KRX code; "
                                           "skipped", "warning")
                    continue
                good.append(str(code))
            if not good:
                self.note(name, f"{name}: the {screen.screen} screen is empty on "
                                       f"{day}; trading its includes and holdings", "warning")
            held = sorted(self.holdings(name))
            codes = tuple(dict.fromkeys([*good[: screen.cap], *screen.include, *held]))
            strategy.universe = codes
            self.today[name] = frozenset(codes)
            self.history[name][day] = codes
            out[name] = codes
        return out

    def _pick(self, name: str, strategy: Any, screen: Any, day: date,
              data: Mapping[str, pd.DataFrame], pool: list[str]) -> list[str]:
        if screen.screen == "hook":
            view = {c: data[c] for c in pool if c in data}
            return list(strategy.select_universe(day, view) or [])
        if self.live_screen is None:
            return rank_by_volume(data, pool)
        return self.live_screen(screen.screen, screen)

    def rows(self) -> list[dict[str, object]]:
        """``date, strategy, codes`` rows of :attr:`history` (codes space-separated)."""
        return [{"date": d.isoformat(), "strategy": name, "codes": " ".join(codes)}
                for name, days in self.history.items() for d, codes in sorted(days.items())]
