"""Daily and minute OHLCV bars as DataFrames (see :mod:`framework.data` for the shape).

=======================  =================================  =============  ==============
function                 endpoint (quotations/…)            tr_id          rows per call
=======================  =================================  =============  ==============
``daily_bars``           inquire-daily-itemchartprice       FHKST03010100  100, newest 1st
``minute_bars_today``    inquire-time-itemchartprice        FHKST03010200  30, newest 1st
``stock_name``           inquire-daily-itemchartprice       FHKST03010100  (header only)
=======================  =================================  =============  ==============

Both page backwards: the next call ends one day (one minute) before the oldest row
returned. Prices are adjusted (``FID_ORG_ADJ_PRC 0``), KRW; volume in shares.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, time, timedelta

import pandas as pd

from api.kis_http import KISClient
from api.kis_requests import DailyChartParams, MinuteChartParams, ymd
from api.kis_schemas import KST, ChartHeader, DailyBarRow, MinuteBarRow, to_int
from framework.data import OHLCV_COLUMNS
from framework.errors import DataError
from framework.types import validate_code

DAILY_CHART_PATH = "/uapi/domestic-stock/v1/quotations/inquire-daily-itemchartprice"
MINUTE_CHART_PATH = "/uapi/domestic-stock/v1/quotations/inquire-time-itemchartprice"
TR_DAILY_CHART = "FHKST03010100"
TR_MINUTE_CHART = "FHKST03010200"
DAILY_PAGE_ROWS = 100
MINUTE_PAGE_ROWS = 30
MARKET_OPEN = time(9, 0)


def _frame(rows: Iterable[tuple[datetime, int, int, int, int, int]]) -> pd.DataFrame:
    data = sorted({r[0]: r for r in rows}.values())
    index = pd.DatetimeIndex([r[0] for r in data], name="date")
    if index.tz is None:
        index = index.tz_localize(KST)
    frame = pd.DataFrame([r[1:] for r in data], index=index, columns=list(OHLCV_COLUMNS))
    return frame.astype("int64")


def _rows(body: dict[str, object]) -> list[dict[str, object]]:
    value = body.get("output2")
    return [r for r in value if isinstance(r, dict) and r] if isinstance(value, list) else []


def _check_known(body: dict[str, object], stock_code: str) -> None:
    header = body.get("output1")
    if isinstance(header, dict) and to_int(ChartHeader.model_validate(header).stck_prpr) <= 0:
        raise DataError(f"unknown stock code {stock_code!r} (KIS has no price for it)")


def daily_bars(
    client: KISClient, stock_code: str, start: date, end: date, *, max_calls: int = 200
) -> pd.DataFrame:
    """Daily bars of ``stock_code`` from ``start`` to ``end`` inclusive, ascending.

    One call per 100 trading days. Raises ``DataError`` for an unknown code or when the
    range holds no bar.
    """
    validate_code(stock_code)
    if start > end:
        raise DataError(f"start {start} is after end {end}")
    rows: list[tuple[datetime, int, int, int, int, int]] = []
    upper = end
    for _ in range(max_calls):
        params = DailyChartParams(
            FID_INPUT_ISCD=stock_code, FID_INPUT_DATE_1=ymd(start), FID_INPUT_DATE_2=ymd(upper)
        )
        body = client.get(DAILY_CHART_PATH, TR_DAILY_CHART, params.to_wire()).body
        _check_known(body, stock_code)
        page = [DailyBarRow.model_validate(r) for r in _rows(body)]
        page = [r for r in page if r.stck_bsop_date and start <= r.day <= end]
        rows.extend(r.to_row() for r in page)
        if len(page) < DAILY_PAGE_ROWS:
            break
        oldest = min(r.day for r in page)
        if oldest <= start:
            break
        upper = oldest - timedelta(days=1)
    if not rows:
        raise DataError(f"no daily bars for {stock_code} between {start} and {end}")
    return _frame(rows)


def minute_bars_today(
    client: KISClient, stock_code: str, until: time | None = None, *, max_calls: int = 20
) -> pd.DataFrame:
    """Today's minute bars of ``stock_code`` up to ``until`` (default: now), ascending.

    Index = the bar's time (KST). One call per 30 minutes of trading. Raises
    ``DataError`` for an unknown code or when there is no bar yet.
    """
    validate_code(stock_code)
    cursor = until or client.clock().time()
    rows: list[tuple[datetime, int, int, int, int, int]] = []
    for _ in range(max_calls):
        params = MinuteChartParams(
            FID_INPUT_ISCD=stock_code, FID_INPUT_HOUR_1=cursor.strftime("%H%M%S")
        )
        body = client.get(MINUTE_CHART_PATH, TR_MINUTE_CHART, params.to_wire()).body
        _check_known(body, stock_code)
        page = [MinuteBarRow.model_validate(r) for r in _rows(body)]
        rows.extend(r.to_row() for r in page)
        if len(page) < MINUTE_PAGE_ROWS:
            break
        oldest = min(r.time for r in page)
        if oldest.time() <= MARKET_OPEN:
            break
        cursor = (oldest - timedelta(minutes=1)).time()
    if not rows:
        raise DataError(f"no minute bars for {stock_code} today")
    return _frame(rows)


def stock_name(client: KISClient, stock_code: str) -> str:
    """The Korean name of ``stock_code`` (``hts_kor_isnm`` of the ``output1`` header of
    ``inquire-daily-itemchartprice``, tr_id FHKST03010100; ``inquire-price`` has no name).

    One call asking for today's bar only. ``""`` if KIS gives no name; ``DataError`` for an
    unknown code.
    """
    validate_code(stock_code)
    today = ymd(client.clock().date())
    params = DailyChartParams(
        FID_INPUT_ISCD=stock_code, FID_INPUT_DATE_1=today, FID_INPUT_DATE_2=today
    )
    body = client.get(DAILY_CHART_PATH, TR_DAILY_CHART, params.to_wire()).body
    _check_known(body, stock_code)
    header = body.get("output1")
    if not isinstance(header, dict):
        return ""
    return ChartHeader.model_validate(header).hts_kor_isnm.strip()
