"""One symbol from KIS's stock-info query (주식기본조회), to fill or refresh the symbol file.

``GET /uapi/domestic-stock/v1/quotations/search-stock-info``, tr_id ``CTPF1002R``, real
accounts only (the virtual host has no such TR).

Request, from KIS's official sample ``koreainvestment/open-trading-api``
``examples_llm/domestic_stock/search_stock_info/search_stock_info.py``: ``PRDT_TYPE_CD``
``300`` (stocks, ETF, ETN, ELW) and ``PDNO`` the 6-character code (ETNs: ``Q`` + 6, e.g.
``Q500001``). The answer's ``output`` is one object.

Response fields read here. The official sample returns ``output`` without naming its
fields; the names below are the ones of KIS's field list as reproduced by several
independent clients (**[unconfirmed]** from KIS itself), and the code values marked so are
inferred, not documented:

=========================  ===================================  =========================
field                      meaning                              used as
=========================  ===================================  =========================
``prdt_abrv_name``         상품약어명 (the HTS short name)        name (else ``prdt_name``)
``prdt_name``              상품명                                name fallback
``scty_grp_id_cd``         증권그룹ID코드                         ``EF`` ETF, ``EN`` ETN
                                                                [values unconfirmed]
``mket_id_cd``             시장ID코드                             ``STK`` KOSPI, ``KSQ``
                                                                KOSDAQ, ``KNX`` KONEX
                                                                [values unconfirmed]
``kosdaq_mket_lstg_dt``    코스닥시장상장일자                      KOSDAQ when set and
                                                                ``mket_id_cd`` is unknown
``kospi200_item_yn``       코스피200종목여부                       index ``KOSPI200``
``lstg_abol_dt``           상장폐지일자 (YYYYMMDD)                 delisted on/after it
``scts_mket_lstg_abol_dt`` 유가증권시장상장폐지일자                 the same (KOSPI)
``kosdaq_mket_lstg_abol_dt`` 코스닥시장상장폐지일자                 the same (KOSDAQ)
``tr_stop_yn``             거래정지여부                           ``suspended``
=========================  ===================================  =========================

How KIS answers for a code it does not know is **[unconfirmed]**: an error answer is
raised as it comes (:mod:`api.kis_errors`), an answer without a name is a ``DataError``.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from api.kis_http import KISClient
from api.kis_screen_api import real_only
from framework.errors import DataError
from framework.types import validate_code
from utils.symbols import ListingStatus, Market, Symbol

STOCK_INFO_PATH = "/uapi/domestic-stock/v1/quotations/search-stock-info"
TR_STOCK_INFO = "CTPF1002R"
PRODUCT_TYPE_STOCK = "300"
"""``PRDT_TYPE_CD`` of stocks, ETFs, ETNs and ELWs."""

_MARKET_IDS = {"STK": Market.KOSPI, "KSQ": Market.KOSDAQ, "KNX": Market.KONEX}
_ABOLISHED = ("lstg_abol_dt", "scts_mket_lstg_abol_dt", "kosdaq_mket_lstg_abol_dt")


def _text(row: dict[str, Any], key: str) -> str:
    return str(row.get(key) or "").strip()


def _day(text: str) -> date | None:
    if len(text) == 8 and text.isdigit() and text != "00000000":
        try:
            return date(int(text[:4]), int(text[4:6]), int(text[6:]))
        except ValueError:
            return None
    return None


def parse_stock_info(code: str, output: dict[str, Any], today: date) -> Symbol:
    """The :class:`~utils.symbols.Symbol` an answer's ``output`` describes on ``today``.
    ``DataError`` when it names no product (an unknown code)."""
    name = _text(output, "prdt_abrv_name") or _text(output, "prdt_name")
    if not name:
        raise DataError(f"{code}: KIS's stock-info query knows no such product "
                        "(search-stock-info answered without a name)")
    group = _text(output, "scty_grp_id_cd").upper()
    if group == "EF":
        market = Market.ETF
    elif group == "EN" or code.startswith("Q"):
        market = Market.ETN
    else:
        market = _MARKET_IDS.get(_text(output, "mket_id_cd").upper(), Market.KOSPI)
        if (_text(output, "mket_id_cd").upper() not in _MARKET_IDS
                and _day(_text(output, "kosdaq_mket_lstg_dt"))):
            market = Market.KOSDAQ
    abolished = [d for d in (_day(_text(output, k)) for k in _ABOLISHED) if d is not None]
    if abolished and min(abolished) <= today:
        status = ListingStatus.DELISTED
    elif _text(output, "tr_stop_yn").upper() == "Y":
        status = ListingStatus.SUSPENDED
    else:
        status = ListingStatus.LISTED
    index = "KOSPI200" if (_text(output, "kospi200_item_yn").upper() == "Y"
                           and market is Market.KOSPI) else ""
    return Symbol(code, name, market, status, index)


def stock_info(client: KISClient, code: str) -> Symbol:
    """Name, market, listing status and index of ``code`` from KIS now.

    Raises ``ConfigError`` on a virtual account (real-only service), ``ValueError`` for a
    malformed code, ``DataError`` when KIS knows no such product, and the adapter's
    errors (:mod:`api.kis_errors`) for an error answer.
    """
    code = code.strip().upper()
    if not (len(code) == 7 and code[0] == "Q"):
        validate_code(code)
    real_only(client, "the stock-info query (search-stock-info, CTPF1002R)")
    params = {"PRDT_TYPE_CD": PRODUCT_TYPE_STOCK, "PDNO": code}
    body = client.get(STOCK_INFO_PATH, TR_STOCK_INFO, params).body
    output = body.get("output")
    if isinstance(output, list):
        output = output[0] if output else {}
    return parse_stock_info(code, output if isinstance(output, dict) else {},
                            client.clock().date())
