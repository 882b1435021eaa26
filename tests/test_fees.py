"""Transaction tax by settlement date and market, on each side of every boundary.

Expected rates are written here from the facts of the tax law (증권거래세법 시행령 and the
press releases of each cut), independent of ``config/sell_tax.csv``; settlement is T+2 KRX
sessions, so each boundary is checked on the last trade day that settles before it and the
first that settles on or after it.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from framework.errors import ConfigError
from utils.fees import FeeModel, SellTaxTable, fee_krw
from utils.symbols import Market, Symbol, SymbolTable

SYMBOLS = SymbolTable(
    [
        Symbol("005930", "삼성전자", Market.KOSPI),
        Symbol("247540", "에코프로비엠", Market.KOSDAQ),
        Symbol("216400", "인바이츠바이오코아", Market.KONEX),
        Symbol("069500", "KODEX 200", Market.ETF),
        Symbol("Q500001", "신한 인버스 WTI원유 선물 ETN", Market.ETN),
    ]
)
MARKET_CODE = {Market.KOSPI: "005930", Market.KOSDAQ: "247540", Market.KONEX: "216400"}
AMOUNT = 10_000_000  # KRW: 0.01 % is 1,000 KRW

# (last trade day settling before the change, first trade day settling on/after it, rate
# before, rate after) in basis points of 0.01 %, per market
STOCK_BOUNDARIES = [  # KOSPI (거래세 + 농특세) and KOSDAQ pay the same total from 1996-07
    (date(2019, 5, 29), date(2019, 5, 30), 30, 25),
    (date(2020, 12, 28), date(2020, 12, 29), 25, 23),
    (date(2022, 12, 27), date(2022, 12, 28), 23, 20),
    (date(2023, 12, 26), date(2023, 12, 27), 20, 18),
    (date(2024, 12, 26), date(2024, 12, 27), 18, 15),
    (date(2025, 12, 26), date(2025, 12, 29), 15, 20),
]
BOUNDARIES = {
    Market.KOSPI: [(date(1996, 6, 26), date(1996, 6, 27), 45, 30), *STOCK_BOUNDARIES],
    Market.KOSDAQ: STOCK_BOUNDARIES,
    Market.KONEX: [
        (date(2019, 5, 29), date(2019, 5, 30), 30, 10),
        (date(2024, 12, 26), date(2024, 12, 27), 10, 10),
    ],
}
CASES = [
    (market, day, bp)
    for market, rows in BOUNDARIES.items()
    for before, after, bp_before, bp_after in rows
    for day, bp in ((before, bp_before), (after, bp_after))
]


@pytest.mark.parametrize(("market", "trade_day", "bp"), CASES)
def test_sell_tax_on_each_side_of_every_boundary(market: Market, trade_day: date, bp: int):
    fees = FeeModel(symbols=SYMBOLS)
    assert fees.sell_tax(AMOUNT, trade_day, MARKET_CODE[market]) == AMOUNT * bp // 10_000


@pytest.mark.parametrize(
    ("trade_day", "bp"),
    [
        (date(1995, 6, 1), 50),
        (date(1995, 7, 3), 45),
        (date(2010, 5, 3), 30),
        (date(2021, 6, 1), 23),
        (date(2030, 3, 4), 20),
    ],
)
def test_kospi_rates_inside_periods(trade_day: date, bp: int):
    assert FeeModel(symbols=SYMBOLS).sell_tax(AMOUNT, trade_day, "005930") == AMOUNT * bp // 10_000


@pytest.mark.parametrize("code", ["069500", "Q500001"])
@pytest.mark.parametrize("trade_day", [date(2003, 3, 3), date(2019, 5, 30), date(2024, 12, 27)])
def test_etfs_and_etns_pay_no_sell_tax(code: str, trade_day: date):
    fees = FeeModel(symbols=SYMBOLS)
    assert fees.sell_tax(AMOUNT, trade_day, code) == 0
    assert fees.commission(AMOUNT) == 1_500


def test_the_shipped_symbol_file_knows_the_kodex_200_etf():
    assert FeeModel().sell_tax(AMOUNT, date(2015, 3, 3), "069500") == 0
    assert FeeModel().sell_tax(AMOUNT, date(2015, 3, 3), "005930") == 30_000


def test_a_flat_rate_replaces_the_table_for_stocks_only():
    fees = FeeModel(sell_tax_rate="0.0018", symbols=SYMBOLS)
    assert fees.sell_tax(AMOUNT, date(2010, 1, 4), "005930") == 18_000
    assert fees.sell_tax(AMOUNT, date(2010, 1, 4), "069500") == 0


def test_tax_and_commission_are_truncated_to_the_won():
    fees = FeeModel(commission_rate="0.000140527", symbols=SYMBOLS)
    assert fees.sell_tax(723_500, date(2024, 6, 3), "005930") == 1_302  # 1,302.3
    assert fees.commission(723_500) == 101  # 101.67…


def test_an_unknown_stock_is_taxed_as_kospi_with_one_warning(caplog: pytest.LogCaptureFixture):
    fees = FeeModel(symbols=SymbolTable())
    with caplog.at_level(logging.WARNING, logger="utils.symbols"):
        taxes = [fees.sell_tax(AMOUNT, date(2024, 6, 3), "999990") for _ in range(3)]
    assert taxes == [18_000] * 3
    assert len([r for r in caplog.records if "999990" in r.getMessage()]) == 1


def test_a_new_year_is_one_row(tmp_path: Path):
    path = tmp_path / "tax.csv"
    path.write_text(
        "settles_from,market,rate_pct\n"
        "2000-01-01,KOSPI,0.30\n2027-01-01,KOSPI,0.10\n"
        "2000-01-01,KOSDAQ,0.30\n2000-01-01,KONEX,0.30\n"
        "2000-01-01,ETF,0\n2000-01-01,ETN,0\n",
        encoding="utf-8",
    )
    fees = FeeModel(symbols=SYMBOLS, tax_table=SellTaxTable.read(path))
    # 2026-12-29 (Tue) settles on 2027-01-04 (12-31 closed, 01-01 a holiday)
    assert fees.sell_tax_rate(date(2026, 12, 28), "005930") == Decimal("0.0030")
    assert fees.sell_tax_rate(date(2026, 12, 29), "005930") == Decimal("0.0010")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("from,market,rate\n", "expected the header"),
        ("settles_from,market,rate_pct\n2020-13-01,KOSPI,0.2\n", ":2: "),
        ("settles_from,market,rate_pct\n2020-01-01,NYSE,0.2\n", "one of KOSPI"),
        ("settles_from,market,rate_pct\n2020-01-01,KOSPI,abc\n", "a rate in %"),
        ("settles_from,market,rate_pct\n2020-01-01,KOSPI,0.2\n", "no rate for KOSDAQ"),
    ],
)
def test_a_bad_tax_table_names_the_file_and_line(tmp_path: Path, content: str, message: str):
    path = tmp_path / "tax.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=message) as info:
        SellTaxTable.read(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("market", list(MARKET_CODE))
def test_rates_remembered_between_changes_match_a_fresh_lookup(market: Market) -> None:
    """One model asked day after day (as a backtest asks it, keeping the rate between
    changes) gives, on every day of 1995-1997 and 2019-2027 (every rate change) and
    back, the rate a model that never asked before gives for that day."""

    code = MARKET_CODE[market]
    days = [
        d
        for start, n in ((date(1995, 1, 1), 800), (date(2018, 12, 1), 3000))
        for d in (start + timedelta(days=k) for k in range(n))
    ]
    for asked in (days, days[::-3]):  # every day forward, every third back
        kept = FeeModel(symbols=SYMBOLS)
        for day in asked:
            fresh = FeeModel(symbols=SYMBOLS).sell_tax_rate(day, code)
            assert kept.sell_tax_rate(day, code) == fresh, day


def test_max_affordable_qty_takes_numpy_and_integral_float_prices_as_whole_won() -> None:
    fees = FeeModel()
    expected = fees.max_affordable_qty(100_000_000, 66_600)
    got = fees.max_affordable_qty(np.int64(100_000_000), 66_600.0)  # type: ignore[arg-type]
    assert got == expected
    assert type(got) is int
    cost = expected * 66_600 + fees.commission(expected * 66_600)
    assert cost <= 100_000_000 < cost + 66_600 + fees.commission(66_600)


def test_max_affordable_qty_refuses_a_fraction_of_a_won() -> None:
    with pytest.raises(ValueError, match="whole number of KRW"):
        FeeModel().max_affordable_qty(1_000_000, 66_600.5)  # type: ignore[arg-type]


@pytest.mark.parametrize("code", [*MARKET_CODE.values(), "069500"])
def test_tax_on_a_sale_remembered_between_changes_matches_a_fresh_model(code: str) -> None:
    """``sell_tax`` keeps each code's rate while it holds; asked day after day and back,
    it gives on every day the won of ``floor(amount × rate)`` a model that never asked
    before gives, flat rates and an exempt ETF included."""
    days = [
        d
        for start, n in ((date(1995, 1, 1), 800), (date(2018, 12, 1), 3000))
        for d in (start + timedelta(days=k) for k in range(n))
    ]
    amount = 987_654_321  # every rate of the table gives a different won
    for flat in (None, "0.0023"):
        for asked in (days, days[::-3]):
            kept = FeeModel(sell_tax_rate=flat, symbols=SYMBOLS)
            for day in asked:
                fresh = FeeModel(sell_tax_rate=flat, symbols=SYMBOLS)
                expected = fee_krw(amount, fresh.sell_tax_rate(day, code))
                assert kept.sell_tax(amount, day, code) == expected, day


def test_tax_on_a_negative_amount_is_refused() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        FeeModel(symbols=SYMBOLS).sell_tax(-1, date(2024, 6, 3), MARKET_CODE[Market.KOSPI])
