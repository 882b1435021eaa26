"""Scripted strategy of the end-to-end tests: buys each stock of its plan up to its quantity
(the daily trade limit and the cooldown stop it from buying back what was sold)."""

from __future__ import annotations

import pandas as pd

from framework.types import Signal, SignalType
from strategies.base import BaseStrategy
from utils.ticks import round_to_tick


class DayTraderStrategy(BaseStrategy):
    def generate_signal(self, stock_code: str, data: pd.DataFrame, timeframe: str) -> Signal | None:
        plan = self.params.get(stock_code)
        position = self.get_position(stock_code)
        held = position.qty if position is not None else 0
        if plan is None or held >= plan[0]:
            return Signal(SignalType.HOLD, stock_code)
        qty, offset = plan[0] - held, plan[1]
        price = data["close"].iloc[-1]  # the DataFrame view, as the seed writes it
        limit = None if offset is None else round_to_tick(price * (1 + offset / 100), "down")
        return Signal(
            SignalType.BUY,
            stock_code,
            confidence=80.0,
            qty=qty,
            limit_price=limit,
            reasons=(f"scripted buy of {qty} shares",),
            metadata={"close": float(price)},
        )
