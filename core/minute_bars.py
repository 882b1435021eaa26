"""Live 1-minute OHLCV bars built from trade ticks, kept in per-symbol buffers updated in place.

Rules (KRX, Asia/Seoul):

* A day has one slot per minute from 09:00 to 15:30 (391 slots: continuous trading
  09:00–15:20, the closing auction's single match at 15:30). A trade at 09:03:27 belongs to
  the bar labelled 09:03; that bar closes at the minute boundary, 09:04:00 — when a trade of a
  later minute arrives or :meth:`MinuteBook.close_through` is called with a time at or after
  09:04:00 (the realtime feed calls it on every item and on its idle timer).
* Open/high/low/close are the first/highest/lowest/last trade prices of the minute (KRW);
  volume is the sum of the trades' share counts.
* A minute without any trade after the first bar of the day is a flat bar at the previous
  close with volume 0 (the minute chart of KIS shows the same). Trades outside 09:00–15:30
  (pre-open and after-hours single-price sessions) update prices but make no bar.
* Seeding (:meth:`MinuteBuffer.seed`): today's minute chart fills the minutes before the
  first bar built from ticks; the minutes seen in ticks keep their tick data.

Memory: one set of six ``float64``/``int64`` arrays of 391 rows per symbol and day; a
strategy's :class:`~framework.bars.Bars` window is a view over them (no copy, no DataFrame
rebuild), grown with :meth:`Bars.resize` as bars complete.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

import numpy as np
import pandas as pd

from framework.bars import Bars
from utils.clock import KST

FIRST_MINUTE = time(9, 0)
LAST_MINUTE = time(15, 30)
SLOTS = 391
"""Minute slots of a regular KRX day: 09:00 … 15:30."""
COLUMNS = ("open", "high", "low", "close", "volume")


def day_index(day: date) -> pd.DatetimeIndex:
    """The 391 minute labels of ``day`` (09:00 … 15:30, tz Asia/Seoul)."""
    start = pd.Timestamp(datetime.combine(day, FIRST_MINUTE), tz=KST)
    return pd.date_range(start, periods=SLOTS, freq="1min")


def slot_of(when: datetime) -> int | None:
    """Slot of the minute containing ``when`` (KST), ``None`` outside 09:00–15:30:59."""
    local = when.astimezone(KST)
    slot = (local.hour - 9) * 60 + local.minute
    return slot if 0 <= slot < SLOTS else None


@dataclass(frozen=True, slots=True)
class MinuteBar:
    """One completed bar: ``time`` is the minute's label (its start)."""

    stock_code: str
    time: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float


class MinuteBuffer:
    """The minute bars of one symbol for one day. See the module docstring."""

    __slots__ = ("_bars", "_window_first", "closed", "code", "cols", "day", "first", "forming",
                 "index")

    def __init__(self, code: str, day: date, index: pd.DatetimeIndex | None = None):
        self.code = code
        self.day = day
        self.index = index if index is not None else day_index(day)
        self.cols = {c: np.zeros(SLOTS, dtype=np.float64) for c in COLUMNS}
        self.first: int | None = None
        """Slot of the day's first bar (``None`` before any)."""
        self.forming: int | None = None
        """Slot of the bar still open (``None`` when none is)."""
        self.closed = 0
        """Slots up to (not including) this one are complete."""
        self._bars: Bars | None = None
        self._window_first: int | None = None

    # --- ticks -------------------------------------------------------------------------
    def add_trade(self, when: datetime, price: float, qty: float) -> list[MinuteBar]:
        """Add one trade; returns the bars this completed (oldest first)."""
        slot = slot_of(when)
        if slot is None or price <= 0:
            return []
        if self.forming is not None and slot < self.forming:
            return []  # a late trade of a bar already closed: ignored
        if self.forming is not None and slot == self.forming:
            cols = self.cols
            h, lo, c, v = cols["high"], cols["low"], cols["close"], cols["volume"]
            if price > h[slot]:
                h[slot] = price
            if price < lo[slot]:
                lo[slot] = price
            c[slot] = price
            v[slot] += qty
            return []
        done = self._close_until(slot)
        if slot < self.closed:
            return done
        self._open_bar(slot, price, qty)
        return done

    def close_through(self, now: datetime) -> list[MinuteBar]:
        """Close the forming bar when ``now`` is at or past its minute's end; returns it."""
        if self.first is None:
            return []
        local = now.astimezone(KST)
        if local.date() > self.day:
            return self._close_until(SLOTS)
        slot = slot_of(local)
        if slot is None:
            if local.time() > LAST_MINUTE:
                return self._close_until(SLOTS)
            return []
        return self._close_until(slot)

    def _open_bar(self, slot: int, price: float, qty: float) -> None:
        for k in ("open", "high", "low", "close"):
            self.cols[k][slot] = price
        self.cols["volume"][slot] = qty
        if self.first is None:
            self.first = slot
        self.forming = slot

    def _close_until(self, slot: int) -> list[MinuteBar]:
        """Complete every bar before ``slot``: the forming one, then flat bars for the
        minutes without a trade. Returns them, oldest first."""
        if self.first is None:
            return []
        stop = min(slot, SLOTS)
        done: list[MinuteBar] = []
        start = self.closed
        if self.forming is not None:
            if self.forming >= stop:
                return []
            done.append(self._bar(self.forming))
            start = self.forming + 1
            self.forming = None
        if start >= stop:
            self.closed = max(self.closed, start)
            return done
        c = self.cols
        last = c["close"][start - 1]
        for s in range(start, stop):
            c["open"][s] = c["high"][s] = c["low"][s] = c["close"][s] = last
            c["volume"][s] = 0.0
            done.append(self._bar(s))
        self.closed = stop
        return done

    def _bar(self, s: int) -> MinuteBar:
        c = self.cols
        return MinuteBar(self.code, self.index[s].to_pydatetime(), float(c["open"][s]),
                         float(c["high"][s]), float(c["low"][s]), float(c["close"][s]),
                         float(c["volume"][s]))

    # --- seeding -----------------------------------------------------------------------
    def seed(self, frame: pd.DataFrame) -> int:
        """Fill the minutes before the first tick-built bar from ``frame`` (today's minute
        chart: OHLCV, index = minute labels in KST); returns the bars taken."""
        if frame.empty:
            return 0
        limit = self.first if self.first is not None else SLOTS
        taken = 0
        lowest: int | None = None
        for when, row in zip(frame.index, frame.itertuples(index=False), strict=True):
            ts = pd.Timestamp(when)
            if ts.tz_convert(KST).date() != self.day:
                continue
            s = slot_of(ts.to_pydatetime())
            if s is None or s >= limit:
                continue
            for k in COLUMNS:
                self.cols[k][s] = float(getattr(row, k))
            taken += 1
            lowest = s if lowest is None else min(lowest, s)
        if lowest is None:
            return 0
        if self.first is None:
            # no tick yet: the seeded bars up to the last one are complete, except the
            # current minute, which ticks go on forming
            last = max(slot_of(pd.Timestamp(t).to_pydatetime()) or 0 for t in frame.index)
            self.first = lowest
            self.forming = last
            self.closed = last
        else:
            self.first = lowest
        for s in range(lowest + 1, limit):  # holes inside the seeded part: flat bars
            if self.cols["close"][s] <= 0:
                for k in ("open", "high", "low", "close"):
                    self.cols[k][s] = self.cols["close"][s - 1]
        return taken

    # --- what strategies see -------------------------------------------------------------
    def __len__(self) -> int:
        """Completed bars."""
        return 0 if self.first is None else max(0, self.closed - self.first)

    def window(self) -> Bars | None:
        """A :class:`Bars` view of the completed bars (``None`` before the first one). The
        same object is returned and grown in place while the first slot stays the same."""
        n = len(self)
        if n == 0 or self.first is None:
            return None
        if self._bars is None or self._window_first != self.first:
            f = self.first
            self._bars = Bars({k: v[f:] for k, v in self.cols.items()}, self.index[f:], n)
            self._window_first = f
        else:
            self._bars.resize(n)
        return self._bars

    def frame(self) -> pd.DataFrame:
        """A DataFrame copy of the completed bars."""
        w = self.window()
        return w.to_frame() if w is not None else pd.DataFrame(columns=list(COLUMNS))


class MinuteBook:
    """Minute buffers of every symbol, one day at a time (a new day starts new buffers)."""

    def __init__(self) -> None:
        self.day: date | None = None
        self._index: pd.DatetimeIndex | None = None
        self.buffers: dict[str, MinuteBuffer] = {}

    def buffer(self, code: str, day: date) -> MinuteBuffer:
        if day != self.day:
            self.day = day
            self._index = day_index(day)
            self.buffers = {}
        buf = self.buffers.get(code)
        if buf is None:
            buf = MinuteBuffer(code, day, self._index)
            self.buffers[code] = buf
        return buf

    def add_trade(self, code: str, when: datetime, price: float, qty: float) -> list[MinuteBar]:
        return self.buffer(code, when.astimezone(KST).date()).add_trade(when, price, qty)

    def close_through(self, now: datetime) -> list[MinuteBar]:
        """Close every forming bar whose minute ended by ``now``."""
        done: list[MinuteBar] = []
        for buf in self.buffers.values():
            if buf.first is not None and buf.closed < SLOTS:
                done.extend(buf.close_through(now))
        return done

    def get(self, code: str) -> MinuteBuffer | None:
        return self.buffers.get(code)


def next_boundary(now: datetime) -> datetime:
    """The next minute boundary after ``now``."""
    return now.replace(second=0, microsecond=0) + timedelta(minutes=1)


__all__ = ["SLOTS", "MinuteBar", "MinuteBook", "MinuteBuffer", "day_index", "next_boundary",
           "slot_of"]
