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


def tightest_window_ms(arrivals: list[float], limit_per_s: int) -> float:
    """Shortest time (ms) spanned by ``limit_per_s + 1`` consecutive arrivals (seconds);
    ``inf`` when there are not that many. A strict sliding 1 s window admits such a run
    only if the span is at least 1000 ms."""
    times = sorted(arrivals)
    spans = [times[i + limit_per_s] - times[i] for i in range(len(times) - limit_per_s)]
    return min(spans) * 1000.0 if spans else float("inf")


@dataclass(frozen=True)
class DownloadResult:
    symbols: int
    rows: int
    requests: int
    seconds: float
    limit_per_s: int
    egw00201: int
    errors: int
    files_equal: bool
    messages: tuple[str, ...] = ()
    tightest_window_ms: float = 0.0
    """Shortest span, at the fake, holding ``limit_per_s + 1`` admitted requests: above
    1000 ms means the client never came within reach of the limit; the excess is the
    measured safety margin."""
    mean_held_ms: float = 0.0
    """Mean time a request held its permit (grant to answer), the limiter's cost per
    window."""

    @property
    def per_s(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def fraction(self) -> float:
        return self.per_s / self.limit_per_s


def run_download(*, symbols: int = 20, years: int = 15, limit_per_s: int = 18, workers: int = 4,
                 margin_ms: int | None = None, data_set: str = "daily_2000_2024"
                 ) -> DownloadResult:
    """``download`` of ``symbols`` codes × ``years`` of daily bars against the fake's strict
    sliding 1 s window (real account, ``limit_per_s``) over HTTP; the codes beyond the data
    set's own serve copies of its series. Compares every file with the rows the fake serves."""
    import io
    import os
    from datetime import date, datetime

    from api import download as dl
    from api.kis_broker import KISBroker
    from api.kis_http import DEFAULT_MARGIN_MS, rate_limiter_for, reset_rate_limiters

    from .clock import KST, FakeClock

    fake = FakeKIS(env="real", rate_limit_per_s=limit_per_s, with_default_account=False,
                   clock=FakeClock(datetime(2024, 12, 30, 16, 0, tzinfo=KST)))
    fake.market = type(fake.market)(fake.clock, data_set=data_set)
    base = list(fake.market.stocks.values())
    codes = [s.code for s in base][:symbols]
    n = 0
    while len(codes) < symbols:
        src = base[n % len(base)]
        code = f"9{n:05d}"
        fake.market.add_stock(code, f"{src.name}-{n}", src.daily[-1][4], src.daily)
        codes.append(code)
        n += 1
    app_key = "PSLOAD" + uuid.uuid4().hex[:30]
    secret = "load-secret-" + uuid.uuid4().hex
    fake.add_account(app_key, secret, "50000002-01")
    end = date(2024, 12, 27)
    start = date(end.year - years, 1, 1)
    with tempfile.TemporaryDirectory() as tmp, FakeKISServer(fake) as server:
        os.environ["KIS_TRADER_STATE_DIR"] = str(Path(tmp) / "state")
        reset_rate_limiters()
        settings = make_settings(Path(tmp) / "tokens", server.base_url, app_key=app_key,
                                 app_secret=secret, account_no="50000002-01", env="real",
                                 requests_per_s=limit_per_s, max_read_retries=0)
        limiter = rate_limiter_for(app_key, limit_per_s)
        if margin_ms is not None and margin_ms != DEFAULT_MARGIN_MS:
            from api.kis_http import KISRateLimiter

            limiter = KISRateLimiter(limit_per_s, margin_ms=margin_ms,
                                     path=Path(tmp) / "state" / "margin.sqlite")
        broker = KISBroker(settings, clock=fake.clock, limiter=limiter)
        broker.client.tokens.token()
        data = Path(tmp) / "data"
        downloader = dl.Downloader(broker, data, start, end, minute=False)
        summary = dl.download(codes, downloader, workers=workers, limiter=broker.client.limiter,
                              progress=False, out=io.StringIO(), err=io.StringIO())
        equal = True
        for code in codes:
            want = fake.market.daily(code, start, end)
            if not (data / f"{code}.csv").is_file():
                equal = False
                continue
            lines = (data / f"{code}.csv").read_text(encoding="utf-8").splitlines()[1:]
            got = [tuple([date.fromisoformat(p[0]), *map(int, p[1:])])
                   for p in (line.split(",") for line in lines)]
            equal = equal and got == want
        broker.close()
    used = broker.client.limiter
    return DownloadResult(summary.symbols, summary.rows, summary.requests, summary.seconds,
                          limit_per_s, fake.stats.rate_limited, len(summary.errors), equal,
                          tuple(summary.errors),
                          tightest_window_ms(fake.arrivals.get(app_key, []), limit_per_s),
                          used.held_s * 1000.0 / used.granted if used.granted else 0.0)
