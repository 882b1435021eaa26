"""``Bars``: the read-only window of history a strategy sees in ``generate_signal``.

A strategy only ever sees bars up to the current one: the window's length grows as the
clock moves, the data after it is not reachable through it.

Columns are numpy arrays (``float64`` for prices and indicators, volume included); the
index is a ``DatetimeIndex`` in tz ``Asia/Seoul``. Access is cheap (views, no copies):

>>> close = data.close          # ndarray of every close up to now, oldest first
>>> data.last("close")          # the current bar's close (float)
>>> data["sma_5"]               # an indicator column computed by ``BaseStrategy.indicators``
>>> data.to_frame()             # a pandas DataFrame copy, when pandas is more convenient

The engine reuses one window per strategy and symbol and moves it forward in place, so the
object is valid during the call it was passed to; keep values, not the window.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
import pandas as pd

from framework.data import OHLCV_COLUMNS


class Bars:
    """Window over the first ``len(self)`` rows of a set of equal-length columns."""

    __slots__ = ("_cols", "_index", "_n")

    def __init__(
        self, columns: Mapping[str, np.ndarray], index: pd.DatetimeIndex, n: int | None = None
    ):
        size = len(index)
        for name, col in columns.items():
            if len(col) != size:
                raise ValueError(f"column {name!r} has {len(col)} rows, index has {size}")
        self._cols = dict(columns)
        self._index = index
        self._n = size if n is None else n

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> Bars:
        """Window over a whole OHLCV DataFrame (columns as in ``framework.data``)."""
        missing = [c for c in OHLCV_COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(f"bars are missing columns {missing}")
        cols = {str(c): frame[c].to_numpy(dtype=np.float64) for c in frame.columns}
        return cls(cols, pd.DatetimeIndex(frame.index))

    def resize(self, n: int) -> None:
        """Make the first ``n`` rows visible (used by the engine as its clock moves)."""
        self._n = n

    # --- size and time -------------------------------------------------------------
    def __len__(self) -> int:
        return self._n

    @property
    def time(self) -> pd.Timestamp:
        """Timestamp of the current (last visible) bar."""
        return self._index[self._n - 1]

    @property
    def index(self) -> pd.DatetimeIndex:
        return self._index[: self._n]

    @property
    def columns(self) -> list[str]:
        return list(self._cols)

    def __contains__(self, name: object) -> bool:
        return name in self._cols

    def __iter__(self) -> Iterator[str]:
        return iter(self._cols)

    # --- column access -------------------------------------------------------------
    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self._cols[name][: self._n]
        except KeyError:
            raise KeyError(f"no column {name!r}; have {sorted(self._cols)}") from None

    def last(self, name: str, ago: int = 0) -> float:
        """Value of ``name`` ``ago`` bars before the current one (0 = current)."""
        i = self._n - 1 - ago
        if i < 0:
            raise IndexError(f"only {self._n} bars visible, asked for {ago} bars ago")
        return float(self._cols[name][i])

    @property
    def open(self) -> np.ndarray:
        return self._cols["open"][: self._n]

    @property
    def high(self) -> np.ndarray:
        return self._cols["high"][: self._n]

    @property
    def low(self) -> np.ndarray:
        return self._cols["low"][: self._n]

    @property
    def close(self) -> np.ndarray:
        return self._cols["close"][: self._n]

    @property
    def volume(self) -> np.ndarray:
        return self._cols["volume"][: self._n]

    def to_frame(self) -> pd.DataFrame:
        """A DataFrame copy of the visible rows (all columns, index tz Asia/Seoul)."""
        n = self._n
        return pd.DataFrame({k: v[:n].copy() for k, v in self._cols.items()}, index=self._index[:n])
