"""Market-wide inquiries: the exchange's open days, volume ranking, HTS condition search.

=========================  ==========================================  =============  =====
function                   endpoint (quotations/…)                     tr_id          env
=========================  ==========================================  =============  =====
``fetch_market_days``      chk-holiday (국내휴장일조회)                   CTCA0903R      real
``volume_rank``            volume-rank (거래량순위)                       FHPST01710000  real
``condition_titles``       psearch-title (조건식 목록)                    HHKST03900300  real
``condition_codes``        psearch-result (조건검색 결과)                 HHKST03900400  real
=========================  ==========================================  =============  =====

Fields, from KIS's official samples (``koreainvestment/open-trading-api``):

* chk-holiday — ``examples_llm/domestic_stock/chk_holiday/chk_holiday.py``: params
  ``BASS_DT`` (YYYYMMDD), ``CTX_AREA_FK``/``CTX_AREA_NK``; ``output`` rows ``bass_dt``,
  ``wday_dvsn_cd``, ``bzdy_yn`` 영업일, ``tr_day_yn`` 거래일, ``opnd_yn`` 개장일,
  ``sttl_day_yn`` 결제일. Only ``opnd_yn`` says whether the exchange opens. KIS asks for
  about one call a day.
* volume-rank — ``examples_llm/domestic_stock/volume_rank/chk_volume_rank.py``: params
  ``FID_COND_MRKT_DIV_CODE J``, ``FID_COND_SCR_DIV_CODE 20171``, ``FID_INPUT_ISCD 0000``
  (all), ``FID_DIV_CLS_CODE 0``, ``FID_BLNG_CLS_CODE 0`` (by volume), ``FID_TRGT_CLS_CODE``,
  ``FID_TRGT_EXLS_CLS_CODE``, ``FID_INPUT_PRICE_1/2``, ``FID_VOL_CNT``, ``FID_INPUT_DATE_1``;
  ``output`` rows ``mksc_shrn_iscd`` (code), ``hts_kor_isnm``, ``data_rank``, ``acml_vol``,
  ``stck_prpr`` … — at most 30 rows (observed; not stated by KIS).
* psearch-title / psearch-result — ``examples_llm/domestic_stock/psearch_result/
  chk_psearch_result.py``: params ``user_id`` (the HTS id) and ``seq``; titles in ``output2``
  (``seq``, ``grp_nm``, ``condition_nm``), results in ``output2`` (``code``, ``name``,
  ``price`` …). Condition names are the ones saved in the HTS ([0110] 조건검색).

On a virtual account each raises ``ConfigError`` saying the endpoint is real only (the
virtual host answers ``모의투자 TR 이 아닙니다``).
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from api.kis_http import KISClient
from api.kis_requests import ymd
from framework.errors import ConfigError, DataError

HOLIDAY_PATH = "/uapi/domestic-stock/v1/quotations/chk-holiday"
TR_HOLIDAY = "CTCA0903R"
VOLUME_RANK_PATH = "/uapi/domestic-stock/v1/quotations/volume-rank"
TR_VOLUME_RANK = "FHPST01710000"
CONDITION_TITLE_PATH = "/uapi/domestic-stock/v1/quotations/psearch-title"
TR_CONDITION_TITLE = "HHKST03900300"
CONDITION_RESULT_PATH = "/uapi/domestic-stock/v1/quotations/psearch-result"
TR_CONDITION_RESULT = "HHKST03900400"


def real_only(client: KISClient, what: str) -> None:
    """``ConfigError`` naming ``what`` unless ``client`` is on a real account."""
    if not client.settings.is_real:
        raise ConfigError(f"{what} is a real-account KIS service; the virtual (모의투자) "
                          "account cannot use it")


def _rows(body: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = body.get(key)
    if isinstance(value, dict):
        value = [value]
    return [r for r in value if isinstance(r, dict)] if isinstance(value, list) else []


def fetch_market_days(client: KISClient, start: date, days: int = 30,
                      *, max_calls: int = 10) -> dict[date, bool]:
    """Whether the exchange opens (``opnd_yn``) on each day from ``start`` for at least
    ``days`` days. ``ConfigError`` on a virtual account; ``DataError`` for an answer
    without the flag."""
    real_only(client, "the holiday calendar (chk-holiday, CTCA0903R)")
    out: dict[date, bool] = {}
    cursor = start
    for _ in range(max_calls):
        params = {"BASS_DT": ymd(cursor), "CTX_AREA_FK": "", "CTX_AREA_NK": ""}
        body = client.get(HOLIDAY_PATH, TR_HOLIDAY, params).body
        rows = _rows(body, "output")
        for row in rows:
            text, flag = str(row.get("bass_dt", "")), str(row.get("opnd_yn", "")).upper()
            if len(text) != 8 or flag not in ("Y", "N"):
                raise DataError(f"chk-holiday row without bass_dt/opnd_yn: {row!r}")
            out[date(int(text[:4]), int(text[4:6]), int(text[6:]))] = flag == "Y"
        if not rows:
            break
        if (max(out) - start).days + 1 >= days:
            break
        cursor = max(out) + timedelta(days=1)
    return out


def volume_rank(client: KISClient, *, exclude_funds: bool = True) -> list[str]:
    """Codes ranked by today's volume (yesterday's before the open), highest first.
    ``exclude_funds`` drops ETFs and ETNs (``FID_TRGT_EXLS_CLS_CODE`` positions 7 and 8).
    ``ConfigError`` on a virtual account."""
    real_only(client, "the volume ranking (volume-rank, FHPST01710000)")
    params = {
        "FID_COND_MRKT_DIV_CODE": "J", "FID_COND_SCR_DIV_CODE": "20171",
        "FID_INPUT_ISCD": "0000", "FID_DIV_CLS_CODE": "0", "FID_BLNG_CLS_CODE": "0",
        "FID_TRGT_CLS_CODE": "111111111",
        "FID_TRGT_EXLS_CLS_CODE": "0000001100" if exclude_funds else "0000000000",
        "FID_INPUT_PRICE_1": "", "FID_INPUT_PRICE_2": "", "FID_VOL_CNT": "",
        "FID_INPUT_DATE_1": "",
    }
    body = client.get(VOLUME_RANK_PATH, TR_VOLUME_RANK, params).body
    codes = [str(r.get("mksc_shrn_iscd", "")).strip() for r in _rows(body, "output")]
    return list(dict.fromkeys(c for c in codes if c))


def condition_titles(client: KISClient, user_id: str) -> dict[str, str]:
    """Saved HTS conditions of ``user_id``: name → ``seq``. ``ConfigError`` on a virtual
    account."""
    real_only(client, "the HTS condition search (psearch-title, HHKST03900300)")
    body = client.get(CONDITION_TITLE_PATH, TR_CONDITION_TITLE, {"user_id": user_id}).body
    return {str(r.get("condition_nm", "")).strip(): str(r.get("seq", "")).strip()
            for r in _rows(body, "output2") if r.get("condition_nm")}


def condition_codes(client: KISClient, user_id: str, name: str) -> list[str]:
    """Codes the saved HTS condition ``name`` finds now. ``ConfigError`` for an unknown
    name (naming the saved ones) or on a virtual account."""
    titles = condition_titles(client, user_id)
    if name not in titles:
        known = ", ".join(sorted(titles)) or "none"
        raise ConfigError(f"HTS condition {name!r} is not saved for {user_id}; saved: {known}")
    params = {"user_id": user_id, "seq": titles[name]}
    body = client.get(CONDITION_RESULT_PATH, TR_CONDITION_RESULT, params).body
    codes = [str(r.get("code", "")).strip() for r in _rows(body, "output2")]
    return list(dict.fromkeys(c for c in codes if c))


def sync_market_days(client: KISClient, today: date, days: int = 30) -> dict[date, bool]:
    """Fetch the open days from ``today`` on, merge them into the on-disk cache and into the
    process-wide calendar (:mod:`utils.market_calendar`); returns them."""
    from utils.market_calendar import krx_calendar, write_day_cache

    found = fetch_market_days(client, today, days)
    write_day_cache(found)
    krx_calendar().update_sync(found)
    return found
