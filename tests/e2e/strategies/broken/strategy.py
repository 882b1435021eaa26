"""A strategy that raises in every hook: the others must keep trading."""

from __future__ import annotations

from typing import Any

from framework.bars import Bars
from framework.types import Order, Signal
from strategies.base import BaseStrategy


class BrokenStrategy(BaseStrategy):
    def on_init(self, broker: Any, data_provider: Any, executor: Any) -> bool:
        raise RuntimeError("on_init is broken")

    def on_market_open(self) -> None:
        raise RuntimeError("on_market_open is broken")

    def indicators(self, bars: Any) -> Any:
        raise RuntimeError("indicators is broken")

    def generate_signal(self, stock_code: str, data: Bars, timeframe: str) -> Signal | None:
        raise ZeroDivisionError("generate_signal is broken")

    def on_order_filled(self, order: Order) -> None:
        raise RuntimeError("on_order_filled is broken")

    def on_market_close(self) -> None:
        raise RuntimeError("on_market_close is broken")
