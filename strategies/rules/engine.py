"""Rules and the engine that runs them for one strategy.

A rule in ``config.yaml``::

    - id: rsi_entry            # unique in the strategy ([A-Za-z0-9_-])
      priority: 20             # lower wins; ties go to the rule written first
      activation: READY        # READY (flat) | ACTIVE (holding) | ANY
      trigger:   {type: rsi, params: {period: 14, op: below, value: 30}}
      conditions:              # optional; all must hold
        - {type: cooldown, params: {bars: 5}}
      action:    {type: buy, params: {cash_pct: 10}}

Each tick (one stock, one bar) :meth:`RuleEngine.tick`:

1. advances the stock's position state machine from the engine's position
   (:meth:`ExecutionContext.sync`) and rolls the day counters at a new date;
2. keeps the enabled rules whose ``activation`` matches the state (ANY always matches);
3. evaluates their trigger, then their conditions: every rule passing both is a candidate;
4. runs the action of the first candidate in (priority, file order); the other candidates
   are dropped for this tick (reported in the :class:`Decision`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, cast

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from framework.bars import Bars
from framework.types import PositionView, Signal
from strategies.rules.base import Action, ActionResult, Condition, Tick, Trigger
from strategies.rules.context import ExecutionContext, PositionState
from strategies.rules.registry import ComponentError, build

logger = logging.getLogger(__name__)

Activation = Literal["READY", "ACTIVE", "ANY"]


class RuleSpec(BaseModel):
    """The YAML shape of one rule (components are validated by the registry)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")
    priority: int = Field(10, ge=0)
    activation: Activation = "ANY"
    description: str = ""
    enabled: bool = True
    trigger: Any
    conditions: list[Any] = Field(default_factory=list)
    action: Any


@dataclass(frozen=True)
class StrategyRule:
    """One rule: when ``trigger`` fires and all ``conditions`` hold in a matching state,
    ``action`` runs — unless a rule of better (lower) ``priority`` is also a candidate."""

    id: str
    priority: int
    activation: Activation
    trigger: Trigger
    action: Action
    conditions: tuple[Condition, ...] = ()
    description: str = ""
    enabled: bool = True
    order: int = 0

    def matches(self, state: PositionState) -> bool:
        """True when the rule is active in ``state`` (READY or ACTIVE)."""
        return self.activation == "ANY" or self.activation == state.value

    def describe(self) -> str:
        """One line: priority, id, activation, trigger, conditions, action."""
        conds = " & ".join(c.describe() for c in self.conditions) or "-"
        off = " [disabled]" if not self.enabled else ""
        return (f"{self.priority:>3}  {self.id}  [{self.activation}]  "
                f"when {self.trigger.describe()}  if {conds}  then {self.action.describe()}{off}")


class RuleConfigError(ValueError):
    """A rule is invalid; ``key`` is ``rules[i] (id 'x').trigger.params.period`` style."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


def _label(i: int, raw: Any) -> str:
    rid = raw.get("id") if isinstance(raw, Mapping) else None
    return f"rules[{i}] (id '{rid}')" if rid else f"rules[{i}]"


def _spec_error(label: str, exc: ValidationError) -> RuleConfigError:
    errors = exc.errors()
    # an unknown key explains a "missing" one next to it (``triggers`` for ``trigger``)
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = ".".join(str(p) for p in err["loc"])
    key = f"{label}.{loc}" if loc else label
    if err["type"] == "extra_forbidden":
        name = str(err["loc"][-1])
        hint = ("a rule has exactly one trigger: use 'trigger' (split the logic into "
                "several rules)" if name in ("triggers", "actions") else
                f"valid keys: {', '.join(RuleSpec.model_fields)}")
        return RuleConfigError(key, f"unknown key; {hint}")
    if err["type"] == "missing":
        return RuleConfigError(key, "required key is missing")
    msg = err["msg"].removeprefix("Value error, ")
    return RuleConfigError(key, f"{msg} (got {err.get('input')!r})")


def compile_rules(raw_rules: Sequence[Any] | None) -> list[StrategyRule]:
    """Validate the ``rules:`` list of a config and build the rules (file order kept).

    Raises :class:`RuleConfigError` at the first problem: a rule that is not a mapping, an
    unknown or missing key, a list where one trigger/action is expected, an unknown
    component type, an invalid parameter, a duplicate id, a reference to an unknown rule,
    or an order action that needs a position on a READY-only rule.
    """
    if not raw_rules:
        raise RuleConfigError("rules", "a rules strategy needs a non-empty 'rules' list")
    rules: list[StrategyRule] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(raw_rules):
        label = _label(i, raw)
        if not isinstance(raw, Mapping):
            raise RuleConfigError(
                label, f"expected a mapping with id, trigger and action, got {raw!r}")
        try:
            spec = RuleSpec.model_validate(dict(raw))
        except ValidationError as exc:
            raise _spec_error(label, exc) from None
        if spec.id in seen:
            raise RuleConfigError(f"{label}.id", f"duplicate id; rules[{seen[spec.id]}] has it too")
        seen[spec.id] = i
        try:
            trigger = cast(Trigger, build("trigger", spec.trigger, "trigger"))
            conditions = tuple(cast(Condition, build("condition", c, f"conditions[{j}]"))
                               for j, c in enumerate(spec.conditions))
            action = cast(Action, build("action", spec.action, "action"))
        except ComponentError as exc:
            raise RuleConfigError(f"{label}.{exc.key}", exc.message) from None
        if spec.activation == "READY" and action.needs_position:
            raise RuleConfigError(f"{label}.action.type", f"'{action.name}' needs a position; "
                                  "use activation ACTIVE or ANY")
        rules.append(StrategyRule(
            id=spec.id, priority=spec.priority, activation=spec.activation,
            trigger=trigger, action=action, conditions=conditions,
            description=spec.description, enabled=spec.enabled, order=i,
        ))
    ids = set(seen)
    for i, rule in enumerate(rules):
        for j, cond in enumerate(rule.conditions):
            for ref in cond.rule_refs():
                if ref not in ids:
                    raise RuleConfigError(
                        f"{_label(i, {'id': rule.id})}.conditions[{j}].params.rule",
                        f"no rule with id '{ref}'; have {', '.join(sorted(ids))}")
    return rules


@dataclass
class Decision:
    """What one tick decided for one stock (kept by the strategy for tests and reports).

    ``candidates``: ids of every rule whose trigger and conditions held, best first;
    ``chosen``: the one whose action ran (``None`` when there was none); ``dropped``: the
    other candidates.
    """

    time: datetime
    code: str
    state: str
    candidates: list[str]
    chosen: str | None = None
    result: ActionResult | None = None
    dropped: list[str] = field(default_factory=list)

    @property
    def signal(self) -> Signal | None:
        return self.result.signal if self.result else None


class RuleEngine:
    """Evaluates a strategy's rules against its own :class:`ExecutionContext`."""

    def __init__(self, rules: Sequence[StrategyRule], context: ExecutionContext | None = None):
        self.rules = sorted(rules, key=lambda r: (r.priority, r.order))
        self.context = context if context is not None else ExecutionContext()

    # --- indicators --------------------------------------------------------------------
    def indicator_columns(self, frame: pd.DataFrame) -> dict[str, pd.Series]:
        """Every column the triggers read, computed causally over one stock's history."""
        cols: dict[str, pd.Series] = {}
        for rule in self.rules:
            for name, values in rule.trigger.columns(frame).items():
                cols.setdefault(name, values)
        return cols

    def window(self, frame: pd.DataFrame, n: int | None = None) -> Bars:
        """A :class:`Bars` window (first ``n`` rows) with the indicator columns — for running
        the engine without the trading engine (tests, notebooks)."""
        bars = Bars.from_frame(frame)
        cols = {c: bars[c] for c in bars}
        for name, values in self.indicator_columns(frame).items():
            cols[name] = values.to_numpy(dtype="float64")
        return Bars(cols, pd.DatetimeIndex(frame.index), n)

    # --- the tick ----------------------------------------------------------------------
    def tick(self, code: str, bars: Bars, position: PositionView | None,
             cash_krw: Any = None) -> Decision:
        """Evaluate the rules for ``code`` on the current bar of ``bars`` and run at most
        one action. ``cash_krw``: callable returning orderable cash in KRW."""
        now = bars.time.to_pydatetime()
        ctx = self.context
        ctx.roll_day(now.date())
        qty = position.qty if position is not None else 0
        state = ctx.sync(code, qty, bars.last("close"), now)
        tick = Tick(code=code, bars=bars, now=now, state=state, position=position,
                    context=ctx, stock=ctx.stock(code),
                    cash_krw=cash_krw if cash_krw is not None else (lambda: 0))
        candidates: list[StrategyRule] = []
        for rule in self.rules:
            if not rule.enabled or not rule.matches(state):
                continue
            tick.rule = rule
            if rule.trigger.evaluate(tick) and all(c.evaluate(tick) for c in rule.conditions):
                candidates.append(rule)
        decision = Decision(now, code, state.value, [r.id for r in candidates])
        if not candidates:
            return decision
        best = candidates[0]
        tick.rule = best
        decision.chosen = best.id
        decision.dropped = [r.id for r in candidates[1:]]
        decision.result = best.action.execute(tick)
        if not best.action.places_orders:
            ctx.record(code, best.id)
        logger.debug("%s %s: rule %s ran (%s); dropped %s", now, code, best.id,
                     decision.result.note or decision.result.signal, decision.dropped)
        return decision

    def on_fill(self, code: str, rule_id: str | None, *, buy: bool, price: float,
                qty_after: int, now: datetime, first_fill_of_order: bool) -> None:
        """Apply a fill of an order placed by ``rule_id``: counters and state machine."""
        if first_fill_of_order and rule_id:
            self.context.record(code, rule_id)
        self.context.on_fill(code, buy=buy, price=price, qty_after=qty_after, now=now,
                             first_fill_of_order=first_fill_of_order)

    def describe(self) -> list[str]:
        """One line per rule in priority order."""
        return [rule.describe() for rule in self.rules]
