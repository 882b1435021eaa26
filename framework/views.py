"""Read-only views a strategy receives in ``on_init``: the account, market data, its orders.

A strategy trades only by returning :class:`~framework.types.Signal` objects; these views
let it look (cash, holdings, quotes, bars, the state of its own orders) but offer no way to
place, change or cancel an order, even when the object behind them (``KISBroker``, the paper
account) could.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date

import pandas as pd

from framework.broker import Broker
from framework.data import DataProvider
from framework.types import Balance, Holding, Order, Quote


class AccountView(Broker):
    """The account, read only: balance (KRW), holdings (shares), quotes.

    Each call goes to the broker (a KIS request live): call it at a pace the strategy
    needs, not per bar. Raises what the broker raises (``BrokerError``)."""

    def __init__(self, broker: Broker):
        self._broker = broker

    def get_balance(self) -> Balance:
        return self._broker.get_balance()

    def get_holdings(self) -> list[Holding]:
        return self._broker.get_holdings()

    def get_quote(self, stock_code: str) -> Quote:
        return self._broker.get_quote(stock_code)

    def get_quotes(self, stock_codes: Iterable[str]) -> dict[str, Quote]:
        return self._broker.get_quotes(stock_codes)


class MarketDataView(DataProvider):
    """Bars, read only (OHLCV DataFrames, index tz Asia/Seoul). Raises ``DataError`` or
    ``BrokerError`` as the provider does."""

    def __init__(self, provider: DataProvider):
        self._provider = provider

    def get_daily_bars(
        self, stock_code: str, start: date | None = None, end: date | None = None
    ) -> pd.DataFrame:
        return self._provider.get_daily_bars(stock_code, start, end)

    def get_minute_bars(self, stock_code: str, day: date | None = None) -> pd.DataFrame:
        return self._provider.get_minute_bars(stock_code, day)


class OrdersView:
    """One strategy's orders, as copies (changing a copy changes nothing)."""

    def __init__(self, orders: Callable[[], Iterable[Order]]):
        self._orders = orders

    def all(self) -> list[Order]:
        """Every order of the strategy (open and final), oldest first."""
        return [o.copy() for o in self._orders()]

    def open(self, stock_code: str | None = None) -> list[Order]:
        """Orders of the strategy not final yet (of one stock)."""
        return [
            o.copy()
            for o in self._orders()
            if not o.status.is_final and (stock_code is None or o.stock_code == stock_code)
        ]

    def get(self, client_order_id: str) -> Order | None:
        """The order with ``client_order_id``, if it is one of the strategy's."""
        for o in self._orders():
            if o.client_order_id == client_order_id:
                return o.copy()
        return None
