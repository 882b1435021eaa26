"""Screened universes (volume ranking, a select_universe hook) driving a backtest and a
simulated live day; a held position is never orphaned by a universe change."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from core.backtest import Backtest, BacktestSettings
from core.data_collector import load_universe
from core.live import SteppedRunner
from core.universe import rank_by_volume
from framework.errors import ConfigError
from main import build_live_session
from strategies.config import StrategyConfig, StrategyLoader
from tests.e2e.day import kis_env, settings_for
from tests.fakes.clock import FakeClock
from tests.fakes.harness import fast_fake
from tests.fakes.kis_server import FakeKISServer
from utils.clock import KST

STRATEGIES = Path(__file__).resolve().parent / "universe_strategies"
START, END = date(2024, 3, 1), date(2024, 5, 31)


def _load(name: str) -> Any:
    loaded = {item.name: item for item in StrategyLoader(STRATEGIES).discover()}
    item = loaded[name]
    assert item.ok, item.error
    return item.cls(item.config)  # type: ignore[misc]


def _backtest(strategy: Any, krx_recent: Path) -> tuple[Backtest, Any]:
    bars, _ = load_universe(krx_recent, strategy.config.universe)
    bt = Backtest([strategy], bars, BacktestSettings(start=START, end=END, progress=False))
    return bt, bt.run()


def _check_never_orphaned(bt: Backtest, result: Any, name: str) -> None:
    history = bt.screens.history[name]
    held: dict[str, int] = {}
    for fill in result.fills.itertuples():
        if fill.side == "buy":
            held[fill.code] = held.get(fill.code, 0) + fill.qty
        else:
            held[fill.code] -= fill.qty
    # every stock bought was sold again after its three bars, whatever the screen said since,
    # except the ones bought in the last days of the run
    last_days = sorted(history)[-4:]
    still = {c for c, q in held.items() if q}
    assert still <= {c for d in last_days for c in history[d]}
    positions = {p.stock_code: p.qty for p in bt.trader.positions(name)}
    assert positions == {c: q for c, q in held.items() if q}  # holdings = its own fills


def test_a_volume_rank_screen_drives_a_backtest(krx_recent: Path):
    strategy = _load("screened")
    bt, result = _backtest(strategy, krx_recent)
    history = bt.screens.history["screened"]
    bars, _ = load_universe(krx_recent, strategy.config.universe)
    days = sorted(history)
    assert len(days) > 50
    for day in days:
        before = {c: f[f.index < pd.Timestamp(day, tz=KST)] for c, f in bars.items()}
        top = rank_by_volume(before, strategy.config.universe)[:2]
        assert list(history[day][:2]) == top  # the two most traded the day before
        assert set(history[day]) - set(top) <= set(bars)  # plus holdings only
    decided = strategy.decided
    assert decided
    for day, code, universe in decided:
        assert code in history[day]
        assert universe == history[day]
    bought = {f.code for f in result.fills.itertuples() if f.side == "buy"}
    assert len(bought) >= 3  # the screen moved between stocks
    _check_never_orphaned(bt, result, "screened")
    out = bt.screens.rows()
    assert out[0]["strategy"] == "screened"
    assert out[0]["date"] == days[0].isoformat()


def test_a_select_universe_hook_drives_a_backtest_without_look_ahead(krx_recent: Path):
    strategy = _load("hooked")
    bt, result = _backtest(strategy, krx_recent)
    history = bt.screens.history["hooked"]
    for day, last_seen in strategy.hook_calls:
        assert last_seen is None or last_seen < day  # bars up to the previous close only
        assert "000270" in history[day]  # include: always in
        assert set(history[day]) <= set(strategy.config.universe)
    assert not result.fills.empty
    _check_never_orphaned(bt, result, "hooked")


def test_an_empty_screen_trades_includes_and_holdings(krx_recent: Path):
    strategy = _load("hooked")
    strategy.select_universe = lambda day, data: []  # type: ignore[method-assign]
    bt, _ = _backtest(strategy, krx_recent)
    assert all(set(codes) >= {"000270"} for codes in bt.screens.history["hooked"].values())
    assert all(code == "000270" or code in {p.stock_code for p in
                                            bt.trader.positions("hooked")}
               for codes in list(bt.screens.history["hooked"].values())[-1:] for code in codes)


def test_screen_config_errors_are_clear():
    with pytest.raises(ValueError, match="needs condition"):
        StrategyConfig.model_validate({"universe": {"screen": "condition",
                                                    "candidates": ["005930"]}})
    with pytest.raises(ValueError, match="needs candidates"):
        StrategyConfig.model_validate({"universe": {"screen": "volume_rank"}})
    cfg = StrategyConfig.model_validate({"universe": {"screen": "volume_rank",
                                                      "candidates": "kospi200", "cap": 5}})
    assert "005930" in cfg.universe
    assert cfg.universe_screen is not None
    assert cfg.universe_screen.cap == 5
    assert StrategyConfig.model_validate({"universe": "kospi200"}).universe_screen is None


def test_a_condition_screen_cannot_be_backtested(krx_recent: Path):
    strategy = _load("screened")
    cfg = strategy.config.model_copy(update={"universe_screen": strategy.config.universe_screen
                                             .model_copy(update={"screen": "condition",
                                                                 "condition": "x"})})
    strategy.config = cfg
    bars, _ = load_universe(krx_recent, cfg.universe)
    with pytest.raises(ConfigError, match="cannot replay"):
        Backtest([strategy], bars, BacktestSettings(start=START, end=END,
                                                    progress=False)).run()


def _live_day(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, env: str,
              prepare: Any = None, *, config: str | None = None,
              events: list[Any] | None = None) -> Any:
    """One simulated live day of strategy ``name`` against the fake KIS; ``config`` replaces
    its config.yaml (same strategy.py); ``events`` collects what the engine publishes."""
    day = datetime(2025, 6, 16, 8, 50, tzinfo=KST)
    fake = fast_fake(env=env, clock=FakeClock(day))
    if prepare is not None:
        prepare(fake)
    folder = tmp_path / "strategies"
    folder.mkdir()
    if config is None:
        (folder / name).symlink_to(STRATEGIES / name)
    else:
        (folder / name).mkdir()
        (folder / name / "strategy.py").symlink_to(STRATEGIES / name / "strategy.py")
        (folder / name / "config.yaml").write_text(config, encoding="utf-8")
    with FakeKISServer(fake) as server:
        for key, value in kis_env(server.base_url, tmp_path / "tokens").items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("KIS_ENV", env)
        monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
        parts = build_live_session(
            settings_for(tmp_path), strategies_dir=folder, dry_run=True,
            db_url=f"sqlite:///{tmp_path / 'live.db'}", clock=fake.clock, alerts=False,
            kis_overrides={"requests_per_s": 1000, "retry_wait_s": 0.0, "timeout_s": 2.0},
            broker_options={"sleep": lambda _s: None})
        session = parts.session
        if events is not None:
            session.trader.subscribe(events.append)
        try:
            session.start()
            SteppedRunner(session, fake.advance).run_day(day.date())
            session.stop("end of the simulated day")
        finally:
            parts.close()
    return session


def test_a_volume_rank_screen_drives_a_live_day(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch):
    def prepare(fake: Any) -> None:
        fake.volume_rank_override = ["035720", "005380", "005930"]

    session = _live_day(tmp_path, monkeypatch, "screened", "real", prepare)
    today = date(2025, 6, 16)
    assert session.screens.history["screened"][today] == ("035720", "005380")
    strategy = session.trader.slots["screened"].strategy
    assert {code for _, code, _ in strategy.decided} == {"035720", "005380"}
    held = {p.stock_code for p in session.trader.positions("screened")}
    assert held <= {"035720", "005380"}  # bought, and sold again after three decisions


def test_a_hook_drives_a_live_day_and_the_virtual_account_says_screens_are_real_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture):
    session = _live_day(tmp_path, monkeypatch, "hooked", "virtual")
    today = date(2025, 6, 16)
    strategy = session.trader.slots["hooked"].strategy
    codes = session.screens.history["hooked"][today]
    assert "000270" in codes
    assert all(last is None or last < today for _, last in strategy.hook_calls)
    assert {code for _, code, _ in strategy.decided} <= set(codes)


HTS_ID = "hts-user"
CONDITION_CONFIG = """\
enabled: true
universe:
  screen: condition
  condition: {name}
  candidates: ["005930", "000660"]
  include: ["000270"]
  cap: 2
timeframe: daily
parameters:
  hold_bars: 3
risk_management:
  stop_loss_pct: null
  take_profit_pct: null
  max_position_size: 0.2
  max_daily_trades: 10
"""


def _condition_day(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: str, name: str
                   ) -> tuple[Any, list[str], tuple[str, ...]]:
    def prepare(fake: Any) -> None:
        fake.conditions = {HTS_ID: {"돌파": ["035720", "005380", "105560"], "빈조건": []}}

    monkeypatch.setenv("KIS_HTS_ID", HTS_ID)
    events: list[Any] = []
    session = _live_day(tmp_path, monkeypatch, "screened", env, prepare,
                        config=CONDITION_CONFIG.format(name=name), events=events)
    notes = [e.message for e in events if type(e).__name__ == "UniverseNote"]
    return session, notes, session.screens.history["screened"][date(2025, 6, 16)]


def test_a_condition_screen_drives_a_live_day(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    session, notes, universe = _condition_day(tmp_path, monkeypatch, "real", "돌파")
    assert universe == ("035720", "005380", "000270")  # capped at 2, then the include
    assert notes == []
    strategy = session.trader.slots["screened"].strategy
    assert {code for _, code, _ in strategy.decided} == set(universe)


def test_an_unknown_condition_name_is_one_warning_and_the_day_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    session, notes, universe = _condition_day(tmp_path, monkeypatch, "real", "없는조건")
    assert universe == ("000270",)
    assert any("HTS condition '없는조건' is not saved for hts-user; saved: 돌파, 빈조건" in n
               for n in notes), notes
    strategy = session.trader.slots["screened"].strategy
    assert {code for _, code, _ in strategy.decided} == {"000270"}


def test_an_empty_condition_result_trades_includes_and_holdings(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    _session, notes, universe = _condition_day(tmp_path, monkeypatch, "real", "빈조건")
    assert universe == ("000270",)
    assert any("the condition screen is empty on 2025-06-16" in n for n in notes), notes


def test_a_condition_screen_on_the_virtual_account_says_it_is_real_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    _session, notes, universe = _condition_day(tmp_path, monkeypatch, "virtual", "돌파")
    assert any("HTS condition search (HHKST03900400) is a real-account KIS service" in n
               for n in notes), notes
    assert set(universe) <= {"005930", "000660", "000270"}  # its candidates and include
