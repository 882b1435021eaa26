"""Commission and securities transaction tax of KRX trades.

* Commission: ``floor(amount × commission_rate)`` per fill, both sides. The default 0.015 % is
  a typical online rate (KIS BanKIS charges 0.0140527 %).
* Transaction tax (증권거래세; for KOSPI incl. the 0.15 % special rural tax): sell side only,
  ``floor(amount × rate)`` per fill, with the rate of the stock's market
  (:mod:`utils.symbols`) on the sale's **settlement date** (trade date + 2 KRX sessions), from
  the data table ``config/sell_tax.csv``:

  ==========================  =====  ======  =====  =========
  settles                     KOSPI  KOSDAQ  KONEX  ETF / ETN
  ==========================  =====  ======  =====  =========
  1996-07-01 – 2019-06-02     0.30 % 0.30 %  0.30 % exempt
  2019-06-03 – 2020-12-31     0.25 % 0.25 %  0.10 % exempt
  2021                        0.23 % 0.23 %  0.10 % exempt
  2023                        0.20 % 0.20 %  0.10 % exempt
  2024                        0.18 % 0.18 %  0.10 % exempt
  2025                        0.15 % 0.15 %  0.10 % exempt
  from 2026                   0.20 % 0.20 %  0.10 % exempt
  ==========================  =====  ======  =====  =========

  (KOSPI 0.50 % before 1995-07-01 and 0.45 % to 1996-06-30.) A sale on Friday 2024-12-27
  settles on 2025-01-02 and pays the 2025 rate; one on 2024-12-26 settles in 2024.

Worked example: selling 10 shares of a KOSPI stock at 72,350 KRW on 2024-06-03 is 723,500
KRW; commission ``floor(723,500 × 0.00015) = 108`` KRW, tax ``floor(723,500 × 0.0018) =
1,302`` KRW, cash in 722,090 KRW. The same sale of the KODEX 200 ETF pays no tax. Both figures
are truncated to the won, never negative.
"""

from __future__ import annotations

import bisect
import csv
import functools
import logging
import threading
from collections.abc import Iterable
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path

from framework.errors import ConfigError
from utils.market_calendar import settlement_date
from utils.symbols import Market, SymbolTable, default_symbols

logger = logging.getLogger(__name__)

DEFAULT_COMMISSION_RATE = Decimal("0.00015")

SELL_TAX_PATH = Path(__file__).resolve().parent.parent / "config" / "sell_tax.csv"
"""The shipped table of transaction-tax rates."""

_SETTLEMENT_SPAN = timedelta(days=21)
"""T+2 sessions never span more calendar days than this (the longest KRX holidays)."""


def to_rate(value: float | str | Decimal) -> Decimal:
    """A fee rate as an exact Decimal; ``ValueError`` for negative or ≥ 1 rates."""
    rate = Decimal(str(value))
    if rate < 0 or rate >= 1:
        raise ValueError(f"a fee rate is a fraction in [0, 1), got {value!r}")
    return rate


def fee_krw(amount_krw: int, rate: Decimal) -> int:
    """``floor(amount × rate)`` in whole KRW (0 for a zero amount). Never negative.

    Exact: a Decimal rate is a fraction ``n / d`` of integers, so the floor is
    ``amount × n // d`` in integer arithmetic (no rounding at any precision).
    """
    if amount_krw < 0:
        raise ValueError(f"amount must not be negative, got {amount_krw}")
    num, den = rate.as_integer_ratio()
    return amount_krw * num // den


class SellTaxTable:
    """Transaction-tax rates by settlement date and market.

    Parameters
    ----------
    rows:
        ``(settles_from, market, rate)`` with ``rate`` a fraction (0.0023 = 0.23 %); a row
        holds from its date until the next row of the same market.
    """

    def __init__(self, rows: Iterable[tuple[date, Market, Decimal]]):
        by_market: dict[Market, list[tuple[date, Decimal]]] = {}
        for start, market, rate in rows:
            by_market.setdefault(market, []).append((start, rate))
        self._rows = {m: sorted(r) for m, r in by_market.items()}
        self._starts = {m: [start for start, _ in r] for m, r in self._rows.items()}
        self.boundaries: tuple[date, ...] = tuple(
            sorted({start for rows in self._rows.values() for start, _ in rows[1:]})
        )
        self._warned: set[Market] = set()
        self._lock = threading.Lock()

    @classmethod
    def read(cls, path: Path = SELL_TAX_PATH) -> SellTaxTable:
        """Read a CSV ``settles_from,market,rate_pct`` (``#`` comment lines). ``ConfigError``
        naming the file, the line and the field for bad content."""
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}", path=str(path)) from exc
        numbered = [(n, ln) for n, ln in enumerate(lines, 1) if ln.strip() and ln[0] != "#"]
        expected = ["settles_from", "market", "rate_pct"]
        if not numbered or next(csv.reader([numbered[0][1]])) != expected:
            raise ConfigError(f"{path}: expected the header {','.join(expected)}", path=str(path))
        rows = []
        for n, line in numbered[1:]:
            fields = next(csv.reader([line]))
            try:
                start_s, market_s, pct_s = (f.strip() for f in fields)
                start = date.fromisoformat(start_s)
                market = Market(market_s)
                rate = Decimal(pct_s) / 100
                if not 0 <= rate < 1:
                    raise ValueError(pct_s)
            except (ValueError, InvalidOperation) as exc:
                raise ConfigError(
                    f"{path}:{n}: {line!r}: expected an ISO date, one of "
                    f"{', '.join(m.value for m in Market)} and a rate in % ({exc})",
                    path=str(path),
                ) from None
            rows.append((start, market, rate))
        missing = [m.value for m in Market if m not in {r[1] for r in rows}]
        if missing:
            raise ConfigError(f"{path}: no rate for {', '.join(missing)}", path=str(path))
        return cls(rows)

    def rate(self, settles: date, market: Market) -> Decimal:
        """Rate (fraction) of a sale settling on ``settles``. Before the market's first row
        the first row's rate applies, with one warning."""
        rows = self._rows[market]
        # the last row starting on or before `settles` (the first row before them all)
        found = rows[max(0, bisect.bisect_right(self._starts[market], settles) - 1)][1]
        if settles < rows[0][0]:
            with self._lock:
                first = market not in self._warned
                self._warned.add(market)
            if first:
                logger.warning(
                    "no %s transaction-tax rate is known for sales settling before %s; "
                    "%s %% is used",
                    market.value,
                    rows[0][0],
                    rows[0][1] * 100,
                )
        return found

    def settles_near_boundary(self, trade_date: date) -> bool:
        """True if a rate change lies within T+2 of ``trade_date`` (settlement decides)."""
        later = bisect.bisect_right(self.boundaries, trade_date)  # the first boundary after
        return later < len(self.boundaries) and (
            self.boundaries[later] <= trade_date + _SETTLEMENT_SPAN
        )

    def steady_span(self, trade_date: date, market: Market) -> tuple[date, date] | None:
        """Trade dates ``[from, to)`` around ``trade_date`` that all pay the rate of
        ``trade_date`` itself for ``market``: no rate change between them and none
        within T+2 of any of them. ``None`` when ``trade_date`` settles near a change
        or lies before the market's first row."""
        first = self._rows[market][0][0]
        if trade_date < first or self.settles_near_boundary(trade_date):
            return None
        later = bisect.bisect_right(self.boundaries, trade_date)
        start = max(first, self.boundaries[later - 1]) if later else first
        end = (
            self.boundaries[later] - _SETTLEMENT_SPAN if later < len(self.boundaries) else date.max
        )
        return start, end


@functools.lru_cache(maxsize=1)
def default_tax_table() -> SellTaxTable:
    """The shipped table (read once)."""
    return SellTaxTable.read()


def _whole_krw(value: float) -> int:
    whole = int(value)
    if whole != value:
        raise ValueError(f"expected a whole number of KRW, got {value!r}")
    return whole


class FeeModel:
    """Commission and sell tax for fills.

    Parameters
    ----------
    commission_rate:
        Fraction per side (default 0.00015 = 0.015 %).
    sell_tax_rate:
        ``None`` for the dated table above, or one flat fraction for every date and stock
        market (ETFs and ETNs stay exempt).
    symbols:
        Market of each code (default: :func:`utils.symbols.default_symbols`).
    tax_table:
        Rates by settlement date and market (default: ``config/sell_tax.csv``).
    """

    def __init__(
        self,
        commission_rate: float | str | Decimal = DEFAULT_COMMISSION_RATE,
        sell_tax_rate: float | str | Decimal | None = None,
        *,
        symbols: SymbolTable | None = None,
        tax_table: SellTaxTable | None = None,
    ):
        self.commission_rate = to_rate(commission_rate)
        self.flat_sell_tax = None if sell_tax_rate is None else to_rate(sell_tax_rate)
        self.commission_rate_f = float(self.commission_rate)
        self._commission_num, self._commission_den = self.commission_rate.as_integer_ratio()
        self.symbols = symbols if symbols is not None else default_symbols()
        self.tax_table = tax_table if tax_table is not None else default_tax_table()
        self._steady: dict[Market, tuple[date, date, Decimal]] = {}
        self._tax_spans: dict[str, tuple[date, date, int, int]] = {}
        """Per code: trade dates ``[from, to)`` that pay one rate, and that rate as
        ``num / den`` (:meth:`sell_tax`, once per sale)."""

    def market(self, stock_code: str) -> Market:
        """The market of ``stock_code`` (KOSPI, with one warning, when no file lists it)."""
        return self.symbols.market(stock_code)

    def commission(self, amount_krw: int) -> int:
        """Commission in KRW on ``amount_krw`` (either side): ``floor(amount × rate)``,
        exact in integers (:func:`fee_krw`). ``ValueError`` for a negative amount."""
        if amount_krw < 0:
            raise ValueError(f"amount must not be negative, got {amount_krw}")
        return amount_krw * self._commission_num // self._commission_den

    def sell_tax_rate(self, trade_date: date, stock_code: str) -> Decimal:
        """Tax rate (fraction) of a sale of ``stock_code`` traded on ``trade_date``."""
        market = self.market(stock_code)
        if market.is_fund:
            return Decimal(0)
        if self.flat_sell_tax is not None:
            return self.flat_sell_tax
        steady = self._steady.get(market)  # (from, to, rate): a sale a day needs no lookup
        if steady is not None and steady[0] <= trade_date < steady[1]:
            return steady[2]
        table = self.tax_table
        settles = (
            settlement_date(trade_date) if table.settles_near_boundary(trade_date) else trade_date
        )
        rate = table.rate(settles, market)
        span = table.steady_span(trade_date, market)
        if span is not None:
            self._steady[market] = (span[0], span[1], rate)
        return rate

    def sell_tax(self, amount_krw: int, trade_date: date, stock_code: str) -> int:
        """Transaction tax in KRW on a sale of ``amount_krw`` of ``stock_code`` traded on
        ``trade_date``: ``floor(amount × rate)`` with :meth:`sell_tax_rate`'s rate.
        ``ValueError`` for a negative amount."""
        if amount_krw < 0:
            raise ValueError(f"amount must not be negative, got {amount_krw}")
        span = self._tax_spans.get(stock_code)  # the code's rate while it holds: no lookup
        if span is not None and span[0] <= trade_date < span[1]:
            return amount_krw * span[2] // span[3]
        rate = self.sell_tax_rate(trade_date, stock_code)
        num, den = rate.as_integer_ratio()
        market = self.market(stock_code)
        if market.is_fund or self.flat_sell_tax is not None:  # one rate on every date
            self._tax_spans[stock_code] = (date.min, date.max, num, den)
        else:
            steady = self._steady.get(market)
            if steady is not None and steady[0] <= trade_date < steady[1]:
                self._tax_spans[stock_code] = (steady[0], steady[1], num, den)
        return amount_krw * num // den

    def max_affordable_qty(self, cash_krw: int, price_krw: int) -> int:
        """Most whole shares whose cost ``qty × price + commission`` fits in ``cash_krw``
        (both whole KRW; numpy integers and integral floats are taken as ints, a fraction
        of a won raises ``ValueError``)."""
        if price_krw <= 0 or cash_krw <= 0:
            return 0
        if type(cash_krw) is not int or type(price_krw) is not int:
            cash_krw, price_krw = _whole_krw(cash_krw), _whole_krw(price_krw)
        # exact integers (every buy asks): the rate as num/den, so the commission
        # floor(amount × rate) is amount × num // den, the won :meth:`commission` gives
        num, den = self._commission_num, self._commission_den
        qty = cash_krw * den // (price_krw * (den + num))  # cost ≤ qty × price × (1 + rate)
        while qty > 0 and qty * price_krw + qty * price_krw * num // den > cash_krw:
            qty -= 1
        while (qty + 1) * price_krw + (qty + 1) * price_krw * num // den <= cash_krw:
            qty += 1
        return qty

    def describe(self) -> dict[str, str]:
        return {
            "commission_rate": str(self.commission_rate),
            "sell_tax_rate": "dated table by settlement date and market"
            if self.flat_sell_tax is None
            else f"{self.flat_sell_tax} (ETF/ETN exempt)",
        }
