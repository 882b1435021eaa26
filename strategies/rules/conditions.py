"""Built-in conditions: extra gates of a rule (all of a rule's conditions must hold).

The overtrading controls (``cooldown``, ``max_trades_today``, ``stronger_reentry``) use the
same functions as the Python-side classes in :mod:`strategies.rules.overtrading`.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Literal

from pydantic import Field, model_validator

from strategies.rules.base import Condition, Tick
from strategies.rules.context import FlagValue
from strategies.rules.overtrading import bars_since, cooldown_elapsed, is_recent, stronger_entry_ok
from strategies.rules.registry import ComponentParams, register

_OPS: dict[str, Callable[[int, int], bool]] = {
    "lt": operator.lt, "le": operator.le, "eq": operator.eq,
    "ne": operator.ne, "ge": operator.ge, "gt": operator.gt,
}


@register("condition", "execution_count")
class ExecutionCount(Condition):
    """How often a rule ran, compared with ``value``: ``count <op> value``.

    ``rule``: the rule id (default: the rule this condition belongs to). ``window``:
    ``cycle`` (since the position opened; reset when it closes), ``day`` or ``total``.
    A rule that places orders counts when its order is filled (first fill); a rule that
    only changes the context counts when it runs.
    """

    class Params(ComponentParams):
        rule: str | None = None
        op: Literal["lt", "le", "eq", "ne", "ge", "gt"] = "lt"
        value: int = Field(1, ge=0)
        window: Literal["cycle", "day", "total"] = "cycle"

    def rule_refs(self) -> list[str]:
        return [self.params.rule] if self.params.rule else []

    def evaluate(self, tick: Tick) -> bool:
        rule_id = self.params.rule or (tick.rule.id if tick.rule else "")
        count = tick.stock.count(rule_id, self.params.window)
        return _OPS[self.params.op](count, self.params.value)


@register("condition", "context_flag")
class ContextFlag(Condition):
    """A context flag equals ``equals`` (a flag never set reads as ``default``).

    ``scope: stock`` reads the flag of the stock being evaluated, ``strategy`` the
    strategy-wide one.
    """

    class Params(ComponentParams):
        flag: str = Field(min_length=1)
        equals: FlagValue = True
        default: FlagValue = False
        scope: Literal["stock", "strategy"] = "stock"

    def evaluate(self, tick: Tick) -> bool:
        code = tick.code if self.params.scope == "stock" else None
        value = tick.context.get_flag(self.params.flag, code, self.params.default)
        return value == self.params.equals


@register("condition", "position_state")
class PositionStateIs(Condition):
    """The stock's position state is ``state`` (``READY`` = flat, ``ACTIVE`` = holding),
    optionally holding at least ``min_qty`` shares."""

    class Params(ComponentParams):
        state: Literal["READY", "ACTIVE"] = "ACTIVE"
        min_qty: int = Field(0, ge=0)

    def evaluate(self, tick: Tick) -> bool:
        if tick.state.value != self.params.state:
            return False
        qty = tick.position.qty if tick.position else 0
        return qty >= self.params.min_qty


@register("condition", "cooldown")
class CooldownCondition(Condition):
    """True when the stock was never exited, or the cooldown after its last full exit is
    over: at least ``bars`` bars and/or ``seconds`` seconds (at least one is required)."""

    class Params(ComponentParams):
        bars: int | None = Field(None, ge=1)
        seconds: int | None = Field(None, ge=1)

        @model_validator(mode="after")
        def _some(self) -> CooldownCondition.Params:
            if self.bars is None and self.seconds is None:
                raise ValueError("give bars and/or seconds")
            return self

    def evaluate(self, tick: Tick) -> bool:
        last = tick.stock.last_exit_at
        if last is None:
            return True
        n = bars_since(tick.bars.index, last) if self.params.bars is not None else None
        return cooldown_elapsed(last, tick.now, seconds=self.params.seconds,
                                bars_since_exit=n, bars=self.params.bars)


@register("condition", "max_trades_today")
class MaxTradesToday(Condition):
    """Fewer than ``max_trades`` orders filled today — for this stock (``scope: stock``) or
    over all stocks of the strategy (``scope: strategy``)."""

    class Params(ComponentParams):
        max_trades: int = Field(4, ge=1)
        scope: Literal["stock", "strategy"] = "stock"

    def evaluate(self, tick: Tick) -> bool:
        if self.params.scope == "stock":
            done = tick.stock.orders_today
        else:
            done = sum(st.orders_today for st in tick.context.stocks.values())
        return done < self.params.max_trades


@register("condition", "stronger_reentry")
class StrongerReentry(Condition):
    """A re-entry needs a stronger bar; a first entry passes.

    A re-entry is an entry while the stock's previous entry is within ``window_s`` seconds
    (``None``: on the same day). It then needs a close ≥ ``min_breakout_pct`` % over the
    highest high of the previous ``lookback`` bars and/or volume ≥ ``min_volume_ratio`` ×
    their mean (each threshold that is set).
    """

    class Params(ComponentParams):
        min_breakout_pct: float | None = 2.0
        min_volume_ratio: float | None = Field(2.0, gt=0)
        lookback: int = Field(20, ge=1)
        window_s: int | None = Field(None, ge=1)

        @model_validator(mode="after")
        def _some(self) -> StrongerReentry.Params:
            if self.min_breakout_pct is None and self.min_volume_ratio is None:
                raise ValueError("give min_breakout_pct and/or min_volume_ratio")
            return self

    def evaluate(self, tick: Tick) -> bool:
        p = self.params
        if not is_recent(tick.stock.last_entry_at, tick.now, p.window_s):
            return True
        b = tick.bars
        return stronger_entry_ok(b.close, b.high, b.volume, min_breakout_pct=p.min_breakout_pct,
                                 min_volume_ratio=p.min_volume_ratio, lookback=p.lookback)
