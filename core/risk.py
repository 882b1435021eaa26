"""Pre-trade risk checks.

Every signal that would place an order passes :meth:`RiskManager.check_signal` and every
order :meth:`RiskManager.check_order`. A refusal is a reason string (recorded as a
``risk_rejected`` event), never an exception in the trading loop.

Checks: the trading state (``ACTIVE``; ``REDUCE_ONLY`` allows exits only; ``HALTED`` allows
nothing new), the strategy's ``max_daily_trades``, one open order per strategy and stock at a
time, sells only of shares the strategy holds, and global caps on order amount (KRW) and
quantity (shares).
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass

from framework.types import OrderSide, Signal
from strategies.config import RiskManagement


class TradingState(enum.Enum):
    ACTIVE = "active"
    REDUCE_ONLY = "reduce_only"
    HALTED = "halted"


@dataclass(frozen=True)
class RiskLimits:
    """Global limits for every order (``None`` = no limit)."""

    max_order_amount_krw: int | None = None
    max_order_qty: int | None = None


class RiskManager:
    """Holds the trading state and applies the checks. Thread-safe state switch."""

    def __init__(self, limits: RiskLimits | None = None):
        self.limits = limits or RiskLimits()
        self._state = TradingState.ACTIVE
        self._lock = threading.Lock()

    @property
    def state(self) -> TradingState:
        return self._state

    def set_state(self, state: TradingState) -> None:
        with self._lock:
            self._state = state

    def check_signal(
        self,
        signal: Signal,
        risk: RiskManagement,
        *,
        trades_today: int,
        has_open_order: bool,
        position_qty: int,
    ) -> str | None:
        """Reason to refuse acting on ``signal``, or ``None`` when it may proceed."""
        state = self._state
        if state is TradingState.HALTED:
            return "trading is halted"
        if signal.signal_type.is_buy and state is TradingState.REDUCE_ONLY:
            return "reduce-only: no new buys"
        if has_open_order:
            return "an order for this stock is still open"
        if signal.signal_type.is_sell:
            if position_qty <= 0:
                return "no position to sell"
            return None
        if trades_today >= risk.max_daily_trades:
            return f"max_daily_trades {risk.max_daily_trades} reached"
        return None

    def check_order(self, side: OrderSide, qty: int, price_krw: float) -> str | None:
        """Reason to refuse an order of ``qty`` shares at about ``price_krw``, or ``None``."""
        if qty <= 0:
            return "quantity is zero"
        limits = self.limits
        if side is OrderSide.BUY:
            if limits.max_order_qty is not None and qty > limits.max_order_qty:
                return f"qty {qty} above max_order_qty {limits.max_order_qty}"
            amount = qty * price_krw
            if limits.max_order_amount_krw is not None and amount > limits.max_order_amount_krw:
                cap = limits.max_order_amount_krw
                return f"amount {amount:,.0f} KRW above max_order_amount {cap:,}"
        return None
