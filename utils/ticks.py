"""KRX tick size (호가가격단위) and price rounding.

Table for KOSPI/KOSDAQ/KONEX stocks since 2023-01-25 (KRX reform that unified both markets):

=====================  =======
price (KRW)            tick
=====================  =======
< 2,000                1
2,000 – < 5,000        5
5,000 – < 20,000       10
20,000 – < 50,000      50
50,000 – < 200,000     100
200,000 – < 500,000    500
≥ 500,000              1,000
=====================  =======

Worked example: 72,345 KRW lies in the 100-won band, so ``round_to_tick(72_345, "down")``
is 72,300 and ``round_to_tick(72_345, "up")`` is 72,400. Rounding is idempotent: a price that
is already on the grid is returned unchanged. ETFs/ETNs (5-won ticks) are not covered.
"""

from __future__ import annotations

import math
from typing import Literal

_BANDS: tuple[tuple[int, int], ...] = (
    (2_000, 1),
    (5_000, 5),
    (20_000, 10),
    (50_000, 50),
    (200_000, 100),
    (500_000, 500),
)
_TOP_TICK = 1_000


def tick_size(price: float) -> int:
    """Tick in KRW for a price in KRW. ``ValueError`` for a price that is not positive."""
    if not price > 0:
        raise ValueError(f"price must be positive, got {price!r}")
    for upper, tick in _BANDS:
        if price < upper:
            return tick
    return _TOP_TICK


def round_to_tick(price: float, direction: Literal["down", "up", "nearest"] = "nearest") -> int:
    """Round ``price`` (KRW) onto the KRX tick grid.

    ``down`` never rounds up (use for buy limits you do not want to exceed), ``up`` never
    rounds down; ``nearest`` rounds half up. The tick is taken at the result's band, so a
    price just under a band edge that rounds up across it stays on a valid tick.
    """
    if not price > 0 or not math.isfinite(price):
        raise ValueError(f"price must be a positive finite number, got {price!r}")
    tick = tick_size(price)
    if direction == "down":
        result = math.floor(price / tick + 1e-9) * tick
    elif direction == "up":
        result = math.ceil(price / tick - 1e-9) * tick
    elif direction == "nearest":
        result = math.floor(price / tick + 0.5) * tick
    else:
        raise ValueError(f"direction must be 'down', 'up' or 'nearest', got {direction!r}")
    result = max(int(result), 1)
    # crossing into a coarser band (e.g. 1,999.6 -> 2,000) stays valid only if on the new grid
    new_tick = tick_size(result)
    if result % new_tick:
        result = (result // new_tick + (direction != "down")) * new_tick
    return int(result)


def is_valid_tick(price: int) -> bool:
    """True if ``price`` (KRW) is a positive multiple of its band's tick."""
    return price > 0 and price % tick_size(price) == 0


def add_ticks(price: int, ticks: int) -> int:
    """Move ``price`` by ``ticks`` ticks (negative = down), stepping across bands."""
    p = round_to_tick(price, "nearest")
    step = 1 if ticks > 0 else -1
    for _ in range(abs(ticks)):
        if step > 0:
            p += tick_size(p)
        else:
            below = p - 1
            if below <= 0:
                break
            p -= tick_size(below)
    return p
