"""Bounded load test: threads reading through the adapter never trip the fake's limiter.

No figure of speed is asserted here (the suite must pass on a busy machine): the
requests/s achieved are printed by ``benchmarks/kis_rate_limit.py``."""

from __future__ import annotations

from tests.fakes.load import run_load


def test_threads_sustain_the_limit_without_egw00201() -> None:
    result = run_load(limit_per_s=18, threads=4, duration_s=5.0)
    assert result.egw00201 == 0
    assert result.errors == 0
    assert result.requests > 0  # it ran; the rate achieved is benchmarks/kis_rate_limit.py's
