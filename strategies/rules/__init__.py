"""Rule strategies: a strategy written as a list of rules in ``config.yaml``.

Modules: :mod:`~strategies.rules.registry` (component catalogue),
:mod:`~strategies.rules.base` (component contracts, :class:`Tick`),
:mod:`~strategies.rules.triggers`, :mod:`~strategies.rules.conditions`,
:mod:`~strategies.rules.actions`, :mod:`~strategies.rules.context` (state machine, flags,
persistence), :mod:`~strategies.rules.engine` (rules and the engine),
:mod:`~strategies.rules.overtrading` (controls usable from Python strategies too) and
:mod:`~strategies.rules.strategy` (``RuleStrategy``). This package is a library, not a
strategy folder: the loader skips it.
"""

from strategies.rules.context import ExecutionContext, PositionState
from strategies.rules.engine import (
    Decision,
    RuleConfigError,
    RuleEngine,
    StrategyRule,
    compile_rules,
)
from strategies.rules.overtrading import Cooldown, DailyTradeLimit, PartialTakeProfit, ReentryFilter
from strategies.rules.registry import catalogue

__all__ = [
    "Cooldown",
    "DailyTradeLimit",
    "Decision",
    "ExecutionContext",
    "PartialTakeProfit",
    "PositionState",
    "ReentryFilter",
    "RuleConfigError",
    "RuleEngine",
    "StrategyRule",
    "catalogue",
    "compile_rules",
]
