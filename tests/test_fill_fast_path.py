"""The backtest's short way from a fill to the books changes nothing: a run booked through
the generic path (a journal that is not the plain ``MemoryJournal``, so every fill is
captured for a rollback, and a paper account read through ``get_order``'s ``OrderState``
as any broker is) gives the same orders, fills, journal, positions, round trips, events
and equity as the run booked the short way. Market and limit orders, slippage,
resting and expiring orders, timeouts with re-placement and protective exits are all in."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import core.backtest
import core.engine
from api.paper import PaperBroker
from core.backtest import Backtest, BacktestSettings
from core.journal import MemoryJournal
from core.order_manager import OrderPolicy
from core.risk import RiskLimits
from framework.bars import Bars
from framework.executor import OrderState
from framework.types import OrderSide, Signal, SignalType
from strategies.base import BaseStrategy
from strategies.sma_cross.strategy import SmaCrossStrategy
from tests.test_backtest_fast_path import bars_of, config


class GenericJournal(MemoryJournal):
    """A MemoryJournal the engine treats as any other journal (it might fail or hold a
    fill already), so every fill takes the generic path."""


class StatePaper(PaperBroker):
    """A paper account whose orders are read as any broker's: its own ``get_order``."""

    def get_order(self, broker_order_id: str) -> OrderState:
        return super().get_order(broker_order_id)


class LimitCross(SmaCrossStrategy):
    """The cross with limit orders half a percent away, a stop and some metadata: orders
    rest, fill later, expire at the close or time out."""

    def generate_signal(self, stock_code: str, data: Bars, timeframe: str) -> Signal | None:
        signal = super().generate_signal(stock_code, data, timeframe)
        if signal is None:
            return None
        close = float(data["close"][-1])
        away = 0.995 if signal.signal_type is SignalType.BUY else 1.005
        return Signal(
            signal.signal_type,
            stock_code,
            confidence=100.0,
            reasons=signal.reasons,
            limit_price=round(close * away),
            stop_loss=close * 0.9 if signal.signal_type is SignalType.BUY else None,
            metadata={"close": close},
        )


def run(strategy: BaseStrategy, bars: dict[str, Any], slippage: int) -> tuple[Backtest, Any]:
    settings = BacktestSettings(
        cash_krw=50_000_000,
        slippage_ticks=slippage,
        risk_limits=RiskLimits(daily_loss_limit_pct=0.02, portfolio_stop_pct=0.5),
        order_policy=OrderPolicy(buy_timeout_s=3 * 3600.0, max_replacements=1),
    )
    bt = Backtest([strategy], bars, settings, run_id="e" * 32)
    return bt, bt.run()


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows with ``None`` for NaN (a NaN equals no other NaN)."""
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def books(bt: Backtest, result: Any) -> list[Any]:
    journal = bt.journal
    return [
        records(result.trades),
        records(result.orders),
        records(result.fills),
        records(result.equity),
        records(result.positions),
        [(e["kind"], e["message"], e["at"]) for e in result.events],
        journal.closed_positions,
        [(p.stock_code, p.peak_price) for p in bt.trader.open_positions()],
        result.settings["strategy_stats"],
        journal.history,
        journal.fills,
        {cid: o.copy() for cid, o in journal.orders.items()},
        bt.trader.cash_krw,
        bt.broker.cash_krw,
    ]


def assert_invariants(bt: Backtest) -> None:
    """The strategy's holdings are the fills it owns; the book's cash is the account's."""
    owned: Counter[str] = Counter()
    for _, fill in bt.journal.fills:
        owned[fill.stock_code] += fill.qty if fill.side is OrderSide.BUY else -fill.qty
    held = {p.stock_code: p.qty for p in bt.trader.positions()}
    assert +owned == Counter(held)
    assert held == {h.stock_code: h.qty for h in bt.broker.get_holdings()}
    assert bt.trader.cash_krw == bt.broker.cash_krw


@pytest.mark.parametrize("strategy", [SmaCrossStrategy, LimitCross])
@pytest.mark.parametrize(("bars_kind", "slippage"), [("daily", 0), ("hourly", 1)])
def test_fills_booked_the_short_way_give_the_books_of_the_generic_path(
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    strategy: type[SmaCrossStrategy],
    bars_kind: str,
    slippage: int,
) -> None:
    bars = bars_of(data_dir, bars_kind)
    short_bt, short = run(strategy(config(0.03)), bars, slippage)
    with monkeypatch.context() as patch:
        patch.setattr(core.backtest, "MemoryJournal", GenericJournal)
        patch.setattr(core.engine, "PaperBroker", StatePaper)
        generic_bt, generic = run(strategy(config(0.03)), bars, slippage)
    assert type(generic_bt.journal) is GenericJournal
    assert type(generic_bt.broker) is StatePaper
    assert type(short_bt.journal) is MemoryJournal
    assert len(short.fills) > 20
    assert books(short_bt, short) == books(generic_bt, generic)
    assert_invariants(short_bt)
