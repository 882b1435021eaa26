"""``RuleStrategy``: the built-in ``type: rules`` strategy, a list of rules in config.yaml.

The class is the bridge between the trading engine and :class:`RuleEngine`: it computes
the triggers' indicator columns, runs one engine tick per ``generate_signal`` call, feeds
fills back into the :class:`ExecutionContext` and, when persistence is on, saves the
context after every change. See ``strategies/rule_example/README.md`` for the YAML format.

``parameters:`` of a rules strategy (:class:`RuleParameters`)::

    parameters:
      persist_context: false   # save the context to <state_dir>/<strategy name>.json
      state_dir: state         # relative to the working directory
      decision_log_size: 1000  # decisions kept in memory (RuleStrategy.decisions)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from framework.bars import Bars
from framework.errors import ConfigError
from framework.types import Order, OrderSide, Signal, SignalType
from framework.views import AccountView, MarketDataView, OrdersView
from strategies.base import BaseStrategy
from strategies.config import StrategyConfig
from strategies.rules.context import ExecutionContext
from strategies.rules.engine import Decision, RuleConfigError, RuleEngine, compile_rules


class RuleParameters(BaseModel):
    """``parameters`` of a rules strategy's config.yaml."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    persist_context: bool = False
    state_dir: str = "state"
    decision_log_size: int = Field(1000, ge=0)


class RuleStrategy(BaseStrategy):
    """A strategy made of rules (``type: rules``); see :mod:`strategies.rules.engine`.

    Attributes
    ----------
    engine:
        The :class:`RuleEngine` with this instance's own :class:`ExecutionContext`.
    decisions:
        The last ``decision_log_size`` :class:`Decision` objects that had a candidate.
    """

    Parameters: ClassVar[type[BaseModel] | None] = RuleParameters
    numpy_bars: ClassVar[bool] = True  # triggers read the numpy window's columns

    def __init__(self, config: StrategyConfig):
        super().__init__(config)
        try:
            rules = compile_rules(config.rules)
        except RuleConfigError as exc:
            raise ConfigError(f"{config.name}: {exc}", key=exc.key) from exc
        params = self.params if isinstance(self.params, RuleParameters) else (
            RuleParameters.model_validate(self.params or {}))
        self.params = params
        self.engine = RuleEngine(rules)
        self.decisions: deque[Decision] = deque(maxlen=params.decision_log_size)
        self.state_path: Path | None = (
            Path(params.state_dir) / f"{self.name}.json" if params.persist_context else None)
        self._counted_orders: set[str] = set()

    @classmethod
    def validate_config(cls, config: StrategyConfig, path: Path) -> None:
        """Check the ``rules:`` list at load; ``ConfigError`` naming file, rule and key."""
        try:
            compile_rules(config.rules)
        except RuleConfigError as exc:
            raise ConfigError(f"{path}: {exc}", path=str(path), key=exc.key) from exc

    # --- context -----------------------------------------------------------------------
    @property
    def context(self) -> ExecutionContext:
        """This strategy's own context (flags and counters)."""
        return self.engine.context

    def enable_persistence(self, path: Path | str | None = None) -> Path:
        """Save the context to ``path`` (default ``<state_dir>/<name>.json``) from now on,
        restoring what is there first. Returns the path. Off by default in backtests."""
        self.state_path = Path(path) if path is not None else (
            Path(self.params.state_dir) / f"{self.name}.json")
        self.restore_context()
        return self.state_path

    def restore_context(self) -> None:
        """Replace the context by the saved one: the file when persistence is on, else the
        strategy's saved state (:meth:`BaseStrategy.load_state`; live: the database)."""
        if self.state_path is not None and self.state_path.is_file():
            self.engine.context = ExecutionContext.load(self.state_path)
            return
        saved = self.load_state()
        if saved:
            self.engine.context = ExecutionContext.from_json(saved)

    def save_context(self) -> None:
        """Keep the context as the strategy's saved state (and write the file atomically
        when persistence is on)."""
        if self.state_path is not None:
            self.engine.context.save(self.state_path)
        self.save_state(self.engine.context.to_json())

    # --- hooks -------------------------------------------------------------------------
    def on_init(self, broker: AccountView, data_provider: MarketDataView,
                orders: OrdersView) -> bool:
        super().on_init(broker, data_provider, orders)
        self.restore_context()
        return True

    def indicators(self, bars: pd.DataFrame) -> Mapping[str, pd.Series]:
        return self.engine.indicator_columns(bars)

    def _cash_krw(self) -> int:
        return self.broker.get_balance().orderable_krw if self.broker is not None else 0

    def generate_signal(self, stock_code: str, data: Bars, timeframe: str) -> Signal | None:
        """One engine tick: the signal of the winning rule, ``HOLD`` when a context-only
        action ran, ``None`` when no rule was a candidate."""
        decision = self.engine.tick(stock_code, data, self.get_position(stock_code), self._cash_krw)
        if decision.chosen is None:
            return None
        self.decisions.append(decision)
        signal = decision.signal
        if signal is None:
            self.save_context()
            note = decision.result.note if decision.result else ""
            return Signal(SignalType.HOLD, stock_code, reasons=[f"rule {decision.chosen}: {note}"],
                          metadata={"rule_id": decision.chosen})
        return signal

    def on_order_filled(self, order: Order) -> None:
        first = order.client_order_id not in self._counted_orders
        if first:
            self._counted_orders.add(order.client_order_id)
        position = self.get_position(order.stock_code)
        now = order.updated_at or order.created_at
        if now is None:
            return
        rule_id = order.metadata.get("rule_id")
        self.engine.on_fill(order.stock_code, str(rule_id) if rule_id else None,
                            buy=order.side is OrderSide.BUY, price=order.avg_fill_price,
                            qty_after=position.qty if position else 0, now=now,
                            first_fill_of_order=first)
        self.save_context()

    def on_market_close(self) -> None:
        self.save_context()

    def describe(self) -> list[str]:
        """The rules in priority order: ``priority  id  [activation]  when … if … then …``."""
        return self.engine.describe()
