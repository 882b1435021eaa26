"""Request schemas of the KIS REST API: query parameters and order bodies.

Each class names its endpoint and tr_id and renders itself with :meth:`to_wire` into the
upper-case, all-string dict KIS expects (``{"ORD_QTY": "10"}``). Paging cursors
(``CTX_AREA_FK100``/``CTX_AREA_NK100``) are filled in by :func:`api.kis_http.paginate`.
"""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, ConfigDict

from framework.types import OrderSide, OrderType


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def to_wire(self) -> dict[str, str]:
        """Field name -> string value, as sent to KIS."""
        return {k: str(v) for k, v in self.model_dump().items()}


def ord_dvsn(order_type: OrderType) -> str:
    """``ORD_DVSN``: ``00`` 지정가 (limit), ``01`` 시장가 (market)."""
    return "00" if order_type is OrderType.LIMIT else "01"


def side_code(side: OrderSide) -> str:
    """``SLL_BUY_DVSN_CD``: ``01`` 매도 (sell), ``02`` 매수 (buy)."""
    return "01" if side is OrderSide.SELL else "02"


def ymd(day: date) -> str:
    return day.strftime("%Y%m%d")


class OrderCashBody(_Request):
    """Body of ``POST /uapi/domestic-stock/v1/trading/order-cash`` — tr_id buy
    ``TTTC0012U``/``VTTC0012U``, sell ``TTTC0011U``/``VTTC0011U``. ``ORD_UNPR`` is ``"0"``
    for a market order."""

    CANO: str
    ACNT_PRDT_CD: str
    PDNO: str
    ORD_DVSN: str
    ORD_QTY: str
    ORD_UNPR: str
    EXCG_ID_DVSN_CD: str = "KRX"


class OrderRvseCnclBody(_Request):
    """Body of ``POST /uapi/domestic-stock/v1/trading/order-rvsecncl`` — tr_id
    ``TTTC0013U``/``VTTC0013U``. ``RVSE_CNCL_DVSN_CD`` ``01`` revise, ``02`` cancel;
    ``QTY_ALL_ORD_YN`` ``Y`` = all that remains (then ``ORD_QTY`` is ``"0"``)."""

    CANO: str
    ACNT_PRDT_CD: str
    KRX_FWDG_ORD_ORGNO: str
    ORGN_ODNO: str
    ORD_DVSN: str
    RVSE_CNCL_DVSN_CD: str
    ORD_QTY: str
    ORD_UNPR: str
    QTY_ALL_ORD_YN: str
    EXCG_ID_DVSN_CD: str = "KRX"


class BalanceParams(_Request):
    """Query of ``GET /uapi/domestic-stock/v1/trading/inquire-balance`` — tr_id
    ``TTTC8434R``/``VTTC8434R``; 50 rows a page real, 20 virtual."""

    CANO: str
    ACNT_PRDT_CD: str
    AFHR_FLPR_YN: str = "N"
    OFL_YN: str = ""
    INQR_DVSN: str = "02"
    UNPR_DVSN: str = "01"
    FUND_STTL_ICLD_YN: str = "N"
    FNCG_AMT_AUTO_RDPT_YN: str = "N"
    PRCS_DVSN: str = "00"


class PsblOrderParams(_Request):
    """Query of ``GET /uapi/domestic-stock/v1/trading/inquire-psbl-order`` — tr_id
    ``TTTC8908R``/``VTTC8908R``. ``ORD_DVSN`` ``01`` (market) as KIS advises for quantities."""

    CANO: str
    ACNT_PRDT_CD: str
    PDNO: str
    ORD_UNPR: str
    ORD_DVSN: str = "01"
    CMA_EVLU_AMT_ICLD_YN: str = "N"
    OVRS_ICLD_YN: str = "N"


class DailyCcldParams(_Request):
    """Query of ``GET /uapi/domestic-stock/v1/trading/inquire-daily-ccld`` — tr_id
    ``TTTC0081R``/``VTTC0081R`` (within 3 months); 100 rows a page real, 15 virtual.
    ``CCLD_DVSN`` ``00`` all, ``01`` filled, ``02`` unfilled; ``INQR_DVSN`` ``01`` oldest first."""

    CANO: str
    ACNT_PRDT_CD: str
    INQR_STRT_DT: str
    INQR_END_DT: str
    SLL_BUY_DVSN_CD: str = "00"
    INQR_DVSN: str = "01"
    PDNO: str = ""
    CCLD_DVSN: str = "00"
    ORD_GNO_BRNO: str = ""
    ODNO: str = ""
    INQR_DVSN_3: str = "00"
    INQR_DVSN_1: str = ""
    EXCG_ID_DVSN_CD: str = "KRX"


class PriceParams(_Request):
    """Query of ``GET /uapi/domestic-stock/v1/quotations/inquire-price`` — tr_id
    ``FHKST01010100`` (both envs). ``J`` = KRX."""

    FID_COND_MRKT_DIV_CODE: str = "J"
    FID_INPUT_ISCD: str


class DailyChartParams(_Request):
    """Query of ``GET /uapi/domestic-stock/v1/quotations/inquire-daily-itemchartprice`` —
    tr_id ``FHKST03010100``; at most 100 rows per call, newest first. ``FID_ORG_ADJ_PRC``
    ``0`` = adjusted prices."""

    FID_COND_MRKT_DIV_CODE: str = "J"
    FID_INPUT_ISCD: str
    FID_INPUT_DATE_1: str
    FID_INPUT_DATE_2: str
    FID_PERIOD_DIV_CODE: str = "D"
    FID_ORG_ADJ_PRC: str = "0"


class MinuteChartParams(_Request):
    """Query of ``GET /uapi/domestic-stock/v1/quotations/inquire-time-itemchartprice`` —
    tr_id ``FHKST03010200``; today only, at most 30 bars at or before ``FID_INPUT_HOUR_1``
    (HHMMSS), newest first."""

    FID_ETC_CLS_CODE: str = ""
    FID_COND_MRKT_DIV_CODE: str = "J"
    FID_INPUT_ISCD: str
    FID_INPUT_HOUR_1: str
    FID_PW_DATA_INCU_YN: str = "N"
