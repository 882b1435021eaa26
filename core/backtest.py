"""Backtest: the ``Trader`` driven by a historical clock over stored bars.

The days run through the same :class:`~core.session.TradingSession` as live trading, so the
protective exits, the daily counters, the daily loss lock, the portfolio stop, cooldowns,
``max_positions``, the time cut, day orders and (on intraday bars) order timeouts apply as
they do live. Rules (also in README.md):

* Time moves bar by bar over the union of the stocks' bar times, one trading day at a time:
  the first bar of a day opens it (counters reset, ``on_market_open``), the end of its last
  bar closes it (day orders still resting expire, ``on_market_close``).
* Within a bar: resting orders fill at the open (``api.paper`` fill rules) → protective
  exits against the bar's range, filled inside the bar (:func:`core.risk.bar_exit`) →
  ``exit_at_close`` at the stock's last bar of the day, at its close → strategies decide at
  the close → new orders rest until the next bar. The daily loss lock and the portfolio stop
  mark equity at each bar's close; the time cut is placed at a day's close and fills at the
  next open.
* A market order decided on bar *t* fills at bar *t+1*'s open; a buy whose cost there exceeds
  the cash it may use is cut to the whole shares that cash affords. A limit order fills when a
  later bar's range touches its price, within its session (day orders).
* Bars before ``start`` are visible to strategies as warm-up history; trading and the equity
  curve start at ``start``.
* Equity is marked to each bar's close. Positions still open at the end are marked to the last
  close, not sold.
* Before the run every strategy's ``indicators()`` is checked for look-ahead
  (:func:`core.lookahead.require_causal`, ``LookaheadError``) unless ``allow_lookahead``.
* Equity above :data:`core.results.MAX_EQUITY_KRW` stops the run with ``EquityOverflowError``.
* A strategy disabled after its ``max_consecutive_errors`` failures in a row stops the run
  with :class:`core.fencing.StrategyDisabledError` (unless ``stop_on_strategy_failure`` is
  off: then it sits out and the others trade on).
"""

from __future__ import annotations

import bisect
import gc
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from itertools import chain, repeat
from operator import attrgetter, floordiv, itemgetter, sub
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from core.data_collector import HistoricalDataProvider, is_intraday
from core.engine import build_engine, paper_account
from core.journal import MemoryJournal, position_fields
from core.lookahead import require_causal
from core.order_manager import OrderPolicy
from core.results import (
    FILL_COLUMNS,
    MAX_EQUITY_KRW,
    ORDER_COLUMNS,
    POSITION_COLUMNS,
    TRADE_COLUMNS,
    BacktestResult,
    EquityOverflowError,
)
from core.risk import RiskLimits, RiskManager
from core.session import TradingSession
from core.trader import StrategySlot
from framework.bars import Bars
from framework.errors import DataError
from framework.events import DataMissing
from framework.types import Order, OrderSide
from strategies.base import BaseStrategy
from utils.clock import KST
from utils.fees import FeeModel

logger = logging.getLogger(__name__)

TZ = "Asia/Seoul"
_NS_PER_DAY = 86_400 * 10**9
_KST_OFFSET_NS = 9 * 3_600 * 10**9


@dataclass
class BacktestSettings:
    """Knobs of one backtest run. Money in KRW, rates as fractions."""

    cash_krw: int = 10_000_000
    commission_rate: float | str = "0.00015"
    sell_tax_rate: float | str | None = None  # None: dated schedule (utils.fees)
    slippage_ticks: int = 0
    start: date | None = None
    end: date | None = None
    progress: bool = False
    risk_limits: RiskLimits = field(default_factory=RiskLimits)
    order_policy: OrderPolicy = field(default_factory=OrderPolicy)
    """Order timeouts and re-placement; they apply on intraday bars only."""
    allow_lookahead: bool = False
    stop_on_strategy_failure: bool = True  # False: a disabled strategy sits out, others go on

    def describe(self) -> dict[str, Any]:
        return {
            "cash_krw": self.cash_krw,
            "commission_rate": str(self.commission_rate),
            "sell_tax_rate": "dated schedule"
            if self.sell_tax_rate is None
            else str(self.sell_tax_rate),
            "slippage_ticks": self.slippage_ticks,
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
        }


def _to_date(day_number: int) -> date:
    """The calendar date of a day number (days since 1970-01-01 in Asia/Seoul)."""
    return date.fromordinal(_EPOCH_ORDINAL + int(day_number))


_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


_SHORT = 64
"""Quiet stretches of at most this many bars are scanned and marked with plain Python
over lists: a numpy call costs about as much as a dozen list steps, and most stretches are
a day or less (see Backtest._quiet_end)."""


def _union(times: list[np.ndarray]) -> np.ndarray:
    """The sorted union of int64 arrays of times (np.unique hashes: a sort and one
    comparison cost a third of it). Arrays that are all the same strictly rising times
    (one stock, or stocks with a bar at the same times) are their own union: two
    comparisons instead of a sort."""
    first = times[0]
    if all(t is first or np.array_equal(t, first) for t in times[1:]) and bool(
        (first[1:] > first[:-1]).all()
    ):
        return first
    joined = np.sort(np.concatenate(times))
    keep = np.empty(len(joined), dtype=bool)
    keep[:1] = True
    np.not_equal(joined[1:], joined[:-1], out=keep[1:])
    return joined[keep]


def _time_columns(*columns: list[Any]) -> list[Any]:
    """Result columns of times: a column of KST datetimes becomes
    ``datetime64[us, Asia/Seoul]`` (what pandas infers from the objects, at a fraction of the
    cost); any other column (``None`` in it, other zones) is left to pandas as it is.

    The columns of one table share most of their objects (an order's last update is its
    fill's time, a trade's entry that fill's), so each distinct object is converted once
    (:func:`_kst_us`)."""
    flat = list(chain.from_iterable(columns))
    if not flat:
        return list(columns)
    ids = np.fromiter(map(id, flat), dtype=np.uint64, count=len(flat))
    _, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    objs = list(map(flat.__getitem__, first.tolist()))
    if set(map(type, objs)) == {datetime} and _only_kst(set(map(_TZINFO, objs))):
        kst = np.ones(len(objs), dtype=bool)
        us = _kst_us(objs)
    else:
        kst = np.fromiter(
            (type(v) is datetime and v.tzinfo is KST for v in objs), dtype=bool, count=len(objs)
        )
        us = np.zeros(len(objs), dtype=np.int64)
        if kst.any():
            us[kst] = _kst_us([v for v, ok in zip(objs, kst.tolist(), strict=True) if ok])
    out: list[Any] = []
    at = 0
    for col in columns:
        rows = inverse[at : at + len(col)]
        at += len(col)
        if not col or not kst[rows].all():
            out.append(col)
            continue
        index = pd.DatetimeIndex(us[rows].view("datetime64[us]"))
        out.append(index.tz_localize("UTC").tz_convert(TZ))
    return out


def _kst_us(times: list[datetime]) -> np.ndarray:
    """Microseconds since the epoch (UTC) of datetimes whose tzinfo is ``KST``, exactly.

    Each time's wall clock is its difference from 1970-01-01 00:00 in KST: with the same
    tzinfo on both sides that is a plain difference of fields, no zone lookup (asking the
    zone per object, as ``timestamp()`` does, costs several times more). pandas places the
    wall clocks on the UTC line in one step; a wall clock that a daylight-saving change made
    ambiguous or skipped (Seoul, 1987-88 and earlier) comes out NaT there and is taken from
    the object's own ``timestamp()``, which reads its ``fold``."""
    wall = np.fromiter(
        map(floordiv, map(sub, times, repeat(_KST_EPOCH)), repeat(_ONE_US)),
        dtype=np.int64,
        count=len(times),
    )
    utc = pd.DatetimeIndex(wall.view("M8[us]")).tz_localize(
        TZ, ambiguous="NaT", nonexistent="NaT"
    ).asi8.copy()
    for i in np.flatnonzero(utc == _NAT).tolist():
        v = times[i]
        utc[i] = round(v.timestamp() - v.microsecond / 1e6) * 1_000_000 + v.microsecond
    return utc


_KST_EPOCH = datetime(1970, 1, 1, tzinfo=KST)
_ONE_US = timedelta(microseconds=1)
_NAT = np.iinfo(np.int64).min
_TZINFO = attrgetter("tzinfo")
_FIRST, _SECOND = itemgetter(0), itemgetter(1)


def _only_kst(zones: set[Any]) -> bool:
    return len(zones) == 1 and next(iter(zones)) is KST


def _table(rows: list[Any], fields: str, by_row: bool = False) -> list[list[Any]]:
    """The attributes ``fields`` (space-separated, dotted allowed) of ``rows``, one list
    per field, each read by ``map`` over an ``attrgetter``: no Python frame per value, and
    (unlike one getter of every field and a transposition) no tuple per row.

    ``by_row``: one getter of every field per row, then the transposition, for rows that
    keep their fields in an instance dict (``RoundTrip``): each dict is then read once
    instead of once per field, which saves more than the tuples cost (about 40 %)."""
    names = fields.split()
    if not by_row or len(names) == 1:  # attrgetter of one name gives the value, no tuple
        return [list(map(attrgetter(name), rows)) for name in names]
    if not rows:
        return [[] for _ in names]
    return [list(column) for column in zip(*map(attrgetter(*names), rows), strict=True)]


def _numbers(values: Sequence[Any]) -> np.ndarray:
    """A column of ints or floats (never ``None``) as the array pandas would infer from
    them (int64 when all are ints, else float64), built by numpy without pandas' scan."""
    return np.array(values)


class _CodeState:
    """Per-stock cursor over its bars during the run."""

    __slots__ = ("c_np", "close", "code", "daily_slots", "h_np", "hi", "hi_np", "high",
                 "l_np", "lo", "lo_np", "marked", "n", "o_np", "ptr", "rc", "rc_np", "t_np",
                 "times", "windows")

    def __init__(self, code: str, frame: pd.DataFrame, first_row: int, n: int):
        # plain lists: indexing them in the bar loop is several times cheaper than numpy;
        # the columns read on every bar or stretch only (a list of 200,000 costs ~7 ms)
        self.code = code
        self.t_np = pd.DatetimeIndex(frame.index).as_unit("ns").asi8
        o, h, lo, c = (
            frame[k].to_numpy(dtype=np.float64) for k in ("open", "high", "low", "close")
        )
        self.times: list[int] = self.t_np.tolist()
        self.o_np, self.l_np = o, lo  # read on visited bars only: .item(i) is a float
        self.high: list[float] = h.tolist()
        self.close: list[float] = c.tolist()
        # numpy columns for passing quiet stretches in one step (see Backtest._quiet_end)
        self.c_np = c
        self.h_np = h
        # the bar's lowest price, open included; -inf where high = low (maybe locked at a
        # limit: such a bar of a held stock is always visited)
        self.lo_np = np.where(np.round(h) == np.round(lo), -np.inf, np.minimum(o, lo))
        self.hi_np = np.maximum(o, h)  # and its highest
        self.rc_np = np.round(c).astype(np.int64)  # the close as the paper broker marks it
        # the same as lists, for stretches too short to pay numpy's call costs (_SHORT)
        self.lo: list[float] = self.lo_np.tolist()
        # the highest price is the high itself where no open lies above it (valid bars):
        # then one list serves both
        self.hi: list[float] = (
            self.high if np.array_equal(self.hi_np, h) else self.hi_np.tolist()
        )
        self.rc: list[int] = self.rc_np.tolist()
        self.ptr = first_row
        self.n = n
        self.windows: list[tuple[StrategySlot, Bars, list[bool] | None]] = []
        """(strategy, its window, the bars it may signal on or ``None`` for every bar)"""
        self.marked: np.ndarray | None = None
        """Per row: some strategy may signal there (the union of the windows' masks;
        ``None`` when no window has a mask)."""
        self.daily_slots: list[StrategySlot] = []
        """Strategies with ``timeframes: [daily, …]`` deciding on daily bars derived from
        these minute bars (once a day: at ``decide_at``, else at the day's last bar)."""


@dataclass
class _Run:
    """What the bar loop and the quiet stretches share during one run (bar numbers are
    positions in the timeline, the union of the stocks' bar times)."""

    states: dict[str, _CodeState]
    timeline: np.ndarray
    times: list[int]
    day_of: list[int]
    new_day: np.ndarray
    """Per bar: it opens a trading day."""
    day_starts: list[int]
    """The bars opening a day after the first one, then the number of bars."""
    year_starts: list[int] | None
    """With ``on_year_end``: the bars opening a year, then the number of bars."""
    next_mark: list[int]
    """Per bar ``k`` (and ``n``): the first bar at or after it on which a strategy may
    signal on some stock (``signal_bars``), else the number of bars."""
    multi_day: bool
    close_exits: bool
    time_cuts: bool
    watch_equity: bool
    aligned: bool = False
    """Every stock has a bar at every time of the timeline: bar ``k`` is row ``ptr`` of
    each stock when the loop is at ``k`` (no searching for rows)."""
    year_set: frozenset[int] = frozenset()
    spans: list[tuple[int, int, int, int, int, int]] = field(default_factory=list)
    """Quiet stretches whose cash and holdings columns are still to be written
    (:meth:`Backtest._write_spans`): ``(k, j, cash KRW, shares, first row, stock)`` for bars
    ``k … j-1``, holding ``shares`` of the stock at ``stocks[stock]`` from its row
    ``first row`` on (``stock`` -1: nothing held)."""
    stocks: list[_CodeState] = field(init=False)
    """The stocks in ``states``' order (``spans`` name them by position there)."""
    stock_at: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.stocks = list(self.states.values())
        self.stock_at = {st.code: i for i, st in enumerate(self.stocks)}

    def end_row(self, st: _CodeState, k: int, j: int) -> int:
        """The row after ``st``'s last bar before bar ``j`` of the timeline, when the loop
        is at bar ``k``: its rows ``st.ptr … end-1`` are its bars among ``k … j-1``."""
        if self.aligned:
            return st.ptr + j - k
        if j >= len(self.times):
            return st.n
        return bisect.bisect_left(st.times, self.times[j], st.ptr, st.n)


class _NearOverflow(Exception):
    """Equity near int64's end: the stretch is walked bar by bar (the loop raises
    ``EquityOverflowError`` at the bar that crosses the limit)."""


class Backtest:
    """Runs strategies over historical bars through the one ``Trader``.

    Parameters
    ----------
    strategies:
        Instantiated strategies; each trades the codes of its universe that have bars.
    bars:
        Stock code → OHLCV DataFrame (index tz Asia/Seoul, ascending, unique).
    settings:
        :class:`BacktestSettings`.
    run_id:
        Tag of the run in the database and reports (default: a new uuid4 hex).

    Raises ``DataError`` when no strategy has any bars inside the date range.
    """

    def __init__(
        self,
        strategies: list[BaseStrategy],
        bars: dict[str, pd.DataFrame],
        settings: BacktestSettings | None = None,
        run_id: str | None = None,
    ):
        self.settings = settings or BacktestSettings()
        self.run_id = run_id or uuid.uuid4().hex
        self.strategies = strategies
        self.bars = {code: self._clip(code, frame) for code, frame in bars.items()}
        self._windows: list[tuple[str, str, Bars]] = []
        self._daily_done: dict[tuple[str, str], int] = {}
        self._now_ns = 0
        self._now_cache: tuple[int, datetime] | None = None
        self.on_year_end: Callable[[int, int], None] | None = None
        """Called as ``on_year_end(year, equity_krw)`` when the run crosses into a new year,
        with the equity at the close of that year's last bar; an exception it raises ends the
        run (the optimiser prunes trials this way)."""
        s = self.settings
        self.fees = FeeModel(s.commission_rate, s.sell_tax_rate)
        self.journal = MemoryJournal()
        self._data = HistoricalDataProvider(self.bars, self.now)
        self._funds, self.broker = paper_account(
            s.cash_krw, self.fees, strategies, clock=self.now, slippage_ticks=s.slippage_ticks
        )
        risk = RiskManager(s.risk_limits)
        self._risk = risk
        self._bands: dict[str, tuple[int, tuple[float, float, float, bool] | None]] = {}
        self.trader = build_engine(
            strategies,
            broker=self.broker,
            executor=self.broker,
            data_provider=self._data,
            journal=self.journal,
            fees=self.fees,
            clock=self.now,
            order_prefix=f"bt{self.run_id[:8]}",
            funds=self._funds,
            risk=risk,
            order_policy=s.order_policy,
            stop_on_strategy_failure=s.stop_on_strategy_failure,
        )
        self.session = TradingSession(
            self.trader,
            risk,
            expire_day_orders=self.broker.expire_session,
            fill_exit=self._fill_exit,
        )
        from core.universe import UniverseScreens

        self.screens = UniverseScreens(
            self.trader.slots,
            lambda name: [p.stock_code for p in self.trader.positions(name)],
            self.trader.publish,
            self.trader.clock,
        )
        """Screened universes (``universe:`` as a screen), run before each day's first bar."""

    def _screen_day(self, day: date) -> None:
        """Each screened strategy's universe for ``day`` from bars before ``day``."""
        cut = pd.Timestamp(day, tz=TZ)
        data = {}
        for slot in self.screens.slots.values():
            for code in slot.strategy.config.universe:
                if code in self.bars and code not in data:
                    frame = self.bars[code]
                    data[code] = frame.iloc[: int(frame.index.searchsorted(cut))]
        self.screens.run(day, data)

    def _fill_exit(self, order: Order, price: float) -> None:
        if order.broker_order_id is not None:
            self.broker.fill_at(order.broker_order_id, self.now(), round(price))

    def _clip(self, code: str, frame: pd.DataFrame) -> pd.DataFrame:
        end = self.settings.end
        if end is not None:
            frame = frame.loc[frame.index < pd.Timestamp(end, tz=TZ) + pd.Timedelta(days=1)]
        return frame

    def now(self) -> datetime:
        """Current time of the historical clock (the bar being processed)."""
        cached = self._now_cache
        if cached is None or cached[0] != self._now_ns:
            ns = self._now_ns
            if ns % 1_000_000_000:
                when = (_EPOCH + timedelta(microseconds=ns // 1_000)).astimezone(KST)
            else:  # a whole second, as bar times are: the same datetime at a third of the cost
                when = datetime.fromtimestamp(ns // 1_000_000_000, KST)
            cached = (ns, when)
            self._now_cache = cached
        return cached[1]

    # --- run ---------------------------------------------------------------------------
    def _prepare(self) -> tuple[list[_CodeState], np.ndarray]:
        """The look-ahead check (``LookaheadError``), then the stocks' cursors, windows and
        signal masks, and the timeline (``DataError`` when nothing can trade)."""
        # the check computes every indicator over the whole history: the windows reuse it
        indicators: dict[tuple[str, str], Any] = {}
        if not self.settings.allow_lookahead:
            require_causal(self.strategies, self.bars, indicators)
        start_ns = pd.Timestamp(self.settings.start, tz=TZ).value if self.settings.start else None
        states: dict[str, _CodeState] = {}
        for code, frame in sorted(self.bars.items()):
            times = pd.DatetimeIndex(frame.index).as_unit("ns").asi8
            first = int(np.searchsorted(times, start_ns)) if start_ns is not None else 0
            if first < len(times):
                states[code] = _CodeState(code, frame, first, len(times))
        for slot in self.trader.slots.values():
            wanted = slot.strategy.universe
            missing = [c for c in wanted if c not in states]
            if missing:
                self.trader.publish(
                    DataMissing(
                        at=self.now(),
                        message=f"{slot.name}: no bars for {', '.join(missing)} "
                        "in the range; those codes are skipped",
                        level="warning",
                        strategy=slot.name,
                    )
                )
            frames = slot.strategy.config.timeframes  # () = one timeframe, as before
            for code in wanted:
                if code not in states:
                    continue
                # only strategies with timeframes ask (is_intraday scans the whole index)
                minute_data = bool(frames) and is_intraday(self.bars[code])
                if minute_data and "daily" in frames:
                    states[code].daily_slots.append(slot)
                if minute_data and "minute" not in frames:
                    continue
                window = self.trader.build_window(
                    slot, code, self.bars[code], indicators.get((slot.name, code))
                )
                mask = self.trader.signal_mask(slot, window)
                st = states[code]
                if mask is not None:
                    st.marked = mask.copy() if st.marked is None else st.marked | mask
                # the loop reads the mask bar by bar: a list (numpy's item access is slower)
                st.windows.append((slot, window, None if mask is None else mask.tolist()))
        self._windows = [
            (slot.name, st.code, w) for st in states.values() for slot, w, _ in st.windows
        ]
        active = [st for st in states.values() if st.windows or st.daily_slots]
        if not active:
            raise DataError("no strategy has bars to trade inside the chosen date range")
        return active, _union([st.t_np[st.ptr : st.n] for st in active])

    def run(self) -> BacktestResult:
        """Run the whole backtest and return its :class:`BacktestResult`.

        Raises ``LookaheadError`` (an indicator uses later bars) before the first bar, and
        ``StrategyDisabledError`` when a strategy keeps failing."""
        # The run keeps every order, fill and journal entry, so the cyclic collector would
        # rescan a growing heap again and again (about a fifth of the time on 200,000 bars);
        # it is paused for the run. Reference counting still frees everything at once.
        collecting = gc.isenabled()
        gc.disable()
        try:
            return self._run()
        finally:
            if collecting:
                gc.enable()

    def _run(self) -> BacktestResult:
        t0 = time.perf_counter()
        states, timeline = self._prepare()
        n = len(timeline)
        local = timeline + _KST_OFFSET_NS
        days = local // _NS_PER_DAY
        intraday = bool((local % _NS_PER_DAY).any())
        trader, broker, session = self.trader, self.broker, self.session
        policy = self.settings.order_policy
        session.intraday_timeouts = intraday and (
            policy.buy_timeout_s is not None or policy.sell_timeout_s is not None
        )
        exits = [trader.exit_policy(name) for name in trader.slots]
        close_exits = any(e.exit_at_close for e in exits)
        time_cuts = any(e.max_holding_days is not None for e in exits)
        decide_at = intraday and any(
            slot.strategy.config.decide_at is not None for slot in trader.slots.values()
        )
        cash = np.empty(n, dtype=np.int64)
        holdings = np.empty(n, dtype=np.int64)
        # a stock with a bar at every time of the run from its first bar has the timeline's
        # list already (the common single-stock case)
        whole = [st.times for st in states if st.ptr == 0 and st.n == n]
        times: list[int] = whole[0] if whole else timeline.tolist()
        day_of: list[int] = days.tolist()
        prices = trader.prices
        last_price = broker._last_price
        held = broker._holdings
        on_year_end = self.on_year_end
        funds = self._funds
        limits = self.settings.risk_limits
        watch_equity = (
            limits.daily_loss_limit_pct is not None or limits.portfolio_stop_pct is not None
        )
        pending = broker._pending
        history = self.journal.history
        bands = self._bands
        bands.clear()
        marked: tuple[int, int] | None = None  # (cash, day) of the last flat equity check
        self._now_ns = int(timeline[0])
        screens, today = self.screens, self.screens.today
        screening = bool(screens)  # asked once: UniverseScreens.__bool__ is a Python call
        if screening:
            screens.check_backtest()
        trader.start()
        cur_day = None
        bar = tqdm(
            total=n,
            disable=not self.settings.progress,
            unit="bar",
            mininterval=0.5,
            desc="backtest",
        )
        # Quiet stretches (no order resting, no marked bar, no bar that can fire an exit of
        # a held stock or a risk limit; see _quiet_end) are passed in one step. Not with
        # decide_at or order timeouts, which look at every bar.
        skip_ok = (
            not decide_at
            and not session.intraday_timeouts
            and all(mask is not None for st in states for _, _, mask in st.windows)
            and not any(st.daily_slots for st in states)  # they decide at each day's last bar
        )
        opens = np.ones(n, dtype=bool)
        opens[1:] = days[1:] != days[:-1]
        year_starts = None
        if on_year_end is not None:
            years = (days.astype("datetime64[D]").astype("datetime64[Y]")).astype(np.int64)
            year_starts = [*(np.flatnonzero(years[1:] != years[:-1]) + 1).tolist(), n]
        run = _Run(
            states={st.code: st for st in states},
            timeline=timeline,
            times=times,
            day_of=day_of,
            new_day=opens,
            day_starts=[*(np.flatnonzero(opens[1:]) + 1).tolist(), n],
            year_starts=year_starts,
            next_mark=self._next_marks(states, timeline),
            multi_day=skip_ok and not screening,
            close_exits=close_exits,
            time_cuts=time_cuts,
            watch_equity=watch_equity,
            aligned=all(st.n - st.ptr == n for st in states),
        )
        run.year_set = frozenset(run.year_starts or ())
        next_mark = run.next_mark
        updated = 0
        k = 0
        while k < n:
            t = times[k]
            day = day_of[k]
            if skip_ok and cur_day is not None and not pending and next_mark[k] != k:
                passed = self._pass_short(run, k, cur_day, cash, holdings) if run.aligned else None
                if passed is None:
                    passed = self._pass_stretch(run, k, cur_day, cash, holdings)
                if passed[0] > k:
                    k, cur_day = passed
                    marked = None if held else (funds.cash_krw, cur_day)
                    continue
            if day != cur_day:
                if cur_day is not None:  # at the time of the day's last bar
                    session.close_day(_to_date(cur_day))
                    if on_year_end is not None and _to_date(cur_day).year != _to_date(day).year:
                        self._write_spans(run, cash, holdings)
                        on_year_end(_to_date(cur_day).year, int(cash[k - 1] + holdings[k - 1]))
                self._now_ns = t
                cur_day = day
                if screening:
                    self._screen_day(_to_date(day))
                session.open_day(_to_date(day), time_cut=False)
            self._now_ns = t
            deciding: list[tuple[_CodeState, int]] = []
            for st in states:  # fills at the open, exits in the bar, prices at the close
                i = st.ptr
                if i >= st.n or st.times[i] != t:
                    continue
                st.ptr = i + 1
                deciding.append((st, i))
                code = st.code
                close = st.close[i]
                c = round(close)
                holding = code in held
                if holding or code in pending:
                    h, lo = round(st.high[i]), round(st.l_np.item(i))
                    # a bar locked at the limit-down (high = low) fills no sell, no exit
                    locked = (
                        broker.locked_side(code, self.now(), h, lo) if holding and h == lo else None
                    )
                    if code in pending:
                        broker.process_bar(code, self.now(), round(st.o_np.item(i)), h, lo, c)
                        trader.poll_orders(code)
                    if code in held and locked is not OrderSide.SELL:
                        o, hi, low = st.o_np.item(i), st.high[i], st.l_np.item(i)
                        band = self._band(code)
                        # inside the band nothing can happen (exit_band)
                        if (
                            band is None
                            or not (o > band[0] and low > band[0] and o < band[1] and hi < band[1])
                            or (hi > band[2] and band[3])
                        ):
                            session.bar(code, o, hi, low)
                            bands.pop(code, None)
                        elif hi > band[2]:  # a new high without a trailing stop: peaks only
                            trader.raise_peaks(code, hi)
                            bands[code] = (len(history), (band[0], band[1], hi, False))
                prices[code] = close
                last_price[code] = c
                if close_exits and code in held and (
                    i + 1 >= st.n or (st.times[i + 1] + _KST_OFFSET_NS) // _NS_PER_DAY != day
                ):
                    for order in session.exit_at_close(code):
                        self._fill_exit(order, c)
                    trader.poll_orders(code)
            # loss lock and portfolio stop at the close, before decisions; while flat the
            # equity is the cash, and the same cash on the same day gives the same answer
            if watch_equity and (held or marked != (funds.cash_krw, day)):
                session.mark_equity()
                marked = None if held else (funds.cash_krw, day)
            for st, i in deciding:  # strategies decide at the close
                for slot, window, mask in st.windows:
                    if screening and slot.name in today and st.code not in today[slot.name]:
                        continue  # screened out today (held codes are always in)
                    multi = bool(slot.strategy.config.timeframes)
                    if slot.active and (
                        not decide_at or multi or session.decides_now(slot, self.now())
                    ):
                        if mask is not None and not mask[i]:
                            continue  # signal_bars: the strategy answers None here
                        window.resize(i + 1)
                        trader.evaluate(
                            slot, st.code, window, timeframe="minute" if intraday and multi
                            else None,
                        )
                if st.daily_slots:
                    self._decide_daily(st, i, day)
            if session.intraday_timeouts and trader.manage_timeouts():
                trader.poll_orders()
            if time_cuts and (k + 1 == n or day_of[k + 1] != day):
                session.time_cut(_to_date(day), include_last=True)
            book = broker.cash_krw
            value = sum([h[0] * last_price[c] for c, h in held.items()]) if held else 0
            if abs(book) + value > MAX_EQUITY_KRW:  # int64 columns below: stop, never wrap
                raise EquityOverflowError(self.now(), book, value)
            cash[k] = book
            holdings[k] = value
            k += 1
            if k - updated >= 4096:
                bar.update(k - updated)
                updated = k
        if cur_day is not None:
            session.close_day(_to_date(cur_day))
        self._write_spans(run, cash, holdings)
        bar.update(n - updated)
        bar.close()
        elapsed = time.perf_counter() - t0
        return self._result(timeline, cash, holdings, elapsed)

    # --- quiet stretches ---------------------------------------------------------------
    def _band(self, code: str) -> tuple[float, float, float, bool] | None:
        """``Trader.exit_band`` of ``code``, kept while the journal's length says that no
        order or fill changed the positions since."""
        cached = self._bands.get(code)
        stamp = len(self.journal.history)
        if cached is None or cached[0] != stamp:
            cached = (stamp, self.trader.exit_band(code))
            self._bands[code] = cached
        return cached[1]

    @staticmethod
    def _stretch_bound(run: _Run, k: int, opens_day: bool, positions: list[Any]) -> int:
        """The furthest end ``j`` a quiet stretch from bar ``k`` may have before its stocks'
        bars are looked at (``j <= k``: none): the next marked bar, the day's end unless
        stretches may cross days (nor a year's end with ``on_year_end``), the day's last bar
        while a time cut could place an order; none with ``exit_at_close`` positions, nor
        on a bar opening a day that may not be crossed. ``positions``: the open ones."""
        mark = run.next_mark[k]
        if mark == k or (positions and run.close_exits):
            return k
        if opens_day and (not run.multi_day or k in run.year_set):
            return k
        starts = run.day_starts
        nxt = starts[bisect.bisect_right(starts, k)]
        j = len(run.times) if run.multi_day else nxt
        if run.year_starts is not None:
            j = min(j, run.year_starts[bisect.bisect_right(run.year_starts, k)])
        if positions and run.time_cuts:  # the day's last bar places the time cut
            j = min(j, nxt - 1)
        return min(j, mark)

    def _pass_stretch(
        self, run: _Run, k: int, cur_day: int, cash_col: np.ndarray, hold_col: np.ndarray
    ) -> tuple[int, int]:
        """The quiet stretch from bar ``k`` (:meth:`_quiet_end`) passed in one step, its
        cash and holdings columns written: ``(j, the day of bar j-1)``, ``j == k`` when bar
        ``k`` is not quiet."""
        try:
            j, equity, opens = self._quiet_end(run, k, cur_day)
        except _NearOverflow:  # bar by bar: the loop raises at the bar crossing the limit
            return k, cur_day
        if j <= k:
            return k, cur_day
        cash_col[k:j] = self._funds.cash_krw
        hold_col[k:j] = self._holdings_series(run, k, j)
        return j, self._pass_quiet(run, k, j, equity, cur_day, opens)

    def _pass_short(
        self, run: _Run, k: int, cur_day: int, cash_col: np.ndarray, hold_col: np.ndarray
    ) -> tuple[int, int] | None:
        """A quiet stretch from bar ``k`` when every stock has a bar at every time
        (``run.aligned``) and it is at most ``_SHORT`` bars long: found, marked and passed in
        one walk over plain lists, doing what :meth:`_quiet_end`, :meth:`_holdings_series`
        and :meth:`_pass_quiet` do (the cash and holdings columns of its bars written).
        Returns ``(j, the day of bar j-1)`` (``j == k``: bar ``k`` is not quiet), or
        ``None`` when the stretch may be longer (those methods pass it with numpy)."""
        trader, risk = self.trader, self._risk
        positions = trader.positions()
        opens_day = run.day_of[k] != cur_day
        j = self._stretch_bound(run, k, opens_day, positions)
        if j <= k:
            return k, cur_day
        if j - k > _SHORT:
            return None
        states = run.states
        one_code = len(positions) == 1
        codes = [positions[0].stock_code] if one_code else {p.stock_code for p in positions}
        for code in codes:
            cs = states.get(code)
            if cs is None:
                continue  # no bars: its price and exits never move
            band = self._band(code)
            if band is None:
                return k, cur_day
            stop, target, peak, trailing = band
            lo, hi, high = cs.lo, cs.hi, cs.high
            ptr = cs.ptr
            for r in range(ptr, ptr + j - k):
                if lo[r] <= stop or hi[r] >= target or (trailing and high[r] > peak):
                    j = k + r - ptr
                    break
            if j <= k:
                return k, cur_day
        cash = self._funds.cash_krw
        opens = self._opens(run, k, j)
        closes: list[float] | None = None
        equity: list[int] | None = None
        if not positions:
            low = top = cash
        elif len(positions) == 1 and positions[0].stock_code in states:  # the common case
            # one position: the marks rise and fall with the close (int() is monotonic), so
            # the lowest and highest closes give the lowest and highest marks
            one = states[positions[0].stock_code]
            shares = positions[0].qty
            closes = one.close[one.ptr : one.ptr + j - k]
            low, top = cash + int(shares * min(closes)), cash + int(shares * max(closes))
            if top - cash > MAX_EQUITY_KRW / 4:  # near int64's end: bar by bar
                return k, cur_day
        else:
            try:
                marks = self._equity_series(run, k, j, positions)
            except _NearOverflow:  # bar by bar: the loop raises at the bar crossing the limit
                return k, cur_day
            assert isinstance(marks, list)  # noqa: S101 - aligned and short: a list
            equity = marks
            low, top = min(equity), max(equity)
        mark: Callable[[int], int]  # the equity at the close of bar k+i (KRW)
        if equity is not None:
            mark = equity.__getitem__
        elif closes is None:

            def mark(i: int) -> int:
                return cash

        else:
            held_closes = closes

            def mark(i: int) -> int:
                return cash + int(shares * held_closes[i])

        if run.watch_equity:
            before = trader.equity_krw() if opens_day else 0
            if not risk.marks_quiet(low, max(top, before) if opens_day else top):
                if equity is None:
                    equity = [mark(i) for i in range(j - k)]
                m = risk.first_limit_hit(equity, opens, before)
                if not m:
                    return k, cur_day
                if m < j - k:
                    j, opens = k + m, [d for d in opens if d < m]
                    top = max(equity[:m])
        self._defer_columns(run, k, j, cash, cash_col, hold_col)
        if opens:
            cur_day = self._pass_days(run, k, opens, cur_day, mark)
        if run.watch_equity and top > (risk.peak_equity_krw or 0):
            risk.pass_marks(top)
        self._advance(run, k, j)
        return j, cur_day

    def _defer_columns(
        self, run: _Run, k: int, j: int, cash: int, cash_col: np.ndarray, hold_col: np.ndarray
    ) -> None:
        """The cash and holdings columns of the short quiet stretch ``k … j-1``: kept in
        ``run.spans`` when at most one stock is held (written at once by
        :meth:`_write_spans`, a few numpy calls for all of them instead of two per stretch),
        else written now."""
        holdings = self.broker._holdings
        if not holdings:
            run.spans.append((k, j, cash, 0, 0, -1))
            return
        if len(holdings) == 1:
            ((code, (qty, _)),) = holdings.items()
            at = run.stock_at.get(code)
            if at is not None:
                run.spans.append((k, j, cash, qty, run.stocks[at].ptr, at))
                return
        cash_col[k:j] = cash
        hold_col[k:j] = self._holdings_series(run, k, j)

    @staticmethod
    def _write_spans(run: _Run, cash_col: np.ndarray, hold_col: np.ndarray) -> None:
        """Write the columns of the stretches kept in ``run.spans`` (and forget them): the
        cash, and the shares times the stock's close rounded to the won (the paper
        account's mark, as :meth:`_holdings_series` gives it)."""
        if not run.spans:
            return
        spans = np.array(run.spans, dtype=np.int64)
        run.spans.clear()
        first, lengths = spans[:, 0], spans[:, 1] - spans[:, 0]
        span = np.repeat(np.arange(len(spans)), lengths)  # the span of each bar written
        offset = np.arange(len(span)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        at = first[span] + offset
        cash_col[at] = spans[span, 2]
        stock = spans[span, 5]
        hold_col[at[stock < 0]] = 0
        for index in np.unique(stock[stock >= 0]).tolist():
            mine = stock == index
            rows = spans[span[mine], 4] + offset[mine]
            hold_col[at[mine]] = spans[span[mine], 3] * run.stocks[index].rc_np[rows]

    def _quiet_end(
        self, run: _Run, k: int, cur_day: int
    ) -> tuple[int, np.ndarray | list[int] | None, list[int] | None]:
        """The end ``j`` of the quiet stretch of bars ``k … j-1`` (``j == k``: none), the
        equity marks (KRW) over it and, when it took them, the day openings in it
        (:meth:`_opens`).

        Quiet, with no order resting: no bar a strategy may signal on (``signal_bars``), no
        bar of a held stock outside its exit band (:meth:`Trader.exit_band`: it could fire
        a protective exit), above its peak with a trailing stop, or with high = low (maybe
        locked at a limit), no mark at which the daily loss lock or the portfolio stop
        would act (:meth:`RiskManager.first_limit_hit`), no day change while screens run
        (nor, with ``on_year_end``, a year change), no last bar of a day while a time cut
        or ``exit_at_close`` could sell. Day changes inside are passed as the loop passes
        them (:meth:`_pass_quiet`)."""
        times = run.times
        positions = self.trader.positions()
        opens_day = run.day_of[k] != cur_day
        j = self._stretch_bound(run, k, opens_day, positions)
        if j <= k:
            return k, None, None
        for code in {p.stock_code for p in positions}:
            cs = run.states.get(code)
            if cs is None:
                continue  # no bars: its price and exits never move
            band = self._band(code)
            if band is None:
                return k, None, None
            stop, target, peak, trailing = band
            ptr = cs.ptr
            end = run.end_row(cs, k, j)
            if end <= ptr:
                continue
            if run.aligned and end - ptr <= _SHORT:
                lo, hi, high = cs.lo, cs.hi, cs.high
                if trailing:
                    for r in range(ptr, end):
                        if lo[r] <= stop or hi[r] >= target or high[r] > peak:
                            j = k + r - ptr
                            break
                else:
                    for r in range(ptr, end):
                        if lo[r] <= stop or hi[r] >= target:
                            j = k + r - ptr
                            break
                if j <= k:
                    return k, None, None
                continue
            loud = cs.lo_np[ptr:end] <= stop
            loud |= cs.hi_np[ptr:end] >= target
            if trailing:
                loud |= cs.h_np[ptr:end] > peak
            first = int(loud.argmax())
            if loud[first]:
                j = min(j, bisect.bisect_left(times, cs.times[ptr + first], k))
                if j <= k:
                    return k, None, None
        equity = self._equity_series(run, k, j, positions)
        if not run.watch_equity:
            return j, equity, None
        before = self.trader.equity_krw() if opens_day else 0
        opens = self._opens(run, k, j)
        m = self._risk.first_limit_hit(equity, opens, before)
        if m < j - k:
            j, equity, opens = k + m, equity[:m], [d for d in opens if d < m]
        return j, equity, opens

    @staticmethod
    def _next_marks(states: list[_CodeState], timeline: np.ndarray) -> list[int]:
        """``_Run.next_mark``: the stocks' marked bars (``signal_bars``) from their first
        bar in the run, placed on the timeline."""
        n = len(timeline)
        at = [np.zeros(0, dtype=np.int64)]
        for st in states:
            if st.marked is None:
                continue
            rows = np.flatnonzero(st.marked[st.ptr :]) + st.ptr
            at.append(np.searchsorted(timeline, st.t_np[rows]))
        marks = np.append(np.unique(np.concatenate(at)), n)
        # bars marks[i-1]+1 … marks[i] all look ahead to marks[i]: one int object per mark,
        # repeated, instead of one per bar (np.repeat(...).tolist() makes every bar's anew)
        counts = np.diff(marks, prepend=-1)
        return list(chain.from_iterable(map(repeat, marks.tolist(), counts.tolist())))

    @staticmethod
    def _opens(run: _Run, k: int, j: int) -> list[int]:
        """The bars among ``k … j-1`` that open a day, counted from ``k``."""
        starts = run.day_starts
        at = bisect.bisect_left(starts, k)
        out = []
        while starts[at] < j:
            out.append(starts[at] - k)
            at += 1
        return out

    def _price_series(
        self, run: _Run, code: str, k: int, j: int, column: str, before: float
    ) -> np.ndarray:
        """``column`` (``c_np`` or ``rc_np``) of ``code``'s last bar at or before each of
        the bars ``k … j-1`` of the timeline; ``before`` until its first bar there."""
        st = run.states.get(code)
        m = j - k
        if st is None:
            return np.full(m, before)
        end = run.end_row(st, k, j)
        values = getattr(st, column)
        if end - st.ptr == m and st.times[st.ptr] == run.times[k]:  # a bar at every time
            return values[st.ptr : end]
        if end <= st.ptr:
            return np.full(m, before)
        at = np.searchsorted(st.t_np[st.ptr : end], run.timeline[k:j], side="right") - 1
        return np.where(at >= 0, values[st.ptr : end][np.maximum(at, 0)], before)

    def _equity_series(
        self, run: _Run, k: int, j: int, positions: list[Any]
    ) -> np.ndarray | list[int]:
        """What :meth:`Trader.equity_krw` gives at each close of bars ``k … j-1`` with
        nothing traded: cash plus each position's shares at the last close (KRW), summed
        as floats in the positions' order and truncated, as there (a list on short
        stretches, the same figures)."""
        cash = self._funds.cash_krw
        m = j - k
        if not positions:
            return [cash] * m if m <= _SHORT else np.full(m, cash, dtype=np.int64)
        prices = self.trader.prices
        if run.aligned and m <= _SHORT:
            states = run.states
            if len(positions) == 1 and positions[0].stock_code in states:  # the common case
                one = states[positions[0].stock_code]
                qty = positions[0].qty
                marks = [int(qty * c) for c in one.close[one.ptr : one.ptr + m]]
                if max(marks) > MAX_EQUITY_KRW / 4:
                    raise _NearOverflow
                return [v + cash for v in marks]
            sums = [0.0] * m
            for pos in positions:
                code, qty = pos.stock_code, pos.qty
                st = states.get(code)
                if st is None:  # no bars: its price never moves
                    held = qty * prices.get(code, pos.avg_price)
                    sums = [v + held for v in sums]
                else:
                    closes = st.close[st.ptr : st.ptr + m]
                    sums = [v + qty * c for v, c in zip(sums, closes, strict=True)]
            marks = [int(v) for v in sums]
            if max(marks) > MAX_EQUITY_KRW / 4:  # near int64's end: bar by bar
                raise _NearOverflow
            return [v + cash for v in marks]
        value: np.ndarray | float = 0.0
        for pos in positions:
            code = pos.stock_code
            value = value + pos.qty * self._price_series(
                run, code, k, j, "c_np", prices.get(code, pos.avg_price)
            )
        equity = np.asarray(value).astype(np.int64)
        if float(equity.max()) > MAX_EQUITY_KRW / 4:  # near int64's end: bar by bar
            raise _NearOverflow
        equity += cash
        return equity

    def _holdings_series(self, run: _Run, k: int, j: int) -> np.ndarray | list[int] | int:
        """The paper account's holdings at each close of bars ``k … j-1`` (KRW): shares
        times the close rounded to the won, as the loop marks them."""
        last = self.broker._last_price
        m = j - k
        if run.aligned and m <= _SHORT:
            states = run.states
            holdings = self.broker._holdings
            if len(holdings) == 1:  # one stock held (the common case): its marks are the sums
                ((code, (qty, _)),) = holdings.items()
                st = states.get(code)
                if st is not None:
                    return [qty * c for c in st.rc[st.ptr : st.ptr + m]]
            sums = [0] * m
            for code, (qty, _) in holdings.items():
                st = states.get(code)
                if st is None:
                    held = qty * last[code]
                    sums = [v + held for v in sums]
                else:
                    marks = st.rc[st.ptr : st.ptr + m]
                    sums = [v + qty * c for v, c in zip(sums, marks, strict=True)]
            return sums
        value: np.ndarray | int = 0
        for code, (qty, _) in self.broker._holdings.items():
            value = value + qty * self._price_series(run, code, k, j, "rc_np", last[code])
        return value

    def _pass_quiet(
        self,
        run: _Run,
        k: int,
        j: int,
        equity: np.ndarray | list[int] | None,
        cur_day: int,
        opens: list[int] | None = None,
    ) -> int:
        """Pass bars ``k … j-1`` of a quiet stretch (:meth:`_quiet_end`) in one step, as
        the bar loop would: each day change closes and opens the days (the day's start
        equity is the mark before it), each held stock's peak takes the stretch's highest
        high, the risk's high-water mark its highest mark, every stock its last close.
        ``opens``: the stretch's day openings when :meth:`_quiet_end` took them. Returns the
        day of bar ``j-1``."""
        if opens is None:
            opens = self._opens(run, k, j)
        if equity is None and (opens or run.watch_equity):
            equity = self._equity_series(run, k, j, self.trader.positions())
        if opens:
            assert equity is not None  # noqa: S101 - computed above when a day opens
            marks = equity
            cur_day = self._pass_days(run, k, opens, cur_day, lambda i: int(marks[i]))
        if run.watch_equity and equity is not None:
            self._risk.pass_marks(int(max(equity) if isinstance(equity, list) else equity.max()))
        self._advance(run, k, j)
        return cur_day

    def _pass_days(
        self, run: _Run, k: int, opens: list[int], cur_day: int, mark: Callable[[int], int]
    ) -> int:
        """The day changes of a quiet stretch from bar ``k``, as the loop makes them: at
        each of ``opens`` (bars counted from ``k``) the day closes at its last bar's time and
        the next opens with the mark before it as its starting equity (``mark(i)``: the
        equity at the close of bar ``k+i``, KRW; the current equity for bar ``k``). Returns
        the last day opened."""
        session, times, day_of = self.session, run.times, run.day_of
        for d in opens:
            self._now_ns = times[k + d - 1]
            session.close_day(_to_date(cur_day))
            self._now_ns = times[k + d]
            cur_day = day_of[k + d]
            start = mark(d - 1) if d else self.trader.equity_krw()
            session.open_day(_to_date(cur_day), start, time_cut=False)
        return cur_day

    def _advance(self, run: _Run, k: int, j: int) -> None:
        """Move every stock past bars ``k … j-1`` of a quiet stretch: a held stock's peak
        takes its highest high there, every stock its last close (the trader's price and
        the paper account's mark), the clock bar ``j-1``."""
        prices, last_price = self.trader.prices, self.broker._last_price
        held = self.broker._holdings
        for st in run.states.values():
            ptr = st.ptr
            end = run.end_row(st, k, j)
            if end <= ptr:
                continue
            if st.code in held:
                band = self._band(st.code)
                if band is not None:
                    high = float(
                        max(st.high[ptr:end]) if end - ptr <= _SHORT else st.h_np[ptr:end].max()
                    )
                    if high > band[2]:
                        self.trader.raise_peaks(st.code, high)
                        self._bands[st.code] = (
                            len(self.journal.history), (band[0], band[1], high, band[3])
                        )
            close = st.close[end - 1]
            prices[st.code] = close
            last_price[st.code] = round(close)
            st.ptr = end
        self._now_ns = run.times[j - 1]

    def _decide_daily(self, st: _CodeState, i: int, day: int) -> None:
        """Daily decisions of multi-timeframe strategies on minute bars: the daily frame
        derived from the minutes so far (today's bar the one forming), once a day at
        ``decide_at`` or else at the stock's last bar of the day."""
        last_of_day = i + 1 >= st.n or (st.times[i + 1] + _KST_OFFSET_NS) // _NS_PER_DAY != day
        now = self.now()
        for slot in st.daily_slots:
            if not slot.active:
                continue
            key = (slot.name, st.code)
            if self._daily_done.get(key) == day:
                continue
            at = slot.strategy.config.decide_at
            if not (last_of_day if at is None else now.time() >= at):
                continue
            self._daily_done[key] = day
            frame = self._data.get_daily_bars(st.code)
            if frame.empty:
                continue
            window = self.trader.build_window(slot, st.code, frame)
            self.trader.evaluate(slot, st.code, window, timeframe="daily")

    # --- results -----------------------------------------------------------------------
    def _result(
        self, timeline: np.ndarray, cash: np.ndarray, holdings: np.ndarray, elapsed: float
    ) -> BacktestResult:
        # from the int64 ns as they are: to_datetime of the array costs 20 times more
        index = pd.DatetimeIndex(timeline.view("M8[ns]")).tz_localize("UTC").tz_convert(TZ)
        equity = pd.DataFrame(
            {"cash_krw": cash, "holdings_value_krw": holdings, "equity_krw": cash + holdings},
            index=index,
        )
        equity.index.name = "time"
        # built column by column from one pass per table (_table): a dict per row costs
        # several times more on long runs, a list comprehension per column twice as much
        book = list(self.journal.orders.values())
        done = self.journal.fills
        trips = self.trader.round_trips()
        # the times of all three tables at once: most are the same objects (_time_columns)
        fill_rows = list(map(_SECOND, done))
        trip_columns = _table(
            trips,
            "strategy stock_code entry_time exit_time entry_price exit_price qty pnl_krw "
            "return_pct fees_krw reasons exit_reasons",
            by_row=True,
        )
        created_at, updated_at, when_col, entry_time, exit_time = _time_columns(
            *_table(book, "created_at updated_at"),
            *_table(fill_rows, "time"),
            *trip_columns[2:4],
        )
        (oid, strategy, code, side, kind, qty, price, status, filled, avg, fee, tax, signal,
         reasons) = _table(
            book,
            "client_order_id strategy stock_code side._value_ order_type._value_ qty price "
            "status._value_ filled_qty avg_fill_price commission_krw tax_krw signal_type reasons",
        )
        orders = pd.DataFrame(
            {
                "client_order_id": oid,
                "strategy": strategy,
                "code": code,
                "side": side,
                "order_type": kind,
                "qty": _numbers(qty),
                "price": price,
                "status": status,
                "filled_qty": _numbers(filled),
                "avg_fill_price": _numbers(avg),
                "commission_krw": _numbers(fee),
                "tax_krw": _numbers(tax),
                "created_at": created_at,
                "updated_at": updated_at,
                "signal_type": [t._value_ if t else None for t in signal],
                "reasons": list(map("; ".join, reasons)),
            }
            if book
            else [],
            columns=list(ORDER_COLUMNS),
        )
        (fid, oid, code, side, qty, price, fee, tax) = _table(
            fill_rows,
            "fill_id client_order_id stock_code side._value_ qty price commission_krw tax_krw",
        )
        fill_qty, fill_price = _numbers(qty), _numbers(price)
        fills = pd.DataFrame(
            {
                "fill_id": fid,
                "client_order_id": oid,
                "strategy": list(map(_FIRST, done)),
                "code": code,
                "side": side,
                "qty": fill_qty,
                "price": fill_price,
                "amount_krw": fill_qty * fill_price,
                "commission_krw": _numbers(fee),
                "tax_krw": _numbers(tax),
                "time": when_col,
            }
            if done
            else [],
            columns=list(FILL_COLUMNS),
        )
        (strategy, code, _, _, entry_px, exit_px, qty, pnl, ret, fees, why, why_out) = trip_columns
        trades = pd.DataFrame(
            {
                "strategy": strategy,
                "code": code,
                "entry_time": entry_time,
                "exit_time": exit_time,
                "entry_price": _numbers(entry_px),
                "exit_price": _numbers(exit_px),
                "qty": _numbers(qty),
                "pnl_krw": _numbers(pnl),
                "return_pct": _numbers(ret),
                "fees_krw": _numbers(fees),
                "reasons": list(map("; ".join, why)),
                "exit_reasons": list(map("; ".join, why_out)),
            }
            if trips
            else [],
            columns=list(TRADE_COLUMNS),
        )
        rows = []
        for p in self.trader.open_positions():
            last = self.broker._last_price.get(p.stock_code, 0)
            rows.append(
                {
                    "strategy": p.strategy,
                    "code": p.stock_code,
                    "qty": p.qty,
                    "avg_price": p.avg_price,
                    "last_price": last,
                    "market_value_krw": p.qty * last,
                    "unrealized_pnl_krw": p.qty * last - p.cost_basis_krw,
                    "opened_at": p.opened_at,
                    "stop_loss": p.stop_loss,
                    "target_price": p.target_price,
                    "reasons": "; ".join(p.reasons),
                }
            )
        positions = pd.DataFrame(rows, columns=list(POSITION_COLUMNS))
        settings = self.settings.describe()
        settings["strategy_stats"] = {
            slot.name: {
                "signals": dict(slot.signals),
                "rejections": dict(slot.rejections),
                "errors": slot.errors,
                "active": slot.active,
            }
            for slot in self.trader.slots.values()
        }
        return BacktestResult(
            run_id=self.run_id,
            strategies=list(self.trader.slots),
            initial_cash_krw=self.settings.cash_krw,
            equity=equity,
            bars={code: frame for code, frame in self.bars.items()},
            orders=orders,
            fills=fills,
            trades=trades,
            positions=positions,
            elapsed_s=elapsed,
            settings=settings,
            events=list(self.journal.events),
            indicators=self._indicators(),
        )

    def _indicators(self) -> dict[str, pd.DataFrame]:
        """Stock code → the strategies' indicator columns over its bars (for the report);
        a column is named ``<strategy>.<column>`` when several strategies trade the code."""
        per_code: dict[str, list[tuple[str, Bars]]] = {}
        for name, code, window in self._windows:
            per_code.setdefault(code, []).append((name, window))
        out: dict[str, pd.DataFrame] = {}
        for code, windows in per_code.items():
            frame = self.bars[code]
            cols: dict[str, np.ndarray] = {}
            for name, window in windows:
                window.resize(len(frame))
                for col in window.columns:
                    if col not in ("open", "high", "low", "close", "volume"):
                        cols[f"{name}.{col}" if len(windows) > 1 else col] = window[col]
            if cols:
                out[code] = pd.DataFrame(cols, index=frame.index)
        return out

    def save(
        self,
        repository: Any,
        result: BacktestResult,
        started_at: datetime,
        summary: dict[str, Any] | None = None,
    ) -> None:
        """Write the run to the database, tagged by ``run_id`` (same tables as live).

        ``repository`` is a :class:`db.repository.Repository`; ``summary`` (the metrics) is
        stored with the run.
        """
        repo = repository
        repo.create_run("backtest", result.settings, started_at, run_id=self.run_id)
        for slot in self.trader.slots.values():
            repo.upsert_strategy(
                slot.name,
                slot.strategy.config.enabled,
                slot.strategy.config.model_dump(mode="json"),
            )
        repo.save_orders_bulk(self.run_id, self.journal.orders.values())
        repo.save_fills_bulk(self.run_id, self.journal.fills)
        for fields_, closed_at in self.journal.closed_positions:
            repo.save_position(self.run_id, status="closed", closed_at=closed_at, **fields_)
        for pos in self.trader.open_positions():
            repo.save_position(self.run_id, status="holding", **position_fields(pos))
        daily = result.equity.groupby(result.equity.index.normalize()).tail(1)
        repo.save_equity_snapshots(
            self.run_id,
            (
                (ts.to_pydatetime(), int(r.cash_krw), int(r.holdings_value_krw), int(r.equity_krw))
                for ts, r in zip(daily.index, daily.itertuples(index=False), strict=True)
            ),
        )
        for ev in result.events:
            repo.log_event(
                ev["kind"],
                ev["message"],
                run_id=self.run_id,
                level=ev["level"],
                data=ev["data"],
                at=ev["at"],
            )
        repo.finish_run(self.run_id, datetime.now(started_at.tzinfo), summary or {})

