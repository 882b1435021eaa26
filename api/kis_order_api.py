"""Cash orders, revise and cancel (``/uapi/domestic-stock/v1/trading/order-*``).

Orders are sent exactly once (see :mod:`api.kis_http`): a timeout or an unreadable answer
raises ``UnknownOrderOutcomeError`` and the order must be looked up (``inquire-daily-ccld``)
before anything else is sent for it.

=====================  ======================  ===========  ===========
function               endpoint                real tr_id   virtual
=====================  ======================  ===========  ===========
``place_cash_order``   order-cash (buy)        TTTC0012U    VTTC0012U
``place_cash_order``   order-cash (sell)       TTTC0011U    VTTC0011U
``revise_order``       order-rvsecncl          TTTC0013U    VTTC0013U
``cancel_order``       order-rvsecncl          TTTC0013U    VTTC0013U
=====================  ======================  ===========  ===========
"""

from __future__ import annotations

from api.kis_http import KISClient, tr_id
from api.kis_requests import OrderCashBody, OrderRvseCnclBody, ord_dvsn
from api.kis_schemas import OrderAck
from framework.types import OrderRequest, OrderSide, OrderType

ORDER_CASH_PATH = "/uapi/domestic-stock/v1/trading/order-cash"
ORDER_RVSECNCL_PATH = "/uapi/domestic-stock/v1/trading/order-rvsecncl"

TR_BUY = ("TTTC0012U", "VTTC0012U")
TR_SELL = ("TTTC0011U", "VTTC0011U")
TR_RVSECNCL = ("TTTC0013U", "VTTC0013U")


def place_cash_order(client: KISClient, request: OrderRequest) -> OrderAck:
    """Send a cash buy/sell (limit ``ORD_DVSN 00`` or market ``01``); never retried.

    ``request.qty`` in shares, ``request.price`` in KRW (a valid tick) or ``None`` for a
    market order. Returns the acknowledgement (``odno`` = order number, ``ord_tmd`` HHMMSS).
    Raises ``OrderRejectedError`` / ``InsufficientFundsError`` (KIS refused it),
    ``UnknownOrderOutcomeError`` (no clear answer), ``CircuitOpenError``, ``RateLimitError``
    and ``AuthError`` (gateway refused it: not placed).
    """
    settings = client.settings
    body = OrderCashBody(
        CANO=settings.cano,
        ACNT_PRDT_CD=settings.acnt_prdt_cd,
        PDNO=request.stock_code,
        ORD_DVSN=ord_dvsn(request.order_type),
        ORD_QTY=str(request.qty),
        ORD_UNPR=str(request.price or 0),
    )
    pair = TR_BUY if request.side is OrderSide.BUY else TR_SELL
    answer = client.post_order(ORDER_CASH_PATH, tr_id(settings, *pair), body.to_wire())
    return OrderAck.model_validate(answer.body.get("output") or {})


def revise_order(
    client: KISClient,
    *,
    krx_orgno: str,
    odno: str,
    price: int | None,
    qty: int | None = None,
) -> OrderAck:
    """Change the price (KRW; ``None`` = to a market order) of an open order.

    ``qty`` shares to revise (``None`` = all that remains). KIS gives the revised order a
    new ``odno``; the original's remainder moves to it. Raises as :func:`place_cash_order`.
    """
    body = OrderRvseCnclBody(
        CANO=client.settings.cano,
        ACNT_PRDT_CD=client.settings.acnt_prdt_cd,
        KRX_FWDG_ORD_ORGNO=krx_orgno,
        ORGN_ODNO=odno,
        ORD_DVSN=ord_dvsn(OrderType.LIMIT if price else OrderType.MARKET),
        RVSE_CNCL_DVSN_CD="01",
        ORD_QTY=str(qty or 0),
        ORD_UNPR=str(price or 0),
        QTY_ALL_ORD_YN="N" if qty else "Y",
    )
    answer = client.post_order(
        ORDER_RVSECNCL_PATH, tr_id(client.settings, *TR_RVSECNCL), body.to_wire()
    )
    return OrderAck.model_validate(answer.body.get("output") or {})


def cancel_order(
    client: KISClient, *, krx_orgno: str, odno: str, qty: int | None = None
) -> OrderAck:
    """Cancel ``qty`` shares (``None`` = all that remains) of an open order.

    Passes even when the circuit breaker is open. Raises ``OrderRejectedError`` when
    nothing is left to cancel (filled or already cancelled) and
    ``UnknownOrderOutcomeError`` when the answer is lost.
    """
    body = OrderRvseCnclBody(
        CANO=client.settings.cano,
        ACNT_PRDT_CD=client.settings.acnt_prdt_cd,
        KRX_FWDG_ORD_ORGNO=krx_orgno,
        ORGN_ODNO=odno,
        ORD_DVSN="00",
        RVSE_CNCL_DVSN_CD="02",
        ORD_QTY=str(qty or 0),
        ORD_UNPR="0",
        QTY_ALL_ORD_YN="N" if qty else "Y",
    )
    answer = client.post_order(
        ORDER_RVSECNCL_PATH, tr_id(client.settings, *TR_RVSECNCL), body.to_wire(),
        bypass_breaker=True,
    )
    return OrderAck.model_validate(answer.body.get("output") or {})
