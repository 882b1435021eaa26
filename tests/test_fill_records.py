"""A fill and a closed round trip are frozen records built without the dataclass's
generated ``__init__`` (once per fill, once per trip): every field is set, they compare,
hash and copy as records built field by field, and stay read-only."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from core.portfolio import Portfolio, RoundTrip
from framework.types import Fill, OrderSide

T0 = datetime(2024, 3, 4, 9, 0, tzinfo=ZoneInfo("Asia/Seoul"))


def fill(side: OrderSide, qty: int, price: int, at: datetime, **extra: object) -> Fill:
    return Fill(f"F{at:%H%M}", "c-1", "005930", side, qty, price, at, **extra)  # type: ignore[arg-type]


def test_a_fill_has_every_field_and_stays_frozen() -> None:
    values = {f.name: f"v-{f.name}" for f in dataclasses.fields(Fill)}
    built = Fill(**values)  # type: ignore[arg-type]
    assert {f.name: getattr(built, f.name) for f in dataclasses.fields(Fill)} == values
    assert dataclasses.replace(built) == built
    assert hash(dataclasses.replace(built)) == hash(built)
    assert dataclasses.replace(built, qty=3).qty == 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.qty = 1  # type: ignore[misc]
    short = fill(OrderSide.BUY, 10, 1_000, T0)
    assert (short.commission_krw, short.tax_krw, short.broker_order_id) == (0, 0, None)
    assert short.cash_delta_krw == -10_000


def test_a_round_trip_equals_the_one_built_field_by_field() -> None:
    book = Portfolio()
    book.apply_fill("s", fill(OrderSide.BUY, 10, 1_000, T0, commission_krw=15), reasons=("in",))
    later = T0 + timedelta(hours=2)
    _, trip = book.apply_fill(
        "s", fill(OrderSide.SELL, 10, 1_100, later, commission_krw=16, tax_krw=20), reasons=("out",)
    )
    assert trip is not None
    expected = RoundTrip(
        "s", "005930", T0, later, 1_000.0, 1_100.0, 10, 949, 949 / 10_015 * 100.0, 51,
        ("in",), ("out",),
    )
    assert trip == expected
    assert dataclasses.astuple(trip) == dataclasses.astuple(expected)
    assert hash(trip) == hash(expected)
    assert repr(trip) == repr(expected)
    assert book.round_trips == [expected]
    with pytest.raises(dataclasses.FrozenInstanceError):
        trip.qty = 1  # type: ignore[misc]
