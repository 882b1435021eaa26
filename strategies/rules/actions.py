"""Built-in actions. An order action returns a :class:`~framework.types.Signal` with an
explicit ``qty`` in shares; context actions change the :class:`ExecutionContext`.

Sizing of buys (our choice, documented in ``strategies/rule_example/README.md``): the
action computes the shares itself, ``qty = floor(budget_krw / close)``, where the budget is
``cash_pct`` % of the account's *orderable* cash (``Broker.get_balance().orderable_krw``),
or a fixed ``amount_krw``, or (``add_position`` only) ``position_pct`` % of the shares held.
The engine then caps the quantity at what the strategy's free cash buys (commission
included). Example: orderable 10,000,000 KRW, ``cash_pct: 10``, close 71,500 → 13 shares.

Limit orders are priced from the current close: buy at ``close × (1 − limit_offset_pct/100)``,
sell at ``close × (1 + limit_offset_pct/100)``, rounded to a valid tick by the engine.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from framework.types import Signal, SignalType
from strategies.rules.base import Action, ActionResult, Tick
from strategies.rules.context import FlagValue
from strategies.rules.overtrading import partial_qty
from strategies.rules.registry import ComponentParams, register

OrderKind = Literal["market", "limit"]


def _signal(tick: Tick, kind: SignalType, qty: int, limit: int | None, what: str) -> Signal:
    rule = tick.rule
    rid = rule.id if rule else "?"
    reason = f"rule {rid}: {rule.trigger.describe()}" if rule else what
    return Signal(kind, tick.code, confidence=50.0, qty=qty, limit_price=limit,
                  reasons=[reason, what],
                  metadata={"rule_id": rid, "action": what, "close": tick.price})


def _limit(tick: Tick, order: str, offset_pct: float, buy: bool) -> int | None:
    if order != "limit":
        return None
    k = 1.0 - offset_pct / 100.0 if buy else 1.0 + offset_pct / 100.0
    return max(1, int(tick.price * k))


class _BuyParams(ComponentParams):
    cash_pct: float | None = Field(None, gt=0, le=100)
    amount_krw: int | None = Field(None, gt=0)
    order: OrderKind = "market"
    limit_offset_pct: float = Field(0.0, ge=0, lt=100)

    def _sizes(self) -> list[str]:
        return [k for k in ("cash_pct", "amount_krw", "position_pct") if getattr(self, k, None)]

    @model_validator(mode="after")
    def _one_size(self) -> _BuyParams:
        if len(self._sizes()) != 1:
            names = ", ".join(k for k in ("cash_pct", "amount_krw", "position_pct")
                              if k in type(self).model_fields)
            raise ValueError(f"give exactly one of {names}")
        return self


def _buy(tick: Tick, p: _BuyParams, position_pct: float | None, what: str) -> ActionResult:
    price = tick.price
    if position_pct is not None:
        held = tick.position.qty if tick.position else 0
        qty = partial_qty(held, position_pct)
        budget = qty * price
    else:
        if p.amount_krw is not None:
            budget = float(p.amount_krw)
        else:
            budget = tick.cash_krw() * (p.cash_pct or 0.0) / 100.0
        qty = math.floor(budget / price) if price > 0 else 0
    if qty < 1:
        return ActionResult(note=f"{what}: budget {budget:,.0f} KRW buys no share at {price:,.0f}")
    limit = _limit(tick, p.order, p.limit_offset_pct, buy=True)
    return ActionResult(_signal(tick, SignalType.BUY, qty, limit, f"{what} {qty} sh"))


@register("action", "buy")
class Buy(Action):
    """Open a position: market or limit buy of ``cash_pct`` % of orderable cash or
    ``amount_krw`` KRW (exactly one)."""

    Params = _BuyParams

    def execute(self, tick: Tick) -> ActionResult:
        return _buy(tick, self.params, None, "buy")


@register("action", "add_position")
class AddPosition(Action):
    """Add to a held position (pyramiding / averaging down): ``cash_pct`` % of orderable
    cash, ``amount_krw`` KRW or ``position_pct`` % of the shares held (exactly one)."""

    needs_position = True

    class Params(_BuyParams):
        position_pct: float | None = Field(None, gt=0)

    def execute(self, tick: Tick) -> ActionResult:
        return _buy(tick, self.params, self.params.position_pct, "add")


@register("action", "sell")
class Sell(Action):
    """Sell ``pct`` % of the shares held (rounded down, at least 1 share; 100 = all)."""

    needs_position = True

    class Params(ComponentParams):
        pct: float = Field(50.0, gt=0, le=100)
        order: OrderKind = "market"
        limit_offset_pct: float = Field(0.0, ge=0, lt=100)

    def execute(self, tick: Tick) -> ActionResult:
        held = tick.position.qty if tick.position else 0
        qty = partial_qty(held, self.params.pct)
        if qty < 1:
            return ActionResult(note="sell: nothing held")
        limit = _limit(tick, self.params.order, self.params.limit_offset_pct, buy=False)
        return ActionResult(_signal(tick, SignalType.SELL, qty, limit, f"sell {qty} sh"))


@register("action", "exit")
class Exit(Action):
    """Sell the whole position at market (``urgent: true`` → ``STRONG_SELL``)."""

    needs_position = True

    class Params(ComponentParams):
        urgent: bool = False

    def execute(self, tick: Tick) -> ActionResult:
        held = tick.position.qty if tick.position else 0
        if held < 1:
            return ActionResult(note="exit: nothing held")
        kind = SignalType.STRONG_SELL if self.params.urgent else SignalType.SELL
        return ActionResult(_signal(tick, kind, held, None, f"exit {held} sh"))


@register("action", "set_flag")
class SetFlag(Action):
    """Set a context flag (``scope`` ``stock`` or ``strategy``); ``reset_on`` clears it
    automatically at the position's exit (``exit``) or the next trading day (``day``)."""

    places_orders = False

    class Params(ComponentParams):
        flag: str = Field(min_length=1)
        value: FlagValue = True
        scope: Literal["stock", "strategy"] = "stock"
        reset_on: Literal["never", "exit", "day"] = "never"

    def execute(self, tick: Tick) -> ActionResult:
        p = self.params
        tick.context.set_flag(p.flag, p.value, tick.code if p.scope == "stock" else None,
                              reset_on=p.reset_on)
        return ActionResult(note=f"set {p.flag}={p.value!r}")


@register("action", "clear_flag")
class ClearFlag(Action):
    """Remove a context flag (it then reads as the condition's ``default``)."""

    places_orders = False

    class Params(ComponentParams):
        flag: str = Field(min_length=1)
        scope: Literal["stock", "strategy"] = "stock"

    def execute(self, tick: Tick) -> ActionResult:
        p = self.params
        tick.context.clear_flag(p.flag, tick.code if p.scope == "stock" else None)
        return ActionResult(note=f"cleared {p.flag}")


@register("action", "arm_trailing_stop")
class ArmTrailingStop(Action):
    """Arm a trailing stop of ``trail_pct`` % under the peak close for this position; a
    ``trailing_stop`` trigger then fires on it (cleared when the position closes)."""

    places_orders = False
    needs_position = True

    class Params(ComponentParams):
        trail_pct: float = Field(5.0, gt=0, lt=100)

    def execute(self, tick: Tick) -> ActionResult:
        st = tick.stock
        st.trailing_pct = self.params.trail_pct
        st.peak_price = max(st.peak_price or tick.price, tick.price)
        return ActionResult(note=f"trailing stop {self.params.trail_pct:g} % armed "
                                 f"under {st.peak_price:,.0f}")
