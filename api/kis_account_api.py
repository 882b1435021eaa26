"""Account inquiries: balance, buying power, daily orders and fills.

=========================  ==========================  ===========  ===========
function                   endpoint (trading/…)        real tr_id   virtual
=========================  ==========================  ===========  ===========
``inquire_balance``        inquire-balance             TTTC8434R    VTTC8434R
``inquire_buying_power``   inquire-psbl-order          TTTC8908R    VTTC8908R
``inquire_daily_orders``   inquire-daily-ccld          TTTC0081R    VTTC0081R
=========================  ==========================  ===========  ===========

Balance and daily orders are paged (50/20 and 100/15 rows a page, real/virtual) and read
to the end. Errors: ``TransientBrokerError``/``RateLimitError`` after retries,
``AuthError``, ``CircuitOpenError``, ``BrokerError``.
"""

from __future__ import annotations

from datetime import date

from api.kis_http import KISClient, paginate, tr_id
from api.kis_requests import BalanceParams, DailyCcldParams, PsblOrderParams, side_code, ymd
from api.kis_schemas import BalanceRow, BalanceSummary, BuyingPower, DailyOrderRow
from framework.types import OrderSide

BALANCE_PATH = "/uapi/domestic-stock/v1/trading/inquire-balance"
PSBL_ORDER_PATH = "/uapi/domestic-stock/v1/trading/inquire-psbl-order"
DAILY_CCLD_PATH = "/uapi/domestic-stock/v1/trading/inquire-daily-ccld"

TR_BALANCE = ("TTTC8434R", "VTTC8434R")
TR_PSBL_ORDER = ("TTTC8908R", "VTTC8908R")
TR_DAILY_CCLD = ("TTTC0081R", "VTTC0081R")


def _rows(value: object) -> list[dict[str, object]]:
    if isinstance(value, list):
        return [r for r in value if isinstance(r, dict) and r]
    if isinstance(value, dict) and value:
        return [value]
    return []


def inquire_balance(client: KISClient) -> tuple[list[BalanceRow], BalanceSummary]:
    """Every holding row (all pages) and the account totals (KRW).

    Rows with ``hldg_qty 0`` (sold today, shown until settlement) are kept; callers filter.
    """
    settings = client.settings
    params = BalanceParams(CANO=settings.cano, ACNT_PRDT_CD=settings.acnt_prdt_cd)
    holdings: list[BalanceRow] = []
    summary = BalanceSummary()
    for body in paginate(client, BALANCE_PATH, tr_id(settings, *TR_BALANCE), params.to_wire()):
        holdings.extend(BalanceRow.model_validate(r) for r in _rows(body.get("output1")))
        totals = _rows(body.get("output2"))
        if totals:
            summary = BalanceSummary.model_validate(totals[0])
    return holdings, summary


def inquire_buying_power(client: KISClient, stock_code: str, price_krw: int = 0) -> BuyingPower:
    """What a buy of ``stock_code`` at ``price_krw`` (0 = market) may spend (KRW/shares)."""
    settings = client.settings
    params = PsblOrderParams(
        CANO=settings.cano,
        ACNT_PRDT_CD=settings.acnt_prdt_cd,
        PDNO=stock_code,
        ORD_UNPR=str(price_krw),
        ORD_DVSN="00" if price_krw else "01",
    )
    answer = client.get(PSBL_ORDER_PATH, tr_id(settings, *TR_PSBL_ORDER), params.to_wire())
    rows = _rows(answer.body.get("output"))
    return BuyingPower.model_validate(rows[0] if rows else {})


def inquire_daily_orders(
    client: KISClient,
    start: date,
    end: date,
    *,
    stock_code: str = "",
    odno: str = "",
    side: OrderSide | None = None,
    unfilled_only: bool = False,
) -> list[DailyOrderRow]:
    """Orders placed between ``start`` and ``end`` (inclusive, within 3 months), oldest
    first, each with its cumulative fills; cancel confirmations included
    (``is_cancel_record``)."""
    settings = client.settings
    params = DailyCcldParams(
        CANO=settings.cano,
        ACNT_PRDT_CD=settings.acnt_prdt_cd,
        INQR_STRT_DT=ymd(start),
        INQR_END_DT=ymd(end),
        SLL_BUY_DVSN_CD=side_code(side) if side else "00",
        PDNO=stock_code,
        CCLD_DVSN="02" if unfilled_only else "00",
        ODNO=odno,
    )
    rows: list[DailyOrderRow] = []
    for body in paginate(
        client, DAILY_CCLD_PATH, tr_id(settings, *TR_DAILY_CCLD), params.to_wire()
    ):
        rows.extend(DailyOrderRow.model_validate(r) for r in _rows(body.get("output1")))
    return rows
