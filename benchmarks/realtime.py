"""Benchmark: the realtime path of a live session (prints figures, asserts nothing).

Run from the repository root::

    KIS_TRADER_DATA_DIR=../shared/data /work/venv/bin/python benchmarks/realtime.py \\
        [--ticks 10000] [--rate 1000] [--symbols 40] [--universe 100]

1. Tick → protective-exit decision: ``--symbols`` held stocks (adopted from the fake
   account, stop loss / take profit of unmanaged holdings), ticks fed at ``--rate`` per
   second in arrival order into the feed exactly as the WebSocket thread hands them over;
   latency = from the hand-over to the end of the tick's processing (price, today's bar,
   minute bar, the exit check). Median, p99 and max.
2. The live signal round for a ``--universe`` strategy on ``timeframes: [daily, minute]``:
   the ``signals`` job (daily frames: 200 days of history plus today's bar) and one minute
   boundary (every symbol's completed bar handed to the strategy from the tick buffers).

Everything runs against the fake KIS over HTTP on 127.0.0.1; the WebSocket client is
replaced by an in-process stand-in (the socket's own cost is not part of these figures).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from config.settings import load_settings
from core.realtime import RealtimeFeed
from framework.realtime import Tick
from main import build_live_session
from tests.e2e.day import kis_env
from tests.fakes.clock import FakeClock
from tests.fakes.harness import fast_fake
from tests.fakes.kis_server import (
    DEFAULT_ACCOUNT_NO,
    DEFAULT_APP_KEY,
    DEFAULT_APP_SECRET,
    FakeKISServer,
)
from tests.fakes.market import data_dir, load_daily_csv
from utils.market_calendar import KST

START = datetime(2025, 6, 16, 10, 0, 5, tzinfo=KST)
STRATEGY = '''
from framework.types import Signal, SignalType
from strategies.base import BaseStrategy


class BothStrategy(BaseStrategy):
    def generate_signal(self, stock_code, data, timeframe):
        close = data.close
        if len(close) < 20:
            return None
        fast, slow = close[-5:].mean(), close[-20:].mean()
        return Signal(SignalType.HOLD, stock_code, metadata={"gap": float(fast - slow)})
'''


class StandIn:
    """The WebSocket client's interface, in process: every symbol is 'subscribed'."""

    def __init__(self) -> None:
        self.on_tick: Any = None
        self.on_notice: Any = None
        self.on_state: Any = None
        self._symbols: list[str] = []

    capacity = 1000
    live = True

    @property
    def symbols(self) -> list[str]:
        return self._symbols

    def start(self) -> None:
        pass

    def stop(self, timeout_s: float = 10.0) -> None:
        pass

    def set_symbols(self, codes: Iterable[str]) -> list[str]:
        self._symbols = list(codes)
        return []

    def status(self) -> dict[str, Any]:
        return {}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ticks", type=int, default=10_000)
    p.add_argument("--rate", type=float, default=1000.0, help="ticks per second")
    p.add_argument("--symbols", type=int, default=40, help="held stocks receiving ticks")
    p.add_argument("--universe", type=int, default=100, help="symbols of the signal round")
    args = p.parse_args()

    real = sorted((data_dir() / "krx" / "daily_2023_2025").glob("*.csv"))
    daily = load_daily_csv(real[0])
    fake = fast_fake(clock=FakeClock(START), with_default_account=False, codes=[])
    codes = [f"{900000 + i:06d}" for i in range(max(args.symbols, args.universe))]
    for code in codes:
        fake.market.add_stock(code, code, 50_000, daily=daily)
    held = codes[: args.symbols]
    base = fake.market.price(codes[0])  # today's price of the data path (all codes alike)
    fake.add_account(DEFAULT_APP_KEY, DEFAULT_APP_SECRET, DEFAULT_ACCOUNT_NO,
                     holdings={c: (10, base) for c in held})
    tmp = Path(tempfile.mkdtemp(prefix="bench-rt-"))
    root = tmp / "strategies" / "both"
    root.mkdir(parents=True)
    (root / "strategy.py").write_text(STRATEGY, encoding="utf-8")
    universe = ", ".join(f'"{c}"' for c in codes[: args.universe])
    (root / "config.yaml").write_text(
        f"enabled: true\nuniverse: [{universe}]\ntimeframes: [daily, minute]\n",
        encoding="utf-8")
    (tmp / "settings.yaml").write_text("live:\n  history_days: 200\n  realtime:\n"
                                       "    enabled: false\n", encoding="utf-8")
    settings = load_settings(tmp / "settings.yaml")
    with FakeKISServer(fake) as server:
        os.environ.update(kis_env(server.base_url, tmp / "tokens"))
        parts = build_live_session(
            settings, strategies_dir=tmp / "strategies", db_url=f"sqlite:///{tmp / 'b.db'}",
            clock=fake.clock, alerts=False,
            kis_overrides={"requests_per_s": 1000, "retry_wait_s": 0.0},
            broker_options={"sleep": lambda _s: None},
        )
        session = parts.session
        client = StandIn()
        feed = RealtimeFeed(session, client, seed_minute_bars=False)
        session.attach_realtime(feed)
        try:
            session.start()
            session.run_job("open")
            busy = len(session.trader.open_orders())
            print(f"held: {len(session.trader.positions())} positions at {base:,} KRW "
                  f"({busy} open orders); "
                  f"universe {args.universe} symbols")
            # 1. ticks at the given rate over the held symbols
            interval = 1.0 / args.rate
            t0 = time.perf_counter()
            for k in range(args.ticks):
                code = held[k % len(held)]
                price = base + (k % 7 - 3) * 50  # inside the stop and the target
                at = START + timedelta(milliseconds=k * 1000 / args.rate)
                client.on_tick(Tick(code, at.replace(microsecond=0), price, 10))
                wait = t0 + (k + 1) * interval - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
            feed.sync(120)
            elapsed = time.perf_counter() - t0
            lat = [x * 1000 for x in feed.tick_latency_s]
            print(f"tick -> exit decision over {len(held)} held symbols, {len(lat)} ticks at "
                  f"{args.ticks / elapsed:,.0f} ticks/s: median {statistics.median(lat):.3f} ms, "
                  f"p99 {pct(lat, 0.99):.3f} ms, max {max(lat):.3f} ms "
                  f"(goal: median < 5 ms, p99 < 50 ms)")
            # a tick that does trigger: the stop loss decision and the order sent over HTTP
            t1 = time.perf_counter()
            feed.handle_tick(Tick(held[0], fake.clock(), int(base * 0.9), 1))
            print(f"a triggering tick (stop loss, market sell sent to the fake over HTTP): "
                  f"{(time.perf_counter() - t1) * 1000:.2f} ms; exits: {feed.exits}")
            # 2. minute bars for the universe, then the signal round
            for m in range(30):
                at = START.replace(hour=9, minute=0, second=1) + timedelta(minutes=m)
                for code in codes[: args.universe]:
                    feed.handle_tick(Tick(code, at, base + m * 10, 5))
            t2 = time.perf_counter()
            feed.close_minutes(START.replace(hour=9, minute=30, second=0))
            minute_s = time.perf_counter() - t2
            rounds = []
            for _ in range(5):
                t3 = time.perf_counter()
                session.run_job("signals")
                rounds.append(time.perf_counter() - t3)
            daily_s = statistics.median(rounds)
            print(f"signal round, {args.universe} symbols on [daily, minute]: daily frames "
                  f"{daily_s:.3f} s (median of 5 signals jobs) + one minute boundary "
                  f"{minute_s:.3f} s = {daily_s + minute_s:.3f} s (goal < 0.5 s)")
        finally:
            session.stop("benchmark done")
            parts.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
