"""Past days' minute bars: ``GET /uapi/domestic-stock/v1/quotations/inquire-time-dailychartprice``,
tr_id ``FHKST03010230`` (주식일별분봉조회, real accounts only; official sample
``examples_llm/domestic_stock/inquire_time_dailychartprice/inquire_time_dailychartprice.py``).

Params: ``FID_COND_MRKT_DIV_CODE`` ``J``, ``FID_INPUT_ISCD``, ``FID_INPUT_DATE_1`` (YYYYMMDD),
``FID_INPUT_HOUR_1`` (HHMMSS: bars at or before), ``FID_PW_DATA_INCU_YN`` (past data),
``FID_FAKE_TICK_INCU_YN`` (허봉). At most 120 rows a call, newest first; KIS keeps about a
year. ``output2`` rows have the fields of FHKST03010200 (``stck_bsop_date``,
``stck_cntg_hour``, ``stck_prpr`` = close, ``stck_oprc``, ``stck_hgpr``, ``stck_lwpr``,
``cntg_vol``).

Paging: one trading day at a time (``FID_PW_DATA_INCU_YN N``), backwards within the day with
``FID_INPUT_HOUR_1`` = oldest returned time − 1 minute, until a page is short or reaches
09:00. Whether ``Y`` continues into earlier days is not stated by KIS, so the client never
relies on it; rows of another day in an answer are dropped. Today's bars come from
FHKST03010200 (:func:`api.kis_chart_api.minute_bars_today`, 30 rows a call).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date, datetime, time, timedelta

import pandas as pd

from api.kis_chart_api import MINUTE_PAGE_ROWS, minute_bars_today
from api.kis_chart_api import _frame as _frame  # the one row -> frame mapping
from api.kis_http import KISClient
from api.kis_requests import ymd
from api.kis_schemas import MinuteBarRow
from framework.errors import ConfigError, DataError
from framework.types import validate_code

MINUTE_HISTORY_PATH = "/uapi/domestic-stock/v1/quotations/inquire-time-dailychartprice"
TR_MINUTE_HISTORY = "FHKST03010230"
HISTORY_PAGE_ROWS = 120
SESSION_START = time(9, 0)
DAY_END = "235959"

Row = tuple[datetime, int, int, int, int, int]


def minute_bars_of_day(client: KISClient, stock_code: str, day: date, *,
                       max_calls: int = 10) -> pd.DataFrame:
    """Minute bars of one past ``day`` (ascending, index KST); an empty frame when KIS has
    none (a closed day, older than KIS keeps). ``ConfigError`` on a virtual account
    (FHKST03010230 is real only); ``DataError`` for an unknown code (KIS answers price 0)."""
    validate_code(stock_code)
    if not client.settings.is_real:
        raise ConfigError("past minute bars (inquire-time-dailychartprice, FHKST03010230) "
                          "need a real account; the virtual host serves today's only")
    rows: list[Row] = []
    cursor = DAY_END
    for _ in range(max_calls):
        params = {"FID_COND_MRKT_DIV_CODE": "J", "FID_INPUT_ISCD": stock_code,
                  "FID_INPUT_DATE_1": ymd(day), "FID_INPUT_HOUR_1": cursor,
                  "FID_PW_DATA_INCU_YN": "N", "FID_FAKE_TICK_INCU_YN": ""}
        body = client.get(MINUTE_HISTORY_PATH, TR_MINUTE_HISTORY, params).body
        header = body.get("output1")
        if isinstance(header, dict) and str(header.get("stck_prpr", "0")).strip() in ("", "0"):
            raise DataError(f"unknown stock code {stock_code!r} (KIS has no price for it)")
        raw = body.get("output2")
        page = [MinuteBarRow.model_validate(r) for r in raw if isinstance(r, dict) and r] \
            if isinstance(raw, list) else []
        page = [r for r in page if r.stck_bsop_date and r.stck_cntg_hour]
        same_day = [r for r in page if r.time.date() == day]
        rows.extend(r.to_row() for r in same_day)
        if len(page) < HISTORY_PAGE_ROWS or len(same_day) < len(page) or not same_day:
            break
        oldest = min(r.time for r in same_day)
        if oldest.time() <= SESSION_START:
            break
        cursor = (oldest - timedelta(minutes=1)).strftime("%H%M%S")
    return _frame(rows)


def minute_history(
    client: KISClient, stock_code: str, days: Iterable[date], *,
    today: date | None = None, on_day: Callable[[date, int], None] | None = None,
) -> pd.DataFrame:
    """Minute bars of every day in ``days`` (trading days, any order), ascending.

    Past days through FHKST03010230 (real accounts), ``today`` through FHKST03010200 (both
    environments, :data:`api.kis_chart_api.MINUTE_PAGE_ROWS` rows a call). ``on_day(day,
    rows)`` is called after each day. Errors as :func:`minute_bars_of_day`.
    """
    today = today or client.clock().date()
    frames = []
    for day in sorted(set(days)):
        if day > today:
            continue
        if day == today:
            try:
                frame = minute_bars_today(client, stock_code)
            except DataError as exc:
                if "unknown stock code" in str(exc):
                    raise
                frame = _frame([])
        else:
            frame = minute_bars_of_day(client, stock_code, day)
        if on_day is not None:
            on_day(day, len(frame))
        if len(frame):
            frames.append(frame)
    if not frames:
        return _frame([])
    return pd.concat(frames).sort_index()


__all__ = ["HISTORY_PAGE_ROWS", "MINUTE_PAGE_ROWS", "minute_bars_of_day", "minute_history"]
