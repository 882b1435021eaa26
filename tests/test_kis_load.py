"""Bounded load test: threads reading through the adapter never trip the fake's limiter."""

from __future__ import annotations

from tests.fakes.load import run_load


def test_threads_sustain_the_limit_without_egw00201() -> None:
    result = run_load(limit_per_s=18, threads=4, duration_s=5.0)
    assert result.egw00201 == 0
    assert result.errors == 0
    # loose floor (not a timing benchmark): the limiter must not throttle far below KIS
    assert result.requests >= 18 * 5 * 0.5
