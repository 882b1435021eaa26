"""Minute bars in backtests and live: synthetic minute files consistent with the daily bars,
daily bars derived from minutes without look-ahead, strategies on [daily, minute], and the
ORB example in a backtest and in a simulated live day against the fakes."""

from __future__ import annotations

import shutil
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from core.backtest import Backtest, BacktestSettings
from core.data_collector import (
    HistoricalDataProvider,
    daily_from_minutes,
    find_csv,
    load_bars_csv,
)
from framework.bars import Bars
from framework.errors import DataError
from framework.types import Signal, SignalType
from strategies.base import BaseStrategy
from strategies.config import StrategyConfig, StrategyLoader
from tests.fakes.market import data_dir
from tests.test_realtime_live import SETTINGS_YAML, feed_of, live_session, wait_until
from utils.clock import KST
from utils.synthetic_minutes import synthesize, write_csv

REPO = Path(__file__).resolve().parents[1]
DAILY_DIR = data_dir() / "krx" / "daily_2023_2025"


def real_daily(code: str, start: str, end: str) -> pd.DataFrame:
    path = find_csv(DAILY_DIR, code)
    assert path is not None
    frame = load_bars_csv(path)
    return frame.loc[(frame.index >= pd.Timestamp(start, tz=KST))
                     & (frame.index <= pd.Timestamp(end, tz=KST))]


@pytest.fixture(scope="module")
def minute_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bars")
    for code in ("005930", "000660"):
        write_csv(synthesize(code, real_daily(code, "2025-03-03", "2025-04-30")),
                  out / "minute" / f"{code}.csv")
    return out


def test_synthetic_minutes_rebuild_the_real_daily_bars(minute_dir: Path) -> None:
    daily = real_daily("005930", "2025-03-03", "2025-04-30")
    minutes = load_bars_csv(minute_dir / "minute" / "005930.csv")
    rebuilt = daily_from_minutes(minutes)
    assert len(rebuilt) == len(daily)
    assert np.array_equal(rebuilt.to_numpy(), daily.to_numpy())
    again = synthesize("005930", daily)
    assert np.array_equal(again.to_numpy(), synthesize("005930", daily).to_numpy())
    per_day = minutes.groupby(pd.DatetimeIndex(minutes.index).normalize()).size()
    assert set(per_day) == {381}


def test_provider_serves_minutes_and_the_forming_daily_bar(minute_dir: Path) -> None:
    minutes = load_bars_csv(minute_dir / "minute" / "005930.csv")
    now = [pd.Timestamp("2025-03-05 10:30", tz=KST).to_pydatetime()]
    provider = HistoricalDataProvider({"005930": minutes}, lambda: now[0])
    today = provider.get_minute_bars("005930")
    assert today.index[0] == pd.Timestamp("2025-03-05 09:00", tz=KST)
    assert today.index[-1] == pd.Timestamp("2025-03-05 10:30", tz=KST)
    daily = provider.get_daily_bars("005930")
    assert daily.index[-1] == pd.Timestamp("2025-03-05", tz=KST)
    forming = daily.iloc[-1]
    assert forming["close"] == today["close"].iloc[-1]  # the bar of now, not of the close
    assert forming["high"] == today["high"].max()
    assert forming["volume"] == today["volume"].sum()
    full = daily_from_minutes(minutes)
    assert daily.iloc[:-1].equals(full.loc[full.index < pd.Timestamp("2025-03-05", tz=KST)])
    with pytest.raises(DataError, match="--timeframe minute"):
        HistoricalDataProvider({"005930": full}, lambda: now[0]).get_minute_bars("005930")


class Recorder(BaseStrategy):
    numpy_bars = True  # reads the numpy Bars window (data.time, data.last)

    def __init__(self, config: StrategyConfig):
        super().__init__(config)
        self.calls: list[tuple[str, pd.Timestamp, float, float]] = []

    def generate_signal(self, stock_code: str, data: Bars, timeframe: str) -> Signal | None:
        self.calls.append((timeframe, data.time, data.last("close"), data.last("high")))
        return Signal(SignalType.HOLD, stock_code)


def test_daily_and_minute_frames_in_one_backtest(minute_dir: Path) -> None:
    minutes = load_bars_csv(minute_dir / "minute" / "005930.csv")
    minutes = minutes.loc[minutes.index < pd.Timestamp("2025-03-08", tz=KST)]  # 3 days
    config = StrategyConfig(name="rec", universe=("005930",), timeframes=("daily", "minute"),
                            decide_at="10:00")
    strategy = Recorder(config)
    Backtest([strategy], {"005930": minutes}, BacktestSettings()).run()
    minute_calls = [c for c in strategy.calls if c[0] == "minute"]
    daily_calls = [c for c in strategy.calls if c[0] == "daily"]
    assert len(minute_calls) == len(minutes)
    days = sorted({t.normalize() for t in minutes.index})
    assert [c[1] for c in daily_calls] == days  # once a day, the day's own bar last
    for _, day, close, high in daily_calls:
        upto = minutes.loc[(minutes.index >= day)
                           & (minutes.index <= day + pd.Timedelta(hours=10))]
        assert close == upto["close"].iloc[-1]  # at 10:00: the bar forming, no look-ahead
        assert high == upto["high"].max()


def load_orb(tmp_path: Path, universe: list[str]) -> BaseStrategy:
    root = tmp_path / "strategies"
    shutil.copytree(REPO / "strategies" / "orb", root / "orb")
    cfg = (root / "orb" / "config.yaml").read_text(encoding="utf-8")
    cfg = cfg.replace("enabled: false", "enabled: true")
    cfg = cfg.replace('universe: ["005930", "000660"]',
                      "universe: [" + ", ".join(f'"{c}"' for c in universe) + "]")
    (root / "orb" / "config.yaml").write_text(cfg, encoding="utf-8")
    (item,) = StrategyLoader(root=root).load_enabled(only="orb")
    return item.create()


def test_orb_backtests_on_minute_bars(minute_dir: Path, tmp_path: Path) -> None:
    bars = {c: load_bars_csv(minute_dir / "minute" / f"{c}.csv") for c in ("005930", "000660")}
    strategy = load_orb(tmp_path, ["005930", "000660"])
    result = Backtest([strategy], bars, BacktestSettings(cash_krw=10_000_000)).run()
    trades = result.trades
    assert len(trades) > 0
    for t in trades.itertuples():
        entry, exit_ = pd.Timestamp(t.entry_time), pd.Timestamp(t.exit_time)
        assert entry.date() == exit_.date()  # a day trade: out at the close at the latest
        assert entry.time() > time(9, 15)  # after the opening range
    assert result.positions.empty  # every position sold the same day
    # cash to the won: start + realised P&L (fees included) = end
    assert int(result.equity["equity_krw"].iloc[-1]) == 10_000_000 + int(trades["pnl_krw"].sum())


def test_orb_trades_a_simulated_live_day_on_ticks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = "005930"
    load_orb(tmp_path, [code])  # writes the enabled copy under tmp_path/strategies
    no_seed = SETTINGS_YAML.replace("  history_days: 30", "  history_days: 30\n  realtime:\n"
                                    "    seed_minute_bars: false")
    with live_session(tmp_path, monkeypatch, {}, strategies_dir=tmp_path / "strategies",
                      settings_yaml=no_seed) as (session, fake, ws):
        feed = feed_of(session)
        assert wait_until(lambda: feed.live and ws.registered()[0] == {code})
        session.run_job("open")
        start = fake.clock().replace(hour=9, minute=0, second=10)
        fake.clock.set(start)

        def trade(minute: int, second: int, price: int, qty: int) -> None:
            when = start.replace(second=0) + timedelta(minutes=minute, seconds=second)
            fake.clock.set(when)
            fake.set_price(code, price)
            ws.push_tick(code, price, qty, at=when)

        for m in range(15):  # the opening range: 55,000 - 55,500
            trade(m, 10, 55_000 + (m % 6) * 100, 1_000)
            trade(m, 40, 55_500 - (m % 4) * 100, 1_000)
        trade(15, 5, 55_400, 500)
        trade(16, 5, 55_800, 9_000)  # the breakout on volume
        trade(17, 1, 55_800, 10)  # completes the 09:16 bar: the strategy buys at market
        assert wait_until(lambda: feed.sync() and session.trader.position("orb", code)
                          is not None)
        pos = session.trader.position("orb", code)
        assert pos is not None
        assert pos.stop_loss == 55_000  # the range's low
        trade(30, 0, 54_900, 100)  # under the range: the stop sells on this tick
        assert wait_until(lambda: feed.sync() and session.trader.position("orb", code)
                          is None)
        assert feed.exits == 1
        fake.advance(40)
        session.run_job("fills")
        session.run_job("account")
        fills = session.repository.get_fills(session.run_id)
        assert list(fills["side"]) == ["buy", "sell"]
        from tests.e2e.day import check_book

        check_book(session.repository, session.run_id, fake.account())
        status: dict[str, Any] = session.status()["realtime"]
        assert status["minute_bars"] >= 30


def test_a_restart_mid_day_seeds_the_mornings_minute_bars(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.fakes.clock import FakeClock
    from tests.fakes.harness import fast_fake

    code = "005930"
    load_orb(tmp_path, [code])
    fake = fast_fake(clock=FakeClock(datetime(2025, 6, 16, 10, 0, 30, tzinfo=KST)),
                     codes=[code])
    caplog.set_level("WARNING", logger="core.realtime")
    with live_session(tmp_path, monkeypatch, {}, strategies_dir=tmp_path / "strategies",
                      fake=fake) as (session, _fake, _ws):
        feed = feed_of(session)
        assert wait_until(lambda: feed.sync() and feed.seeded.get(code, 0) > 0)
        frame = feed.minute_frame(code)
        assert frame is not None
        assert frame.index[0] == pd.Timestamp("2025-06-16 09:00", tz=KST)
        assert frame.index[-1] == pd.Timestamp("2025-06-16 09:59", tz=KST)
        chart = fake.market.minute_bars(code)
        assert frame["close"].iloc[0] == chart[0][4]
    assert "seeding today's minute bars of 1 symbols" in caplog.text
