"""The result tables' columns are built without pandas' per-object inference
(core.backtest._time_columns, _numbers) and must equal what pandas infers itself."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from core.backtest import _numbers, _table, _time_columns
from utils.clock import KST


def _inferred(values: Sequence[object]) -> pd.Series:
    return pd.Series(list(values))


def test_kst_columns_match_pandas_with_shared_objects_and_microseconds() -> None:
    base = datetime(2024, 3, 4, 9, 0, tzinfo=KST)
    times = [base + timedelta(hours=h, microseconds=h * 1_001) for h in range(50)]
    old = [datetime(1987, 5, 10, 2, 30, tzinfo=KST), datetime(1988, 10, 9, 1, 15, tzinfo=KST)]
    late = [datetime(2250, 12, 31, 23, 59, 59, 999_999, tzinfo=KST)]
    first = times[:30] + old
    second = times[10:] + late + times[:5]  # objects shared with the first column
    got_first, got_second = _time_columns(first, second)
    for got, values in ((got_first, first), (got_second, second)):
        want = _inferred(values)
        assert str(pd.Series(got).dtype) == str(want.dtype)
        pd.testing.assert_series_equal(pd.Series(got), want)


def test_a_column_with_none_or_another_zone_is_left_to_pandas() -> None:
    kst = [datetime(2024, 1, 2, 9, tzinfo=KST), datetime(2024, 1, 2, 10, tzinfo=KST)]
    with_none = [kst[0], None]
    utc = [datetime(2024, 1, 2, 0, tzinfo=UTC)]
    good, none_col, utc_col, empty = _time_columns(kst, with_none, utc, [])
    assert none_col is with_none
    assert utc_col is utc
    assert empty == []
    pd.testing.assert_series_equal(pd.Series(good), _inferred(kst))


def test_number_columns_have_the_dtype_pandas_infers() -> None:
    for values in ((1, 2, 3), (1.5, 2.0), (1, 2.5), (np.int64(4), 5)):
        got = pd.Series(_numbers(values))
        want = _inferred(list(values))
        assert got.dtype == want.dtype
        pd.testing.assert_series_equal(got, want)


def test_table_reads_every_field_of_every_row() -> None:
    class Row:
        def __init__(self, a: int, b: str) -> None:
            self.a, self.b = a, b

    rows = [Row(1, "x"), Row(2, "y")]
    assert _table(rows, "a b") == [[1, 2], ["x", "y"]]
    assert _table([], "a b") == [[], []]
    assert _table(rows, "a b", by_row=True) == [[1, 2], ["x", "y"]]
    assert _table([], "a b", by_row=True) == [[], []]
    assert _table(rows, "b", by_row=True) == [["x", "y"]]


def test_union_of_times_is_the_sorted_distinct_times() -> None:
    from core.backtest import _union

    rng = np.random.default_rng(3)
    a = np.arange(0, 100, 2, dtype=np.int64)
    cases = [
        [a],
        [a, a.copy()],
        [a, np.arange(0, 100, 3, dtype=np.int64)],
        [a[:10], a],
        [np.array([5, 3, 3, 9], dtype=np.int64)],  # not rising: sorted and deduplicated
        [np.sort(rng.integers(0, 50, 40)), np.sort(rng.integers(0, 50, 40))],
    ]
    for times in cases:
        assert np.array_equal(_union(times), np.unique(np.concatenate(times)))


def test_next_marks_point_each_bar_at_the_first_marked_bar_at_or_after_it() -> None:
    from core.backtest import Backtest, _CodeState, _union

    rng = np.random.default_rng(5)
    index = pd.date_range("2024-01-01", periods=60, freq="h", tz="Asia/Seoul")
    frame = pd.DataFrame({c: np.ones(60) for c in ("open", "high", "low", "close")}, index)
    states = []
    for rows, first in ((slice(None), 0), (slice(0, 60, 2), 4), (slice(10, 40), 0)):
        part = frame.iloc[rows]
        st = _CodeState("x", part, first, len(part))
        st.marked = rng.random(len(part)) < 0.1
        states.append(st)
    states.append(_CodeState("y", frame, 0, 60))  # no mask: never marks
    timeline = _union([st.t_np[st.ptr :] for st in states])
    got = Backtest._next_marks(states, timeline)
    marked_times = {
        int(t) for st in states if st.marked is not None
        for t in st.t_np[st.ptr :][st.marked[st.ptr :]]
    }
    n = len(timeline)
    want = [
        next((j for j in range(k, n) if int(timeline[j]) in marked_times), n)
        for k in range(n + 1)
    ]
    assert got == want
