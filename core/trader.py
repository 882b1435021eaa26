"""``Trader``: the one engine that drives strategies and routes their signals.

The backtest and live trading differ only in who calls these methods (a loop over historical
bars, or a scheduler on the KRX calendar) and in the broker adapters passed in.

Signal route::

    generate_signal → risk.check_signal → FundManager.size_buy / reserve
        → risk.check_order → OrderManager.create (journaled) → submit
        → (broker) → poll_orders → fills → funds, Portfolio, journal → on_order_filled

Every strategy hook is called through :meth:`Trader._call`, which catches exceptions, logs
them with the strategy's name (the traceback once per kind of failure) and journals them.
Failures are counted in a row per hook, across the stocks (a success of that hook resets the
count; other hooks do not) and per hook and stock. At the strategy's
``max_consecutive_errors`` (``config.yaml``, default 3) the strategy is disabled: it is called
no more, its positions stay and are still marked, one ``strategy_isolated`` event (an alert)
carries the one-line :class:`StrategyDisabledError` message, and with
``stop_on_strategy_failure`` (the backtest) that error is raised to stop the run.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from api.paper import PaperBroker
from core.fencing import HookFailures, StrategyDisabledError, indicator_column
from core.fund_manager import FundManager
from core.journal import Journal, MemoryJournal, PositionRecord, StorageError
from core.order_manager import STOP_KEY, TARGET_KEY, OrderManager, OrderPolicy
from core.portfolio import OverfillError, Portfolio, Position, RoundTrip
from core.risk import (
    ExitPolicy,
    ExitTrigger,
    RiskManager,
    TradingState,
    bar_exit,
    exit_band,
    exit_trigger,
)
from core.windows import FrameWindow
from framework.bars import Bars
from framework.broker import Broker
from framework.data import OHLCV_COLUMNS, DataProvider
from framework.errors import BrokerError, FundsError
from framework.events import (
    Event,
    EventBus,
    OrderCancelled,
    OrderEvent,
    OrderFilled,
    OrderNotReplaced,
    OrderPollFailed,
    OrderRejected,
    OrderSubmitted,
    OrderTimedOut,
    ProtectiveExit,
    RiskRejected,
    StorageFailed,
    StorageRecovered,
    StrategyDisabled,
    StrategyEnabled,
    StrategyError,
    StrategyIsolated,
    Subscriber,
)
from framework.executor import ExecutionNotice, OrderExecutor, OrderState
from framework.types import (
    FINAL_STATUSES,
    Balance,
    Fill,
    Holding,
    Order,
    OrderSide,
    OrderStatus,
    OrderType,
    PositionView,
    Signal,
    SignalType,
)
from framework.views import AccountView, MarketDataView, OrdersView
from strategies.base import BaseStrategy
from utils.fees import FeeModel
from utils.ticks import Direction, round_to_tick, upper_limit_price

UNMANAGED = "unmanaged"
"""Strategy name of holdings adopted from the account that no strategy opened."""

logger = logging.getLogger(__name__)


@dataclass
class StrategySlot:
    """A running strategy and the engine's bookkeeping for it.

    ``failures`` counts its hooks' failures in a row; ``disabled`` is why the strategy
    stopped, if it did.
    """

    strategy: BaseStrategy
    active: bool = True
    enabled: bool = True
    """The on/off switch (:mod:`core.switches`): off, the strategy is asked for no signal;
    the exits of its positions still apply. ``active`` is the engine's own verdict."""
    trades_today: int = 0
    errors: int = 0
    signals: Counter[str] = field(default_factory=Counter)
    rejections: Counter[str] = field(default_factory=Counter)
    failures: HookFailures = field(default_factory=HookFailures)
    disabled: StrategyDisabledError | None = None

    @property
    def name(self) -> str:
        return self.strategy.name

    @property
    def consecutive_errors(self) -> int:
        """The longest current run of failures of any hook (0 when none is failing)."""
        return self.failures.longest


class Trader:
    """Orchestrates strategies, risk, funds, orders and positions.

    Parameters
    ----------
    strategies:
        Instantiated strategies (names must be unique).
    broker, executor, data_provider:
        The adapters (``PaperBroker`` in a backtest, ``KISBroker`` live).
    funds, orders, risk, portfolio, journal:
        Engine parts; see their modules.
    fees:
        Used for the commission rate in sizing.
    clock:
        Returns the current tz-aware time.
    max_consecutive_errors:
        Failures in a row that disable a strategy; ``None`` (default): each strategy's
        ``max_consecutive_errors`` from its ``config.yaml``.
    stop_on_strategy_failure:
        Raise :class:`StrategyDisabledError` when a strategy is disabled (the backtest);
        ``False`` (live): the other strategies keep trading.
    """

    def __init__(
        self,
        strategies: Iterable[BaseStrategy],
        *,
        broker: Broker,
        executor: OrderExecutor,
        data_provider: DataProvider,
        funds: FundManager,
        orders: OrderManager,
        risk: RiskManager,
        portfolio: Portfolio,
        journal: Journal,
        fees: FeeModel,
        clock: Callable[[], datetime],
        max_consecutive_errors: int | None = None,
        subscribers: Iterable[Subscriber] = (),
        journal_debug: bool = False,
        order_policy: OrderPolicy | None = None,
        default_exits: ExitPolicy | None = None,
        names: Callable[[str], str | None] | None = None,
        stop_on_strategy_failure: bool = False,
    ):
        self.slots: dict[str, StrategySlot] = {}
        for strategy in strategies:
            if strategy.name in self.slots:
                raise ValueError(f"two strategies are named {strategy.name!r}")
            self.slots[strategy.name] = StrategySlot(strategy)
        self._broker = broker
        self._executor = executor
        self._data_provider = data_provider
        self._funds = funds
        self._orders = orders
        self._risk = risk
        self._portfolio = portfolio
        self._journal = journal
        self.fees = fees
        self.clock = clock
        self.max_consecutive_errors = max_consecutive_errors  # None: each strategy's config
        self.stop_on_strategy_failure = stop_on_strategy_failure
        self._bus = EventBus([self._record, *subscribers])
        self.journal_debug = journal_debug
        self.order_policy = order_policy or OrderPolicy()
        self.default_exits = default_exits or ExitPolicy()
        self.names = names
        self.prices: dict[str, float] = {}
        self.base_prices: dict[str, float] = {}
        """Base price (previous close) of each code today, when a quote gave it (KRW)."""
        self._last_signal: dict[tuple[str, str], tuple[SignalType, datetime]] = {}
        self._liquidating: dict[tuple[str, str], ExitTrigger] = {}
        self._exit_policies: dict[str, ExitPolicy] = {}
        self._book_cash = True
        self.storage_error: str | None = None
        """Why the database cannot be written, while it cannot (``None`` when it can)."""
        self._orders.fill_handler = self.apply_fill  # every fill found anywhere is booked here
        for slot in self.slots.values():
            self._bind_state(slot)

    # --- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        """Bind position views and call ``on_init``; a strategy answering False is disabled."""
        account = AccountView(self._broker)
        market = MarketDataView(self._data_provider)
        for slot in self.slots.values():
            self._bind(slot)
            ok = self._call(
                slot,
                "on_init",
                slot.strategy.on_init,
                account,
                market,
                self._orders_view(slot.name),
            )
            if ok is False:
                slot.active = False
                self.publish(
                    StrategyDisabled(
                        at=self.clock(),
                        message=f"{slot.name}: on_init returned False",
                        strategy=slot.name,
                        reason="on_init returned False",
                    )
                )

    def install(self, strategy: BaseStrategy, *, enabled: bool = True) -> StrategySlot:
        """Put ``strategy`` in its slot at run time (a reload: new parameters, or a new
        strategy): bound to its positions and state, ``on_init`` called when the engine has
        started. The slot's counters and the strategy's open positions are kept."""
        slot = self.slots.get(strategy.name)
        if slot is None:
            slot = self.slots[strategy.name] = StrategySlot(strategy)
        slot.strategy, slot.enabled = strategy, enabled
        self._exit_policies.pop(strategy.name, None)
        self._funds.set_allocation(strategy.name, strategy.config.allocation)
        self._bind_state(slot)
        self._bind(slot)
        ok = self._call(slot, "on_init", strategy.on_init, self._broker, self._data_provider,
                        self._executor)
        slot.active = ok is not False
        return slot

    def market_open(self) -> None:
        for slot in self.slots.values():
            slot.trades_today = 0
            # the default hooks do nothing and cannot fail: skipped
            if slot.active and _overrides(slot.strategy, "on_market_open"):
                self._call(slot, "on_market_open", slot.strategy.on_market_open)

    def market_close(self) -> None:
        for slot in self.slots.values():
            if slot.active and _overrides(slot.strategy, "on_market_close"):
                self._call(slot, "on_market_close", slot.strategy.on_market_close)

    def _orders_view(self, strategy: str) -> OrdersView:
        return OrdersView(
            lambda: [o for o in self._orders.orders.values() if o.strategy == strategy]
        )

    def _bind(self, slot: StrategySlot) -> None:
        name = slot.name

        def position(code: str) -> PositionView | None:
            pos = self._portfolio.get(name, code)
            return pos.view() if pos else None

        def positions() -> Mapping[str, PositionView]:
            return {p.stock_code: p.view() for p in self._portfolio.positions(name)}

        slot.strategy.bind(position, positions, lambda: slot.trades_today)

    def _bind_state(self, slot: StrategySlot) -> None:
        key = f"strategy:{slot.name}"

        def save(state: dict[str, Any]) -> None:
            try:
                self._journal.save_state(key, state)
            except StorageError as exc:
                self.storage_failed(exc)

        def load() -> dict[str, Any]:
            try:
                return self._journal.load_state(key)
            except StorageError as exc:
                self.storage_failed(exc)
                return {}

        slot.strategy.bind_state(save, load)

    def save_engine_state(self) -> None:
        """Keep what must survive a restart: the portfolio stop's high-water mark and the
        pending re-placements (timed-out orders whose cancel is awaited)."""
        state = {
            "peak_equity_krw": self._risk.peak_equity_krw,
            "cancel_requested": {
                cid: when.isoformat() for cid, when in self._orders.cancels_requested().items()
            },
            "deferred": sorted(o.client_order_id for o in self._orders.awaiting_price()),
        }
        try:
            self._journal.save_state("engine", state)
        except StorageError as exc:
            self.storage_failed(exc)

    def load_engine_state(self) -> None:
        """Bring back what :meth:`save_engine_state` kept (after a restart)."""
        try:
            state = self._journal.load_state("engine")
        except StorageError as exc:
            self.storage_failed(exc)
            return
        peak = state.get("peak_equity_krw")
        if isinstance(peak, int) and (
            self._risk.peak_equity_krw is None or peak > self._risk.peak_equity_krw
        ):
            self._risk.peak_equity_krw = peak
        for cid, when in dict(state.get("cancel_requested") or {}).items():
            order = self._orders.orders.get(cid)
            if order is not None and not order.status.is_final:
                self._orders.context(cid).cancel_requested_at = datetime.fromisoformat(when)
        for cid in state.get("deferred") or ():
            order = self._orders.orders.get(cid)
            if order is not None and order.status is OrderStatus.CANCELLED:
                self._orders.context(cid).awaiting_price = True


    # --- the front door: what drivers, reconciliation and adapters may ask -------------
    @property
    def cash_krw(self) -> int:
        """The engine's cash (KRW), as the account holds it after fills and syncs."""
        return self._funds.cash_krw

    @property
    def trading_state(self) -> TradingState:
        """``ACTIVE``, ``REDUCE_ONLY`` or ``HALTED``."""
        return self._risk.state

    def positions(self, strategy: str | None = None) -> list[Position]:
        """Open positions (of one strategy), each with qty (shares), cost basis (KRW),
        exit levels and the fills' reasons."""
        return self._portfolio.positions(strategy)

    def position(self, strategy: str, stock_code: str) -> Position | None:
        """The open position of ``strategy`` in ``stock_code``, if any."""
        return self._portfolio.get(strategy, stock_code)

    def round_trips(self) -> list[RoundTrip]:
        """Every closed trade so far (entry, exit, P&L in KRW), in closing order."""
        return list(self._portfolio.round_trips)

    def open_orders(self, stock_code: str | None = None) -> list[Order]:
        """Orders not final yet (of one stock)."""
        return self._orders.open_orders(stock_code)

    def known_orders(self) -> list[Order]:
        """Every order of the book (open and final), in creation order."""
        return list(self._orders.orders.values())

    def last_price(self, stock_code: str, default: float | None = None) -> float | None:
        """The last known price of ``stock_code`` (KRW), else ``default``."""
        return self.prices.get(stock_code, default)

    def account_holdings(self) -> list[Holding]:
        """The account's holdings as the broker reports them. Raises ``BrokerError``."""
        return self._broker.get_holdings()

    def account_balance(self) -> Balance:
        """The account's cash figures as the broker reports them. Raises ``BrokerError``."""
        return self._broker.get_balance()

    def sync_cash(self, cash_krw: int) -> None:
        """Take the account's cash figure (KRW) as the engine's (after an account sync)."""
        self._funds.sync_cash(cash_krw)

    def restore_order(self, order: Order, fill_ids: Iterable[str] = ()) -> None:
        """Track an order read back from the database (restart); ``fill_ids`` are the
        fills already booked, so none is booked twice."""
        self._orders.restore(order, fill_ids)

    def restore_position(self, position: Position) -> None:
        """Put a position rebuilt from the fill journal (restart) into the book."""
        self._portfolio.restore(position)

    def record_position(self, position: PositionRecord, closed_at: datetime | None = None) -> None:
        """Write a position's current figures (closed at ``closed_at``) to the journal.
        Raises ``StorageError``."""
        self._journal.position(position, closed_at)

    def record_adjustment(
        self, strategy: str, stock_code: str, qty: int, price: float, reason: str, at: datetime
    ) -> None:
        """Journal shares that appeared (``qty`` > 0) or vanished (< 0) in the account
        without a fill, at ``price`` KRW. Raises ``StorageError``."""
        self._journal.adjustment(strategy, stock_code, qty, price, reason, at)

    def match_at_broker(
        self, order: Order, sent_at: datetime, claimed: set[str]
    ) -> OrderState | None:
        """Find an order whose submit outcome is unknown among the broker's orders of the
        day (ids in ``claimed`` excluded); ``None`` when the broker never got it."""
        return self._executor.match_order(order.to_request(), sent_at, claimed)

    def adopt_order(self, order: Order, state: OrderState, note: str) -> list[Fill]:
        """Give an order the broker's identity and state found for it; returns the fills
        booked."""
        return self._orders.adopt(order, state, note)

    def give_up_order(self, order: Order, reason: str) -> None:
        """Mark an order that never reached the broker as rejected."""
        self._orders.give_up(order, reason)

    def set_strategy_active(self, name: str, active: bool, by: str = "operator") -> None:
        """Switch a strategy on or off (its positions stay, protected by their exits).
        Raises ``KeyError`` for an unknown strategy."""
        slot = self.slots[name]
        if slot.active == active:
            return
        slot.active = active
        if active:
            slot.failures = HookFailures()  # a fresh start: the old failure runs are over
            slot.disabled = None
            event: Event = StrategyEnabled(
                at=self.clock(), message=f"{name} switched on ({by})", strategy=name, by=by
            )
        else:
            event = StrategyDisabled(
                at=self.clock(), message=f"{name} switched off ({by})", strategy=name, reason=by
            )
        self.publish(event)

    def sell_position(self, strategy: str, stock_code: str, reason: str = "manual") -> Order | None:
        """Sell the whole position of ``strategy`` in ``stock_code`` at market (an
        operator's request; also while ``HALTED``). ``None`` when there is none or an exit
        of it is already working."""
        pos = self._portfolio.get(strategy, stock_code)
        if pos is None:
            return None
        price = self.prices.get(stock_code, pos.avg_price)
        return self.exit_position(pos, ExitTrigger(reason, price, price))

    # --- data --------------------------------------------------------------------------
    def build_window(
        self,
        slot: StrategySlot,
        stock_code: str,
        frame: pd.DataFrame,
        indicators: pd.DataFrame | Mapping[str, Any] | None = None,
    ) -> Bars:
        """The window ``slot`` sees over ``frame``: OHLCV plus its indicator columns.

        ``frame`` is one stock's OHLCV (index tz Asia/Seoul, ascending). The result shows
        every row; the caller moves it with ``resize``. It is a :class:`Bars` for a strategy
        with ``numpy_bars``, else a :class:`~core.windows.FrameWindow` whose DataFrame view
        (at most ``lookback_bars`` rows) :meth:`evaluate` passes as ``data``. A failing
        ``indicators`` hook counts as a failure of the strategy and the window has OHLCV
        only; a column that is not numbers of ``len(frame)`` rows is reported and left out.
        ``indicators``: what the strategy's ``indicators(frame)`` already answered (the
        backtest's look-ahead check computes it over the same bars); the hook is then not
        called again, and counts as a success.
        """
        cols: dict[str, np.ndarray] = {
            c: frame[c].to_numpy(dtype=np.float64) for c in OHLCV_COLUMNS
        }
        if indicators is None:
            extra = self._call(
                slot,
                "indicators",
                slot.strategy.indicators,
                frame,
                code=stock_code,
                returns=(pd.DataFrame, Mapping),
            )
        else:
            extra = indicators
            if slot.failures:  # as _call books a success
                slot.failures.succeeded("indicators", stock_code)
        if extra is not None:
            for name, values in extra.items():
                arr = indicator_column(values)
                if arr is None or arr.shape != (len(frame),):
                    shape = "not numbers" if arr is None else f"shape {arr.shape}"
                    error = (
                        f"indicator {name!r} of {stock_code} is {shape}; "
                        f"expected {len(frame)} numbers"
                    )
                    self.publish(
                        StrategyError(
                            at=self.clock(),
                            message=f"{slot.name}: {error}",
                            level="error",
                            strategy=slot.name,
                            code=stock_code,
                            hook="indicators",
                            error=error,
                        )
                    )
                    continue
                cols[str(name)] = arr
        index = pd.DatetimeIndex(frame.index)
        if slot.strategy.numpy_bars:
            return Bars(cols, index)
        return FrameWindow(cols, index, lookback=slot.strategy.config.lookback)

    def signal_mask(self, slot: StrategySlot, window: Bars) -> np.ndarray | None:
        """Per bar of ``window`` (its full length): may ``slot``'s strategy signal there
        (``BaseStrategy.signal_bars``)? A bool array of ``len(window)``; ``None``: ask on
        every bar, also when the hook fails or answers with the wrong shape (reported as a
        strategy error)."""
        mask = self._call(slot, "signal_bars", slot.strategy.signal_bars, window)
        if mask is None:
            return None
        arr = np.asarray(mask)
        if arr.shape != (len(window),) or arr.dtype != np.bool_:
            error = (
                f"signal_bars gave {arr.dtype} of shape {arr.shape}, "
                f"expected bool of shape ({len(window)},); asking on every bar"
            )
            self.publish(
                StrategyError(
                    at=self.clock(),
                    message=f"{slot.name}: {error}",
                    level="error",
                    strategy=slot.name,
                    hook="signal_bars",
                    error=error,
                )
            )
            return None
        return arr

    def update_price(self, stock_code: str, price: float, base_krw: float | None = None) -> None:
        """Record the last price (KRW) and, when known, today's base price (previous close,
        KRW): a market buy is sized at the upper-limit price over the base, else over the
        last price (in a backtest the last close is the next session's base)."""
        if price > 0 and math.isfinite(price):
            self.prices[stock_code] = price
        if base_krw is not None and base_krw > 0 and math.isfinite(base_krw):
            self.base_prices[stock_code] = base_krw

    def equity_krw(self) -> int:
        """Cash plus every strategy's holdings at the last known prices (KRW)."""
        return self._funds.cash_krw + int(self._portfolio.market_value(self.prices))

    # --- signals -----------------------------------------------------------------------
    def evaluate(
        self, slot: StrategySlot, stock_code: str, bars: Bars, timeframe: str | None = None
    ) -> Signal | None:
        """Ask one strategy about one stock on ``bars`` of ``timeframe`` (default: the
        strategy's main timeframe) and act on its answer.

        ``bars`` is the window from :meth:`build_window`, resized to the current bar; the
        strategy gets its DataFrame view, or the window itself with ``numpy_bars``.
        """
        if not slot.active or not slot.enabled:
            return None
        strategy = slot.strategy
        if isinstance(bars, FrameWindow):
            data: Any = bars.frame()
        elif strategy.numpy_bars:
            data = bars
        else:  # another window (live minute bars): its DataFrame, the last lookback rows
            data = bars.to_frame()
            lookback = strategy.config.lookback
            if lookback is not None:
                data = data.iloc[-lookback:]
        signal = self._call(
            slot,
            "generate_signal",
            strategy.generate_signal,
            stock_code,
            data,
            timeframe or strategy.timeframe,
            code=stock_code,
            returns=Signal,
        )
        if signal is None:
            return None
        kind = signal.signal_type
        slot.signals[kind._value_] += 1  # _value_: .value is a slow descriptor before 3.12
        self._last_signal[(strategy.name, stock_code)] = (kind, self.clock())
        if kind is SignalType.HOLD:
            return signal
        if signal.stock_code != stock_code:
            self._reject(
                slot, signal, f"signal for {signal.stock_code} while evaluating {stock_code}"
            )
            return signal
        self.handle_signal(slot, signal)
        return signal

    def handle_signal(self, slot: StrategySlot, signal: Signal) -> Order | None:
        """Route a BUY/SELL signal through risk, funds and the order manager."""
        code = signal.stock_code
        price = self.prices.get(code)
        if price is None:
            self._reject(slot, signal, "no price known")
            return None
        name = slot.strategy.name
        risk = slot.strategy.risk
        held = self._portfolio.qty(name, code)
        kind = signal.signal_type  # identity tests: is_buy/is_sell are property calls
        limits = self._risk.limits
        counted = (kind is SignalType.BUY or kind is SignalType.STRONG_BUY) and (
            risk.max_positions is not None or limits.max_positions is not None
        )  # max_positions is the only check that reads them
        mine, everyone = self._position_counts(name) if counted else (0, 0)
        reason = self._risk.check_signal(
            signal,
            risk,
            trades_today=slot.trades_today,
            has_open_order=self._orders.has_open(name, code),
            position_qty=held,
            strategy=name,
            now=self.clock() if limits.cooldown_s > 0 else None,  # only a cooldown reads it
            strategy_positions=mine,
            total_positions=everyone,
        )
        if reason:
            self._reject(slot, signal, reason)
            return None
        if kind is SignalType.SELL or kind is SignalType.STRONG_SELL:
            return self._sell(slot, signal, held)
        return self._buy(slot, signal, price, held)

    def _position_counts(self, strategy: str) -> tuple[int, int]:
        """Stocks held or being bought by ``strategy`` and by every strategy (for
        ``max_positions``): (strategy, code) pairs with shares or an open buy."""
        pairs = {(p.strategy, p.stock_code) for p in self._portfolio.positions()}
        pairs.update(
            (o.strategy, o.stock_code)
            for o in self._orders.open_orders()
            if o.side is OrderSide.BUY
        )
        return sum(1 for s, _ in pairs if s == strategy), len(pairs)

    def _order_type(self, signal: Signal) -> tuple[OrderType, int | None]:
        if signal.limit_price is None or signal.signal_type in (
            SignalType.STRONG_BUY,
            SignalType.STRONG_SELL,
        ):
            return OrderType.MARKET, None
        rules = self._tick_rules(signal.stock_code)
        if signal.signal_type.is_buy:  # never above the price the strategy asked for
            return OrderType.LIMIT, round_to_tick(signal.limit_price, "down", **rules)
        return OrderType.LIMIT, round_to_tick(signal.limit_price, "up", **rules)

    def _tick_rules(self, stock_code: str) -> dict[str, Any]:
        """Date and market of ``stock_code`` for :mod:`utils.ticks` (tick table, price limit)."""
        return {"on": self.clock().date(), "market": self.fees.market(stock_code)}

    def _buy(self, slot: StrategySlot, signal: Signal, price: float, held: int) -> Order | None:
        code = signal.stock_code
        name = slot.strategy.name
        fees, funds = self.fees, self._funds
        order_type, limit = self._order_type(signal)
        ref_price = float(limit) if limit is not None else price
        # KIS holds a market buy's buying power at the upper-limit price (상한가) over the base
        # (previous close); the order is sized and reserved at that price so it is never
        # refused for funds, and the fill gives the difference back
        held_at = ref_price
        if limit is None:
            base = round(self.base_prices.get(code, price))
            upper = upper_limit_price(max(base, 1), **self._tick_rules(code))
            held_at = max(float(upper), ref_price)  # a stale base never under-reserves
        equity = self.equity_krw()
        invested = self._portfolio.invested_krw(name)
        free = funds.strategy_free_krw(name, equity, invested)
        if signal.qty is not None:  # explicit size: capped by the strategy's free capital
            qty = min(signal.qty, fees.max_affordable_qty(free, int(held_at)))
        else:
            qty = funds.size_buy(
                strategy=name,
                price_krw=ref_price,
                equity_krw=equity,
                max_position_size=slot.strategy.risk.max_position_size,
                commission_rate=fees.commission_rate_f,
                confidence=signal.confidence,
                strong=signal.signal_type is SignalType.STRONG_BUY,
                held_value_krw=int(held * price),
                strategy_invested_krw=invested,
                strategy_free_krw=free,
            )
            if held_at > ref_price:
                qty = min(qty, fees.max_affordable_qty(free, math.ceil(held_at)))
        reason = (
            self._risk.check_order(OrderSide.BUY, qty, ref_price)
            if qty > 0
            else ("size is 0 shares (budget below one share)")
        )
        if reason:
            self._reject(slot, signal, reason)
            return None
        amount = qty * held_at
        # cost estimate rounded up; never more than is free (qty was sized within it)
        reserve = math.ceil(amount * (1.0 + fees.commission_rate_f))
        try:
            reservation = funds.reserve(name, code, reserve, up_to_free=True)
        except FundsError as exc:
            self._reject(slot, signal, str(exc))
            return None
        order = self._create(
            strategy=name,
            stock_code=code,
            side=OrderSide.BUY,
            order_type=order_type,
            qty=qty,
            price=limit,
            signal=signal,
        )
        if order is None:
            funds.release(reservation.reservation_id)
            return None
        funds.assign(reservation.reservation_id, order.client_order_id)
        return self._send(slot, order, signal)

    def _sell(self, slot: StrategySlot, signal: Signal, held: int) -> Order | None:
        qty = held if signal.qty is None else min(signal.qty, held)
        order_type, limit = self._order_type(signal)
        order = self._create(
            strategy=slot.strategy.name,
            stock_code=signal.stock_code,
            side=OrderSide.SELL,
            order_type=order_type,
            qty=qty,
            price=limit,
            signal=signal,
        )
        return self._send(slot, order, signal) if order is not None else None

    def _create(self, **kwargs: Any) -> Order | None:
        """``OrderManager.create``; ``None`` (nothing sent) when it cannot be journaled."""
        try:
            order = self._orders.create(**kwargs)
        except StorageError as exc:
            self.storage_failed(exc)
            return None
        if self.storage_error is not None:
            self._storage_ok()
        return order

    def _send(self, slot: StrategySlot | None, order: Order, signal: Signal | None) -> Order:
        orders = self._orders
        if signal is not None:
            orders.context(order.client_order_id).signal = signal
        if order.attempt == 0:
            if slot is not None:
                slot.trades_today += 1
            self._risk.record_trade()
        orders.submit(order)
        status = order.status
        if status is OrderStatus.SUBMITTED:  # the common case: accepted, resting
            if self._order_events_wanted():
                self._publish_submitted(order)
            return order
        if status is OrderStatus.REJECTED:
            self.publish(
                OrderRejected(
                    at=self.clock(),
                    message=self._order_line("rejected", order),
                    level="warning",
                    reason=order.message,
                    **self._order_fields(order),
                )
            )
            if slot is not None and slot.active:
                self._call(slot, "on_order_rejected", slot.strategy.on_order_rejected, order.copy())
        elif status is not OrderStatus.PENDING_NEW and self._order_events_wanted():
            self._publish_submitted(order)
        if status.is_final:
            self.finalise(order)
        return order

    def _publish_submitted(self, order: Order) -> None:
        self.publish(
            OrderSubmitted(
                at=self.clock(),
                message=self._order_line("sent", order),
                **self._order_fields(order),
            )
        )

    def _order_events_wanted(self) -> bool:
        """Whether anyone gets order events: the journal does not (the orders and fills
        tables hold them), so without another subscriber they are not built at all."""
        return len(self._bus.subscribers) > 1

    def _order_fields(self, order: Order) -> dict[str, Any]:
        return OrderEvent.fields_of(order, self.names(order.stock_code) if self.names else None)

    @staticmethod
    def _order_line(what: str, order: Order, qty: int | None = None, price: Any = None) -> str:
        qty = order.qty if qty is None else qty
        price = order.price if price is None else price
        return (
            f"order {what}: {order.strategy} {order.side.value} {order.stock_code} "
            f"{qty} @ {price or 'market'}"
        )

    def _reject(self, slot: StrategySlot, signal: Signal, reason: str) -> None:
        slot.rejections[reason.split(":")[0]] += 1
        logger.debug(
            "%s %s %s refused: %s", slot.name, signal.signal_type.value, signal.stock_code, reason
        )
        if not self.journal_debug:
            return
        self.publish(
            RiskRejected(
                at=self.clock(),
                message=f"{slot.name} {signal.signal_type.value} {signal.stock_code}: {reason}",
                level="debug",
                strategy=slot.name,
                code=signal.stock_code,
                signal_type=signal.signal_type.value,
                reason=reason,
            )
        )

    # --- orders and fills --------------------------------------------------------------
    def buying_power_for(self, client_order_id: str) -> int:
        """KRW a buy may spend when it fills: its reservation plus free cash."""
        return self._funds.buying_power_krw(client_order_id)

    def poll_orders(self, stock_code: str | None = None, *, book_cash: bool = True) -> list[Fill]:
        """Read the broker's state of every open order (of one stock), and of cancelled
        orders still watched for a late fill, and apply it; returns the fills applied.

        One order's failure (a broker error, an answer that makes no sense, a fill that
        cannot be written) is logged and journaled and never stops the others; its fill
        stays un-applied and is found again on the next poll.

        ``book_cash=False`` (reconciliation) leaves the cash pool alone: the caller takes
        the cash from the account afterwards, which already includes these fills."""
        orders = self._orders.to_poll(stock_code)
        if not orders:
            return []
        applied: list[Fill] = []
        previous = self._book_cash  # as cash_from_account(not book_cash), inline: hot path
        self._book_cash = previous and book_cash
        try:
            for order in orders:
                applied.extend(self._poll_one(order))
        finally:
            self._book_cash = previous
        return applied

    @contextmanager
    def cash_from_account(self, on: bool = True) -> Iterator[None]:
        """Inside, fills leave the cash pool alone (``on``): the caller takes the cash from
        the account afterwards (reconciliation)."""
        previous = self._book_cash
        self._book_cash = previous and not on
        try:
            yield
        finally:
            self._book_cash = previous

    def _poll_one(self, order: Order) -> list[Fill]:
        was_final = order.status in FINAL_STATUSES
        try:
            if order.status is OrderStatus.UNKNOWN:
                fills = self._orders.resolve_unknown(order)
            elif order.broker_order_id is None:
                return []
            else:
                executor = self._executor
                # a paper account (its own get_order) hands its status and fills without
                # building an OrderState: once per fill of a backtest
                if isinstance(executor, PaperBroker) and type(executor).get_order is _PAPER_STATE:
                    status, reported = executor.fills_of(order.broker_order_id)
                    fills = self._orders.apply_report(order, status, reported)
                else:
                    fills = self._orders.apply_state(
                        order, self._executor.get_order(order.broker_order_id)
                    )
        except StorageError as exc:
            self.storage_failed(exc)
            return []
        except (BrokerError, OverfillError, ValueError) as exc:
            logger.warning("poll of %s failed: %s", order.client_order_id, exc)
            error = f"{type(exc).__name__}: {exc}"
            self.publish(
                OrderPollFailed(
                    at=self.clock(),
                    message=f"{order.client_order_id} {order.stock_code}: {error}",
                    level="warning",
                    strategy=order.strategy,
                    code=order.stock_code,
                    client_order_id=order.client_order_id,
                    error=error,
                )
            )
            return []
        if not was_final and order.status in FINAL_STATUSES:
            self.finalise(order)
        return fills

    def apply_notice(self, notice: ExecutionNotice) -> Fill | None:
        """Apply a real-time execution notice (booked like a polled fill); ``None`` when
        the execution is already recorded or the order is not one of this book's."""
        order = next(
            (
                o
                for o in self._orders.orders.values()
                if o.broker_order_id == notice.broker_order_id
            ),
            None,
        )
        if order is None:
            return None
        was_final = order.status.is_final
        try:
            fill = self._orders.apply_notice(order, notice)
        except StorageError as exc:
            self.storage_failed(exc)
            return None
        if order.status.is_final and not was_final:
            self.finalise(order)
        return fill

    def reread_fills(self, day: Any = None, codes: Iterable[str] | None = None) -> list[Fill]:
        """Read the day's orders at the broker (one list) and apply every fill of this
        book's orders not recorded yet, final orders included (a late fill of a cancelled
        order); returns the fills applied. Does nothing for an executor that cannot list
        orders. Raises ``BrokerError`` when the list cannot be read."""
        try:
            states = self._executor.list_orders(day)
        except NotImplementedError:
            return []
        wanted = set(codes) if codes is not None else None
        by_broker = {
            o.broker_order_id: o for o in self._orders.orders.values() if o.broker_order_id
        }
        applied: list[Fill] = []
        for state in states:
            order = by_broker.get(state.broker_order_id)
            if order is None or state.filled_qty <= order.filled_qty:
                continue
            if wanted is not None and order.stock_code not in wanted:
                continue
            was_final = order.status.is_final
            try:
                applied.extend(self._orders.apply_state(order, state))
            except StorageError as exc:
                self.storage_failed(exc)
                continue
            except (OverfillError, ValueError) as exc:
                logger.warning("fills of %s not applied: %s", order.client_order_id, exc)
                continue
            if order.status.is_final and not was_final:
                self.finalise(order)
        return applied

    def apply_fill(self, order: Order, fill: Fill, *, book_cash: bool | None = None) -> None:
        """Book one new fill of ``order``: its state, the position, the fill row and the
        cash ledger are written in one transaction; then the cash pool (unless
        ``book_cash`` is False; default: the current poll's setting), the alert and the
        strategy's ``on_order_filled``.

        Raises ``StorageError`` when the write failed: nothing changed in memory either.
        Raises ``OverfillError`` for a sell of more shares than the strategy holds."""
        book_cash = self._book_cash if book_cash is None else book_cash
        late = order.status in FINAL_STATUSES
        orders, portfolio, journal = self._orders, self._portfolio, self._journal
        strategy, code, buy = order.strategy, fill.stock_code, fill.side is OrderSide.BUY
        # a MemoryJournal never fails and holds no fill twice: nothing is ever undone, so
        # nothing is captured (an overfill raises before the position or the order changes)
        undo = type(journal) is not MemoryJournal
        if undo:
            before = orders.snapshot(order)
            mark = portfolio.checkpoint(strategy, code)
        try:
            if buy:
                meta = order.metadata
                pos, trip = portfolio.apply_fill(
                    strategy,
                    fill,
                    reasons=tuple(order.reasons),
                    stop_loss=meta.get(STOP_KEY) if meta else None,
                    target_price=meta.get(TARGET_KEY) if meta else None,
                    metadata=(
                        {k: v for k, v in meta.items() if k not in (STOP_KEY, TARGET_KEY)}
                        if meta
                        else None  # no metadata: nothing to add to the position
                    ),
                )
                if pos.peak_price is None or fill.price > pos.peak_price:
                    pos.peak_price = float(fill.price)
            else:  # a sell takes only the reasons (stop, target and metadata stay)
                pos, trip = portfolio.apply_fill(strategy, fill, reasons=tuple(order.reasons))
            cash_delta = fill.cash_delta_krw
            note = orders.book_fill(order, fill)
            stored = journal.fill_applied(
                order, note, fill, pos, fill.time if trip else None, cash_delta
            )
        except (StorageError, OverfillError) as exc:
            if undo:
                orders.unbook(order, before)
                portfolio.rollback(strategy, code, mark)
            if isinstance(exc, StorageError):
                self.storage_failed(exc)
            raise
        if self.storage_error is not None:
            self._storage_ok()
        if not stored:  # already in the database (a DatabaseJournal only): nothing more to do
            orders.unbook(order, before)
            portfolio.rollback(strategy, code, mark)
            return
        slot = self.slots.get(strategy)
        if book_cash:
            self._book_cash_of(order, buy, cash_delta, late)
        if not buy:
            self._risk.record_sell(strategy, code, fill.time)
        if self._order_events_wanted():
            self.publish(
                OrderFilled(
                    at=fill.time,
                    message=self._order_line("filled", order, fill.qty, fill.price),
                    fill_qty=fill.qty,
                    fill_price=fill.price,
                    amount_krw=fill.amount_krw,
                    commission_krw=fill.commission_krw,
                    tax_krw=fill.tax_krw,
                    realized_pnl_krw=trip.pnl_krw if trip else None,
                    **self._order_fields(order),
                )
            )
        if code not in self.prices:
            self.update_price(code, fill.price)
        # the default hook does nothing and cannot fail: skip it and the order copy
        if (
            slot is not None
            and slot.active
            and _overrides(slot.strategy, "on_order_filled")
        ):
            self._call(slot, "on_order_filled", slot.strategy.on_order_filled, order.copy())

    def _book_cash_of(self, order: Order, buy: bool, cash_delta_krw: int, late: bool) -> None:
        """Move the cash pool by a fill of ``order`` (``cash_delta_krw``: KRW, negative
        for a buy, its amount and commission)."""
        if not buy:
            self._funds.credit(cash_delta_krw)
            return
        cost = -cash_delta_krw
        reservation = None if late else self._funds.reservation_of(order.client_order_id)
        try:
            self._funds.commit_buy(reservation, cost)
        except FundsError:  # the broker spent it (a late fill): the cash follows the account
            self._funds.sync_cash(self._funds.cash_krw - cost)

    def storage_failed(self, exc: Exception) -> None:
        """The database cannot be written: alert once (until it can again)."""
        logger.error("database not writable: %s", exc)
        if self.storage_error is not None:
            return
        self.storage_error = str(exc)
        self.publish(
            StorageFailed(
                at=self.clock(),
                message=f"the database cannot be written: no new orders until it can ({exc})",
                level="critical",
                error=str(exc),
            )
        )

    def _storage_ok(self) -> None:
        if self.storage_error is None:
            return
        self.storage_error = None
        self.publish(
            StorageRecovered(
                at=self.clock(), message="the database can be written again", level="warning"
            )
        )

    def finalise(self, order: Order) -> None:
        self._funds.release_order(order.client_order_id)
        ctx = self._orders.drop_context(order.client_order_id)
        signal = ctx.signal
        timed_out = ctx.cancel_requested_at is not None
        if order.status in (OrderStatus.CANCELLED, OrderStatus.EXPIRED):
            if self._order_events_wanted():
                self.publish(
                    OrderCancelled(
                        at=self.clock(),
                        message=self._order_line("cancelled", order, order.remaining_qty),
                        unfilled_qty=order.remaining_qty,
                        filled_qty=order.filled_qty,
                        reason="timeout" if timed_out else order.message,
                        **self._order_fields(order),
                    )
                )
            slot = self.slots.get(order.strategy)
            if slot is not None and slot.active and order.remaining_qty > 0:
                self._call(
                    slot, "on_order_cancelled", slot.strategy.on_order_cancelled, order.copy()
                )
        if timed_out and order.status is OrderStatus.CANCELLED and order.remaining_qty > 0:
            if order.stock_code in self.prices:
                self._replace(order, signal)
            else:  # right after a restart: re-placed once a price is known
                self._orders.context(order.client_order_id).awaiting_price = True
        if timed_out:  # the re-placement (if any) is journaled: no longer pending
            self.save_engine_state()

    # --- timeouts, re-placement and protective exits -----------------------------------
    def manage_timeouts(self) -> int:
        """Cancel the rest of orders resting longer than the policy allows; returns how
        many cancels were sent. The re-placement follows when the cancel is confirmed
        (:meth:`poll_orders` sees the order ``CANCELLED``)."""
        now = self.clock()
        sent = 0
        for old in self._orders.awaiting_price():  # re-placements awaiting a price
            if old.stock_code in self.prices:
                self._orders.drop_context(old.client_order_id)
                self._replace(old, None)
                self.save_engine_state()
        for order in self._orders.open_orders():
            cid = order.client_order_id
            ctx = self._orders.peek_context(cid)
            if order.broker_order_id is None or (
                ctx is not None and ctx.cancel_requested_at is not None
            ):
                continue
            if ctx is not None and ctx.exit_cancel:  # cancelled for an exit: never re-placed
                continue
            if order.status not in (OrderStatus.SUBMITTED, OrderStatus.PARTIALLY_FILLED):
                continue
            timeout = self.order_policy.timeout_s(order.side)
            if timeout is None or order.created_at is None:
                continue
            if (now - order.created_at).total_seconds() < timeout:
                continue
            if self._orders.cancel(order):
                self._orders.context(cid).cancel_requested_at = now
                self.save_engine_state()  # the re-placement must survive a restart
                sent += 1
                self.publish(
                    OrderTimedOut(
                        at=now,
                        message=f"{cid} {order.stock_code} unfilled {order.remaining_qty} of "
                        f"{order.qty} after {timeout:.0f} s: cancel sent",
                        strategy=order.strategy,
                        code=order.stock_code,
                        client_order_id=cid,
                        attempt=order.attempt,
                        unfilled_qty=order.remaining_qty,
                        timeout_s=float(timeout),
                    )
                )
        return sent

    def signal_holds(self, order: Order) -> bool:
        """Whether the strategy still wants ``order``: its latest signal for the stock since
        the order was created is not HOLD or the other side (none since = still holds).
        Protective exits and orders of unmanaged holdings always hold."""
        if order.strategy == UNMANAGED or order.metadata.get("exit_rule"):
            return True
        last = self._last_signal.get((order.strategy, order.stock_code))
        if last is None or order.created_at is None or last[1] <= order.created_at:
            return True
        kind = last[0]
        return kind.is_buy if order.side is OrderSide.BUY else kind.is_sell

    def _replace(self, old: Order, signal: Signal | None) -> Order | None:
        policy = self.order_policy
        code = old.stock_code
        slot = self.slots.get(old.strategy)
        if old.attempt >= policy.max_replacements:
            self._not_replaced(old, "replacements used up")
            return None
        if not self.signal_holds(old):
            self._not_replaced(old, "the signal no longer holds")
            return None
        if self._risk.state is TradingState.HALTED or (
            old.side is OrderSide.BUY and self._risk.state is TradingState.REDUCE_ONLY
        ):
            self._not_replaced(old, self._risk.state.value)
            return None
        price = self.prices.get(code)
        if price is None:
            return None
        market = old.order_type is OrderType.MARKET
        limit = None
        if not market:
            side: Direction = "up" if old.side is OrderSide.BUY else "down"
            limit = round_to_tick(price, side, **self._tick_rules(code))
        qty = old.remaining_qty
        reservation = None
        if old.side is OrderSide.BUY:
            ref = float(limit if limit is not None else price)
            qty = min(qty, self.fees.max_affordable_qty(self._funds.free_krw, int(ref)))
            if qty <= 0 or self._risk.check_order(OrderSide.BUY, qty, ref):
                self._not_replaced(old, "no cash or limit")
                return None
            cost = math.ceil(qty * ref * (1.0 + self.fees.commission_rate_f))
            need = min(cost, self._funds.free_krw)
            try:
                reservation = self._funds.reserve(old.strategy, code, need)
            except FundsError as exc:
                self._not_replaced(old, str(exc))
                return None
        else:
            qty = min(qty, self._portfolio.qty(old.strategy, code))
            if qty <= 0:
                return None
        order = self._create(
            strategy=old.strategy,
            stock_code=code,
            side=old.side,
            order_type=old.order_type,
            qty=qty,
            price=limit,
            signal=signal,
            replaces=old,
        )
        if order is None:
            if reservation is not None:
                self._funds.release(reservation.reservation_id)
            return None
        if reservation is not None:
            self._funds.assign(reservation.reservation_id, order.client_order_id)
        return self._send(slot, order, signal)

    def _not_replaced(self, old: Order, reason: str) -> None:
        self.publish(
            OrderNotReplaced(
                at=self.clock(),
                message=f"{old.client_order_id}: {reason}",
                strategy=old.strategy,
                code=old.stock_code,
                client_order_id=old.client_order_id,
                reason=reason,
            )
        )

    def exit_policy(self, strategy: str) -> ExitPolicy:
        """The exit rules of ``strategy`` (``default_exits`` for ``unmanaged``)."""
        policy = self._exit_policies.get(strategy)
        if policy is None:
            slot = self.slots.get(strategy)
            policy = ExitPolicy.of(slot.strategy.risk) if slot is not None else self.default_exits
            self._exit_policies[strategy] = policy
        return policy

    def check_exits(self, stock_code: str) -> list[Order]:
        """Apply stop loss, take profit and trailing stop to every position in
        ``stock_code`` at its last price; a triggered exit sells the whole position at
        market. Blocked only by ``HALTED``; an open order of the position is cancelled
        first (the exit follows on the next check once the cancel is confirmed). The exit of
        a position :meth:`exit_all` could not sell at once follows here, even ``HALTED``."""
        price = self.prices.get(stock_code)
        sent: list[Order] = []
        if price is None:
            return sent
        for key in [k for k in self._liquidating if self._portfolio.get(*k) is None]:
            del self._liquidating[key]  # closed meanwhile: nothing left to liquidate
        for pos in list(self._portfolio.positions()):
            if pos.stock_code != stock_code:
                continue
            if pos.peak_price is None or price > pos.peak_price:
                pos.peak_price = price
            key = (pos.strategy, pos.stock_code)
            trigger = self._liquidating.get(key) or exit_trigger(
                pos, price, self.exit_policy(pos.strategy)
            )
            if trigger is None or (
                self._risk.state is TradingState.HALTED and key not in self._liquidating
            ):
                continue
            order = self.exit_position(pos, trigger)
            if order is not None:
                self._liquidating.pop(key, None)
                sent.append(order)
        return sent

    def check_bar_exits(
        self, stock_code: str, open_: float, high: float, low: float
    ) -> list[tuple[Order, float]]:
        """Apply the protective exits of every position in ``stock_code`` to one bar
        (:func:`core.risk.bar_exit`); returns each exit order sent with the price it fills at
        within the bar (the caller fills it there). Blocked only by ``HALTED``, as
        :meth:`check_exits`. Afterwards each remaining position's peak takes the bar's high."""
        sent: list[tuple[Order, float]] = []
        for pos in self._portfolio.positions():  # a new list: exits may close positions
            if pos.stock_code != stock_code:
                continue
            key = (pos.strategy, pos.stock_code)
            trigger = self._liquidating.get(key)
            if trigger is not None:
                trigger = ExitTrigger(trigger.rule, open_, trigger.level)
            else:
                trigger = bar_exit(
                    pos,
                    self.exit_policy(pos.strategy),
                    open_,
                    high,
                    low,
                    **self._tick_rules(stock_code),
                )
            if trigger is not None and (
                self._risk.state is not TradingState.HALTED or key in self._liquidating
            ):
                order = self.exit_position(pos, trigger)
                if order is not None:
                    self._liquidating.pop(key, None)
                    sent.append((order, trigger.price))
                    continue
            _raise_peak(pos, high)
        return sent

    def exit_band(self, stock_code: str) -> tuple[float, float, float, bool] | None:
        """``(stop, target, peak, trailing)`` (KRW) of the positions in ``stock_code``: a bar
        whose open and low are above ``stop`` and whose open and high are below ``target``
        fires no exit in :meth:`check_bar_exits`; if its high is above ``peak`` it raises the
        positions' peaks, which moves ``stop`` only when ``trailing`` (a trailing stop is on);
        without one :meth:`raise_peaks` does all the bar changes. A backtest passes such bars
        by. ``None`` when every bar must be checked: an open order of the stock, a
        liquidation waiting, a position without a peak yet."""
        if self._orders.open_orders(stock_code):
            return None
        stop, target, peak, trailing = -math.inf, math.inf, math.inf, False
        for pos in self._portfolio.positions():
            if pos.stock_code != stock_code:
                continue
            if pos.peak_price is None or (pos.strategy, stock_code) in self._liquidating:
                return None
            policy = self.exit_policy(pos.strategy)
            low, high = exit_band(pos, policy)
            stop, target, peak = max(stop, low), min(target, high), min(peak, pos.peak_price)
            trailing = trailing or policy.trailing_stop_pct is not None
        return stop, target, peak, trailing

    def raise_peaks(self, stock_code: str, high: float) -> None:
        """Each position in ``stock_code`` takes ``high`` (KRW) as its peak when above it
        (what :meth:`check_bar_exits` does after a bar without exits)."""
        for pos in self._portfolio.positions():
            if pos.stock_code == stock_code:
                _raise_peak(pos, high)

    def exit_positions(
        self, rule: str, wanted: Callable[[Position], float | None]
    ) -> list[Order]:
        """Sell at market every position for which ``wanted(position)`` gives a level
        (the time cut: sessions held; the close exit: the price), naming ``rule``. Not while
        ``HALTED``."""
        sent: list[Order] = []
        if self._risk.state is TradingState.HALTED:
            return sent
        for pos in list(self._portfolio.positions()):
            level = wanted(pos)
            if level is None:
                continue
            price = self.prices.get(pos.stock_code, pos.avg_price)
            order = self.exit_position(pos, ExitTrigger(rule, price, level))
            if order is not None:
                sent.append(order)
        return sent

    def exit_position(self, pos: Position, trigger: ExitTrigger) -> Order | None:
        """Sell all of ``pos`` at market because of ``trigger`` (once: not while an order
        for the position is open)."""
        open_orders = [
            o
            for o in self._orders.open_orders(pos.stock_code)
            if o.strategy == pos.strategy
        ]
        if open_orders:
            if any(o.metadata.get("exit_rule") for o in open_orders):
                return None  # an exit is already working: leave it be
            for o in open_orders:  # the exit waits for these to be cancelled; never re-placed
                self._cancel_for_exit(o)
            return None
        reason = trigger.reason  # a formatted line: built once for the order and the alert
        order = self._create(
            strategy=pos.strategy,
            stock_code=pos.stock_code,
            side=OrderSide.SELL,
            order_type=OrderType.MARKET,
            qty=pos.qty,
            price=None,
            reasons=(reason,),
        )
        if order is None:
            return None
        order.metadata = {"exit_rule": trigger.rule}
        self.publish(
            ProtectiveExit(
                at=self.clock(),
                message=f"{pos.strategy} {pos.stock_code}: {reason}",
                strategy=pos.strategy,
                code=pos.stock_code,
                name=self.names(pos.stock_code) if self.names else None,
                rule=trigger.rule,
                price=trigger.price,
                trigger_price=trigger.level,
            )
        )
        return self._send(self.slots.get(pos.strategy), order, None)

    def _cancel_for_exit(self, order: Order) -> None:
        """Cancel ``order`` to make way for an exit; it is never timed out or re-placed."""
        cid = order.client_order_id
        ctx = self._orders.context(cid)
        ctx.cancel_requested_at = None
        if not ctx.exit_cancel and self._orders.cancel(order):
            ctx.exit_cancel = True

    def exit_all(self, reason: str) -> list[Order]:
        """Sell every position at market (the portfolio stop); open buys are cancelled.

        The cancels are polled at once; a position whose open orders are not cancelled yet
        is sold by :meth:`check_exits` once they are (also when trading is ``HALTED``)."""
        sent: list[Order] = []
        cancelled = [o for o in self._orders.open_orders() if o.side is OrderSide.BUY]
        for open_order in cancelled:
            self._cancel_for_exit(open_order)
        if cancelled:
            self.poll_orders()  # apply confirmed cancels so the exits need not wait
        for pos in list(self._portfolio.positions()):
            price = self.prices.get(pos.stock_code, pos.avg_price)
            trigger = ExitTrigger(reason, price, price)
            order = self.exit_position(pos, trigger)
            if order is not None:
                sent.append(order)
            elif not any(
                o.metadata.get("exit_rule") and o.strategy == pos.strategy
                for o in self._orders.open_orders(pos.stock_code)
            ):
                self._liquidating[(pos.strategy, pos.stock_code)] = trigger
        return sent

    def open_positions(self) -> list[Position]:
        return self._portfolio.positions()

    # --- fencing -----------------------------------------------------------------------
    def _call(
        self,
        slot: StrategySlot,
        hook: str,
        fn: Callable[..., Any],
        *args: Any,
        code: str | None = None,
        returns: type | tuple[type, ...] | None = None,
    ) -> Any:
        """``fn(*args)``, a hook of ``slot``'s strategy (on stock ``code``, if any); a
        failure is handled by :meth:`_strategy_failed` and returns ``None``.

        With ``returns``, a result that is neither ``None`` nor an instance of it (a dict
        or a string from ``generate_signal``) is a failure of the hook too (``TypeError``)."""
        try:
            result = fn(*args)
            if returns is not None and result is not None and not isinstance(result, returns):
                names = returns if isinstance(returns, tuple) else (returns,)
                raise TypeError(
                    f"{hook} returned {type(result).__name__}, expected "
                    f"{' or '.join(t.__name__ for t in names)} or None"
                )
        except Exception as exc:
            self._strategy_failed(slot, hook, exc, code)
            return None
        if slot.failures:
            slot.failures.succeeded(hook, code)
        return result

    def _strategy_failed(
        self, slot: StrategySlot, hook: str, exc: BaseException, code: str | None = None
    ) -> None:
        """Count, log and journal one failure of ``hook``; disable the strategy at its limit.

        The traceback is logged once per kind of failure (see
        :class:`~core.fencing.HookFailures`). Each failure is one ``strategy_error`` event
        (at most the limit in a row); the disable is one ``strategy_isolated`` event.
        Raises :class:`StrategyDisabledError` on the disable with
        ``stop_on_strategy_failure``.
        """
        slot.errors += 1
        streak, where = slot.failures.failed(slot.strategy, hook, exc, code)
        on = f" on {code}" if code else ""
        error = f"{type(exc).__name__}: {exc}"
        self.publish(
            StrategyError(
                at=self.clock(),
                message=f"{slot.name}.{hook}{on}: {error} ({where})",
                level="error",
                strategy=slot.name,
                code=code,
                hook=hook,
                error=error,
                where=where,
            )
        )
        limit = self.max_consecutive_errors or slot.strategy.config.max_consecutive_errors
        if streak < limit or not slot.active:
            return
        slot.active = False
        slot.disabled = StrategyDisabledError(slot.name, hook, streak, exc, where)
        self.publish(
            StrategyIsolated(
                at=self.clock(),
                message=str(slot.disabled),
                level="error",
                strategy=slot.name,
                errors=streak,
                hook=hook,
                error=slot.disabled.error_text,
                where=where,
            )
        )
        if self.stop_on_strategy_failure:
            raise slot.disabled from exc

    def publish(self, event: Event) -> None:
        """Journal ``event`` (when its type is journaled) and hand it to every subscriber;
        ``debug`` events only when ``journal_debug``. Never raises for a subscriber."""
        if event.level == "debug" and not self.journal_debug:
            return
        self._bus.publish(event)

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Add an event subscriber (every published event); returns its unsubscribe."""
        return self._bus.subscribe(subscriber)

    def _record(self, event: Event) -> None:
        """The journal's subscription: writes the journaled events; a failed write raises
        the storage alert (the other subscribers still get the event)."""
        if not event.journaled:
            return
        try:
            self._journal.event(event)
        except StorageError as exc:
            self.storage_failed(exc)


_PAPER_STATE = PaperBroker.get_order
"""The paper account's own order read (a subclass that replaces it is polled through it)."""


def _overrides(strategy: BaseStrategy, hook: str) -> bool:
    """Whether ``strategy`` has its own ``hook`` (its class's or one set on the instance),
    not :class:`BaseStrategy`'s."""
    return getattr(getattr(strategy, hook), "__func__", None) is not getattr(BaseStrategy, hook)


def _raise_peak(pos: Position, high: float) -> None:
    if pos.peak_price is None or high > pos.peak_price:
        pos.peak_price = float(high)
