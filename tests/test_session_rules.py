"""The same risk and order rules in the backtest and live: each rule is run once through a
backtest over daily (or, for ``decide_at``, ten-minute) bars and once as simulated live days
(``LiveSession`` on a paper account, driven by ``SteppedRunner`` over a fake clock), and the
same check is applied to both.

Prices follow one scripted path per stock (KRW, on the tick grid); the backtest's bars are
built from the same path as the live quotes: open at 09:00, close at 15:30, high and low over
the session.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from api.paper import PaperBroker
from config.settings import Settings
from core.backtest import Backtest, BacktestSettings
from core.live import LiveSession, SteppedRunner
from core.order_manager import OrderPolicy
from core.risk import RiskLimits
from core.trader import Trader
from db.repository import Repository
from framework.bars import Bars
from framework.data import DataProvider
from framework.types import Order, OrderSide, OrderStatus, Quote, Signal, SignalType
from strategies.base import BaseStrategy
from strategies.config import StrategyConfig
from tests.fakes.clock import KST, FakeClock
from utils.market_calendar import krx_calendar

A, B, C = "005930", "000660", "035720"
FIRST_DAY = date(2025, 6, 16)
SESSION_MINUTES = 390  # 09:00 → 15:30
Path_ = Callable[[int, int], int]  # (session index, minutes since 09:00) → price (KRW)


def days(n: int) -> list[date]:
    cal, out, day = krx_calendar(), [], FIRST_DAY
    while len(out) < n:
        if cal.is_trading_day(day):
            out.append(day)
        day += timedelta(days=1)
    return out


def flat(price: int) -> Path_:
    return lambda _d, _m: price


def step(before: int, after: int, day: int, minute: int = 0) -> Path_:
    """``before`` until session ``day`` minute ``minute``, then ``after``."""
    return lambda d, m: after if (d, m) >= (day, minute) else before


# --- strategies ------------------------------------------------------------------------
class Planned(BaseStrategy):
    """Trades by a small plan: ``mode`` buy (when flat), flip (buy when flat, sell when
    holding) or bid (a limit buy 20 % under the price when flat); ``min_price`` gates buys.
    ``calls`` records the clock at each decision."""

    numpy_bars = True  # reads data.last(...) from the numpy window
    mode = "buy"
    min_price: dict[str, int] = {}  # noqa: RUF012 - set per test on the instance
    clock: Callable[[], datetime] | None = None
    buy_until: time | None = None  # no new buys from this time of day

    def __init__(self, config: StrategyConfig) -> None:
        super().__init__(config)
        self.calls: list[datetime] = []

    def generate_signal(self, stock_code: str, data: Bars, timeframe: str) -> Signal | None:
        if self.clock is not None:
            self.calls.append(self.clock())
        price = data.last("close")
        held = self.get_position(stock_code) is not None
        if held:
            return Signal(SignalType.SELL, stock_code) if self.mode == "flip" else None
        if price < self.min_price.get(stock_code, 0):
            return None
        if self.buy_until is not None and self.clock and self.clock().time() >= self.buy_until:
            return None
        if self.mode == "bid":
            bid = int(price * 0.8)
            return Signal(SignalType.BUY, stock_code, confidence=100.0, limit_price=bid)
        return Signal(SignalType.BUY, stock_code, confidence=100.0)


def strategy(
    name: str,
    codes: tuple[str, ...],
    mode: str = "buy",
    *,
    min_price: dict[str, int] | None = None,
    decide_at: str | None = None,
    **risk: Any,
) -> Planned:
    config = StrategyConfig(
        name=name,
        universe=codes,
        decide_at=decide_at,
        risk_management={
            "max_position_size": 0.3,
            "max_daily_trades": 10,
            "stop_loss_pct": None,
            "take_profit_pct": None,
            **risk,
        },
    )
    s = Planned(config)
    s.mode = mode
    s.min_price = dict(min_price or {})
    return s


# --- what a run leaves behind, the same shape for both drivers ----------------------------
@dataclass
class Outcome:
    trader: Trader
    sessions: list[date]
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def orders(self) -> list[Order]:
        return sorted(self.trader._orders.orders.values(), key=lambda o: o.client_order_id)

    def rejections(self, strategy: str) -> Counter[str]:
        return self.trader.slots[strategy].rejections

    def event_times(self, kind: str, rule: str | None = None) -> list[datetime]:
        return [
            e["at"]
            for e in self.events
            if e["kind"] == kind and (rule is None or (e.get("data") or {}).get("rule") == rule)
        ]


def run_backtest(
    paths: dict[str, Path_],
    strategies: list[Planned],
    n_days: int,
    limits: RiskLimits,
    *,
    minutes: int | None = None,
    policy: OrderPolicy | None = None,
) -> Outcome:
    """Daily bars (or ``minutes``-minute bars) of ``n_days`` sessions from the paths."""
    sessions = days(n_days)
    bars = {}
    for code, path in paths.items():
        rows, index = [], []
        for d, day in enumerate(sessions):
            if minutes is None:
                prices = [path(d, m) for m in range(SESSION_MINUTES + 1)]
                rows.append(_ohlc(prices))
                index.append(pd.Timestamp(day, tz=KST))
                continue
            for start in range(0, SESSION_MINUTES, minutes):
                prices = [path(d, m) for m in range(start, start + minutes + 1)]
                rows.append(_ohlc(prices))
                opened = datetime.combine(day, time(9), KST)
                index.append(pd.Timestamp(opened + timedelta(minutes=start)))
        bars[code] = pd.DataFrame(rows, index=pd.DatetimeIndex(index))
    backtest = Backtest(
        list(strategies),
        bars,
        BacktestSettings(
            cash_krw=10_000_000, risk_limits=limits, order_policy=policy or OrderPolicy()
        ),
    )
    for s in strategies:
        s.clock = backtest.now
    backtest.run()
    return Outcome(backtest.trader, sessions, list(backtest.journal.events))


def _ohlc(prices: list[int]) -> dict[str, float]:
    return {
        "open": prices[0],
        "high": max(prices),
        "low": min(prices),
        "close": prices[-1],
        "volume": 1_000_000,
    }


class ScriptedMarket(DataProvider):
    """Quotes from the paths at the clock's time; no history (strategies read today)."""

    def __init__(self, paths: dict[str, Path_], clock: FakeClock, sessions: list[date]):
        self.paths, self.clock, self.sessions = paths, clock, sessions

    def price(self, code: str) -> int:
        now = self.clock()
        d = self.sessions.index(now.date())
        minute = (now - datetime.combine(now.date(), time(9), KST)).total_seconds() // 60
        return self.paths[code](d, int(min(max(minute, 0), SESSION_MINUTES)))

    def get_quotes(self, stock_codes: Any) -> dict[str, Quote]:
        return {c: Quote(c, self.price(c), self.clock()) for c in stock_codes if c in self.paths}

    def get_daily_bars(self, stock_code: str, start: Any = None, end: Any = None) -> pd.DataFrame:
        return pd.DataFrame(
            columns=["open", "high", "low", "close", "volume"], index=pd.DatetimeIndex([], tz=KST)
        )

    def get_minute_bars(self, stock_code: str, day: date | None = None) -> pd.DataFrame:
        return self.get_daily_bars(stock_code)


def run_live(
    tmp_path: Path,
    paths: dict[str, Path_],
    strategies: list[Planned],
    n_days: int,
    risk: dict[str, Any],
    *,
    signal_interval_s: float = 300.0,
) -> Outcome:
    sessions = days(n_days)
    clock = FakeClock(datetime.combine(sessions[0], time(8, 50), KST))
    settings = Settings.model_validate(
        {
            "risk": risk,
            "live": {
                "schedule": {
                    "quote_interval_s": 60,
                    "signal_interval_s": signal_interval_s,
                    "fill_poll_interval_s": 60,
                    "account_sync_interval_s": 3600,
                    "close_report_delay_s": 300,
                },
                "orders": {"buy_timeout_s": None, "sell_timeout_s": None, "max_replacements": 0},
                "history_days": 5,
            },
            "telegram": {"enabled": False},
        }
    )
    paper = PaperBroker(10_000_000, clock=clock)
    market = ScriptedMarket(paths, clock, sessions)
    repository = Repository(f"sqlite:///{tmp_path / 'live.db'}", clock=clock)
    for s in strategies:
        s.clock = clock
    session = LiveSession(
        settings=settings,
        strategies=list(strategies),
        broker=paper,
        executor=paper,
        market=market,
        repository=repository,
        run_id="dry_run-test",
        mode="dry_run",
        env="virtual",
        clock=clock,
        calendar=krx_calendar(),
        on_quote=lambda q: paper.process_quote(q.stock_code, q.time, q.price),
        expire_day_orders=paper.expire_session,
    )
    trader = session.trader
    paper.buying_power = lambda req: trader.buying_power_for(req.client_order_id)
    try:
        session.start()
        runner = SteppedRunner(session, clock.advance)
        for day in sessions:
            runner.run_day(day)
        events = repository.get_events("dry_run-test")
    finally:
        repository.close()
    for e in events:
        e["at"] = pd.Timestamp(e["at"]).tz_convert(KST).to_pydatetime()
    return Outcome(trader, sessions, events)


def drive(kind: str, tmp_path: Path, paths: dict[str, Path_], strategies: list[Planned],
          n_days: int, risk: dict[str, Any], **kw: Any) -> Outcome:
    if kind == "backtest":
        kw.pop("signal_interval_s", None)
        return run_backtest(paths, strategies, n_days, RiskLimits(**risk), **kw)
    kw.pop("minutes", None)
    return run_live(tmp_path, paths, strategies, n_days, risk, **kw)


DRIVERS = ["backtest", "live"]


def fills_of(outcome: Outcome) -> list[tuple[Order, datetime]]:
    """(order, time of its last fill) of every filled order, by time."""
    done = [o for o in outcome.orders if o.filled_qty > 0 and o.updated_at is not None]
    return sorted(((o, o.updated_at) for o in done), key=lambda x: x[1])  # type: ignore[misc]


# --- the rules -------------------------------------------------------------------------
@pytest.mark.parametrize("kind", DRIVERS)
def test_cooldown_after_a_sell_delays_the_next_buy(kind: str, tmp_path: Path) -> None:
    cooldown = 3 * 86_400 if kind == "backtest" else 1_800
    s = strategy("flip", (A,), "flip")
    out = drive(kind, tmp_path, {A: flat(10_000)}, [s], 6 if kind == "backtest" else 1,
                {"cooldown_s": cooldown})
    sells = [t for o, t in fills_of(out) if o.side is OrderSide.SELL]
    buys = [o for o in out.orders if o.side is OrderSide.BUY]
    assert sells, "the strategy should have sold"
    assert len(buys) >= 2, "and bought again after the cooldown"
    for sold in sells:
        for o in buys:
            assert o.created_at is not None
            assert not sold <= o.created_at < sold + timedelta(seconds=cooldown)
    assert any(r.startswith("cooldown") for r in out.rejections("flip"))


@pytest.mark.parametrize("kind", DRIVERS)
def test_daily_loss_lock_stops_new_buys_for_the_rest_of_the_day(
    kind: str, tmp_path: Path
) -> None:
    early = strategy("early", (A,))
    late = strategy("late", (B,), min_price={B: 5_500})
    paths = {A: step(10_000, 7_000, day=1, minute=60), B: step(5_000, 5_500, day=1, minute=90)}
    out = drive(kind, tmp_path, paths, [early, late], 4, {"daily_loss_limit_pct": 0.02})
    locks = out.event_times("risk_limit", "daily_loss_lock")
    assert locks, "the crash of A should lock the day"
    lock = locks[0]
    assert lock.date() == out.sessions[1]
    late_buys = [o for o in out.orders if o.strategy == "late"]
    assert late_buys, "B is bought once the lock is over"
    for o in late_buys:
        assert o.created_at is not None
        assert not (o.created_at >= lock and o.created_at.date() == lock.date())
    assert min(o.created_at for o in late_buys if o.created_at) > lock
    assert out.rejections("late")["daily loss lock"] > 0


@pytest.mark.parametrize("kind", DRIVERS)
def test_portfolio_stop_sells_everything_and_halts(kind: str, tmp_path: Path) -> None:
    s = strategy("all", (A, B))
    paths = {A: step(10_000, 6_000, day=1, minute=60), B: flat(5_000)}
    out = drive(kind, tmp_path, paths, [s], 4, {"portfolio_stop_pct": 0.05})
    stops = out.event_times("risk_limit", "portfolio_stop")  # the stop ...
    assert len(stops) == 1
    assert len(out.event_times("risk_exit", "portfolio_stop")) == 2  # ... then one per exit
    after = [o for o in out.orders if o.created_at and o.created_at >= stops[0]]
    assert after
    assert all(o.side is OrderSide.SELL and o.metadata.get("exit_rule") for o in after)
    assert {o.stock_code for o in after} == {A, B}
    assert out.trader.positions() == []


@pytest.mark.parametrize("kind", DRIVERS)
def test_max_daily_trades_caps_new_orders_per_day(kind: str, tmp_path: Path) -> None:
    s = strategy("cap", (A, B, C), max_daily_trades=1)
    paths = {A: flat(10_000), B: flat(5_000), C: flat(40_000)}
    out = drive(kind, tmp_path, paths, [s], 4, {})
    per_day = Counter(o.created_at.date() for o in out.orders if o.created_at and o.attempt == 0)
    assert max(per_day.values()) == 1
    assert len(per_day) >= 3
    assert any(r.startswith("max_daily_trades") for r in out.rejections("cap"))


@pytest.mark.parametrize("kind", DRIVERS)
def test_max_positions_per_strategy_and_overall(kind: str, tmp_path: Path) -> None:
    one = strategy("one", (A, B), max_positions=1)
    many = strategy("many", (B, C))
    paths = {A: flat(10_000), B: flat(5_000), C: flat(40_000)}
    out = drive(kind, tmp_path, paths, [one, many], 3, {"max_positions": 2})
    held: dict[tuple[str, str], int] = Counter()
    for o, _t in fills_of(out):
        sign = 1 if o.side is OrderSide.BUY else -1
        held[(o.strategy, o.stock_code)] += sign * o.filled_qty
        open_pairs = [k for k, q in held.items() if q > 0]
        assert len([k for k in open_pairs if k[0] == "one"]) <= 1
        assert len(open_pairs) <= 2
    assert len([k for k, q in held.items() if q > 0]) == 2
    assert any("max_positions" in r for r in out.rejections("one") | out.rejections("many"))


@pytest.mark.parametrize("kind", DRIVERS)
def test_time_cut_sells_at_the_open_after_max_holding_days(kind: str, tmp_path: Path) -> None:
    s = strategy("cut", (A,), max_holding_days=2)
    out = drive(kind, tmp_path, {A: flat(10_000)}, [s], 7, {})
    trips = out.trader.round_trips()
    assert len(trips) >= 2, "sold by the time cut, bought again, sold again"
    for trip in trips:
        entry, exit_ = trip.entry_time.date(), trip.exit_time.date()
        held = out.sessions.index(exit_) - out.sessions.index(entry)
        assert held == 2  # two sessions held (entry day included), sold at the next open
        assert trip.exit_reasons[0].startswith("time_cut")
        if kind == "live":
            assert trip.exit_time.time() < time(9, 5)  # at the open


@pytest.mark.parametrize("kind", DRIVERS)
def test_an_unfilled_limit_order_expires_at_the_close_of_its_session(
    kind: str, tmp_path: Path
) -> None:
    s = strategy("bid", (A,), "bid")
    out = drive(kind, tmp_path, {A: flat(10_000)}, [s], 4, {})
    orders = out.orders
    assert len(orders) >= 2, "a new order follows each expired one"
    expired = [o for o in orders if o.status is OrderStatus.EXPIRED]
    assert len(expired) >= 2
    for o in expired:
        assert o.created_at is not None
        assert o.updated_at is not None
        session = out.sessions.index(o.updated_at.date())
        placed = out.sessions.index(o.created_at.date())
        # live: placed and expired the same session; daily bars: decided at one close,
        # resting through the next session, expired at its close
        assert session - placed == (1 if kind == "backtest" else 0)
    assert all(o.status.is_final for o in orders[:-1])


@pytest.mark.parametrize("kind", DRIVERS)
def test_decide_at_decides_once_a_day_at_that_time(kind: str, tmp_path: Path) -> None:
    s = strategy("late", (A, B), decide_at="15:20")
    paths = {A: flat(10_000), B: flat(5_000)}
    out = drive(kind, tmp_path, paths, [s], 2, {}, minutes=10, signal_interval_s=60)
    by_day: dict[date, set[datetime]] = {}
    for when in s.calls:
        by_day.setdefault(when.date(), set()).add(when)
    assert sorted(by_day) == out.sessions
    for times in by_day.values():
        assert len(times) == 1  # one evaluation a day (both stocks at that moment)
        (when,) = times
        assert time(15, 20) <= when.time() < time(15, 30)
    assert len(s.calls) == 2 * len(out.sessions)


@pytest.mark.parametrize("kind", DRIVERS)
def test_exit_at_close_sells_every_position_the_same_day(kind: str, tmp_path: Path) -> None:
    s = strategy("day", (A, B), exit_at_close=True)
    s.buy_until = time(15, 0)
    paths = {A: flat(10_000), B: step(5_000, 5_200, day=0, minute=120)}
    out = drive(kind, tmp_path, paths, [s], 3, {}, minutes=10, signal_interval_s=60)
    trips = out.trader.round_trips()
    assert len(trips) == 2 * len(out.sessions)  # both stocks, every day
    for trip in trips:
        assert trip.entry_time.date() == trip.exit_time.date()
        assert trip.exit_time.time() >= time(15, 20)
        assert trip.exit_reasons[0].startswith("exit_at_close")
    assert out.trader.positions() == []


def test_intraday_bars_time_out_and_re_place_a_resting_limit_order(tmp_path: Path) -> None:
    s = strategy("bid", (A,), "bid")
    policy = OrderPolicy(buy_timeout_s=1_800, sell_timeout_s=None, max_replacements=1)
    out = run_backtest({A: flat(10_000)}, [s], 1, RiskLimits(), minutes=10, policy=policy)
    first, second = out.orders[0], out.orders[1]
    assert first.status is OrderStatus.CANCELLED
    assert first.created_at is not None
    assert first.updated_at is not None
    assert first.updated_at - first.created_at == timedelta(seconds=1_800)  # the first bar past
    assert (second.replaces, second.attempt) == (first.client_order_id, 1)
    assert second.price == 10_000  # re-placed at the current price
    assert second.status is OrderStatus.FILLED
