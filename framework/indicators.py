"""Causal technical indicators on pandas Series (row *t* uses rows up to *t* only).

Inputs are price or volume Series in the bars' order; outputs are float Series of the same
index, ``NaN`` until enough history exists. Formulas follow the usual definitions:

* ``sma(x, n)``: mean of the last *n* values.
* ``ema(x, n)``: exponential mean with ``alpha = 2 / (n + 1)``, seeded by the first value.
* ``rsi(close, n)``: Wilder's RSI, ``100 − 100 / (1 + avg_gain / avg_loss)`` with Wilder
  smoothing (``alpha = 1 / n``) seeded by the simple mean of the first *n* changes; 100 when
  there are no losses.
* ``macd(close, fast, slow, signal)``: ``ema(fast) − ema(slow)``, its ``ema(signal)`` and
  the histogram.
* ``bollinger(close, n, k)``: ``sma ± k × population std`` of the last *n* values.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def sma(values: pd.Series, period: int) -> pd.Series:
    return values.astype("float64").rolling(period, min_periods=period).mean()


def ema(values: pd.Series, period: int) -> pd.Series:
    return values.astype("float64").ewm(span=period, adjust=False, min_periods=period).mean()


def rsi(close: pd.Series, period: int = 14) -> pd.Series:
    delta = close.astype("float64").diff().to_numpy()
    n = len(delta)
    out = np.full(n, np.nan)
    if n > period:
        gains = np.where(delta > 0, delta, 0.0)
        losses = np.where(delta < 0, -delta, 0.0)
        avg_gain = gains[1 : period + 1].mean()
        avg_loss = losses[1 : period + 1].mean()
        alpha = 1.0 / period
        for i in range(period, n):
            if i > period:
                avg_gain += alpha * (gains[i] - avg_gain)
                avg_loss += alpha * (losses[i] - avg_loss)
            out[i] = 100.0 if avg_loss == 0 else 100.0 - 100.0 / (1.0 + avg_gain / avg_loss)
    return pd.Series(out, index=close.index)


def macd(close: pd.Series, fast: int = 12, slow: int = 26, signal: int = 9) -> pd.DataFrame:
    """Columns ``macd``, ``signal``, ``hist``."""
    line = ema(close, fast) - ema(close, slow)
    sig = line.ewm(span=signal, adjust=False, min_periods=signal).mean()
    return pd.DataFrame({"macd": line, "signal": sig, "hist": line - sig})


def bollinger(close: pd.Series, period: int = 20, k: float = 2.0) -> pd.DataFrame:
    """Columns ``mid``, ``upper``, ``lower``."""
    mid = sma(close, period)
    std = close.astype("float64").rolling(period, min_periods=period).std(ddof=0)
    return pd.DataFrame({"mid": mid, "upper": mid + k * std, "lower": mid - k * std})
