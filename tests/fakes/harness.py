"""Helpers wiring :class:`api.kis_broker.KISBroker` to the fake KIS (over HTTP or in-process)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from api.kis_broker import KISBroker
from api.kis_settings import KISSettings

from .kis_server import (
    DEFAULT_ACCOUNT_NO,
    DEFAULT_APP_KEY,
    DEFAULT_APP_SECRET,
    FakeKIS,
    FakeKISServer,
)

FAST_RATE = 1000
"""Requests/s used by functional tests on both sides (the load test uses the KIS 18/s)."""


def make_settings(token_dir: Path, base_url: str = "http://127.0.0.1:9", **overrides: Any
                  ) -> KISSettings:
    """Settings for the default fake account: fast limiter, no retry waits."""
    values: dict[str, Any] = {
        "app_key": DEFAULT_APP_KEY,
        "app_secret": DEFAULT_APP_SECRET,
        "account_no": DEFAULT_ACCOUNT_NO,
        "env": "virtual",
        "base_url": base_url,
        "token_dir": token_dir,
        "requests_per_s": FAST_RATE,
        "retry_wait_s": 0.0,
        "timeout_s": 5.0,
    }
    values.update(overrides)
    return KISSettings(**values)


def fast_fake(**kwargs: Any) -> FakeKIS:
    """A virtual fake with a rate limit high enough not to matter."""
    kwargs.setdefault("rate_limit_per_s", FAST_RATE)
    return FakeKIS(**kwargs)


@contextmanager
def http_broker(fake: FakeKIS, token_dir: Path, **overrides: Any
                ) -> Iterator[tuple[KISBroker, FakeKISServer]]:
    """A broker talking to ``fake`` over real HTTP on 127.0.0.1, sharing its clock."""
    with FakeKISServer(fake) as server:
        broker = KISBroker(make_settings(token_dir, server.base_url, **overrides),
                           clock=fake.clock, sleep=lambda _s: None)
        try:
            yield broker, server
        finally:
            broker.close()


def mock_broker(fake: FakeKIS, token_dir: Path, **overrides: Any) -> KISBroker:
    """A broker talking to ``fake`` in-process through ``httpx.MockTransport``."""
    return KISBroker(make_settings(token_dir, **overrides), transport=fake.transport(),
                     clock=fake.clock, sleep=lambda _s: None)
