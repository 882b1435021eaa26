"""Buys every code of its screened universe while flat; sells after ``hold_bars`` bars."""

from __future__ import annotations

from tests.universe_picks import HoldBars


class Rotator(HoldBars):
    """The universe comes from ``universe:`` as a screen in ``config.yaml``."""
