"""The one place the engine is put together, for a backtest, live trading and a dry run.

:func:`build_engine` builds a :class:`~core.trader.Trader` with its parts (funds, order
manager, risk, portfolio) from the collaborators the mode brings: the broker adapters, the
journal, the fee model, the clock and the event subscribers. Everything is passed in at
construction; nothing is patched in afterwards.

============  =====================================  ===================================
mode          broker / executor                      journal
============  =====================================  ===================================
backtest      :func:`paper_account` (historical      ``MemoryJournal`` (written to the
              clock, fills from the bars)            database at the end)
dry run       :func:`paper_account` (live clock,     ``DatabaseJournal``
              fills from live quotes); quotes from
              KIS
live          ``KISBroker``                          ``DatabaseJournal``
============  =====================================  ===================================

A paper account and the engine share one :class:`~core.fund_manager.FundManager`: the
simulated broker asks it, before filling a buy, how much the order may spend (its
reservation plus free cash), as KIS's buying power does for a real account.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from api.paper import PaperBroker
from core.fund_manager import FundManager
from core.journal import Journal
from core.order_manager import OrderManager, OrderPolicy
from core.portfolio import Portfolio
from core.risk import ExitPolicy, RiskManager
from core.trader import Trader
from framework.broker import Broker
from framework.data import DataProvider
from framework.events import Subscriber
from framework.executor import OrderExecutor
from framework.types import OrderRequest
from strategies.base import BaseStrategy
from utils.fees import FeeModel


def allocations(strategies: Iterable[BaseStrategy]) -> dict[str, float]:
    """Strategy name → the fraction of equity it may have invested (its config)."""
    return {s.name: s.config.allocation for s in strategies}


def paper_account(
    cash_krw: int,
    fees: FeeModel,
    strategies: Iterable[BaseStrategy],
    *,
    clock: Callable[[], datetime],
    slippage_ticks: int = 0,
    id_prefix: str = "",
) -> tuple[FundManager, PaperBroker]:
    """A simulated account of ``cash_krw`` KRW and the engine's cash pool over it.

    Returns ``(funds, broker)``: pass both to :func:`build_engine`. The broker fills a buy
    with at most what ``funds`` says the order may spend; its order and fill ids start
    with ``id_prefix`` (unique per process in a dry run, so ids never repeat across restarts).
    """
    funds = FundManager(cash_krw, allocations(strategies))

    def buying_power(request: OrderRequest) -> int:
        return funds.buying_power_krw(request.client_order_id)

    broker = PaperBroker(
        cash_krw, fees, slippage_ticks, clock=clock, buying_power=buying_power, id_prefix=id_prefix
    )
    return funds, broker


def build_engine(
    strategies: Iterable[BaseStrategy],
    *,
    broker: Broker,
    executor: OrderExecutor,
    data_provider: DataProvider,
    journal: Journal,
    fees: FeeModel,
    clock: Callable[[], datetime],
    order_prefix: str,
    funds: FundManager | None = None,
    risk: RiskManager | None = None,
    order_policy: OrderPolicy | None = None,
    default_exits: ExitPolicy | None = None,
    subscribers: Iterable[Subscriber] = (),
    names: Callable[[str], str | None] | None = None,
    journal_debug: bool = False,
    max_consecutive_errors: int | None = None,
    stop_on_strategy_failure: bool = False,
) -> Trader:
    """Build the engine.

    Parameters
    ----------
    strategies:
        Instantiated strategies (unique names).
    broker, executor:
        The account (balance, holdings) and where orders go; the same object for a paper
        account or ``KISBroker``.
    data_provider:
        Bars and quotes the strategies may read (``on_init``).
    journal:
        Where orders, fills, positions and events are written.
    fees:
        Commission and transaction tax.
    clock:
        Tz-aware now (Asia/Seoul); the bar time in a backtest.
    order_prefix:
        Prefix of client order ids (one per process or run, so ids never collide).
    funds:
        The cash pool (from :func:`paper_account` for a simulated account); default an
        empty pool that reconciliation fills from the account.
    risk:
        Shared with the trading session (loss lock, portfolio stop, trading state);
        default: no limits.
    order_policy, default_exits:
        Order timeouts and re-placement; exit rules of holdings no strategy opened.
    subscribers:
        Receive every published event (:mod:`framework.events`) after the journal;
        wrap a subscriber that does I/O in :class:`~framework.events.QueuedSubscriber`.
    names:
        Stock code → name, for alerts.
    journal_debug:
        Also publish ``debug`` events (every refused signal).
    max_consecutive_errors:
        Failures in a row of one hook after which a strategy is disabled (``None``: each
        strategy's ``max_consecutive_errors`` from its config).
    stop_on_strategy_failure:
        Raise :class:`~core.fencing.StrategyDisabledError` out of the engine when a strategy
        is disabled (a backtest stops with status 3) instead of trading on without it.
    """
    strategies = list(strategies)
    return Trader(
        strategies,
        broker=broker,
        executor=executor,
        data_provider=data_provider,
        funds=funds if funds is not None else FundManager(0, allocations(strategies)),
        orders=OrderManager(executor, journal, clock, order_prefix),
        risk=risk if risk is not None else RiskManager(),
        portfolio=Portfolio(),
        journal=journal,
        fees=fees,
        clock=clock,
        max_consecutive_errors=max_consecutive_errors,
        subscribers=subscribers,
        journal_debug=journal_debug,
        order_policy=order_policy,
        default_exits=default_exits,
        names=names,
        stop_on_strategy_failure=stop_on_strategy_failure,
    )
