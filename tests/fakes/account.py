"""Accounts and orders of the fake KIS: cash, holdings, resting orders, fills.

Money rules (all integers, KRW): a buy fill costs ``qty*price + commission``; a sell fill
brings ``qty*price - commission - tax``; commission = ``int(amount * commission_rate)``,
tax = ``int(amount * sell_tax_rate)`` (sells only). Open buy orders hold cash: limit orders
``remaining * limit``, market orders ``remaining * upper limit price`` (as KIS does), both
plus commission; ``orderable = cash - held``. A sell may not exceed the shares held minus
the shares in open sell orders.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

BUY, SELL = "02", "01"


class OrderError(Exception):
    """A business rejection: ``msg_cd`` and ``msg1`` as KIS would answer them."""

    def __init__(self, msg_cd: str, msg1: str) -> None:
        super().__init__(msg1)
        self.msg_cd = msg_cd
        self.msg1 = msg1


@dataclass
class FakeOrder:
    """One order line as ``inquire-daily-ccld`` shows it."""

    odno: str
    orgno: str
    ord_dt: str
    ord_tmd: str
    code: str
    name: str
    side: str
    ord_dvsn: str
    qty: int
    price: int
    filled_qty: int = 0
    filled_amount: int = 0
    cancelled_qty: int = 0
    rejected_qty: int = 0
    orgn_odno: str = ""
    cancel_record: bool = False

    @property
    def remaining(self) -> int:
        if self.cancel_record:
            return 0
        return self.qty - self.filled_qty - self.cancelled_qty - self.rejected_qty

    @property
    def is_market(self) -> bool:
        return self.ord_dvsn != "00"

    @property
    def avg_price(self) -> float:
        return self.filled_amount / self.filled_qty if self.filled_qty else 0.0


@dataclass
class Holding:
    qty: int
    cost_krw: int  # purchase amount of the shares still held

    @property
    def avg_price(self) -> float:
        return self.cost_krw / self.qty if self.qty else 0.0


@dataclass
class FakeAccount:
    """Cash, holdings and orders of one account (one app key)."""

    app_key: str
    app_secret: str
    account_no: str
    cash_krw: int
    holdings: dict[str, Holding] = field(default_factory=dict)
    orders: list[FakeOrder] = field(default_factory=list)
    commission_rate: float = 0.000140527
    sell_tax_rate: float = 0.0020
    fees_paid_krw: int = 0
    taxes_paid_krw: int = 0
    _seq: itertools.count = field(default_factory=lambda: itertools.count(10001))
    on_fill: Callable[[FakeOrder, int, int], None] | None = field(default=None, repr=False)
    """Called with (order, qty, price) after each fill (the fake KIS's notice hook)."""

    @property
    def cano(self) -> str:
        return self.account_no.split("-")[0]

    @property
    def prdt_cd(self) -> str:
        return self.account_no.split("-")[1]

    def next_odno(self) -> str:
        return f"{next(self._seq):010d}"

    def open_orders(self) -> list[FakeOrder]:
        return [o for o in self.orders if o.remaining > 0]

    def held_for_buys(self, upper_limit: dict[str, int]) -> int:
        held = 0
        for o in self.open_orders():
            if o.side == BUY:
                unit = upper_limit.get(o.code, o.price) if o.is_market else o.price
                amount = o.remaining * unit
                held += amount + int(amount * self.commission_rate)
        return held

    def sellable(self, code: str) -> int:
        held = self.holdings.get(code)
        pending = sum(o.remaining for o in self.open_orders() if o.side == SELL and o.code == code)
        return (held.qty if held else 0) - pending

    def find(self, odno: str) -> FakeOrder:
        for o in self.orders:
            if o.odno == odno and not o.cancel_record:
                return o
        raise OrderError("APBK0656", "해당 주문이 없습니다.")

    def apply_fill(self, order: FakeOrder, qty: int, price: int) -> None:
        """Fill ``qty`` shares of ``order`` at ``price``; moves cash and holdings."""
        if qty <= 0 or qty > order.remaining:
            raise ValueError(f"cannot fill {qty} of order {order.odno} "
                             f"(remaining {order.remaining})")
        amount = qty * price
        commission = int(amount * self.commission_rate)
        self.fees_paid_krw += commission
        order.filled_qty += qty
        order.filled_amount += amount
        if order.side == BUY:
            self.cash_krw -= amount + commission
            h = self.holdings.setdefault(order.code, Holding(0, 0))
            h.qty += qty
            h.cost_krw += amount
        else:
            tax = int(amount * self.sell_tax_rate)
            self.taxes_paid_krw += tax
            self.cash_krw += amount - commission - tax
            h = self.holdings[order.code]
            h.cost_krw -= round(h.cost_krw * qty / h.qty)
            h.qty -= qty
        if self.on_fill is not None:
            self.on_fill(order, qty, price)

    def cancel(self, order: FakeOrder, qty: int | None, now: datetime) -> FakeOrder:
        """Cancel ``qty`` (None = all) of the remainder; returns the cancel record."""
        if order.remaining <= 0:
            raise OrderError("APBK0344", "정정/취소할 수량이 없습니다.")
        qty = order.remaining if not qty else min(qty, order.remaining)
        order.cancelled_qty += qty
        record = FakeOrder(
            odno=self.next_odno(), orgno=order.orgno, ord_dt=now.strftime("%Y%m%d"),
            ord_tmd=now.strftime("%H%M%S"), code=order.code, name=order.name, side=order.side,
            ord_dvsn=order.ord_dvsn, qty=qty, price=order.price, orgn_odno=order.odno,
            cancel_record=True,
        )
        self.orders.append(record)
        return record

    def revise(self, order: FakeOrder, qty: int | None, price: int, ord_dvsn: str,
               now: datetime) -> FakeOrder:
        """Move ``qty`` (None = all) of the remainder to a new order at ``price``."""
        if order.remaining <= 0:
            raise OrderError("APBK0344", "정정/취소할 수량이 없습니다.")
        qty = order.remaining if not qty else min(qty, order.remaining)
        order.cancelled_qty += qty
        new = FakeOrder(
            odno=self.next_odno(), orgno=order.orgno, ord_dt=now.strftime("%Y%m%d"),
            ord_tmd=now.strftime("%H%M%S"), code=order.code, name=order.name, side=order.side,
            ord_dvsn=ord_dvsn, qty=qty, price=price, orgn_odno=order.odno,
        )
        self.orders.append(new)
        return new

    def row(self, o: FakeOrder) -> dict[str, str]:
        """The ``inquire-daily-ccld`` ``output1`` row of an order (all strings)."""
        return {
            "ord_dt": o.ord_dt, "ord_gno_brno": o.orgno, "odno": o.odno,
            "orgn_odno": o.orgn_odno,
            "ord_dvsn_name": "취소" if o.cancel_record else ("지정가" if not o.is_market
                                                            else "시장가"),
            "sll_buy_dvsn_cd": o.side,
            "sll_buy_dvsn_cd_name": "매도" if o.side == SELL else "매수",
            "pdno": o.code, "prdt_name": o.name, "ord_qty": str(o.qty),
            "ord_unpr": str(o.price), "ord_tmd": o.ord_tmd,
            "tot_ccld_qty": str(o.filled_qty),
            "avg_prvs": f"{o.avg_price:.4f}" if o.filled_qty else "0",
            "cncl_yn": "Y" if o.cancel_record else "",
            "tot_ccld_amt": str(o.filled_amount), "loan_dt": "", "ord_dvsn_cd": o.ord_dvsn,
            "cnc_cfrm_qty": str(o.qty if o.cancel_record else o.cancelled_qty),
            "rmn_qty": str(o.remaining), "rjct_qty": str(o.rejected_qty),
            "ccld_cndt_name": "없음", "excg_id_dvsn_Cd": "KRX",
        }
