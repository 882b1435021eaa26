"""Tick tables by date and market, and the daily price limit.

The expected ticks are KRX's published tables (before and since the 2023-01-25 reform),
written out here band by band: each band's first and last price.
"""

from __future__ import annotations

from datetime import date

import pytest

from utils.symbols import Market
from utils.ticks import (
    add_ticks,
    is_valid_tick,
    lower_limit_price,
    round_to_tick,
    tick_size,
    upper_limit_price,
)

OLD, NEW = date(2023, 1, 24), date(2023, 1, 25)

# (price, KOSPI tick before, KOSDAQ/KONEX tick before, stock tick since)
BANDS = [
    (999, 1, 1, 1),
    (1_000, 5, 5, 1),
    (1_999, 5, 5, 1),
    (2_000, 5, 5, 5),
    (4_999, 5, 5, 5),
    (5_000, 10, 10, 10),
    (9_999, 10, 10, 10),
    (10_000, 50, 50, 10),
    (19_999, 50, 50, 10),
    (20_000, 50, 50, 50),
    (49_999, 50, 50, 50),
    (50_000, 100, 100, 100),
    (99_999, 100, 100, 100),
    (100_000, 500, 100, 100),
    (199_999, 500, 100, 100),
    (200_000, 500, 100, 500),
    (499_999, 500, 100, 500),
    (500_000, 1_000, 100, 1_000),
    (2_000_000, 1_000, 100, 1_000),
]


@pytest.mark.parametrize(("price", "kospi_old", "kosdaq_old", "since"), BANDS)
def test_stock_ticks_before_and_since_the_2023_reform(
    price: int, kospi_old: int, kosdaq_old: int, since: int
):
    assert tick_size(price, on=OLD, market=Market.KOSPI) == kospi_old
    assert tick_size(price, on=OLD, market=Market.KOSDAQ) == kosdaq_old
    assert tick_size(price, on=OLD, market=Market.KONEX) == kosdaq_old
    for market in (Market.KOSPI, Market.KOSDAQ, Market.KONEX):
        assert tick_size(price, on=NEW, market=market) == since
    assert tick_size(price) == since  # no date: today's rules


@pytest.mark.parametrize("market", [Market.ETF, Market.ETN])
@pytest.mark.parametrize(
    ("price", "old", "new"),
    [(500, 5, 1), (1_999, 5, 1), (2_000, 5, 5), (31_230, 5, 5), (600_000, 5, 5)],
)
def test_etf_and_etn_ticks(market: Market, price: int, old: int, new: int):
    assert tick_size(price, on=OLD, market=market) == old
    assert tick_size(price, on=NEW, market=market) == new


def test_rounding_uses_the_table_of_the_day_and_market():
    assert round_to_tick(152_345, "down", on=OLD, market=Market.KOSPI) == 152_000
    assert round_to_tick(152_345, "up", on=OLD, market=Market.KOSPI) == 152_500
    assert round_to_tick(152_345, "down", on=OLD, market=Market.KOSDAQ) == 152_300
    assert round_to_tick(152_345, "down", on=NEW, market=Market.KOSPI) == 152_300
    assert round_to_tick(31_233, "up", on=OLD, market=Market.ETF) == 31_235
    # rounding up across a band edge lands on the coarser band's grid
    assert round_to_tick(99_950, "up", on=OLD, market=Market.KOSPI) == 100_000
    assert round_to_tick(99_999, "up", on=OLD, market=Market.KOSPI) == 100_000
    assert is_valid_tick(100_500, on=OLD, market=Market.KOSPI)
    assert not is_valid_tick(100_100, on=OLD, market=Market.KOSPI)
    assert is_valid_tick(100_100, on=OLD, market=Market.KOSDAQ)


def test_ticks_step_across_bands_and_leave_off_grid_prices_off_the_grid():
    assert add_ticks(99_900, 2, on=OLD, market=Market.KOSPI) == 100_500
    assert add_ticks(100_500, -2, on=OLD, market=Market.KOSPI) == 99_900
    assert add_ticks(1_234, 1, on=NEW) == 1_235  # split-adjusted price: moved, not snapped
    assert add_ticks(1_234, -1, on=OLD) == 1_229
    assert add_ticks(1, -3) == 1


@pytest.mark.parametrize(
    ("base", "on", "market", "upper", "lower"),
    [
        (72_000, date(2024, 6, 3), Market.KOSPI, 93_600, 50_400),
        (15_430, date(2024, 6, 3), Market.KOSPI, 20_050, 10_810),
        # ±15 % before 2015-06-15
        (72_000, date(2015, 6, 12), Market.KOSPI, 82_800, 61_200),
        (100_000, date(2015, 6, 15), Market.KOSPI, 130_000, 70_000),
        # 2022, KOSPI 500-won band vs KOSDAQ 100-won band
        (101_000, date(2022, 6, 2), Market.KOSPI, 131_000, 70_700),
        (101_100, date(2022, 6, 2), Market.KOSPI, 131_000, 70_800),
        (101_100, date(2022, 6, 2), Market.KOSDAQ, 131_400, 70_800),
    ],
)
def test_daily_price_limits(base: int, on: date, market: Market, upper: int, lower: int):
    assert upper_limit_price(base, on=on, market=market) == upper
    assert lower_limit_price(base, on=on, market=market) == lower


def test_bad_prices_are_refused():
    with pytest.raises(ValueError, match="positive"):
        tick_size(0)
    with pytest.raises(ValueError, match="positive"):
        upper_limit_price(0)
    with pytest.raises(ValueError, match="direction"):
        round_to_tick(1_000, "sideways")  # type: ignore[arg-type]
