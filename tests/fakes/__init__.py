"""Test doubles of kis-trader: a stateful fake KIS REST API and a controllable clock.

>>> fake = FakeKIS()                         # virtual env, default account, real price data
>>> with FakeKISServer(fake) as server:      # same app over HTTP on 127.0.0.1
...     ...                                  # point KIS_BASE_URL at server.base_url
"""

from .account import FakeAccount, FakeOrder
from .clock import FakeClock
from .kis_server import (
    DEFAULT_ACCOUNT_NO,
    DEFAULT_APP_KEY,
    DEFAULT_APP_SECRET,
    FAULT_KINDS,
    RANDOM_FAULT_KINDS,
    FakeKIS,
    FakeKISControl,
    FakeKISServer,
    FakeStats,
    Fault,
)
from .market import FakeMarket

__all__ = [
    "DEFAULT_ACCOUNT_NO",
    "DEFAULT_APP_KEY",
    "DEFAULT_APP_SECRET",
    "FAULT_KINDS",
    "RANDOM_FAULT_KINDS",
    "FakeAccount",
    "FakeClock",
    "FakeKIS",
    "FakeKISControl",
    "FakeKISServer",
    "FakeMarket",
    "FakeOrder",
    "FakeStats",
    "Fault",
]
