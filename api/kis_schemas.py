"""Wire schemas of the KIS REST API and their mapping to :mod:`framework.types`.

KIS field names (``PDNO``, ``ODNO``, ``CANO`` …) appear only here and in the request
builders of ``api/kis_*_api.py``. Every KIS value arrives as a string (``"71500"``); the
models keep the strings and convert in their ``to_*`` methods (prices/amounts -> int KRW,
quantities -> int shares). Unknown keys are ignored, missing ones default to ``""``.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

from framework.types import Holding, OrderSide, OrderStatus, Quote
from utils.clock import KST


def to_int(value: str | None) -> int:
    """``"71500"`` -> 71500; ``"71500.0000"`` -> 71500 (truncated); ``""`` -> 0."""
    if value is None or str(value).strip() == "":
        return 0
    try:
        return int(Decimal(str(value).strip()))
    except InvalidOperation:
        return 0


def to_float(value: str | None) -> float:
    """``"71533.33"`` -> 71533.33; ``""`` -> 0.0."""
    try:
        return float(str(value).strip()) if value not in (None, "") else 0.0
    except ValueError:
        return 0.0


def parse_kis_datetime(day: str, hhmmss: str = "000000") -> datetime:
    """``("20250616", "093015")`` -> 2025-06-16 09:30:15+09:00."""
    return datetime.strptime(day + hhmmss.zfill(6), "%Y%m%d%H%M%S").replace(tzinfo=KST)


def parse_ymd(text: str) -> date:
    """``"20250616"`` -> ``date(2025, 6, 16)``; ``ValueError`` if malformed."""
    if len(text) != 8 or not text.isdigit():
        raise ValueError(f"not a YYYYMMDD date: {text!r}")
    return date(int(text[:4]), int(text[4:6]), int(text[6:8]))


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _LowerWire(_Wire):
    """Reads keys case-insensitively (KIS spells some outputs in either case)."""

    @model_validator(mode="before")
    @classmethod
    def _lower(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {str(k).lower(): v for k, v in data.items()}
        return data


# --- auth ---------------------------------------------------------------------------
class TokenResponse(_Wire):
    """``POST /oauth2/tokenP`` answer (no tr_id, no rt_cd envelope)."""

    access_token: str
    token_type: str = "Bearer"  # noqa: S105
    expires_in: int = 86400
    access_token_token_expired: str = ""

    def expires_at(self, now: datetime) -> datetime:
        """Expiry as tz-aware KST; from ``access_token_token_expired`` (``YYYY-MM-DD HH:MM:SS``),
        else ``now + expires_in``."""
        if self.access_token_token_expired:
            try:
                text = self.access_token_token_expired
                return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=KST)
            except ValueError:
                pass
        return now + timedelta(seconds=self.expires_in)

    def __repr__(self) -> str:
        return f"TokenResponse(expires={self.access_token_token_expired!r})"


class HashkeyResponse(_Wire):
    """``POST /uapi/hashkey`` answer: ``HASH`` goes into the order's ``hashkey`` header."""

    HASH: str


# --- orders -------------------------------------------------------------------------
class OrderAck(_LowerWire):
    """``output`` of ``order-cash`` (TTTC0012U/TTTC0011U, VTTC…) and ``order-rvsecncl``
    (TTTC0013U/VTTC0013U): the order number and the KRX forwarding branch."""

    krx_fwdg_ord_orgno: str = ""
    odno: str = ""
    ord_tmd: str = ""


# --- account ------------------------------------------------------------------------
class BalanceRow(_Wire):
    """One ``output1`` row of ``inquire-balance`` (TTTC8434R / VTTC8434R): a holding."""

    pdno: str
    prdt_name: str = ""
    hldg_qty: str = "0"
    ord_psbl_qty: str = "0"
    pchs_avg_pric: str = "0"
    pchs_amt: str = "0"
    prpr: str = "0"
    evlu_amt: str = "0"

    def to_holding(self) -> Holding:
        """Shares held (``hldg_qty``), average cost KRW/share, current price KRW."""
        return Holding(
            stock_code=self.pdno,
            qty=to_int(self.hldg_qty),
            avg_price=to_float(self.pchs_avg_pric),
            name=self.prdt_name,
            current_price=to_int(self.prpr) or None,
        )


class BalanceSummary(_Wire):
    """``output2[0]`` of ``inquire-balance`` (TTTC8434R / VTTC8434R): account totals, KRW."""

    dnca_tot_amt: str = "0"
    nxdy_excc_amt: str = "0"
    prvs_rcdl_excc_amt: str = "0"
    scts_evlu_amt: str = "0"
    tot_evlu_amt: str = "0"

    @property
    def cash_krw(self) -> int:
        """가수도정산금액 (D+2 deposit: cash once today's trades settle), KRW.

        Not ``dnca_tot_amt`` (D+0): that figure moves only at settlement, two trading days
        after a fill, so it would not reconcile with the day's fills."""
        return to_int(self.prvs_rcdl_excc_amt)

    @property
    def holdings_value_krw(self) -> int:
        """유가평가금액 (market value of holdings), KRW."""
        return to_int(self.scts_evlu_amt)


class BuyingPower(_Wire):
    """``output`` of ``inquire-psbl-order`` (TTTC8908R / VTTC8908R), KRW and shares."""

    ord_psbl_cash: str = "0"
    nrcvb_buy_amt: str = "0"
    nrcvb_buy_qty: str = "0"
    max_buy_amt: str = "0"
    max_buy_qty: str = "0"

    @property
    def orderable_krw(self) -> int:
        """미수없는매수금액: what a buy may spend without margin, KRW."""
        return to_int(self.nrcvb_buy_amt)

    @property
    def orderable_qty(self) -> int:
        """미수없는매수수량 at the asked price, shares."""
        return to_int(self.nrcvb_buy_qty)


class DailyOrderRow(_Wire):
    """One ``output1`` row of ``inquire-daily-ccld`` (TTTC0081R / VTTC0081R): an order
    (or a cancel/revise confirmation when ``cncl_yn == "Y"``) and its cumulative fills."""

    ord_dt: str = ""
    ord_gno_brno: str = ""
    odno: str
    orgn_odno: str = ""
    sll_buy_dvsn_cd: str = ""
    pdno: str = ""
    prdt_name: str = ""
    ord_qty: str = "0"
    ord_unpr: str = "0"
    ord_tmd: str = ""
    tot_ccld_qty: str = "0"
    avg_prvs: str = "0"
    cncl_yn: str = ""
    tot_ccld_amt: str = "0"
    ord_dvsn_cd: str = ""
    cnc_cfrm_qty: str = "0"
    rmn_qty: str = "0"
    rjct_qty: str = "0"

    @property
    def side(self) -> OrderSide:
        """``01`` 매도 -> SELL, ``02`` 매수 -> BUY."""
        return OrderSide.SELL if self.sll_buy_dvsn_cd == "01" else OrderSide.BUY

    @property
    def is_cancel_record(self) -> bool:
        """A row that confirms a cancel of another order (``cncl_yn == "Y"``)."""
        return self.cncl_yn.upper() == "Y"

    @property
    def qty(self) -> int:
        return to_int(self.ord_qty)

    @property
    def price_krw(self) -> int:
        """Limit price in KRW (0 for a market order)."""
        return to_int(self.ord_unpr)

    @property
    def filled_qty(self) -> int:
        return to_int(self.tot_ccld_qty)

    @property
    def filled_amount_krw(self) -> int:
        return to_int(self.tot_ccld_amt)

    @property
    def remaining_qty(self) -> int:
        return to_int(self.rmn_qty)

    @property
    def cancelled_qty(self) -> int:
        """취소확인수량 (``cnc_cfrm_qty``): shares cancelled or moved away by a revise."""
        return to_int(self.cnc_cfrm_qty)

    @property
    def limit_price(self) -> int | None:
        """Limit price in KRW; ``None`` for a market order (``ord_dvsn_cd 01`` or price 0)."""
        if self.ord_dvsn_cd == "01":
            return None
        return self.price_krw or None

    @property
    def ordered_at(self) -> datetime | None:
        if len(self.ord_dt) != 8:
            return None
        return parse_kis_datetime(self.ord_dt, self.ord_tmd or "000000")

    def status(self) -> OrderStatus:
        """Status from the cumulative quantities.

        Worked example: ``ord_qty 10, tot_ccld_qty 4, rmn_qty 6`` -> PARTIALLY_FILLED;
        after a cancel KIS shows ``rmn_qty 0`` with ``tot_ccld_qty 4`` -> CANCELLED.
        ``rjct_qty > 0`` with nothing filled -> REJECTED.
        """
        qty, filled, remaining = self.qty, self.filled_qty, self.remaining_qty
        if filled >= qty > 0:
            return OrderStatus.FILLED
        if to_int(self.rjct_qty) > 0 and filled == 0:
            return OrderStatus.REJECTED
        if remaining > 0:
            return OrderStatus.PARTIALLY_FILLED if filled > 0 else OrderStatus.SUBMITTED
        return OrderStatus.CANCELLED


# --- market -------------------------------------------------------------------------
class PriceOutput(_Wire):
    """``output`` of ``inquire-price`` (FHKST01010100, real and virtual), KRW and shares."""

    stck_prpr: str = "0"
    stck_oprc: str = "0"
    stck_hgpr: str = "0"
    stck_lwpr: str = "0"
    acml_vol: str = "0"
    stck_sdpr: str = "0"
    stck_mxpr: str = "0"
    stck_llam: str = "0"
    prdy_vrss: str = "0"
    hts_kor_isnm: str = ""

    def to_quote(self, stock_code: str, time: datetime) -> Quote:
        """``prev_close`` is the base price ``stck_sdpr`` (normally yesterday's close).

        ``name`` comes from ``hts_kor_isnm`` when the answer has it (the documented
        ``inquire-price`` output does not: KIS gives the name in the chart TRs' ``output1``).
        """
        return Quote(
            stock_code=stock_code,
            price=to_int(self.stck_prpr),
            time=time,
            open=to_int(self.stck_oprc) or None,
            high=to_int(self.stck_hgpr) or None,
            low=to_int(self.stck_lwpr) or None,
            volume=to_int(self.acml_vol),
            prev_close=to_int(self.stck_sdpr) or None,
            name=self.hts_kor_isnm.strip() or None,
        )


class ChartHeader(_Wire):
    """``output1`` of the chart TRs (FHKST03010100, FHKST03010200): ``stck_prpr == "0"``
    means an unknown code; ``hts_kor_isnm`` is the stock's Korean name (HTS 한글 종목명)."""

    stck_prpr: str = "0"
    hts_kor_isnm: str = ""


class DailyBarRow(_Wire):
    """One ``output2`` row of ``inquire-daily-itemchartprice`` (FHKST03010100), newest first."""

    stck_bsop_date: str = ""
    stck_oprc: str = "0"
    stck_hgpr: str = "0"
    stck_lwpr: str = "0"
    stck_clpr: str = "0"
    acml_vol: str = "0"

    @property
    def day(self) -> date:
        return parse_ymd(self.stck_bsop_date)

    def to_row(self) -> tuple[datetime, int, int, int, int, int]:
        """``(time 00:00 KST, open, high, low, close, volume)``; KRW and shares."""
        return (
            parse_kis_datetime(self.stck_bsop_date),
            to_int(self.stck_oprc), to_int(self.stck_hgpr), to_int(self.stck_lwpr),
            to_int(self.stck_clpr), to_int(self.acml_vol),
        )


class MinuteBarRow(_Wire):
    """One ``output2`` row of ``inquire-time-itemchartprice`` (FHKST03010200), newest first.

    ``stck_prpr`` is the bar's close; ``cntg_vol`` its volume (shares).
    """

    stck_bsop_date: str = ""
    stck_cntg_hour: str = ""
    stck_prpr: str = "0"
    stck_oprc: str = "0"
    stck_hgpr: str = "0"
    stck_lwpr: str = "0"
    cntg_vol: str = "0"

    @property
    def time(self) -> datetime:
        return parse_kis_datetime(self.stck_bsop_date, self.stck_cntg_hour)

    def to_row(self) -> tuple[datetime, int, int, int, int, int]:
        return (
            self.time,
            to_int(self.stck_oprc), to_int(self.stck_hgpr), to_int(self.stck_lwpr),
            to_int(self.stck_prpr), to_int(self.cntg_vol),
        )
