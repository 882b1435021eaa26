"""``BaseStrategy``: the lifecycle every strategy plugin implements.

A strategy lives in ``strategies/<name>/strategy.py`` (one ``BaseStrategy`` subclass) with
its ``config.yaml`` beside it. The engine calls, in order:

==============================================  ========  ===================================
hook                                            required  when / what
==============================================  ========  ===================================
``__init__(config)``                            no        once, with the validated config
``on_init(broker, data_provider, executor)``    no        once before trading; ``False``
                                                          disables the strategy
``indicators(bars)``                            no        once per data refresh per stock:
                                                          vectorised indicator columns
``signal_bars(data)``                           no        backtest, once per stock: the bars
                                                          on which a signal is possible
``on_market_open()``                            no        at the open of each trading day
``generate_signal(stock_code, data, timeframe)`` yes      on every new bar / quote tick
``on_order_filled(order)``                      no        after each fill of its own orders
``on_market_close()``                           no        after the close of each day
==============================================  ========  ===================================

``data`` is a pandas DataFrame of the last ``lookback_bars`` bars (``config.yaml``, default
250, ``all`` for the whole history): columns ``open high low close volume`` (KRW, shares,
float64) plus the :meth:`~BaseStrategy.indicators` columns, a ``DatetimeIndex`` in
Asia/Seoul, oldest first, the current bar last::

    sma20 = data["close"].rolling(20).mean().iloc[-1]

A strategy that sets ``numpy_bars = True`` gets the engine's :class:`~framework.bars.Bars`
window instead (numpy arrays over the whole history, a few microseconds per call however
long the history): ``data.close[-1]``, ``data.last("sma_5")``.

Hooks should return quickly (well under a second). An exception in a hook is caught by the
engine and logged with the strategy's name (the traceback once); after
``max_consecutive_errors`` failures in a row of one hook (``config.yaml``, default 3) the
strategy is disabled: a backtest stops with exit status 3, live trading sends one alert and
the other strategies keep trading.

Strategies trade by returning :class:`~framework.types.Signal`; the engine applies risk
checks, sizes the order from the strategy's capital and sends it. A strategy never keeps its
own books: :meth:`BaseStrategy.get_position` gives a read-only view of its positions, and
``self.positions[code]`` the same with the keys of the seed's dictionaries
(``quantity``, ``entry_price``, ``entry_time``...).
"""

from __future__ import annotations

import abc
import dataclasses
import json
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd
from pydantic import BaseModel

from framework.bars import Bars
from framework.types import INTERFACE_VERSION, Order, PositionView, Signal
from framework.views import AccountView, MarketDataView, OrdersView

if TYPE_CHECKING:
    from datetime import date

    from strategies.config import StrategyConfig

PositionLookup = Callable[[str], PositionView | None]


@dataclasses.dataclass(frozen=True, slots=True)
class StrategyPosition(PositionView, Mapping[str, Any]):
    """A :class:`~framework.types.PositionView` that also reads as the seed's dictionary.

    ``pos.qty`` and ``pos["quantity"]`` are the same number. Keys: ``quantity`` (shares),
    ``entry_price`` (average price, KRW, fees excluded), ``entry_time`` (first fill,
    Asia/Seoul), ``stock_code``, ``stop_loss``, ``target_price`` (KRW or ``None``),
    ``reasons`` and ``metadata``. An unknown key raises ``KeyError`` naming the valid keys.
    """

    KEYS: ClassVar[Mapping[str, str]] = {
        "stock_code": "stock_code",
        "quantity": "qty",
        "entry_price": "avg_price",
        "entry_time": "opened_at",
        "stop_loss": "stop_loss",
        "target_price": "target_price",
        "reasons": "reasons",
        "metadata": "metadata",
    }

    @classmethod
    def of(cls, view: PositionView) -> StrategyPosition:
        if isinstance(view, StrategyPosition):
            return view
        return cls(**{f.name: getattr(view, f.name) for f in dataclasses.fields(view)})

    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self, self.KEYS[key])
        except KeyError:
            raise KeyError(f"no position key {key!r}; keys: {', '.join(self.KEYS)}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.KEYS)

    def __len__(self) -> int:
        return len(self.KEYS)


class BaseStrategy(abc.ABC):
    """Base class of every strategy. Only :meth:`generate_signal` must be written.

    Class attributes
    ----------------
    Parameters:
        Optional pydantic model for the ``parameters`` section of ``config.yaml``. When set,
        the loader validates the section against it (unknown keys rejected) and
        ``self.params`` is an instance of it; otherwise ``self.params`` is the plain dict.
    INTERFACE_VERSION:
        The strategy API version the class was written for (2: ``data`` is a DataFrame).
    numpy_bars:
        ``False`` (default): ``data`` is a pandas DataFrame of the last ``lookback_bars``
        bars, as the seed writes strategies. ``True``: ``data`` is the
        :class:`~framework.bars.Bars` window, numpy arrays over the whole history; the fast
        path for strategies that read precomputed :meth:`indicators` columns.
    """

    Parameters: ClassVar[type[BaseModel] | None] = None
    INTERFACE_VERSION: ClassVar[int] = INTERFACE_VERSION
    numpy_bars: ClassVar[bool] = False

    def __init__(self, config: StrategyConfig):
        self.config = config
        self.name: str = config.name
        self.params: Any = config.parameters
        self.risk = config.risk_management
        self.universe: tuple[str, ...] = tuple(config.universe)
        self.timeframe: str = config.timeframe
        self.timeframes: tuple[str, ...] = config.frames
        """Every timeframe the strategy decides on (``timeframes:``; else ``(timeframe,)``)."""
        self.broker: AccountView | None = None
        self.data_provider: MarketDataView | None = None
        self.orders: OrdersView | None = None
        self.logger = logging.getLogger(f"strategies.{self.name}")
        self._position_lookup: PositionLookup = lambda _code: None
        self._positions_lookup: Callable[[], Mapping[str, PositionView]] = dict
        self._trades_today: Callable[[], int] = lambda: 0
        self._saved_state: dict[str, Any] | None = None
        self._state_store: (
            tuple[Callable[[dict[str, Any]], None], Callable[[], dict[str, Any]]] | None
        ) = None

    # --- lifecycle ----------------------------------------------------------------------
    def on_init(
        self, broker: AccountView, data_provider: MarketDataView, orders: OrdersView
    ) -> bool:
        """Called once before trading. Return ``False`` to disable the strategy.

        The three arguments are read-only views: the account (balance, holdings, quotes),
        market data (bars) and this strategy's own orders (copies). The default keeps them
        on ``self`` (``self.broker``, ``self.data_provider``, ``self.orders``). A strategy
        places orders only by returning signals.
        """
        self.broker = broker
        self.data_provider = data_provider
        self.orders = orders
        return True

    def on_market_open(self) -> None:  # noqa: B027 - optional hook
        """Called at the open of every trading day, before the first signal."""

    def indicators(self, bars: pd.DataFrame) -> pd.DataFrame | Mapping[str, Any] | None:
        """Vectorised indicator columns, computed once per data refresh of a stock.

        ``bars`` is the OHLCV DataFrame of one stock (index tz Asia/Seoul). Return columns
        of the same length (a DataFrame or a mapping of name -> array/Series of numbers);
        they appear in ``data`` of :meth:`generate_signal` under their names (as float64).
        The result must be causal (row *t* may use rows up to *t* only: rolling windows,
        ``shift(+k)``, never ``shift(-k)``), because the backtest computes it over the whole
        history once; every backtest checks this first (:mod:`core.lookahead`) and stops with
        exit status 4 when a column looks ahead. Default: no indicators.
        """
        return None

    def signal_bars(self, data: Bars) -> Any:
        """The bars on which :meth:`generate_signal` can return anything but ``None``.

        Called by the backtest once per stock, after :meth:`indicators`, with the window over
        the whole history (``data.close`` etc. are full-length arrays). Return a boolean array
        of ``len(data)`` (True = the strategy may signal on that bar, whatever it holds), or
        ``None`` (the default) to be asked on every bar. The backtest then calls
        :meth:`generate_signal` only on the marked bars; on the others it takes the answer
        as ``None`` without asking, so the run is the same, only faster. The mask must be
        causal like the indicators and must cover every bar on which the strategy could
        act, in any position: a bar left out is a signal lost. Live trading always asks.

        ``strategies/sma_cross`` marks its cross bars this way.
        """
        return None

    @abc.abstractmethod
    def generate_signal(
        self, stock_code: str, data: pd.DataFrame | Bars, timeframe: str
    ) -> Signal | None:
        """Decide for ``stock_code`` on the bars seen so far.

        Parameters
        ----------
        stock_code:
            6-character KRX code from the strategy's universe.
        data:
            ``pandas.DataFrame`` of at most ``lookback_bars`` rows: ``open high low close
            volume`` (KRW, shares) plus the columns of :meth:`indicators`, ``DatetimeIndex``
            in Asia/Seoul, oldest first, the current bar last. A read-only view: copy it
            before writing into it. With ``numpy_bars = True``, the
            :class:`~framework.bars.Bars` window over the whole history instead.
        timeframe:
            ``"daily"`` or ``"minute"``: which frame ``data`` is. A strategy with
            ``timeframes: [daily, minute]`` is called with the daily frame at the daily
            cadence (today's bar, still forming, last) and with today's minute frame on
            each completed minute bar.

        Returns
        -------
        Signal or None
            ``None`` = could not judge (not enough data...); ``HOLD`` = judged, no action.
        """

    def on_order_filled(self, order: Order) -> None:  # noqa: B027 - optional hook
        """Called after every fill of one of this strategy's orders (a copy of the order)."""

    def on_order_cancelled(self, order: Order) -> None:  # noqa: B027 - optional hook
        """Called when one of this strategy's orders ends cancelled or expired with shares
        unfilled (a copy; ``remaining_qty`` never filled). A timed-out order may be placed
        again by the engine after this call. Must return quickly."""

    def on_order_rejected(self, order: Order) -> None:  # noqa: B027 - optional hook
        """Called when the broker refuses one of this strategy's orders (a copy; the
        broker's reason in ``message``). Must return quickly."""

    def on_market_close(self) -> None:  # noqa: B027 - optional hook
        """Called after the close of every trading day."""

    # --- provided by the framework ------------------------------------------------------
    def get_position(self, stock_code: str) -> PositionView | None:
        """This strategy's open position in ``stock_code``, or ``None`` when flat."""
        return self._position_lookup(stock_code)

    @property
    def positions(self) -> Mapping[str, StrategyPosition]:
        """Every open position of this strategy, by stock code (read-only copies).

        ``code in self.positions`` tells whether the strategy holds ``code``;
        ``self.positions[code]["quantity"]`` / ``["entry_price"]`` / ``["entry_time"]`` read
        as in the seed (see :class:`StrategyPosition`), ``self.positions[code].qty`` as well.
        """
        return {code: StrategyPosition.of(view) for code, view in self._positions_lookup().items()}

    @property
    def trades_today(self) -> int:
        """Orders this strategy has had filled or sent today (the engine's count)."""
        return self._trades_today()

    def bind(
        self,
        position_lookup: PositionLookup,
        positions_lookup: Callable[[], Mapping[str, PositionView]],
        trades_today: Callable[[], int],
    ) -> None:
        """Connect the read-only views the engine provides (called by the engine)."""
        self._position_lookup = position_lookup
        self._positions_lookup = positions_lookup
        self._trades_today = trades_today

    # --- state kept across restarts -----------------------------------------------------
    def save_state(self, state: Mapping[str, Any]) -> None:
        """Keep ``state`` (a JSON-able dict: str keys; str, int, float, bool, None, lists
        and dicts of them) as this strategy's saved state, replacing the previous one.

        Live and dry-run keep it in the database, so :meth:`load_state` gives it back after
        a restart; a backtest keeps it in memory. Raises ``TypeError`` if it is not
        JSON-able (in a backtest: when loaded back). A database that cannot be written is
        alerted by the engine, not raised.
        """
        if self._state_store is None:  # a backtest: in memory (checked when loaded back)
            self._saved_state = dict(state)
            return
        data = json.loads(json.dumps(dict(state), allow_nan=False))
        self._saved_state = data
        self._state_store[0](data)

    def load_state(self) -> dict[str, Any]:
        """The state last saved with :meth:`save_state` (after a restart: the one in the
        database); an empty dict if none."""
        if self._state_store is not None and self._saved_state is None:
            self._saved_state = self._state_store[1]()
        return json.loads(json.dumps(self._saved_state or {}))

    def bind_state(
        self,
        save: Callable[[dict[str, Any]], None],
        load: Callable[[], dict[str, Any]],
    ) -> None:
        """Connect the saved-state store (called by the engine)."""
        self._state_store = (save, load)
        self._saved_state = None

    def describe(self) -> list[str]:
        """Extra lines shown by ``python main.py strategies`` (default: none)."""
        return []

    def select_universe(self, day: date, data: Mapping[str, pd.DataFrame]) -> list[str]:
        """The codes to trade on ``day`` (``universe: {screen: hook}``), best first.

        Called before each open, live and in a backtest; ``data`` maps every candidate code
        to its daily OHLCV bars up to the previous close (no look-ahead). At most ``cap``
        codes are kept; the config's ``include`` and the strategy's holdings are added
        afterwards. Should take well under a second. The default keeps every candidate.
        """
        return [c for c in self.config.universe if c in data]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} universe={list(self.universe)}>"
