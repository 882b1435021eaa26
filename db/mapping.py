"""Conversions between framework types, JSON-safe values, ORM rows and DataFrames.

Used by :mod:`db.repository`; nothing here opens a session. Money stays ``int`` KRW,
quantities ``int`` shares, times tz-aware (``ValueError`` for naive ones).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import operator
from collections.abc import Iterable, Iterator, Mapping
from itertools import islice
from typing import Any

import pandas as pd

from db.models import KST, OrderRow
from framework.types import Fill, Order, OrderSide, OrderStatus, OrderType, SignalType

FINAL_STATUSES = tuple(s.value for s in OrderStatus if s.is_final)
ORDER_FRAME_COLUMNS = (
    "client_order_id",
    "broker_order_id",
    "strategy",
    "stock_code",
    "side",
    "order_type",
    "qty",
    "price",
    "status",
    "filled_qty",
    "avg_fill_price",
    "filled_amount_krw",
    "commission_krw",
    "tax_krw",
    "signal_type",
    "reasons",
    "metadata",
    "message",
    "created_at",
    "updated_at",
    "replaces",
    "attempt",
)
FILL_FRAME_COLUMNS = (
    "fill_id",
    "client_order_id",
    "broker_order_id",
    "strategy",
    "stock_code",
    "side",
    "qty",
    "price",
    "amount_krw",
    "commission_krw",
    "tax_krw",
    "time",
)
EQUITY_FRAME_COLUMNS = ("cash_krw", "holdings_value_krw", "equity_krw")


def aware(value: dt.datetime, name: str) -> dt.datetime:
    """Return ``value`` if it is a tz-aware datetime, else raise ``ValueError``."""
    if not isinstance(value, dt.datetime) or value.utcoffset() is None:
        raise ValueError(f"{name} must be a tz-aware datetime (Asia/Seoul), got {value!r}")
    return value


def plain(value: Any) -> Any:
    """A JSON-safe copy: mappings -> dict, sequences -> list, enums -> value, numpy
    scalars -> Python numbers, datetimes -> ISO strings, Decimal -> str (exact)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v) for v in value]
    if isinstance(value, enum.Enum):
        return plain(value.value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain(dataclasses.asdict(value))
    if hasattr(value, "tolist"):  # numpy scalar or array
        return plain(value.tolist())
    raise TypeError(f"cannot store {type(value).__name__} value {value!r} as JSON")


def whole(value: Any) -> int:
    """``value`` as an exact ``int`` (KRW or shares); ``TypeError`` for a float or str.

    ``operator.index`` accepts ``int`` and numpy integers but refuses ``10.5`` instead of
    truncating it to 10, so no won is lost silently.
    """
    return operator.index(value)


def chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def order_values(order: Order, now: dt.datetime) -> dict[str, Any]:
    """Column values (ORM attribute names) of ``order``; missing times become ``now``.

    Raises ``ValueError`` for a naive time or a negative ``attempt``, ``TypeError`` for a
    money, quantity or ``attempt`` that is not a whole number.
    """
    attempt = whole(order.attempt)
    if attempt < 0:
        raise ValueError(f"order.attempt must be >= 0, got {attempt!r}")
    created = aware(order.created_at, "order.created_at") if order.created_at else now
    updated = aware(order.updated_at, "order.updated_at") if order.updated_at else created
    return {
        "client_order_id": order.client_order_id,
        "broker_order_id": order.broker_order_id,
        "strategy": order.strategy,
        "stock_code": order.stock_code,
        "side": order.side.value,
        "order_type": order.order_type.value,
        "qty": whole(order.qty),
        "price": None if order.price is None else whole(order.price),
        "status": order.status.value,
        "filled_qty": whole(order.filled_qty),
        "avg_fill_price": float(order.avg_fill_price),
        "filled_amount_krw": whole(order.filled_amount_krw),
        "commission_krw": whole(order.commission_krw),
        "tax_krw": whole(order.tax_krw),
        "signal_type": order.signal_type.value if order.signal_type else None,
        "reasons": [str(r) for r in order.reasons],
        "meta": plain(order.metadata),
        "message": order.message or "",
        "created_at": created,
        "updated_at": updated,
        "replaces": order.replaces,
        "attempt": attempt,
    }


def initial_and_final_status(order_id: int, values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """History rows of a bulk-inserted order: ``pending_new`` at ``created_at`` and, if the
    status moved on, the final status at ``updated_at``."""
    pending = OrderStatus.PENDING_NEW.value
    rows = [
        {"order_id": order_id, "status": pending, "at": values["created_at"], "note": "created"}
    ]
    if values["status"] != pending:
        rows.append(
            {
                "order_id": order_id,
                "status": values["status"],
                "at": values["updated_at"],
                "note": "",
            }
        )
    return rows


def to_order(row: OrderRow) -> Order:
    """The framework :class:`Order` of a stored row (every field, incl. re-placement)."""
    return Order(
        client_order_id=row.client_order_id,
        strategy=row.strategy,
        stock_code=row.stock_code,
        side=OrderSide(row.side),
        order_type=OrderType(row.order_type),
        qty=row.qty,
        price=row.price,
        status=OrderStatus(row.status),
        filled_qty=row.filled_qty,
        avg_fill_price=row.avg_fill_price,
        filled_amount_krw=row.filled_amount_krw,
        commission_krw=row.commission_krw,
        tax_krw=row.tax_krw,
        broker_order_id=row.broker_order_id,
        created_at=row.created_at,
        updated_at=row.updated_at,
        reasons=tuple(row.reasons or ()),
        metadata=dict(row.meta or {}),
        signal_type=SignalType(row.signal_type) if row.signal_type else None,
        message=row.message or "",
        replaces=row.replaces,
        attempt=row.attempt,
    )


def fill_values(run_id: str, fill: Fill, strategy: str) -> dict[str, Any]:
    """Column values (Core keys) of ``fill``."""
    return {
        "fill_id": fill.fill_id,
        "run_id": run_id,
        "client_order_id": fill.client_order_id,
        "broker_order_id": fill.broker_order_id,
        "strategy": strategy,
        "stock_code": fill.stock_code,
        "side": fill.side.value,
        "qty": whole(fill.qty),
        "price": whole(fill.price),
        "commission_krw": whole(fill.commission_krw),
        "tax_krw": whole(fill.tax_krw),
        "time": aware(fill.time, "fill.time"),
    }


def row_dict(row: Any) -> dict[str, Any]:
    """Plain dict of an ORM row (the ``meta`` attribute reported as ``metadata``)."""
    return {
        "metadata" if a.key == "meta" else a.key: getattr(row, a.key)
        for a in row.__mapper__.column_attrs
    }


def frame(
    records: list[dict[str, Any]],
    columns: tuple[str, ...],
    *,
    ints: tuple[str, ...] = (),
    nullable_ints: tuple[str, ...] = (),
    floats: tuple[str, ...] = (),
    times: tuple[str, ...] = (),
) -> pd.DataFrame:
    """DataFrame of ``records`` with ``columns`` (also when empty) and fixed dtypes:
    int64, nullable Int64, float64 and tz Asia/Seoul datetimes for the named columns."""
    df = pd.DataFrame.from_records(records, columns=list(columns))
    for c in ints:
        df[c] = df[c].astype("int64")
    for c in nullable_ints:
        df[c] = df[c].astype("Int64")
    for c in floats:
        df[c] = df[c].astype("float64")
    for c in times:
        df[c] = pd.to_datetime(df[c], utc=True).dt.tz_convert(KST)
    return df
