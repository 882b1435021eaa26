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
``on_market_open()``                            no        at the open of each trading day
``generate_signal(stock_code, data, timeframe)`` yes      on every new bar / quote tick
``on_order_filled(order)``                      no        after each fill of its own orders
``on_market_close()``                           no        after the close of each day
==============================================  ========  ===================================

Hooks should return quickly (well under a second); an exception in any hook is caught by
the engine, logged with the strategy's name and reported, and the other strategies keep
trading.

Strategies trade by returning :class:`~framework.types.Signal`; the engine applies risk
checks, sizes the order from the strategy's capital and sends it. A strategy never keeps its
own books: :meth:`BaseStrategy.get_position` gives a read-only view of its positions.
"""

from __future__ import annotations

import abc
import json
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd
from pydantic import BaseModel

from framework.bars import Bars
from framework.types import INTERFACE_VERSION, Order, PositionView, Signal
from framework.views import AccountView, MarketDataView, OrdersView

if TYPE_CHECKING:
    from strategies.config import StrategyConfig

PositionLookup = Callable[[str], PositionView | None]


class BaseStrategy(abc.ABC):
    """Base class of every strategy. Only :meth:`generate_signal` must be written.

    Class attributes
    ----------------
    Parameters:
        Optional pydantic model for the ``parameters`` section of ``config.yaml``. When set,
        the loader validates the section against it (unknown keys rejected) and
        ``self.params`` is an instance of it; otherwise ``self.params`` is the plain dict.
    INTERFACE_VERSION:
        The strategy API version the class was written for.
    """

    Parameters: ClassVar[type[BaseModel] | None] = None
    INTERFACE_VERSION: ClassVar[int] = INTERFACE_VERSION

    def __init__(self, config: StrategyConfig):
        self.config = config
        self.name: str = config.name
        self.params: Any = config.parameters
        self.risk = config.risk_management
        self.universe: tuple[str, ...] = tuple(config.universe)
        self.timeframe: str = config.timeframe
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
        of the same length (a DataFrame or a mapping of name -> array/Series); they appear in
        the ``data`` window of :meth:`generate_signal` under their names. The result must be
        causal (row *t* may use rows up to *t* only: rolling windows, ``shift(+k)``), because
        the backtest computes it over the whole history once. Default: no indicators.
        """
        return None

    @abc.abstractmethod
    def generate_signal(self, stock_code: str, data: Bars, timeframe: str) -> Signal | None:
        """Decide for ``stock_code`` on the bars seen so far.

        Parameters
        ----------
        stock_code:
            6-character KRX code from the strategy's universe.
        data:
            :class:`~framework.bars.Bars` window: OHLCV (KRW, shares) plus the columns of
            :meth:`indicators`, oldest first, the current bar last.
        timeframe:
            ``"daily"`` or ``"minute"``.

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
    def positions(self) -> Mapping[str, PositionView]:
        """Every open position of this strategy, by stock code (read-only copies)."""
        return self._positions_lookup()

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

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} universe={list(self.universe)}>"
