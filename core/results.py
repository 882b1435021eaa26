"""What a backtest run produces, handed to the report writer and the CLI.

All money columns are integer KRW; quantities are shares; times are tz-aware Asia/Seoul.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd

from framework.errors import KisTraderError

MAX_EQUITY_KRW = 2**62
"""The most an account may be worth in a backtest (≈ 4.6 × 10^18 KRW): cash and holdings
stay in int64 columns (and BIGINT database columns) and their sum cannot wrap. Far beyond
any real account; a run that gets there trades on something it cannot know."""


class EquityOverflowError(KisTraderError):
    """The account's equity passed :data:`MAX_EQUITY_KRW`; the backtest stops.

    ``str()`` is one line with the bar's time, the cash and holdings value (KRW).
    """

    def __init__(self, at: datetime, cash_krw: int, holdings_krw: int):
        self.at, self.cash_krw, self.holdings_krw = at, cash_krw, holdings_krw
        when = f"{at:%Y-%m-%d}" if (at.hour, at.minute) == (0, 0) else f"{at:%Y-%m-%d %H:%M}"
        super().__init__(
            f"backtest stopped at {when}: equity {cash_krw + holdings_krw:.3e} KRW "
            f"(cash {cash_krw:.3e}, holdings {holdings_krw:.3e}) is over the "
            f"{MAX_EQUITY_KRW:.3e} KRW the books hold; returns this large mean the strategy "
            f"sees the future (python main.py lookahead-check) or mis-sizes its orders"
        )


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
