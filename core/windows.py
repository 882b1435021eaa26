"""``FrameWindow``: the engine's cursor over one stock's history, seen as a DataFrame.

The engine builds one window per strategy and stock (OHLCV plus the strategy's indicator
columns, all float64) and moves it forward in place with :meth:`~framework.bars.Bars.resize`.
A strategy without ``numpy_bars`` gets :meth:`FrameWindow.frame`: the last ``lookback`` rows
up to the current bar as an ``iloc`` slice of one DataFrame built once, so a call costs the
same however long the history is (no copy per bar; pandas' copy-on-write keeps a strategy
that writes into its ``data`` from touching the engine's frame).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from framework.bars import Bars


class FrameWindow(Bars):
    """A :class:`Bars` window that also hands out a DataFrame view of its last rows.

    Parameters
    ----------
    columns, index:
        As for :class:`Bars` (equal-length float64 columns, ``DatetimeIndex`` tz Asia/Seoul).
    lookback:
        Rows of :meth:`frame` at most (``None``: the whole visible history).
    """

    __slots__ = ("_frame", "_lookback")

    def __init__(
        self,
        columns: Mapping[str, np.ndarray],
        index: pd.DatetimeIndex,
        lookback: int | None = None,
    ):
        super().__init__(columns, index)
        if lookback is not None and lookback < 1:
            raise ValueError(f"lookback must be at least 1 bar, got {lookback}")
        self._lookback = lookback
        self._frame = pd.DataFrame(self._cols, index=index, copy=False)

    @property
    def lookback(self) -> int | None:
        return self._lookback

    def frame(self) -> pd.DataFrame:
        """The visible rows, at most ``lookback`` of them, oldest first, current bar last."""
        n = self._n
        start = 0 if self._lookback is None else max(0, n - self._lookback)
        return self._frame.iloc[start:n]
