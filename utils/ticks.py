"""KRX tick size (호가가격단위) by date and market, price rounding and the daily price limit.

Tick tables (the price band's lower edge is inclusive):

Since 2023-01-25, KOSPI, KOSDAQ and KONEX stocks (one table):

=====================  =======
price (KRW)            tick
=====================  =======
< 2,000                1
2,000 – < 5,000        5
5,000 – < 20,000       10
20,000 – < 50,000      50
50,000 – < 200,000     100
200,000 – < 500,000    500
≥ 500,000              1,000
=====================  =======

Before 2023-01-25 (this table is used for every earlier date):

=====================  ==========  ==================
price (KRW)            KOSPI tick  KOSDAQ/KONEX tick
=====================  ==========  ==================
< 1,000                1           1
1,000 – < 5,000        5           5
5,000 – < 10,000       10          10
10,000 – < 50,000      50          50
50,000 – < 100,000     100         100
100,000 – < 500,000    500         100
≥ 500,000              1,000       100
=====================  ==========  ==================

ETF and ETN: 5 KRW at every price; since 2023-01-25 1 KRW below 2,000 KRW.

Worked example: 72,345 KRW lies in the 100-won band of either table, so
``round_to_tick(72_345, "down")`` is 72,300 and ``round_to_tick(72_345, "up")`` 72,400; a
KOSDAQ stock at 152,345 KRW on 2022-06-02 rounds down to 152,300 (100-won tick), a KOSPI one
to 152,000 (500-won tick). Rounding is idempotent.

Only computed prices are rounded (limit prices, stop and target levels). Prices read from
market data are used as they are: split-adjusted history is not on any tick grid.

Daily price limit: ±30 % of the base price (the previous close) since 2015-06-15, ±15 %
before; the upper limit is rounded down and the lower limit up to a valid tick
(:func:`upper_limit_price`, :func:`lower_limit_price`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from datetime import date
from typing import Literal

from utils.symbols import Market


@dataclass(frozen=True, slots=True)
class TickTable:
    """Bands ``(upper edge exclusive, tick)`` in rising order, then ``top`` above the last."""

    bands: tuple[tuple[int, int], ...]
    top: int

    def tick(self, price: float) -> int:
        for upper, tick in self.bands:
            if price < upper:
                return tick
        return self.top


REFORM_2023 = date(2023, 1, 25)
"""KRX's tick reform: one table for KOSPI, KOSDAQ and KONEX stocks from this date."""

STOCKS_SINCE_2023 = TickTable(
    ((2_000, 1), (5_000, 5), (20_000, 10), (50_000, 50), (200_000, 100), (500_000, 500)), 1_000
)
KOSPI_BEFORE_2023 = TickTable(
    ((1_000, 1), (5_000, 5), (10_000, 10), (50_000, 50), (100_000, 100), (500_000, 500)), 1_000
)
KOSDAQ_BEFORE_2023 = TickTable(((1_000, 1), (5_000, 5), (10_000, 10), (50_000, 50)), 100)
FUNDS_BEFORE_2023 = TickTable((), 5)
FUNDS_SINCE_2023 = TickTable(((2_000, 1),), 5)

TICK_TABLES: tuple[tuple[date, Market, TickTable], ...] = (
    (REFORM_2023, Market.KOSPI, STOCKS_SINCE_2023),
    (REFORM_2023, Market.KOSDAQ, STOCKS_SINCE_2023),
    (REFORM_2023, Market.KONEX, STOCKS_SINCE_2023),
    (REFORM_2023, Market.ETF, FUNDS_SINCE_2023),
    (REFORM_2023, Market.ETN, FUNDS_SINCE_2023),
    (date.min, Market.KOSPI, KOSPI_BEFORE_2023),
    (date.min, Market.KOSDAQ, KOSDAQ_BEFORE_2023),
    (date.min, Market.KONEX, KOSDAQ_BEFORE_2023),
    (date.min, Market.ETF, FUNDS_BEFORE_2023),
    (date.min, Market.ETN, FUNDS_BEFORE_2023),
)
"""(in force from, market, table), newest first per market. A new table is one more row."""

LIMIT_30_FROM = date(2015, 6, 15)
"""The daily price limit is ±30 % from this date, ±15 % before."""

Direction = Literal["down", "up", "nearest"]


_TABLES_OF: dict[Market, tuple[tuple[date, TickTable], ...]] = {
    market: tuple((start, table) for start, kind, table in TICK_TABLES if kind is market)
    for market in Market
}
""":data:`TICK_TABLES` by market (newest first): every price rounding looks one up."""


def tick_table(on: date | None = None, market: Market = Market.KOSPI) -> TickTable:
    """The tick table in force on ``on`` (``None``: today's rules) for ``market``."""
    for start, table in _TABLES_OF.get(market, ()):
        if on is None or on >= start:
            return table
    raise ValueError(f"no tick table for {market} on {on}")  # unreachable: date.min rows


def tick_size(price: float, *, on: date | None = None, market: Market = Market.KOSPI) -> int:
    """Tick in KRW at ``price`` KRW. ``ValueError`` for a price that is not positive."""
    if not price > 0:
        raise ValueError(f"price must be positive, got {price!r}")
    return tick_table(on, market).tick(price)


def round_to_tick(
    price: float,
    direction: Direction = "nearest",
    *,
    on: date | None = None,
    market: Market = Market.KOSPI,
) -> int:
    """Round a computed ``price`` (KRW) onto the tick grid of ``market`` on ``on``.

    ``down`` never rounds up (a buy limit you do not want to exceed), ``up`` never rounds
    down; ``nearest`` rounds half up. The tick is taken at the result's band, so a price just
    under a band edge that rounds up across it stays on a valid tick. ``ValueError`` for a
    price that is not a positive finite number or a bad direction.
    """
    if not price > 0 or not math.isfinite(price):
        raise ValueError(f"price must be a positive finite number, got {price!r}")
    table = tick_table(on, market)
    tick = table.tick(price)
    if direction == "down":
        result = math.floor(price / tick + 1e-9) * tick
    elif direction == "up":
        result = math.ceil(price / tick - 1e-9) * tick
    elif direction == "nearest":
        result = math.floor(price / tick + 0.5) * tick
    else:
        raise ValueError(f"direction must be 'down', 'up' or 'nearest', got {direction!r}")
    result = max(int(result), 1)
    # crossing into a coarser band (e.g. 1,999.6 -> 2,000) stays valid only if on the new grid
    new_tick = table.tick(result)
    if result % new_tick:
        result = (result // new_tick + (direction != "down")) * new_tick
    return int(result)


def is_valid_tick(price: int, *, on: date | None = None, market: Market = Market.KOSPI) -> bool:
    """True if ``price`` (KRW) is a positive multiple of its band's tick."""
    return price > 0 and price % tick_size(price, on=on, market=market) == 0


def add_ticks(
    price: int, ticks: int, *, on: date | None = None, market: Market = Market.KOSPI
) -> int:
    """Move ``price`` (KRW) by ``ticks`` ticks (negative = down), stepping across bands.

    A price off the grid (split-adjusted history) moves by the tick of its band and stays off
    the grid: data prices are never re-rounded. Never goes below 1 KRW.
    """
    table = tick_table(on, market)
    p = int(price)
    for _ in range(abs(ticks)):
        if ticks > 0:
            p += table.tick(p)
        elif p > 1:
            p = max(1, p - table.tick(p - 1))
    return p


def price_limit_pct(on: date | None = None) -> int:
    """The daily price limit in % of the base price on ``on`` (``None``: today's rules)."""
    return 30 if on is None or on >= LIMIT_30_FROM else 15


@functools.lru_cache(maxsize=4096)  # every market buy asks it; pure in its arguments
def upper_limit_price(
    base_krw: int, *, on: date | None = None, market: Market = Market.KOSPI
) -> int:
    """The day's highest valid price (상한가) for a base price (previous close) in KRW:
    ``base × (1 + limit)`` rounded down to a tick. 72,000 → 93,600; 15,430 → 20,050.
    KRX rounds the limit's width at the base price's tick first, which can only give a
    lower price, so a buy reserved at this price is never short. ``ValueError`` unless the
    base is positive."""
    if base_krw <= 0:
        raise ValueError(f"base price must be positive, got {base_krw!r}")
    raw = int(base_krw) * (100 + price_limit_pct(on)) // 100
    return round_to_tick(raw, "down", on=on, market=market)


def lower_limit_price(
    base_krw: int, *, on: date | None = None, market: Market = Market.KOSPI
) -> int:
    """The day's lowest valid price (하한가): ``base × (1 − limit)`` rounded up to a tick.
    72,000 → 50,400. ``ValueError`` unless the base is positive."""
    if base_krw <= 0:
        raise ValueError(f"base price must be positive, got {base_krw!r}")
    raw = -(-int(base_krw) * (100 - price_limit_pct(on)) // 100)
    return round_to_tick(raw, "up", on=on, market=market)
