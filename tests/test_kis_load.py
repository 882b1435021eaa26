"""Bounded load test: threads reading through the adapter never trip the fake's limiter.

No figure of speed is asserted here (the suite must pass on a busy machine): the
requests/s achieved are printed by ``benchmarks/kis_rate_limit.py``."""

from __future__ import annotations

import pytest

from tests.fakes.load import run_load


def test_threads_sustain_the_limit_without_egw00201() -> None:
    result = run_load(limit_per_s=18, threads=4, duration_s=5.0)
    assert result.egw00201 == 0
    assert result.errors == 0
    assert result.requests > 0  # it ran; the rate achieved is benchmarks/kis_rate_limit.py's


def test_a_download_keeps_every_second_under_the_limit_as_the_fake_saw_it() -> None:
    from tests.fakes.load import run_download, tightest_window_ms

    assert tightest_window_ms([0.0, 0.5, 0.999], 2) == pytest.approx(999.0)
    assert tightest_window_ms([0.0, 0.5], 2) == float("inf")
    result = run_download(symbols=4, years=4, limit_per_s=18, workers=4)
    assert result.egw00201 == 0
    assert result.errors == 0
    assert result.files_equal
    assert result.requests > 2 * 18  # enough requests for the window to fill
    assert result.tightest_window_ms >= 1000.0  # 19 arrivals never fell within one second
    assert result.mean_held_ms > 0.0
