"""The realtime feed of a live session: trade ticks and fill notices from the KIS WebSocket.

What it does, on one worker thread, each item under the session's lock:

==================  ===========================================================================
item                effect
==================  ===========================================================================
trade tick          the last price and today's bar of the stock (quotes for strategies come
                    from ticks when subscribed); the stock's 1-minute bar
                    (:mod:`core.minute_bars`); when the book holds the stock: the protective
                    exits at that price (stop loss, take profit, trailing stop) — on every
                    tick; every minute bar the tick completed goes to the minute strategies
fill notice         applied at once through the same idempotent fill path as polling
                    (:meth:`core.trader.Trader.apply_notice`: a notice seen twice, out of
                    order, or a fill a poll already recorded applies once)
socket up           open orders polled at once (a fill may have happened while it was down),
                    registrations planned again
socket down         one line in the journal; prices and fills go on over REST polling
idle (0.5 s)        minute bars whose minute ended are closed
==================  ===========================================================================

Registrations (:meth:`RealtimeFeed.plan`): the fill notice first, then holdings, then symbols
with open orders, then the rest of the universe in the strategies' order, up to the client's
budget (40 by default, the notice included; KIS allows 41). What does not fit stays on REST
polling; the split is in :meth:`RealtimeFeed.status` (``/status``).

While the socket is live (:attr:`RealtimeFeed.live`), the session's ``quotes`` job reads only
the symbols the socket does not cover, and its ``fills`` job polls open orders every
``fill_reconcile_interval_s`` (30 s) instead of every 5 s: polling stays as the reconciler.
"""

from __future__ import annotations

import logging
import queue
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import pandas as pd

from core.minute_bars import MinuteBar, MinuteBook
from framework.bars import Bars
from framework.errors import BrokerError, DataError, KisTraderError
from framework.events import RealtimeChanged
from framework.executor import ExecutionNotice
from framework.realtime import Tick
from framework.types import Quote
from strategies.base import BaseStrategy
from utils.clock import KST

if TYPE_CHECKING:
    from core.live import LiveSession

logger = logging.getLogger(__name__)

IDLE_S = 0.5
MINUTE_CHART_ROWS = 30
"""Rows of one ``FHKST03010200`` call (today's minute chart)."""


class PushClient(Protocol):
    """What the feed needs of :class:`api.kis_ws.KISWebSocket`."""

    on_tick: Callable[[Tick], object] | None
    on_notice: Callable[[ExecutionNotice], object] | None
    on_state: Callable[[bool], object] | None

    @property
    def capacity(self) -> int: ...

    @property
    def live(self) -> bool: ...

    @property
    def symbols(self) -> list[str]: ...

    def start(self) -> None: ...

    def stop(self, timeout_s: float = 10.0) -> None: ...

    def set_symbols(self, codes: Iterable[str]) -> list[str]: ...

    def status(self) -> dict[str, Any]: ...


def has_indicators(strategy: BaseStrategy) -> bool:
    return type(strategy).indicators is not BaseStrategy.indicators


class RealtimeFeed:
    """Ticks and fill notices of one :class:`~core.live.LiveSession`; see the module
    docstring.

    Parameters
    ----------
    session:
        The live session (its lock, trader, trading rules, clock and market).
    client:
        The WebSocket client (:class:`api.kis_ws.KISWebSocket`); its callbacks are set here.
    fill_reconcile_interval_s:
        Seconds between polls of open orders while the socket is live.
    seed_minute_bars:
        Read today's minute chart of the subscribed symbols of minute strategies in the
        background at start.
    requests_per_s:
        The account's REST rate (for the seeding estimate in the log).
    """

    def __init__(
        self,
        session: LiveSession,
        client: PushClient,
        *,
        fill_reconcile_interval_s: float = 30.0,
        seed_minute_bars: bool = True,
        requests_per_s: float | None = None,
    ):
        self.session = session
        self.client = client
        self.fill_reconcile_interval_s = fill_reconcile_interval_s
        self.seed_minute_bars = seed_minute_bars
        self.requests_per_s = requests_per_s
        self.minutes = MinuteBook()
        self.ws_codes: list[str] = []
        self.rest_codes: list[str] = []
        self.ticks = 0
        self.exits = 0
        self.notices = 0
        self.notices_applied = 0
        self.minute_bars = 0
        self.errors = 0
        self.seeded: dict[str, int] = {}
        self.tick_latency_s: deque[float] = deque(maxlen=20_000)
        """Seconds from a tick's arrival to the end of its processing (exits included)."""
        self._last_reconcile: datetime | None = None
        self._queue: queue.SimpleQueue[tuple[str, Any, float]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._seeder: threading.Thread | None = None
        client.on_tick = lambda t: self._queue.put(("tick", t, time.perf_counter()))
        client.on_notice = lambda n: self._queue.put(("notice", n, time.perf_counter()))
        client.on_state = lambda up: self._queue.put(("state", up, time.perf_counter()))

    # --- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        """Plan the registrations, start the worker, the client and (when wanted) the
        seeding of today's minute bars."""
        self.plan()
        self._stop.clear()
        self._worker = threading.Thread(target=self._run, name="realtime", daemon=True)
        self._worker.start()
        self.client.start()
        if self.seed_minute_bars:
            codes = [c for c in self.ws_codes if c in self._minute_codes()]
            if codes:
                self._seeder = threading.Thread(
                    target=self._seed, args=(codes,), name="minute-seed", daemon=True
                )
                self._seeder.start()

    def stop(self) -> None:
        """Stop the client and the worker (idempotent)."""
        self.client.stop()
        self._stop.set()
        self._queue.put(("stop", None, 0.0))
        if self._worker is not None:
            self._worker.join(10)
            self._worker = None

    @property
    def live(self) -> bool:
        """The socket is connected with its fill notice registered."""
        return self.client.live

    def covers(self, code: str) -> bool:
        """Whether ``code``'s prices come from ticks now."""
        return self.client.live and code in self._covered

    @property
    def _covered(self) -> set[str]:
        return set(self.client.symbols)

    # --- registrations ---------------------------------------------------------------------
    def plan(self) -> list[str]:
        """Give the socket its symbols in priority order (holdings, open orders, the rest of
        the universe); returns the symbols left to REST polling."""
        s = self.session
        with s.lock:
            held = [p.stock_code for p in s.trader.positions()]
            busy = [o.stock_code for o in s.trader.open_orders()]
            universe: list[str] = []
            for slot in s.trader.slots.values():
                universe.extend(slot.strategy.universe)
        ordered = list(dict.fromkeys([*held, *busy, *universe]))
        rest = self.client.set_symbols(ordered)
        self.ws_codes = [c for c in ordered if c not in set(rest)]
        if rest and rest != self.rest_codes:
            logger.info(
                "WebSocket budget: %d symbols by ticks, %d on REST polling (%s)",
                len(self.ws_codes), len(rest), ", ".join(rest[:10]) + (" …" if len(rest) > 10
                                                                      else ""),
            )
        self.rest_codes = rest
        return rest

    def should_poll_fills(self, now: datetime) -> bool:
        """The ``fills`` job polls now: always while the socket is down, else every
        ``fill_reconcile_interval_s``."""
        if not self.live:
            return True
        last = self._last_reconcile
        if last is None or (now - last).total_seconds() >= self.fill_reconcile_interval_s:
            self._last_reconcile = now
            return True
        return False

    # --- the worker ------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                kind, item, t0 = self._queue.get(timeout=IDLE_S)
            except queue.Empty:
                self.close_minutes()
                continue
            if kind == "stop":
                break
            try:
                if kind == "tick":
                    self.handle_tick(item)
                    self.tick_latency_s.append(time.perf_counter() - t0)
                elif kind == "notice":
                    self.handle_notice(item)
                elif kind == "state":
                    self.handle_state(bool(item))
                elif kind == "seed":
                    self._merge_seed(*item)
            except Exception:  # the feed never stops on one bad item
                self.errors += 1
                logger.exception("realtime %s could not be processed", kind)

    def handle_tick(self, tick: Tick) -> None:
        """One trade: price, today's bar, the minute bar, exits when held, minute signals."""
        s = self.session
        with s.lock:
            if not s.started:
                return
            self.ticks += 1
            code, price = tick.stock_code, float(tick.price_krw)
            quote = Quote(
                code, tick.price_krw, tick.time, tick.open_krw or None, tick.high_krw or None,
                tick.low_krw or None, tick.cum_volume or None,
            )
            s.trader.update_price(code, price)
            s.update_today_bar(quote)
            if s.on_quote is not None:
                s.on_quote(quote)
            done = self.minutes.add_trade(code, tick.time, price, tick.qty)
            if any(p.stock_code == code for p in s.trader.positions()) and \
                    s.trading.quote(code, price):
                self.exits += 1
            if done:
                self._on_bars(done)

    def handle_notice(self, notice: ExecutionNotice) -> None:
        """One fill notice through the idempotent fill path."""
        s = self.session
        with s.lock:
            self.notices += 1
            if not s.started:
                return
            fill = s.trader.apply_notice(notice)
            if fill is not None:
                self.notices_applied += 1

    def handle_state(self, up: bool) -> None:
        s = self.session
        if up:
            with s.lock:
                if s.started:
                    try:
                        s.trading.poll()  # fills while the socket was down
                    except KisTraderError as exc:
                        logger.warning("poll after the WebSocket came back failed: %s", exc)
                    self._last_reconcile = s.clock()
                    s.trader.publish(RealtimeChanged(
                        at=s.clock(), live=True,
                        message=f"WebSocket live: {len(self.client.symbols)} symbols by ticks, "
                                f"{len(self.rest_codes)} on REST polling",
                        ws_symbols=len(self.client.symbols), rest_symbols=len(self.rest_codes),
                    ))
            self.plan()
        else:
            with s.lock:
                if s.started:
                    s.trader.publish(RealtimeChanged(
                        at=s.clock(), live=False, level="warning",
                        message="WebSocket down: prices and fills over REST polling until "
                                "it is back",
                        rest_symbols=len(self.rest_codes),
                    ))

    def close_minutes(self, now: datetime | None = None) -> None:
        """Close the minute bars whose minute ended (and run the minute strategies)."""
        s = self.session
        with s.lock:
            if not s.started:
                return
            done = self.minutes.close_through(now or s.clock())
            if done:
                self._on_bars(done)

    def sync(self, timeout_s: float = 30.0) -> bool:
        """Wait until every item queued so far has been processed (tests, benchmarks)."""
        marker = threading.Event()
        self._queue.put(("state_marker", marker, 0.0))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._queue.empty():  # the marker was taken: every item before it is done
                with self.session.lock:  # (and the last one has let go of the lock)
                    return True
            time.sleep(0.005)
        return False

    # --- minute strategies -----------------------------------------------------------------
    def _minute_codes(self) -> set[str]:
        codes: set[str] = set()
        for slot in self.session.trader.slots.values():
            if "minute" in slot.strategy.timeframes:
                codes.update(slot.strategy.universe)
        return codes

    def _on_bars(self, bars: list[MinuteBar]) -> None:
        """Minute strategies decide on each completed bar of their symbols (the last
        completed bar of a burst: flat bars of a quiet stretch are not decided one by one)."""
        s = self.session
        self.minute_bars += len(bars)
        last: dict[str, MinuteBar] = {b.stock_code: b for b in bars}
        for code, bar in last.items():
            buf = self.minutes.get(code)
            if buf is None:
                continue
            when = bar.time + timedelta(minutes=1)
            for slot in s.trader.slots.values():
                strategy = slot.strategy
                if (not slot.active or "minute" not in strategy.timeframes
                        or code not in strategy.universe
                        or not s.trading.decides_now(slot, when)):
                    continue
                window: Bars | None
                if has_indicators(strategy):
                    window = s.trader.build_window(slot, code, buf.frame())
                else:
                    window = buf.window()
                if window is not None:
                    s.trader.evaluate(slot, code, window, timeframe="minute")

    def minute_frame(self, code: str) -> pd.DataFrame | None:
        """Today's completed minute bars of ``code`` from ticks (``None`` when none)."""
        buf = self.minutes.get(code)
        if buf is None or len(buf) == 0:
            return None
        return buf.frame()

    # --- seeding ---------------------------------------------------------------------------
    def _seed(self, codes: list[str]) -> None:
        s = self.session
        now = s.clock().astimezone(KST)
        minutes = max(1, (now.hour - 9) * 60 + now.minute + 1)
        calls = len(codes) * -(-min(minutes, 391) // MINUTE_CHART_ROWS)
        rate = self.requests_per_s
        took = f"; at {rate:g} requests/s this takes about {calls / rate / 60:.1f} min" if rate \
            else ""
        logger.warning(
            "seeding today's minute bars of %d symbols from the minute chart (FHKST03010200, "
            "30 bars a call, about %d calls within the rate budget%s)%s",
            len(codes), calls, took,
            " — on the virtual account's 1 request/s that is minutes" if rate and rate <= 2
            else "",
        )
        for code in codes:
            if self._stop.is_set():
                return
            try:
                frame = s.market.get_minute_bars(code)
            except (BrokerError, DataError) as exc:
                logger.info("minute bars of %s not seeded: %s", code, exc)
                continue
            self._queue.put(("seed", (code, frame), 0.0))
        logger.info("minute bars seeded for %d symbols", len(codes))

    def _merge_seed(self, code: str, frame: pd.DataFrame) -> None:
        s = self.session
        with s.lock:
            day = s.clock().astimezone(KST).date()
            self.seeded[code] = self.minutes.buffer(code, day).seed(frame)

    # --- figures ---------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """The split of symbols and the feed's counters, for ``/status``."""
        lat = list(self.tick_latency_s)
        return {
            "live": self.live,
            "ws_symbols": len(self.ws_codes),
            "rest_symbols": len(self.rest_codes),
            "rest": list(self.rest_codes),
            "ticks": self.ticks,
            "exits_on_ticks": self.exits,
            "notices": self.notices,
            "notices_applied": self.notices_applied,
            "minute_bars": self.minute_bars,
            "errors": self.errors,
            "tick_latency_ms_median": round(statistics.median(lat) * 1000, 3) if lat else None,
            "client": self.client.status(),
        }


def realtime_enabled(setting: bool | None, flag: bool | None, hts_id: str | None) -> bool:
    """``--ws``/``--no-ws`` (``flag``) over ``live.realtime.enabled`` (``setting``); both
    unset: on when an HTS ID is set."""
    if flag is not None:
        return flag
    if setting is not None:
        return setting
    return bool(hts_id)


__all__ = ["PushClient", "RealtimeFeed", "has_indicators", "realtime_enabled"]
