"""Current prices: ``GET /uapi/domestic-stock/v1/quotations/inquire-price``, tr_id
``FHKST01010100`` (the same on real and virtual).

Errors: ``DataError`` for an unknown code (KIS answers price ``0``), otherwise as
:meth:`api.kis_http.KISClient.get`.
"""

from __future__ import annotations

from collections.abc import Iterable

from api.kis_http import KISClient
from api.kis_requests import PriceParams
from api.kis_schemas import PriceOutput, to_int
from framework.errors import DataError
from framework.types import Quote, validate_code

PRICE_PATH = "/uapi/domestic-stock/v1/quotations/inquire-price"
TR_PRICE = "FHKST01010100"


def inquire_price(client: KISClient, stock_code: str) -> Quote:
    """Latest price of one code: price/open/high/low/prev_close in KRW, volume in shares,
    ``time`` = the adapter clock when the answer arrived."""
    validate_code(stock_code)
    answer = client.get(PRICE_PATH, TR_PRICE, PriceParams(FID_INPUT_ISCD=stock_code).to_wire())
    raw = answer.body.get("output")
    output = PriceOutput.model_validate(raw if isinstance(raw, dict) else {})
    if to_int(output.stck_prpr) <= 0:
        raise DataError(f"no price for stock code {stock_code!r} (unknown code?)")
    return output.to_quote(stock_code, client.clock())


def inquire_prices(client: KISClient, stock_codes: Iterable[str]) -> dict[str, Quote]:
    """Latest prices of several codes, one call each (KIS has no batch quote on REST);
    the calls share the rate limiter. Raises on the first failing code."""
    return {code: inquire_price(client, code) for code in dict.fromkeys(stock_codes)}
