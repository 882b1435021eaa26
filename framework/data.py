"""``DataProvider``: historical OHLCV bars.

==============================================  ========  =================================
method                                          required  returns
==============================================  ========  =================================
``get_daily_bars(code, start=None, end=None)``  yes       OHLCV DataFrame, one row a day
``get_minute_bars(code, day=None)``             no        OHLCV DataFrame, one row a minute
==============================================  ========  =================================

Every DataFrame has a ``DatetimeIndex`` in tz ``Asia/Seoul``, ascending and unique, and the
columns ``open high low close volume`` (prices in KRW, volume in shares). ``start`` and
``end`` are inclusive dates. An unknown code or an empty range raises ``DataError``.
"""

from __future__ import annotations

import abc
from datetime import date

import pandas as pd

OHLCV_COLUMNS = ("open", "high", "low", "close", "volume")


class DataProvider(abc.ABC):
    """Historical bars. See the module docstring for shapes and the method table."""

    @abc.abstractmethod
    def get_daily_bars(
        self, stock_code: str, start: date | None = None, end: date | None = None
    ) -> pd.DataFrame:
        """Daily OHLCV bars of ``stock_code`` between ``start`` and ``end`` (inclusive)."""

    def get_minute_bars(self, stock_code: str, day: date | None = None) -> pd.DataFrame:
        """Minute OHLCV bars of one trading day (default: today)."""
        raise NotImplementedError(f"{type(self).__name__} has no minute bars")
