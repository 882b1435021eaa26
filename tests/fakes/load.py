"""Load driver shared by the load test and ``benchmarks/kis_rate_limit.py``: several threads
read quotes through the adapter against the fake's strict per-app-key limiter (over HTTP)."""

from __future__ import annotations

import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from api.kis_http import KISClient, KISRateLimiter
from api.kis_market_api import inquire_price

from .harness import make_settings
from .kis_server import FakeKIS, FakeKISServer


@dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    limit_per_s: int
    egw00201: int
    errors: int

    @property
    def per_s(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def fraction(self) -> float:
        return self.per_s / self.limit_per_s


def run_load(*, limit_per_s: int = 18, threads: int = 4, duration_s: float = 5.0,
             token_dir: Path | None = None) -> LoadResult:
    """Read quotes for ``duration_s`` from ``threads`` threads sharing one app key.

    The fake counts requests per rolling second with a strict limit of ``limit_per_s``;
    the adapter's limiter is set to the same rate. Counts only the timed window (the token
    is fetched before the clock starts)."""
    app_key = "PSLOAD" + uuid.uuid4().hex[:30]
    secret = "load-secret-" + uuid.uuid4().hex
    fake = FakeKIS(env="real", rate_limit_per_s=limit_per_s, with_default_account=False)
    fake.add_account(app_key, secret, "50000001-01")
    errors = [0]
    done = [0]
    lock = threading.Lock()
    with tempfile.TemporaryDirectory() as tmp, FakeKISServer(fake) as server:
        settings = make_settings(token_dir or Path(tmp), server.base_url, app_key=app_key,
                                 app_secret=secret, account_no="50000001-01", env="real",
                                 requests_per_s=limit_per_s, max_read_retries=0)
        client = KISClient(settings, clock=fake.clock, limiter=KISRateLimiter(limit_per_s))
        client.tokens.token()
        stop_at = time.monotonic() + duration_s

        def worker() -> None:
            while time.monotonic() < stop_at:
                try:
                    inquire_price(client, "005930")
                    with lock:
                        done[0] += 1
                except Exception:
                    with lock:
                        errors[0] += 1

        started = time.monotonic()
        pool = [threading.Thread(target=worker) for _ in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        elapsed = time.monotonic() - started
        client.close()
    return LoadResult(done[0], elapsed, limit_per_s, fake.stats.rate_limited, errors[0])
