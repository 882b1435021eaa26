"""Look-ahead guard: is a strategy's ``indicators()`` causal?

The backtest computes ``indicators(bars)`` once over the whole history, so a column whose row
*t* uses later rows (``shift(-1)``, a centred window, a normalisation by the global maximum)
lets the strategy trade on the future. The check recomputes the indicators on prefixes of
the history that end at a few sample bars and compares every row of each prefix with the
full-history values; a causal column gives the same numbers (NaN equal to NaN, relative
tolerance 1e-9). The verdict names the column and the first bar that differed.

Every backtest runs :func:`require_causal` first (exit status 4 from ``main.py``;
``--allow-lookahead`` skips it); ``python main.py lookahead-check --strategy NAME`` prints
the verdict per column. A strategy that computes inside ``generate_signal`` on its ``data``
window (the seed's style) has no indicator columns and is causal by construction.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from core.fencing import indicator_column
from framework.errors import KisTraderError
from strategies.base import BaseStrategy

logger = logging.getLogger(__name__)

SAMPLE_BARS = 8
"""Prefixes checked per stock (ending at bars spread over the history)."""
RTOL = 1e-9
ATOL = 1e-12


class LookaheadError(KisTraderError):
    """An indicator column of a strategy uses later bars; the backtest is refused.

    ``report`` is the :class:`LookaheadReport`; ``str()`` is one line naming the strategy,
    the column, the stock and the first bar that differed.
    """

    def __init__(self, report: LookaheadReport):
        self.report = report
        bad = report.first_violation()
        detail = bad.describe() if bad is not None else "an indicator looks ahead"
        super().__init__(
            f"strategy {report.strategy} looks ahead: {detail}; see python main.py "
            f"lookahead-check --strategy {report.strategy}, or pass --allow-lookahead"
        )


@dataclass(frozen=True)
class ColumnVerdict:
    """Verdict of one indicator column on one stock.

    ``first_bar`` is the earliest bar whose value computed without the later bars differs
    from the full-history value (``None`` when causal); ``full`` and ``prefix`` are those two
    values there.
    """

    column: str
    stock_code: str
    checked_bars: int
    first_bar: pd.Timestamp | None = None
    full: float | None = None
    prefix: float | None = None
    prefix_end: pd.Timestamp | None = None

    @property
    def causal(self) -> bool:
        return self.first_bar is None

    def describe(self) -> str:
        if self.first_bar is None:
            return f"indicator {self.column!r} is causal on {self.stock_code}"
        end = _day(self.prefix_end) if self.prefix_end is not None else "?"
        return (
            f"indicator {self.column!r} on {self.stock_code} at {_day(self.first_bar)} is "
            f"{self.full!r} over the whole history but {self.prefix!r} from the bars up to {end}"
        )


@dataclass
class LookaheadReport:
    """Verdicts of one strategy: per column and stock, or the ``error`` that stopped the check."""

    strategy: str
    verdicts: list[ColumnVerdict] = field(default_factory=list)
    error: str | None = None
    stocks: int = 0

    @property
    def causal(self) -> bool:
        return self.error is None and all(v.causal for v in self.verdicts)

    def first_violation(self) -> ColumnVerdict | None:
        bad = [v for v in self.verdicts if not v.causal]
        return min(bad, key=_first_bar) if bad else None

    def columns(self) -> dict[str, list[ColumnVerdict]]:
        out: dict[str, list[ColumnVerdict]] = {}
        for v in self.verdicts:
            out.setdefault(v.column, []).append(v)
        return out

    def format(self) -> str:
        """One line per indicator column (``causal`` / ``LOOKS AHEAD``), then the summary."""
        lines = [f"strategy {self.strategy}:"]
        if self.error is not None:
            lines.append(f"  could not check: {self.error}")
            return "\n".join(lines)
        by_column = self.columns()
        if not by_column:
            lines.append(
                "  no indicator columns: causal by construction (generate_signal sees only "
                "the bars up to the current one)"
            )
        width = max((len(c) for c in by_column), default=0)
        for column, verdicts in by_column.items():
            bad = [v for v in verdicts if not v.causal]
            if not bad:
                checked = sum(v.checked_bars for v in verdicts)
                lines.append(
                    f"  {column:<{width}}  causal       ({checked} prefixes on "
                    f"{len(verdicts)} stock{'s' if len(verdicts) != 1 else ''})"
                )
            else:
                first = min(bad, key=_first_bar)
                lines.append(f"  {column:<{width}}  LOOKS AHEAD  {first.describe()}")
        verdict = "causal" if self.causal else "LOOKS AHEAD"
        lines.append(f"verdict: {verdict}")
        return "\n".join(lines)


def sample_ends(n: int, samples: int = SAMPLE_BARS) -> list[int]:
    """Row numbers where the checked prefixes end: spread from a tenth of the history (at
    least 30 bars in) to the last-but-one bar; none when there are fewer than 3 bars."""
    if n < 3:
        return []
    first = min(n - 2, max(30, n // 10))
    return sorted({round(float(x)) for x in np.linspace(first, n - 2, samples)})


def check_strategy(
    strategy: BaseStrategy,
    bars: Mapping[str, pd.DataFrame],
    samples: int = SAMPLE_BARS,
    outputs: dict[str, pd.DataFrame | Mapping[str, Any]] | None = None,
) -> LookaheadReport:
    """Check ``strategy.indicators`` on every stock of its universe found in ``bars``.

    ``bars`` maps a stock code to its OHLCV DataFrame (index tz Asia/Seoul, ascending). An
    exception from ``indicators`` ends the check with ``report.error`` set. With
    ``outputs``, what ``indicators`` returned over a stock's whole history (a DataFrame or
    mapping; other answers are not kept) is stored there under the stock's code, for the
    caller to reuse instead of computing it again.
    """
    report = LookaheadReport(strategy.name)
    for code in strategy.universe:
        frame = bars.get(code)
        if frame is None or frame.empty:
            continue
        report.stocks += 1
        try:
            report.verdicts.extend(_check_stock(strategy, code, frame, samples, outputs))
        except Exception as exc:  # strategy code: report it, the caller decides
            report.error = f"indicators() raised {type(exc).__name__}: {exc} on {code}"
            return report
    return report


def _columns(out: Any, rows: int) -> dict[str, np.ndarray]:
    """The columns of an ``indicators`` answer that are ``rows`` numbers."""
    items = out.items() if isinstance(out, pd.DataFrame | Mapping) else []
    cols = {}
    for name, values in items:
        arr = indicator_column(values)
        if arr is not None and arr.shape == (rows,):
            cols[str(name)] = arr
    return cols


def _check_stock(
    strategy: BaseStrategy,
    code: str,
    frame: pd.DataFrame,
    samples: int,
    outputs: dict[str, pd.DataFrame | Mapping[str, Any]] | None = None,
) -> list[ColumnVerdict]:
    # pandas copies on write: a change the strategy makes to its input (a new column, a
    # value set) lands in a copy of its own, never in the caller's bars, so no copy is made
    # (the whole history goes as a new object sharing the data, prefixes are new anyway)
    out = strategy.indicators(frame.copy(deep=False))
    if outputs is not None and isinstance(out, pd.DataFrame | Mapping):
        outputs[code] = out
    full = _columns(out, len(frame))
    if not full:
        return []
    ends = sample_ends(len(frame), samples)
    first: dict[str, tuple[int, int, float, float]] = {}  # column -> (row, end, full, prefix)
    for end in ends:
        part = _columns(strategy.indicators(frame.iloc[: end + 1]), end + 1)
        for name, values in full.items():
            got = part.get(name)
            want = values[: end + 1]
            if got is None:  # the column is missing or misshapen on a prefix: compare NaN
                got = np.full(end + 1, np.nan)
            # the common case: the same bits (NaN included), one integer comparison
            if np.array_equal(got.view(np.int64), want.view(np.int64)):
                continue
            same = np.isclose(got, want, rtol=RTOL, atol=ATOL, equal_nan=True)
            if same.all():
                continue
            row = int(np.argmin(same))
            if name not in first or row < first[name][0]:
                first[name] = (row, end, float(want[row]), float(got[row]))
    index = frame.index
    verdicts = []
    for name in full:
        if name in first:
            row, end, want_v, got_v = first[name]
            verdicts.append(
                ColumnVerdict(
                    name, code, len(ends), index[row], want_v, got_v, prefix_end=index[end]
                )
            )
        else:
            verdicts.append(ColumnVerdict(name, code, len(ends)))
    return verdicts


def require_causal(
    strategies: Iterable[BaseStrategy],
    bars: Mapping[str, pd.DataFrame],
    outputs: dict[tuple[str, str], pd.DataFrame | Mapping[str, Any]] | None = None,
) -> list[LookaheadReport]:
    """Check every strategy; raise :class:`LookaheadError` for the first that looks ahead.

    A strategy whose ``indicators`` raises is not judged here (the engine reports that
    failure when it runs the hook); a warning is logged. With ``outputs``, each
    ``indicators`` answer over a whole history is kept there under (strategy name, stock
    code), as :func:`check_strategy` keeps it.
    """
    reports = []
    for strategy in strategies:
        kept: dict[str, pd.DataFrame | Mapping[str, Any]] | None = (
            None if outputs is None else {}
        )
        report = check_strategy(strategy, bars, outputs=kept)
        if outputs is not None and kept:
            outputs.update({(strategy.name, code): out for code, out in kept.items()})
        if report.error is not None:
            logger.warning("look-ahead check of %s skipped: %s", strategy.name, report.error)
        elif not report.causal:
            raise LookaheadError(report)
        reports.append(report)
    return reports


def _first_bar(verdict: ColumnVerdict) -> pd.Timestamp:
    """Sort key: the first differing bar (only called on verdicts that have one)."""
    if verdict.first_bar is None:
        raise ValueError(f"{verdict.column} is causal: it has no first differing bar")
    return verdict.first_bar


def _day(ts: pd.Timestamp) -> str:
    """A bar's time as the date, or date and time for intraday bars."""
    if ts == ts.normalize():
        return ts.strftime("%Y-%m-%d")
    return ts.strftime("%Y-%m-%d %H:%M")
