"""Commission and securities transaction tax of KRX stock trades.

* Commission: ``floor(amount × commission_rate)`` per fill, both sides. The default 0.015 %
  is a typical online rate (KIS BanKIS charges 0.0140527 %).
* Transaction tax: sell side only, ``floor(amount × rate)`` with the rate by the year of the
  trade date (KOSPI rate incl. the special rural tax; KOSDAQ is the same):

  =========  ======
  trade year  rate
  =========  ======
  ≤ 2022     0.23 %
  2023       0.20 %
  2024       0.18 %
  2025       0.15 %
  ≥ 2026     0.20 %
  =========  ======

  (The statutory rule follows the T+2 settlement date, so a sale in the last two trading days
  of a year can fall under the next year's rate; the table uses the trade date.)

Worked example: selling 10 shares at 72,350 KRW in 2024 is 723,500 KRW; commission
``floor(723,500 × 0.00015) = 108`` KRW, tax ``floor(723,500 × 0.0018) = 1,302`` KRW, cash in
722,090 KRW. Both are truncated to the won, never negative.
"""

from __future__ import annotations

from datetime import date
from decimal import ROUND_FLOOR, Decimal

DEFAULT_COMMISSION_RATE = Decimal("0.00015")

SELL_TAX_BY_YEAR: tuple[tuple[int, Decimal], ...] = (
    (2022, Decimal("0.0023")),  # up to and including 2022
    (2023, Decimal("0.0020")),
    (2024, Decimal("0.0018")),
    (2025, Decimal("0.0015")),
)
SELL_TAX_FROM_2026 = Decimal("0.0020")


def to_rate(value: float | str | Decimal) -> Decimal:
    """A fee rate as an exact Decimal; ``ValueError`` for negative or ≥ 1 rates."""
    rate = Decimal(str(value))
    if rate < 0 or rate >= 1:
        raise ValueError(f"a fee rate is a fraction in [0, 1), got {value!r}")
    return rate


def sell_tax_rate(trade_date: date) -> Decimal:
    """Dated transaction-tax rate for a sale on ``trade_date`` (see the module table)."""
    year = trade_date.year
    for last_year, rate in SELL_TAX_BY_YEAR:
        if year <= last_year:
            return rate
    return SELL_TAX_FROM_2026


def fee_krw(amount_krw: int, rate: Decimal) -> int:
    """``floor(amount × rate)`` in whole KRW (0 for a zero amount). Never negative."""
    if amount_krw < 0:
        raise ValueError(f"amount must not be negative, got {amount_krw}")
    return int((Decimal(amount_krw) * rate).to_integral_value(rounding=ROUND_FLOOR))


class FeeModel:
    """Commission and sell tax for fills.

    Parameters
    ----------
    commission_rate:
        Fraction per side (default 0.00015 = 0.015 %).
    sell_tax_rate:
        ``None`` for the dated schedule above, or one flat fraction for every date.
    """

    def __init__(
        self,
        commission_rate: float | str | Decimal = DEFAULT_COMMISSION_RATE,
        sell_tax_rate: float | str | Decimal | None = None,
    ):
        self.commission_rate = to_rate(commission_rate)
        self.flat_sell_tax = None if sell_tax_rate is None else to_rate(sell_tax_rate)
        self.commission_rate_f = float(self.commission_rate)

    def commission(self, amount_krw: int) -> int:
        return fee_krw(amount_krw, self.commission_rate)

    def sell_tax(self, amount_krw: int, trade_date: date) -> int:
        rate = self.flat_sell_tax if self.flat_sell_tax is not None else sell_tax_rate(trade_date)
        return fee_krw(amount_krw, rate)

    def max_affordable_qty(self, cash_krw: int, price_krw: int) -> int:
        """Most whole shares whose cost ``qty × price + commission`` fits in ``cash_krw``."""
        if price_krw <= 0 or cash_krw <= 0:
            return 0
        qty = int(Decimal(cash_krw) / (Decimal(price_krw) * (1 + self.commission_rate)))
        while qty > 0 and qty * price_krw + self.commission(qty * price_krw) > cash_krw:
            qty -= 1
        while (qty + 1) * price_krw + self.commission((qty + 1) * price_krw) <= cash_krw:
            qty += 1
        return qty

    def describe(self) -> dict[str, str]:
        return {
            "commission_rate": str(self.commission_rate),
            "sell_tax_rate": "dated schedule"
            if self.flat_sell_tax is None
            else str(self.flat_sell_tax),
        }
