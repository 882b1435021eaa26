"""Real-time market data types (no I/O): one trade of a stock as a broker's push feed gives it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Tick:
    """One trade of ``stock_code`` at ``time`` (tz-aware Asia/Seoul).

    ``price_krw`` is the trade price (KRW), ``qty`` the shares of this trade and
    ``cum_volume`` the day's shares so far; ``open_krw``/``high_krw``/``low_krw`` the day's
    open, high and low so far (0 when the feed does not say).
    """

    stock_code: str
    time: datetime
    price_krw: int
    qty: int
    cum_volume: int = 0
    open_krw: int = 0
    high_krw: int = 0
    low_krw: int = 0


__all__ = ["Tick"]
