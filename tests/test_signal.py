"""``Signal`` validation: what a strategy may hand the engine, and what it is turned into."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from framework.types import Signal, SignalType


class _Code(str):
    """A str subclass (what a pandas or pydantic value can be)."""


@pytest.mark.parametrize("code", ["00593", "0059300", 5930, None, "00-593", "", b"005930"])
def test_a_code_that_is_not_a_krx_code_is_refused(code: Any) -> None:
    with pytest.raises(ValueError, match="6-character KRX code"):
        Signal(SignalType.BUY, code)


@pytest.mark.parametrize("code", ["005930", "0001A0", _Code("005930")])
def test_krx_codes_are_taken(code: str) -> None:
    assert Signal(SignalType.BUY, code).stock_code == code


@pytest.mark.parametrize("confidence", [-0.1, 100.5, math.nan, math.inf, 101])
def test_a_confidence_outside_0_to_100_is_refused_with_the_value_given(
    confidence: float,
) -> None:
    with pytest.raises(ValueError, match=f"got {confidence!r}"):
        Signal(SignalType.BUY, "005930", confidence=confidence)


@pytest.mark.parametrize("confidence", [80, np.float64(80.0), "80", np.int64(80), 80.0])
def test_a_confidence_becomes_a_plain_float(confidence: Any) -> None:
    signal = Signal(SignalType.BUY, "005930", confidence=confidence)
    assert type(signal.confidence) is float
    assert signal.confidence == 80.0


def test_the_signal_type_must_be_a_signal_type() -> None:
    with pytest.raises(ValueError, match="signal_type must be a SignalType"):
        Signal("buy", "005930")  # type: ignore[arg-type]


def test_reasons_become_a_tuple_of_strings() -> None:
    signal = Signal(SignalType.SELL, "005930", reasons=["crossed", 3, _Code("x")])  # type: ignore[list-item]
    assert signal.reasons == ("crossed", "3", "x")
    assert all(type(r) is str for r in signal.reasons)


def test_metadata_is_a_read_only_copy() -> None:
    source = {"sma": 1.5}
    signal = Signal(SignalType.BUY, "005930", metadata=source)
    source["sma"] = 9.0
    assert signal.metadata == {"sma": 1.5}
    with pytest.raises(TypeError):
        signal.metadata["sma"] = 2.0  # type: ignore[index]


def test_empty_metadata_is_read_only_and_not_shared_with_the_caller() -> None:
    source: dict[str, Any] = {}
    signal = Signal(SignalType.BUY, "005930", metadata=source)
    other = Signal(SignalType.SELL, "000660")
    source["late"] = 1
    assert dict(signal.metadata) == {}
    assert dict(other.metadata) == {}
    with pytest.raises(TypeError):
        signal.metadata["x"] = 1  # type: ignore[index]


@pytest.mark.parametrize(
    ("field", "value"),
    [("qty", 0), ("qty", -3), ("qty", 1.5), ("limit_price", 0), ("limit_price", 70_000.0)],
)
def test_qty_and_limit_price_must_be_positive_integers(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=field):
        Signal(SignalType.BUY, "005930", **{field: value})


def test_no_metadata_given_as_none_is_the_empty_read_only_mapping() -> None:
    signal = Signal(SignalType.BUY, "005930", metadata=None)
    assert dict(signal.metadata) == {}
    with pytest.raises(TypeError):
        signal.metadata["x"] = 1  # type: ignore[index]


def test_a_signal_is_frozen_and_replace_keeps_every_field() -> None:
    import dataclasses

    signal = Signal(
        SignalType.SELL, "005930", 40, 90_000.0, 70_000.0, ["cross"], {"rsi": 30}, 5, 80_000
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        signal.qty = 1  # type: ignore[misc]
    copy = dataclasses.replace(signal, qty=3)
    assert copy.qty == 3
    assert (copy.confidence, copy.target_price, copy.stop_loss) == (40.0, 90_000.0, 70_000.0)
    assert (copy.reasons, copy.limit_price) == (("cross",), 80_000)
    assert dict(copy.metadata) == {"rsi": 30}
    assert copy != signal
    assert dataclasses.replace(copy, qty=5) == signal
