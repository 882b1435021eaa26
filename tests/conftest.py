"""Shared fixtures: the real market data directory and strategy configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.settings import data_root


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Root of the shared real market data (``KIS_TRADER_DATA_DIR`` or ../shared/data)."""
    root = data_root()
    if not (root / "krx").is_dir():
        pytest.fail(f"market data not found at {root}; set KIS_TRADER_DATA_DIR")
    return root


@pytest.fixture(scope="session")
def krx_long(data_dir: Path) -> Path:
    return data_dir / "krx" / "daily_2000_2024"


@pytest.fixture(scope="session")
def krx_recent(data_dir: Path) -> Path:
    return data_dir / "krx" / "daily_2023_2025"
