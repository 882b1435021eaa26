"""REST endpoints of the fake KIS (called by :class:`tests.fakes.kis_server.FakeKIS` with its
lock held). Each returns ``(http_status, body, response tr_cont)``."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from utils.ticks import is_valid_tick

from .account import BUY, SELL, FakeAccount, FakeOrder, OrderError
from .market import CLOSE, OPEN

if TYPE_CHECKING:
    from .kis_server import FakeKIS

Result = tuple[int, dict[str, Any], str]

OK_INQUIRY = ("MCA00000", "정상처리 되었습니다.")
OK_ORDER = ("APBK0013", "주문 전송 완료 되었습니다.")


@dataclass
class Ctx:
    """One parsed request."""

    account: FakeAccount
    tr_id: str
    query: dict[str, str]
    body: dict[str, Any]
    tr_cont: str
    now: datetime


def ok(payload: dict[str, Any], code: tuple[str, str] = OK_INQUIRY, tr_cont: str = "") -> Result:
    return 200, {"rt_cd": "0", "msg_cd": code[0], "msg1": code[1], **payload}, tr_cont


def fail(msg_cd: str, msg1: str, rt_cd: str = "1", status: int = 200) -> Result:
    return status, {"rt_cd": rt_cd, "msg_cd": msg_cd, "msg1": msg1}, ""


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(str(value).strip())
    except ValueError:
        return default


def _ymd(text: str, default: date) -> date:
    text = (text or "").strip()
    if len(text) == 8 and text.isdigit():
        return date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    return default


def market_open(now: datetime) -> bool:
    return now.weekday() < 5 and OPEN <= now.time() < CLOSE


def page(
    fake: FakeKIS, ctx: Ctx, rows: list[Any], size: int
) -> tuple[list[Any], dict[str, str], str]:
    """Slice ``rows`` for the request's cursor; returns rows, cursor fields, tr_cont header.

    Cursors are honoured only with request header ``tr_cont: N`` (as KIS does).
    """
    offset = 0
    if ctx.tr_cont == "N":
        offset = _int(ctx.query.get("CTX_AREA_NK100", "0"))
    chunk = rows[offset:offset + size]
    more = offset + size < len(rows)
    cont = ("M" if offset else "F") if more else ("E" if offset else "D")
    nxt = str(offset + size) if more else ""
    fk = f"{ctx.account.cano}^{ctx.tr_id}" if more else ""
    return chunk, {"ctx_area_fk100": fk.ljust(100) if fk else "",
                   "ctx_area_nk100": nxt.ljust(100) if nxt else ""}, cont


# --- orders -------------------------------------------------------------------------
def _check_account(ctx: Ctx, body: dict[str, Any]) -> None:
    if body.get("CANO") != ctx.account.cano or body.get("ACNT_PRDT_CD") != ctx.account.prdt_cd:
        raise OrderError("APAC0081", "계좌번호 입력 오류입니다.")


def _check_hours(fake: FakeKIS, now: datetime) -> None:
    if fake.enforce_market_hours and not market_open(now):
        if fake.env == "virtual":
            raise OrderError("40580000", "모의투자 장종료 입니다.")
        raise OrderError("APBK0919", "장운영일자가 주문일과 상이합니다.")


def order_cash(fake: FakeKIS, ctx: Ctx, side: str) -> Result:
    b = ctx.body
    try:
        _check_account(ctx, b)
        _check_hours(fake, ctx.now)
        code = str(b.get("PDNO", ""))
        if not fake.market.known(code):
            raise OrderError("APBK0656", "해당 종목정보가 없습니다.")
        qty, price = _int(b.get("ORD_QTY"), -1), _int(b.get("ORD_UNPR"), -1)
        dvsn = b.get("ORD_DVSN")
        if qty <= 0:
            raise OrderError("APBK0507", "주문수량을 확인하여 주십시오.")
        upper, lower = fake.market.limits(code)
        if dvsn == "00":
            if price <= 0 or not is_valid_tick(price):
                raise OrderError("APBK0506", "호가단위가 맞지 않습니다.")
            if not lower <= price <= upper:
                raise OrderError("APBK0508", "상하한가를 벗어난 주문입니다.")
        elif dvsn == "01":
            price = 0
        else:
            raise OrderError("APBK0510", "주문구분을 확인하여 주십시오.")
        acct = ctx.account
        if side == BUY:
            unit = price or upper
            need = qty * unit + int(qty * unit * acct.commission_rate)
            if need > acct.cash_krw - acct.held_for_buys(fake.upper_limits()):
                raise OrderError("APBK0952", "주문가능금액을 초과 했습니다")
        elif qty > acct.sellable(code):
            raise OrderError("APBK0400", "주문 가능한 수량을 초과하였습니다.")
    except OrderError as exc:
        return fail(exc.msg_cd, exc.msg1, "7" if exc.msg_cd == "APAC0081" else "1")
    name = fake.market.stocks[code].name
    order = FakeOrder(
        odno=acct.next_odno(), orgno="00950", ord_dt=ctx.now.strftime("%Y%m%d"),
        ord_tmd=ctx.now.strftime("%H%M%S"), code=code, name=name, side=side,
        ord_dvsn=str(dvsn), qty=qty, price=price,
    )
    acct.orders.append(order)
    fake.match()
    return ok({"output": {"KRX_FWDG_ORD_ORGNO": order.orgno, "ODNO": order.odno,
                          "ORD_TMD": order.ord_tmd}}, OK_ORDER)


def order_rvsecncl(fake: FakeKIS, ctx: Ctx) -> Result:
    b = ctx.body
    try:
        _check_account(ctx, b)
        _check_hours(fake, ctx.now)
        order = ctx.account.find(str(b.get("ORGN_ODNO", "")))
        qty = None if b.get("QTY_ALL_ORD_YN") == "Y" else _int(b.get("ORD_QTY"))
        if b.get("RVSE_CNCL_DVSN_CD") == "02":
            new = ctx.account.cancel(order, qty, ctx.now)
            msg = ("APBK0016", "취소 주문이 완료 되었습니다.")
        elif b.get("RVSE_CNCL_DVSN_CD") == "01":
            dvsn = str(b.get("ORD_DVSN", "00"))
            price = _int(b.get("ORD_UNPR")) if dvsn == "00" else 0
            if dvsn == "00" and (price <= 0 or not is_valid_tick(price)):
                raise OrderError("APBK0506", "호가단위가 맞지 않습니다.")
            new = ctx.account.revise(order, qty, price, dvsn, ctx.now)
            msg = ("APBK0015", "정정 주문이 완료 되었습니다.")
        else:
            raise OrderError("APBK0510", "정정취소구분코드를 확인하여 주십시오.")
    except OrderError as exc:
        return fail(exc.msg_cd, exc.msg1)
    fake.match()
    # the official mapping lists this output in lower case
    return ok({"output": {"krx_fwdg_ord_orgno": new.orgno, "odno": new.odno,
                          "ord_tmd": new.ord_tmd}}, msg)


# --- account ------------------------------------------------------------------------
def inquire_balance(fake: FakeKIS, ctx: Ctx) -> Result:
    acct = ctx.account
    rows = []
    value = 0
    for code, h in sorted(acct.holdings.items()):
        if h.qty <= 0:
            continue
        price = fake.market.price(code)
        value += price * h.qty
        rows.append({
            "pdno": code, "prdt_name": fake.market.stocks[code].name, "trad_dvsn_name": "현금",
            "hldg_qty": str(h.qty), "ord_psbl_qty": str(max(acct.sellable(code), 0)),
            "pchs_avg_pric": f"{h.avg_price:.4f}", "pchs_amt": str(h.cost_krw),
            "prpr": str(price), "evlu_amt": str(price * h.qty),
            "evlu_pfls_amt": str(price * h.qty - h.cost_krw),
        })
    chunk, cursors, cont = page(fake, ctx, rows, fake.balance_page_size)
    summary = {
        "dnca_tot_amt": str(acct.cash_krw), "nxdy_excc_amt": str(acct.cash_krw),
        "prvs_rcdl_excc_amt": str(acct.cash_krw), "scts_evlu_amt": str(value),
        "tot_evlu_amt": str(acct.cash_krw + value), "nass_amt": str(acct.cash_krw + value),
        "pchs_amt_smtl_amt": str(sum(h.cost_krw for h in acct.holdings.values())),
        "evlu_amt_smtl_amt": str(value),
    }
    return ok({"output1": chunk, "output2": [summary], **cursors}, tr_cont=cont)


def inquire_psbl_order(fake: FakeKIS, ctx: Ctx) -> Result:
    acct = ctx.account
    cash = acct.cash_krw - acct.held_for_buys(fake.upper_limits())
    code = ctx.query.get("PDNO", "")
    unit = _int(ctx.query.get("ORD_UNPR"))
    if not unit and fake.market.known(code):
        unit = fake.market.limits(code)[0]
    qty = int(cash // (unit * (1 + acct.commission_rate))) if unit > 0 else 0
    amount = str(max(cash, 0))
    return ok({"output": {"ord_psbl_cash": amount, "nrcvb_buy_amt": amount,
                          "nrcvb_buy_qty": str(max(qty, 0)), "max_buy_amt": amount,
                          "max_buy_qty": str(max(qty, 0)), "psbl_qty_calc_unpr": str(unit)}})


def inquire_daily_ccld(fake: FakeKIS, ctx: Ctx) -> Result:
    q = ctx.query
    today = ctx.now.date()
    start, end = _ymd(q.get("INQR_STRT_DT", ""), today), _ymd(q.get("INQR_END_DT", ""), today)
    side, code, odno = q.get("SLL_BUY_DVSN_CD", "00"), q.get("PDNO", ""), q.get("ODNO", "")
    ccld = q.get("CCLD_DVSN", "00")
    orders = [
        o for o in ctx.account.orders
        if start <= _ymd(o.ord_dt, today) <= end
        and side in ("00", "", o.side) and code in ("", o.code) and odno in ("", o.odno)
        and (ccld != "01" or o.filled_qty > 0) and (ccld != "02" or o.remaining > 0)
    ]
    if q.get("INQR_DVSN", "00") == "00":
        orders = list(reversed(orders))
    chunk, cursors, cont = page(fake, ctx, orders, fake.ccld_page_size)
    totals = {
        "tot_ord_qty": str(sum(o.qty for o in orders if not o.cancel_record)),
        "tot_ccld_qty": str(sum(o.filled_qty for o in orders)),
        "tot_ccld_amt": str(sum(o.filled_amount for o in orders)),
        "prsm_tlex_smtl": "0", "pchs_avg_pric": "0",
    }
    return ok({"output1": [ctx.account.row(o) for o in chunk], "output2": totals, **cursors},
              tr_cont=cont)


# --- market -------------------------------------------------------------------------
def inquire_price(fake: FakeKIS, ctx: Ctx) -> Result:
    code = ctx.query.get("FID_INPUT_ISCD", "")
    if not fake.market.known(code):
        return ok({"output": {"stck_prpr": "0", "acml_vol": "0"}})
    o, h, low, price, vol = fake.market.today(code)
    base = fake.market.prev_close(code)
    upper, lower = fake.market.limits(code)
    sign = "2" if price > base else ("5" if price < base else "3")
    return ok({"output": {
        "stck_prpr": str(price), "prdy_vrss": str(price - base), "prdy_vrss_sign": sign,
        "prdy_ctrt": f"{(price / base - 1) * 100:.2f}", "acml_vol": str(vol),
        "stck_oprc": str(o), "stck_hgpr": str(h), "stck_lwpr": str(low),
        "stck_mxpr": str(upper), "stck_llam": str(lower), "stck_sdpr": str(base),
        "stck_shrn_iscd": code, "rprs_mrkt_kor_name": "KOSPI",
    }})


def _chart_header(fake: FakeKIS, code: str) -> dict[str, str]:
    if not fake.market.known(code):
        return {"stck_prpr": "0", "hts_kor_isnm": ""}
    return {"stck_prpr": str(fake.market.price(code)),
            "stck_prdy_clpr": str(fake.market.prev_close(code)),
            "hts_kor_isnm": fake.market.stocks[code].name}


def daily_chart(fake: FakeKIS, ctx: Ctx) -> Result:
    q = ctx.query
    code = q.get("FID_INPUT_ISCD", "")
    if not fake.market.known(code):
        return ok({"output1": _chart_header(fake, code), "output2": []})
    today = ctx.now.date()
    start = _ymd(q.get("FID_INPUT_DATE_1", ""), today)
    end = _ymd(q.get("FID_INPUT_DATE_2", ""), today)
    bars = fake.market.daily(code, start, end)[-100:]
    rows = [{"stck_bsop_date": d.strftime("%Y%m%d"), "stck_oprc": str(o), "stck_hgpr": str(h),
             "stck_lwpr": str(lo), "stck_clpr": str(c), "acml_vol": str(v),
             "acml_tr_pbmn": str(c * v), "flng_cls_code": "00", "prtt_rate": "0.00",
             "mod_yn": "N"} for d, o, h, lo, c, v in reversed(bars)]
    return ok({"output1": _chart_header(fake, code), "output2": rows})


def minute_chart(fake: FakeKIS, ctx: Ctx) -> Result:
    code = ctx.query.get("FID_INPUT_ISCD", "")
    if not fake.market.known(code):
        return ok({"output1": _chart_header(fake, code), "output2": []})
    hour = ctx.query.get("FID_INPUT_HOUR_1", "")
    until = time(int(hour[:2]), int(hour[2:4]), int(hour[4:6])) if len(hour) == 6 else None
    bars = fake.market.minute_bars(code, until)[-30:]
    rows = [{"stck_bsop_date": t.strftime("%Y%m%d"), "stck_cntg_hour": t.strftime("%H%M%S"),
             "stck_prpr": str(c), "stck_oprc": str(o), "stck_hgpr": str(h), "stck_lwpr": str(lo),
             "cntg_vol": str(v), "acml_tr_pbmn": str(c * v)}
            for t, o, h, lo, c, v in reversed(bars)]
    return ok({"output1": _chart_header(fake, code), "output2": rows})


MINUTE_HISTORY_ROWS = 120
MINUTE_HISTORY_KEPT = timedelta(days=365)
"""KIS keeps about a year of past minute bars (official inquire_time_dailychartprice)."""


def minute_history(fake: FakeKIS, ctx: Ctx) -> Result:
    """Real only (FHKST03010230): up to 120 minute bars at or before ``FID_INPUT_DATE_1``
    ``FID_INPUT_HOUR_1``, newest first; with ``FID_PW_DATA_INCU_YN=Y`` the page continues
    into earlier trading days, with ``N`` it stops at the day's first bar. Older than a year:
    no rows."""
    q = ctx.query
    code = q.get("FID_INPUT_ISCD", "")
    if not fake.market.known(code):
        return ok({"output1": _chart_header(fake, code), "output2": []})
    day = _ymd(q.get("FID_INPUT_DATE_1", ""), ctx.now.date())
    hour = q.get("FID_INPUT_HOUR_1", "")
    until = time(int(hour[:2]), int(hour[2:4]), int(hour[4:6])) if len(hour) == 6 else None
    bars: list[Any] = []
    oldest_kept = ctx.now.date() - MINUTE_HISTORY_KEPT
    cursor_day, cursor_until = day, until
    while len(bars) < MINUTE_HISTORY_ROWS and cursor_day >= oldest_kept:
        bars = fake.market.minute_bars_on(code, cursor_day, cursor_until) + bars
        if q.get("FID_PW_DATA_INCU_YN", "N") != "Y":
            break
        cursor_day, cursor_until = cursor_day - timedelta(days=1), None
    bars = bars[-MINUTE_HISTORY_ROWS:]
    rows = [{"stck_bsop_date": t.strftime("%Y%m%d"), "stck_cntg_hour": t.strftime("%H%M%S"),
             "stck_prpr": str(c), "stck_oprc": str(o), "stck_hgpr": str(h), "stck_lwpr": str(lo),
             "cntg_vol": str(v), "acml_tr_pbmn": str(c * v)}
            for t, o, h, lo, c, v in reversed(bars)]
    return ok({"output1": _chart_header(fake, code), "output2": rows})


def volume_rank(fake: FakeKIS, ctx: Ctx) -> Result:
    """Real only (FHPST01710000): the top 30 codes by today's volume so far (``acml_vol``),
    or by the previous day's volume before the open; ``fake.volume_rank_override`` (a list of
    codes) replaces the ranking. Fields as official ``chk_volume_rank.py``."""
    override = getattr(fake, "volume_rank_override", None)
    codes = list(override) if override is not None else list(fake.market.stocks)
    rows = []
    for code in codes:
        if not fake.market.known(code):
            continue
        _o, _h, _low, price, vol = fake.market.today(code)
        prev = fake.market.daily(code, ctx.now.date() - timedelta(days=10),
                                 ctx.now.date() - timedelta(days=1))
        prdy_vol = prev[-1][5] if prev else 0
        rows.append({"hts_kor_isnm": fake.market.stocks[code].name, "mksc_shrn_iscd": code,
                     "stck_prpr": str(price), "acml_vol": str(vol), "prdy_vol": str(prdy_vol),
                     "acml_tr_pbmn": str(price * vol)})
    if override is None:
        rows.sort(key=lambda r: (-int(r["acml_vol"] or 0), -int(r["prdy_vol"] or 0)))
    for rank, row in enumerate(rows, 1):
        row["data_rank"] = str(rank)
    return ok({"output": rows[:30]})


def chk_holiday(fake: FakeKIS, ctx: Ctx) -> Result:
    """Real only (CTCA0903R): ``BASS_DT`` and the following days (a page of 20), each with
    ``opnd_yn`` from the fake's ``closed_days`` (set of dates) and weekends."""
    start = _ymd(ctx.query.get("BASS_DT", ""), ctx.now.date())
    closed: set[date] = getattr(fake, "closed_days", set())
    rows = []
    for i in range(20):
        day = start + timedelta(days=i)
        open_ = day.weekday() < 5 and day not in closed
        yn = "Y" if open_ else "N"
        rows.append({"bass_dt": day.strftime("%Y%m%d"),
                     "wday_dvsn_cd": f"{(day.isoweekday() % 7) + 1:02d}",
                     "bzdy_yn": yn, "tr_day_yn": yn, "opnd_yn": yn, "sttl_day_yn": yn})
    return ok({"output": rows, "ctx_area_fk": "", "ctx_area_nk": ""})


def inquire_psbl_rvsecncl(fake: FakeKIS, ctx: Ctx) -> Result:
    """Real only (TTTC0084R/TTTC8036R): open orders with their cancellable quantity."""
    rows = [{**ctx.account.row(o), "psbl_qty": str(o.remaining)}
            for o in ctx.account.open_orders()]
    chunk, cursors, cont = page(fake, ctx, rows, 50)
    return ok({"output": chunk, **cursors}, tr_cont=cont)


def hashkey(body: dict[str, Any]) -> dict[str, Any]:
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    return {"BODY": body, "HASH": digest}


def expiry_text(when: datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M:%S")


TOKEN_LIFETIME = timedelta(hours=24)
TOKEN_SAME_WITHIN = timedelta(hours=6)
SELL_BUY = {SELL: "sell", BUY: "buy"}


def search_stock_info(fake: FakeKIS, ctx: Ctx) -> Result:
    """Real only (CTPF1002R): ``PDNO``'s product as a listed KOSPI stock named as the
    market names it, with ``fake.product_info[code]`` replacing fields. A code neither
    traded nor in ``product_info`` answers ``rt_cd 0`` with an empty ``output`` (how real
    KIS answers an unknown code is not documented)."""
    code = ctx.query.get("PDNO", "").strip()
    extra = getattr(fake, "product_info", {}).get(code)
    if ctx.query.get("PRDT_TYPE_CD") != "300" or (not fake.market.known(code) and extra is None):
        return ok({"output": {}})
    name = fake.market.stocks[code].name if fake.market.known(code) else code
    row = {"pdno": code, "prdt_type_cd": "300", "prdt_name": name, "prdt_abrv_name": name,
           "prdt_eng_name": "", "mket_id_cd": "STK", "scty_grp_id_cd": "ST",
           "excg_dvsn_cd": "02", "kospi200_item_yn": "N", "scts_mket_lstg_dt": "20000104",
           "scts_mket_lstg_abol_dt": "", "kosdaq_mket_lstg_dt": "",
           "kosdaq_mket_lstg_abol_dt": "", "lstg_abol_dt": "", "tr_stop_yn": "N",
           "admn_item_yn": "N", "std_pdno": f"KR7{code}003"}
    row.update(extra or {})
    return ok({"output": row})


def psearch_title(fake: FakeKIS, ctx: Ctx) -> Result:
    """Real only (HHKST03900300): the conditions ``user_id`` saved (``fake.conditions``),
    ``output2`` rows ``user_id``, ``seq`` (0-based), ``grp_nm``, ``condition_nm``."""
    user = ctx.query.get("user_id", "")
    saved = getattr(fake, "conditions", {}).get(user, {})
    rows = [{"user_id": user, "seq": str(i), "grp_nm": "kis-trader", "condition_nm": name}
            for i, name in enumerate(saved)]
    return ok({"output2": rows})


def psearch_result(fake: FakeKIS, ctx: Ctx) -> Result:
    """Real only (HHKST03900400): the codes condition ``seq`` of ``user_id`` finds now,
    ``output2`` rows ``code``, ``name``, ``price``, ``chgrate``, ``acml_vol`` (an empty
    list when it finds none; an unknown ``seq`` is an error answer)."""
    user = ctx.query.get("user_id", "")
    saved = list(getattr(fake, "conditions", {}).get(user, {}).items())
    seq = ctx.query.get("seq", "")
    if not seq.isdigit() or int(seq) >= len(saved):
        return fail("KIOK0560", "조건검색 결과가 없습니다.")
    rows = []
    for code in saved[int(seq)][1]:
        price = fake.market.today(code)[3] if fake.market.known(code) else 0
        name = fake.market.stocks[code].name if fake.market.known(code) else code
        rows.append({"code": code, "name": name, "price": str(price), "chgrate": "0.00",
                     "acml_vol": "0"})
    return ok({"output2": rows})
