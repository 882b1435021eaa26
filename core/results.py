"""What a backtest run produces, handed to the report writer and the CLI.

All money columns are integer KRW; quantities are shares; times are tz-aware Asia/Seoul.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd

EQUITY_COLUMNS = ("cash_krw", "holdings_value_krw", "equity_krw")
TRADE_COLUMNS = (
    "strategy",
    "code",
    "entry_time",
    "exit_time",
    "entry_price",
    "exit_price",
    "qty",
    "pnl_krw",
    "return_pct",
    "fees_krw",
    "reasons",
    "exit_reasons",
)
ORDER_COLUMNS = (
    "client_order_id",
    "strategy",
    "code",
    "side",
    "order_type",
    "qty",
    "price",
    "status",
    "filled_qty",
    "avg_fill_price",
    "commission_krw",
    "tax_krw",
    "created_at",
    "updated_at",
    "signal_type",
    "reasons",
)
FILL_COLUMNS = (
    "fill_id",
    "client_order_id",
    "strategy",
    "code",
    "side",
    "qty",
    "price",
    "amount_krw",
    "commission_krw",
    "tax_krw",
    "time",
)
POSITION_COLUMNS = (
    "strategy",
    "code",
    "qty",
    "avg_price",
    "last_price",
    "market_value_krw",
    "unrealized_pnl_krw",
    "opened_at",
    "stop_loss",
    "target_price",
    "reasons",
)


@dataclass
class BacktestResult:
    """Everything one backtest run recorded.

    Attributes
    ----------
    equity:
        One row per bar time (index tz Asia/Seoul, ascending); columns ``EQUITY_COLUMNS``
        (int KRW). Open positions are marked to each bar's close.
    bars:
        Input OHLCV per stock code (index tz Asia/Seoul; ``open high low close volume``).
    orders, fills, trades, positions:
        DataFrames with ``ORDER_COLUMNS``, ``FILL_COLUMNS``, ``TRADE_COLUMNS`` (one row per
        closed round trip, ``pnl_krw`` net of commission and tax, ``return_pct`` over the
        entry cost) and ``POSITION_COLUMNS`` (positions still open at the end, marked to the
        last close, not sold).
    """

    run_id: str
    strategies: list[str]
    initial_cash_krw: int
    equity: pd.DataFrame
    bars: dict[str, pd.DataFrame]
    orders: pd.DataFrame
    fills: pd.DataFrame
    trades: pd.DataFrame
    positions: pd.DataFrame
    elapsed_s: float = 0.0
    started_at: datetime | None = None
    settings: dict[str, object] = field(default_factory=dict)
    events: list[dict[str, object]] = field(default_factory=list)
    indicators: dict[str, pd.DataFrame] = field(default_factory=dict)
    """Stock code → the strategies' indicator columns (index as in ``bars``), for charts."""

    @property
    def final_equity_krw(self) -> int:
        if self.equity.empty:
            return self.initial_cash_krw
        return int(self.equity["equity_krw"].iloc[-1])
