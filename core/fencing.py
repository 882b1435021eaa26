"""Fencing of strategy code: the error that disables a strategy and where a failure happened.

Used by :class:`core.trader.Trader`, whose ``_call`` runs every strategy hook.
"""

from __future__ import annotations

import inspect
import logging
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from framework.errors import StrategyError

logger = logging.getLogger("core.trader")


class StrategyDisabledError(StrategyError):
    """A strategy failed ``errors`` times in a row in ``hook`` and was disabled.

    ``str()`` is the one line shown to the user, e.g. ``strategy sma_x disabled after 3
    errors in generate_signal: AttributeError: 'numpy.ndarray' object has no attribute
    'rolling' (strategies/sma_x/strategy.py:41)``; ``where`` is the ``file:line`` in the
    strategy's code (or the innermost frame) of the last failure.
    """

    def __init__(self, strategy: str, hook: str, errors: int, error: BaseException, where: str):
        self.error_text = f"{type(error).__name__}: {error}"
        super().__init__(strategy, hook, error)
        self.args = (
            f"strategy {strategy} disabled after {errors} errors in {hook}: "
            f"{self.error_text} ({where})",
        )
        self.errors, self.where = errors, where


class HookFailures:
    """Failures in a row of one strategy's hooks: per hook across the stocks (key ``hook``)
    and per hook and stock (key ``hook:code``). A success of a hook ends its runs (on that
    stock); another hook's success does not. A strategy that fails on every stock and a
    strategy that fails on one stock only both reach their limit."""

    __slots__ = ("_traced", "streaks")

    def __init__(self) -> None:
        self.streaks: Counter[str] = Counter()
        self._traced: set[tuple[str, str, str]] = set()

    def __bool__(self) -> bool:
        return bool(self.streaks)

    @property
    def longest(self) -> int:
        return max(self.streaks.values(), default=0)

    def succeeded(self, hook: str, code: str | None) -> None:
        self.streaks.pop(hook, None)
        if code is not None:
            self.streaks.pop(f"{hook}:{code}", None)

    def failed(
        self, strategy: Any, hook: str, exc: BaseException, code: str | None
    ) -> tuple[int, str]:
        """Count and log one failure; returns (its run length, ``file:line``).

        The traceback is logged (ERROR) once per hook, exception type and place; a repeat is
        one INFO line."""
        keys = [hook] if code is None else [hook, f"{hook}:{code}"]
        for key in keys:
            self.streaks[key] += 1
        streak = max(self.streaks[k] for k in keys)
        where = failure_place(type(strategy), exc)
        text = f"{type(exc).__name__}: {exc}"
        on = f" on {code}" if code else ""
        signature = (hook, type(exc).__name__, where)
        if signature not in self._traced:
            self._traced.add(signature)
            logger.error(
                "strategy %s failed in %s%s (%s): %s",
                strategy.name,
                hook,
                on,
                where,
                text,
                exc_info=(type(exc), exc, exc.__traceback__),
            )
        else:  # the journal has every failure; the log repeats it at INFO (-v)
            logger.info(
                "strategy %s failed again in %s%s (%d in a row): %s",
                strategy.name,
                hook,
                on,
                streak,
                text,
            )
        return streak, where


def indicator_column(values: Any) -> np.ndarray | None:
    """``values`` as a float64 array, or ``None`` when they are not numbers."""
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        return None


def failure_place(strategy_cls: type, exc: BaseException) -> str:
    """``file:line`` of the failure: the innermost frame in the strategy's own folder, else
    the innermost frame; the file relative to the working directory when under it."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "unknown place"
    try:
        home = Path(inspect.getfile(strategy_cls)).resolve().parent
    except (TypeError, OSError):
        home = None
    chosen = frames[-1]
    if home is not None:
        for frame in reversed(frames):
            if Path(frame.filename).resolve().is_relative_to(home):
                chosen = frame
                break
    path = Path(chosen.filename)
    try:
        shown = str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        shown = str(path)
    return f"{shown}:{chosen.lineno}"
