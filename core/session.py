"""``TradingSession``: the rules of a trading day, one object for live trading and backtests.

Live trading (:mod:`core.live`, APScheduler on the KRX calendar) and the backtest
(:mod:`core.backtest`, the bars of historical data, one trading day at a time) drive the same
methods in the same order, so no risk rule, timeout or counter exists in only one of them:

=====================  ========================================================================
method                 what it does (live job → backtest moment)
=====================  ========================================================================
:meth:`open_day`       the day's counters reset (trades, daily loss lock, starting equity),
                       the time cut of positions held long enough, ``on_market_open``
                       (``open`` job → first bar of a day)
:meth:`quote`          a new price: stop loss / take profit / trailing stop at that price
                       (``quotes`` job; the backtest uses :meth:`bar` instead)
:meth:`bar`            one bar of a stock: protective exits against its range, filled in the
                       bar at the rule's price (backtest only; see :func:`core.risk.bar_exit`)
:meth:`mark_equity`    the daily loss lock and the portfolio stop on the current equity
                       (``quotes`` job → each bar's close)
:meth:`poll`           fills of open orders, then order timeouts and re-placement
                       (``fills`` job → after each bar's fills; timeouts on intraday bars)
:meth:`decides_now`    whether a strategy decides now (``decide_at``; ``signals`` job → each
                       bar's close)
:meth:`exit_at_close`  positions of ``exit_at_close`` strategies sold at the close
                       (``exit_close`` job → the day's last bar of a stock)
:meth:`close_day`      the day orders still resting expire, last poll, ``on_market_close``
                       (``close`` job → after a day's last bar)
=====================  ========================================================================

Holding time for ``max_holding_days`` counts trading sessions from the entry day, both
ends included: the KRX calendar live, the days of the bars in a backtest.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from datetime import date, datetime, time

from core.portfolio import Position
from core.risk import RiskManager, TradingState
from core.trader import StrategySlot, Trader
from framework.events import RiskLimitHit, RiskStateChanged
from framework.types import Order
from utils.clock import KST


class TradingSession:
    """The rules of a trading day over one :class:`~core.trader.Trader`.

    Parameters
    ----------
    trader, risk:
        The engine and its risk manager.
    intraday_timeouts:
        Whether order timeouts in seconds apply (live and intraday bars; on daily bars an
        order simply lives for its session).
    expire_day_orders:
        ``f(day)`` expiring the orders still resting at the close of ``day`` where the
        venue does not do it itself (the paper broker); KIS expires day orders itself.
    fill_exit:
        ``f(order, price_krw)`` filling a protective exit inside the current bar (the
        backtest's paper broker); live exits go to the broker as market orders.
    sessions_between:
        ``f(first, last)`` → trading days from ``first`` to ``last`` inclusive (the KRX
        calendar live); default: the days this session opened (a backtest's bars).
    """

    def __init__(
        self,
        trader: Trader,
        risk: RiskManager,
        *,
        intraday_timeouts: bool = True,
        expire_day_orders: Callable[[date], object] | None = None,
        fill_exit: Callable[[Order, float], object] | None = None,
        sessions_between: Callable[[date, date], int] | None = None,
    ):
        self.trader = trader
        self.risk = risk
        self.intraday_timeouts = intraday_timeouts
        self.expire_day_orders = expire_day_orders
        self.fill_exit = fill_exit
        self._sessions_between = sessions_between
        self.day: date | None = None
        self._days: list[date] = []
        self._decided: dict[str, datetime] = {}
        self._watch_equity = (
            risk.limits.daily_loss_limit_pct is not None
            or risk.limits.portfolio_stop_pct is not None
        )

    # --- the day ------------------------------------------------------------------------
    def open_day(
        self, day: date, start_equity_krw: int | None = None, *, time_cut: bool = True
    ) -> list[Order]:
        """Start ``day``: the risk figures (``start_equity_krw`` default: equity now), the
        strategies' trade counts and ``on_market_open``; with ``time_cut``, positions held
        ``max_holding_days`` sessions before today are sold at market (a backtest places
        that order at the previous close instead, so that it fills at this open).
        Returns the time-cut orders."""
        if self.day == day:
            return []
        self.day = day
        if not self._days or self._days[-1] < day:
            self._days.append(day)
        self._decided.clear()
        equity = self.trader.equity_krw() if start_equity_krw is None else start_equity_krw
        self.risk.start_day(day, equity)
        self.trader.market_open()
        return self.time_cut(through=day, include_last=False) if time_cut else []

    def close_day(self, day: date) -> None:
        """End ``day``: day orders still resting expire (paper venue), their state is
        polled, then ``on_market_close``."""
        if self.expire_day_orders is not None:
            self.expire_day_orders(day)
        self.trader.poll_orders()
        self.trader.market_close()

    def sessions_held(self, position: Position, through: date, *, include_last: bool) -> int:
        """Trading sessions ``position`` has been held from its entry day to ``through``
        (``include_last`` False: to the session before ``through``)."""
        if position.opened_at is None:
            return 0
        entry = position.opened_at.astimezone(KST).date()
        if self._sessions_between is not None:
            n = self._sessions_between(entry, through)
            return n - 1 if not include_last and n > 0 else n
        days = self._days
        lo = bisect.bisect_left(days, entry)
        cut = bisect.bisect_right if include_last else bisect.bisect_left
        hi = cut(days, through)
        return max(0, hi - lo)

    def time_cut(self, through: date, *, include_last: bool) -> list[Order]:
        """Sell at market the positions held ``max_holding_days`` sessions (or more)."""

        def held(pos: Position) -> float | None:
            limit = self.trader.exit_policy(pos.strategy).max_holding_days
            if limit is None:
                return None
            n = self.sessions_held(pos, through, include_last=include_last)
            return float(n) if n >= limit else None

        return self.trader.exit_positions("time_cut", held)

    # --- prices -------------------------------------------------------------------------
    def quote(self, stock_code: str, price: float) -> list[Order]:
        """A live price: the protective exits of the stock's positions at that price."""
        self.trader.update_price(stock_code, price)
        return self.trader.check_exits(stock_code)

    def bar(self, stock_code: str, open_: float, high: float, low: float) -> int:
        """One bar of ``stock_code`` after its resting orders filled at the open: the
        protective exits against the bar's range, each filled inside the bar at its price
        (:func:`core.risk.bar_exit`). Returns the number of exits filled."""
        if self.fill_exit is None:
            raise RuntimeError("bar exits need a venue that fills inside the bar (fill_exit)")
        exits = self.trader.check_bar_exits(stock_code, open_, high, low)
        if not exits and self.trader.open_orders(stock_code):
            # an exit that had to cancel the position's open orders first goes out now
            self.trader.poll_orders(stock_code)
            exits = self.trader.check_bar_exits(stock_code, open_, high, low)
        for order, price in exits:
            self.fill_exit(order, price)
        if exits:
            self.trader.poll_orders(stock_code)
        return len(exits)

    def mark_equity(self) -> None:
        """The daily loss lock and the portfolio stop on the equity at the current prices:
        the lock stops new buys for the day; the stop sells everything and halts."""
        if not self._watch_equity:
            return
        trader, risk = self.trader, self.risk
        equity = trader.equity_krw()
        if risk.marks_quiet(equity, equity):  # the common mark: only the high-water mark moves
            peak = risk.peak_equity_krw
            if peak is None or equity > peak:
                risk.pass_marks(equity)
            return
        if risk.update_equity(equity):
            trader.publish(
                RiskLimitHit(
                    at=trader.clock(),
                    message=f"daily loss lock: equity {equity:,} KRW; no new buys today",
                    level="warning",
                    rule="daily_loss_lock",
                    equity_krw=equity,
                )
            )
        if risk.state is not TradingState.HALTED and risk.portfolio_stop_hit(equity):
            trader.publish(
                RiskLimitHit(
                    at=trader.clock(),
                    message=f"portfolio stop: equity {equity:,} KRW; "
                    "selling everything and halting",
                    level="error",
                    rule="portfolio_stop",
                    equity_krw=equity,
                )
            )
            trader.exit_all("portfolio_stop")
            self.set_trading_state(TradingState.HALTED, by="portfolio stop")

    def set_trading_state(self, state: TradingState, by: str) -> None:
        self.risk.set_state(state)
        self.trader.publish(
            RiskStateChanged(
                at=self.trader.clock(),
                message=f"trading state {state.value} ({by})",
                level="warning",
                state=state.value,
                by=by,
            )
        )

    # --- orders -------------------------------------------------------------------------
    def poll(self, stock_code: str | None = None) -> None:
        """Apply the broker's state of open orders; then, where timeouts apply, cancel
        the unfilled rest of orders resting too long (re-placed once the cancel is
        confirmed, on this or the next poll)."""
        self.trader.poll_orders(stock_code)
        if self.intraday_timeouts and self.trader.manage_timeouts():
            self.trader.poll_orders(stock_code)

    # --- decisions ----------------------------------------------------------------------
    def decides_now(self, slot: StrategySlot, now: datetime, *, daily_bars: bool = False) -> bool:
        """Whether ``slot`` decides at ``now``: always, or with ``decide_at`` once a day at
        the first evaluation at or after that time. On daily bars of a backtest every bar is
        decided at its close."""
        at: time | None = slot.strategy.config.decide_at
        if at is None or daily_bars:
            return True
        decided = self._decided.get(slot.name)
        if decided is not None:
            return decided == now  # the other stocks of the same evaluation
        if now.astimezone(KST).time() < at:
            return False
        self._decided[slot.name] = now
        return True

    def exit_at_close(self, stock_code: str | None = None) -> list[Order]:
        """Sell at market the positions (of ``stock_code``) of strategies with
        ``exit_at_close``."""

        def wanted(pos: Position) -> float | None:
            if stock_code is not None and pos.stock_code != stock_code:
                return None
            if not self.trader.exit_policy(pos.strategy).exit_at_close:
                return None
            return self.trader.last_price(pos.stock_code, pos.avg_price)

        return self.trader.exit_positions("exit_at_close", wanted)


__all__ = ["TradingSession"]
