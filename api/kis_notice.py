"""Order/fill notices of the KIS WebSocket (``H0STCNI0`` real, ``H0STCNI9`` virtual).

A data frame is ``<enc>|<tr_id>|<count>|<payload>``; for these TRs the payload arrives
AES-256-CBC encrypted (``enc = 1``) and, once decrypted, is ``^``-separated fields. This
module reads the decrypted fields (26 in the current layout, 23 in an older one: the
positions used here, 0-16, are the same in both):

====  ==================  ==============================================
idx   field               use
====  ==================  ==============================================
2     ``ODER_NO``         order number (the ``ODNO`` of the order)
4     ``SELN_BYOV_CLS``   ``01`` sell, ``02`` buy
8     ``STCK_SHRN_ISCD``  stock code
9     ``CNTG_QTY``        shares of this execution
10    ``CNTG_UNPR``       price of this execution, KRW
11    ``STCK_CNTG_HOUR``  execution time ``HHMMSS`` (KST)
12    ``RFUS_YN``         ``0`` ok, ``1`` refused
13    ``CNTG_YN``         ``2`` = execution; ``1`` = acknowledgement only
====  ==================  ==============================================

Only executions (``CNTG_YN == "2"``, not refused) become an
:class:`~framework.executor.ExecutionNotice`; acknowledgements carry the order's quantity and
price at the same positions and are ignored. A notice is one execution, without a running
total: the engine matches it to what it has recorded of the order (see
:meth:`core.order_manager.OrderManager.apply_notice`).
"""

from __future__ import annotations

from datetime import date, datetime

from api.kis_schemas import KST, to_int
from framework.errors import DataError
from framework.executor import ExecutionNotice
from framework.types import OrderSide

NOTICE_TR_IDS = ("H0STCNI0", "H0STCNI9", "K0STCNI0", "K0STCNI9")
MIN_FIELDS = 17


def parse_fill_notice(payload: str, day: date) -> ExecutionNotice | None:
    """The execution in one decrypted notice payload (``^``-separated), on ``day`` (KST);
    ``None`` for an acknowledgement or a refusal. Raises ``DataError`` for a payload with
    fewer than 17 fields or a bad quantity, price or time."""
    fields = payload.split("^")
    if len(fields) < MIN_FIELDS:
        raise DataError(f"fill notice has {len(fields)} fields, expected at least {MIN_FIELDS}")
    if fields[13].strip() != "2" or fields[12].strip() not in ("", "0", "N"):
        return None
    qty, price, hhmmss = to_int(fields[9]), to_int(fields[10]), fields[11].strip()
    if qty <= 0 or price <= 0:
        raise DataError(f"fill notice with quantity {fields[9]!r} and price {fields[10]!r}")
    if len(hhmmss) != 6 or not hhmmss.isdigit():
        raise DataError(f"fill notice time {hhmmss!r} is not HHMMSS")
    at = datetime(
        day.year, day.month, day.day, int(hhmmss[:2]), int(hhmmss[2:4]), int(hhmmss[4:]),
        tzinfo=KST,
    )
    return ExecutionNotice(
        broker_order_id=fields[2].strip(),
        stock_code=fields[8].strip(),
        side=OrderSide.SELL if fields[4].strip() == "01" else OrderSide.BUY,
        qty=qty,
        price=price,
        time=at,
    )
