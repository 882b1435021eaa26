"""Contracts of rule components and the per-tick input they read.

* :class:`Trigger` — ``evaluate(tick) -> bool``: the event that makes a rule a candidate.
  It may declare indicator columns (:meth:`Trigger.columns`), computed once per stock over
  the whole history by ``RuleStrategy.indicators`` (causal: row *t* uses rows ≤ *t*).
* :class:`Condition` — ``evaluate(tick) -> bool``: an extra gate; all must hold.
* :class:`Action` — ``execute(tick) -> ActionResult``: a :class:`~framework.types.Signal`
  for the engine and/or a change of the :class:`ExecutionContext`.

Components are stateless; anything that must survive a tick lives in the context.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from framework.bars import Bars
from framework.types import PositionView, Signal
from strategies.rules.context import ExecutionContext, PositionState, StockState
from strategies.rules.registry import Component

if TYPE_CHECKING:
    from strategies.rules.engine import StrategyRule


@dataclass
class Tick:
    """Everything a component may read when one stock is evaluated.

    Attributes
    ----------
    code:
        6-character KRX code.
    bars:
        History up to the current bar (OHLCV in KRW / shares plus indicator columns).
    now:
        Time of the current bar (tz Asia/Seoul).
    state:
        READY or ACTIVE (see :mod:`strategies.rules.context`).
    position:
        The strategy's position in ``code`` or ``None`` when flat.
    context, stock:
        The strategy's context and this stock's part of it.
    cash_krw:
        Returns the account's orderable cash in KRW (asked only by buy actions).
    rule:
        The rule being evaluated (set by the engine before each rule).
    """

    code: str
    bars: Bars
    now: datetime
    state: PositionState
    position: PositionView | None
    context: ExecutionContext
    stock: StockState
    cash_krw: Callable[[], int] = lambda: 0
    rule: StrategyRule | None = None

    @property
    def price(self) -> float:
        """Close of the current bar (KRW)."""
        return self.bars.last("close")

    @property
    def profit_pct(self) -> float | None:
        """Return of the current close over the average price in %, ``None`` when flat."""
        if self.position is None or self.position.qty <= 0:
            return None
        return self.position.unrealized_pct(self.price)


class Trigger(Component):
    """An event on the market or the position. Subclasses implement :meth:`evaluate`."""

    def columns(self, frame: pd.DataFrame) -> Mapping[str, pd.Series]:
        """Indicator columns this trigger reads, computed over one stock's full history."""
        return {}

    def evaluate(self, tick: Tick) -> bool:
        raise NotImplementedError


class Condition(Component):
    """An extra gate on a rule. Subclasses implement :meth:`evaluate`."""

    def evaluate(self, tick: Tick) -> bool:
        raise NotImplementedError

    def rule_refs(self) -> list[str]:
        """Rule ids this condition refers to (checked at load)."""
        return []


@dataclass
class ActionResult:
    """What an action did: a signal for the engine and/or a context change (``note``)."""

    signal: Signal | None = None
    note: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def places_order(self) -> bool:
        return self.signal is not None


class Action(Component):
    """What a rule does. Subclasses implement :meth:`execute`.

    ``needs_position`` (class attribute): the action only makes sense when holding (sells,
    adds); the loader rejects it on a READY-only rule.
    """

    needs_position: bool = False
    places_orders: bool = True

    def execute(self, tick: Tick) -> ActionResult:
        raise NotImplementedError
