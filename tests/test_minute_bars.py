"""Live 1-minute bars from ticks: minute boundaries, flat minutes, seeding, in-place windows."""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from core.minute_bars import SLOTS, MinuteBook, MinuteBuffer, day_index, slot_of
from utils.clock import KST

DAY = datetime(2025, 6, 16, tzinfo=KST).date()


def at(hh: int, mm: int, ss: int = 0) -> datetime:
    return datetime(2025, 6, 16, hh, mm, ss, tzinfo=KST)


def test_slots_cover_the_regular_session() -> None:
    assert slot_of(at(9, 0)) == 0
    assert slot_of(at(15, 30, 59)) == SLOTS - 1
    assert slot_of(at(8, 59, 59)) is None
    assert slot_of(at(15, 31)) is None
    assert len(day_index(DAY)) == SLOTS


def test_a_bar_closes_at_the_minute_boundary() -> None:
    buf = MinuteBuffer("005930", DAY)
    assert buf.add_trade(at(9, 0, 5), 100, 3) == []
    assert buf.add_trade(at(9, 0, 30), 103, 2) == []
    assert buf.add_trade(at(9, 0, 59), 99, 1) == []
    assert len(buf) == 0
    assert buf.close_through(at(9, 0, 59)) == []
    done = buf.close_through(at(9, 1, 0))
    assert [(b.open, b.high, b.low, b.close, b.volume) for b in done] == [(100, 103, 99, 99, 6)]
    assert done[0].time == at(9, 0)
    window = buf.window()
    assert window is not None
    assert len(window) == 1
    # a trade three minutes later: the quiet minutes are flat bars at the last close
    flat = buf.add_trade(at(9, 3, 10), 101, 4)
    assert [(b.time.minute, b.close, b.volume) for b in flat] == [(1, 99, 0), (2, 99, 0)]
    done = buf.close_through(at(9, 4))
    assert [(b.time.minute, b.close, b.volume) for b in done] == [(3, 101, 4)]
    same = buf.window()
    assert same is window  # the same window, grown in place
    assert len(same) == 4
    assert list(same.close) == [99, 99, 99, 101]


def test_a_trade_of_a_later_minute_completes_the_bar() -> None:
    book = MinuteBook()
    assert book.add_trade("005930", at(9, 5, 1), 70_000, 10) == []
    done = book.add_trade("005930", at(9, 6, 0), 70_100, 1)
    assert [(b.time, b.close, b.volume) for b in done] == [(at(9, 5), 70_000, 10)]
    assert book.add_trade("005930", at(9, 5, 59), 69_000, 5) == []  # late: ignored
    assert book.get("005930").cols["low"][5] == 70_000


def test_seeding_fills_the_morning_before_the_first_tick() -> None:
    buf = MinuteBuffer("005930", DAY)
    buf.add_trade(at(9, 3, 10), 101, 4)
    index = pd.DatetimeIndex([at(9, 0), at(9, 1), at(9, 2), at(9, 3)])
    chart = pd.DataFrame({"open": [95, 96, 97, 98], "high": [96, 97, 98, 99],
                          "low": [94, 95, 96, 97], "close": [96, 97, 98, 99],
                          "volume": [10, 20, 30, 40]}, index=index)
    assert buf.seed(chart) == 3  # 09:03 keeps its tick data
    buf.close_through(at(9, 4))
    frame = buf.frame()
    assert list(frame["close"]) == [96, 97, 98, 101]
    assert list(frame["volume"]) == [10, 20, 30, 4]
    assert frame.index[0] == pd.Timestamp(at(9, 0))


def test_seeding_without_ticks_then_ticks_go_on() -> None:
    buf = MinuteBuffer("005930", DAY)
    index = pd.DatetimeIndex([at(9, 0), at(9, 1)])
    chart = pd.DataFrame({"open": [95, 96], "high": [96, 97], "low": [94, 95],
                          "close": [96, 97], "volume": [10, 20]}, index=index)
    buf.seed(chart)
    assert len(buf) == 1  # 09:01 is the minute still forming
    buf.add_trade(at(9, 1, 40), 99, 5)
    buf.close_through(at(9, 2))
    frame = buf.frame()
    assert list(frame["high"]) == [96, 99]
    assert list(frame["volume"]) == [10, 25]


def test_a_new_day_starts_new_buffers() -> None:
    book = MinuteBook()
    book.add_trade("005930", at(9, 0, 1), 100, 1)
    book.add_trade("005930", datetime(2025, 6, 17, 9, 0, 1, tzinfo=KST), 100, 1)
    assert book.day == datetime(2025, 6, 17, tzinfo=KST).date()
    assert len(book.buffers) == 1
    assert book.get("005930").day == book.day
