"""``download``: concurrent symbols, resume with overlap check, bad symbols, universes, minute
history, and one rate budget shared by processes of the same app key."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

import pytest

from api import download as dl
from api.kis_broker import KISBroker
from api.kis_http import reset_rate_limiters
from tests.fakes import FakeKISServer
from tests.fakes.clock import FakeClock
from tests.fakes.harness import fast_fake, make_settings
from tests.fakes.kis_server import (
    DEFAULT_ACCOUNT_NO,
    DEFAULT_APP_KEY,
    DEFAULT_APP_SECRET,
    FakeKIS,
)
from utils.clock import KST

REPO = Path(__file__).resolve().parent.parent
AFTER_CLOSE = datetime(2025, 6, 16, 16, 0, tzinfo=KST)


@pytest.fixture
def real_fake() -> Iterator[tuple[FakeKIS, FakeKISServer]]:
    fake = fast_fake(env="real", clock=FakeClock(AFTER_CLOSE))
    with FakeKISServer(fake) as server:
        yield fake, server


def _broker(fake: FakeKIS, server: FakeKISServer, tmp_path: Path, **kw: object) -> KISBroker:
    reset_rate_limiters()
    settings = make_settings(tmp_path / "tokens", server.base_url, env="real",
                             max_read_retries=0, **kw)
    return KISBroker(settings, clock=fake.clock, sleep=lambda _s: None)


def _args(**kw: object) -> argparse.Namespace:
    values: dict[str, object] = {"symbols": None, "universe": None, "start": date(2024, 1, 1),
                                 "end": date(2025, 6, 13), "timeframe": "day", "budget": None,
                                 "workers": 4, "no_progress": True}
    values.update(kw)
    return argparse.Namespace(**values)


def _rows(path: Path) -> list[tuple[object, ...]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "date,open,high,low,close,volume"
    return [tuple([p[0], *map(int, p[1:])]) for p in (line.split(",") for line in lines[1:])]


def _served(fake: FakeKIS, code: str, start: date, end: date) -> list[tuple[object, ...]]:
    return [(d.isoformat(), o, h, lo, c, v) for d, o, h, lo, c, v in
            fake.market.daily(code, start, end)]


def test_several_symbols_download_together_and_equal_the_source(
        real_fake: tuple[FakeKIS, FakeKISServer], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]):
    fake, server = real_fake
    codes = ["005930", "000660", "035420", "035720", "105560"]
    data = tmp_path / "data"
    code = dl.run(_args(symbols=",".join(codes), data_dir=data),
                  lambda: _broker(fake, server, tmp_path))
    assert code == 0
    for c in codes:
        assert _rows(data / f"{c}.csv") == _served(fake, c, date(2024, 1, 1), date(2025, 6, 13))
    out = capsys.readouterr().out
    rows = sum(len(_served(fake, c, date(2024, 1, 1), date(2025, 6, 13))) for c in codes)
    assert f"downloaded 5 symbols, {rows} rows" in out
    assert "0 errors" in out
    assert "requests/s" in out


def test_a_second_run_fetches_only_the_missing_days(
        real_fake: tuple[FakeKIS, FakeKISServer], tmp_path: Path):
    fake, server = real_fake
    data = tmp_path / "data"
    assert dl.run(_args(symbols="005930", end=date(2025, 3, 31), data_dir=data),
                  lambda: _broker(fake, server, tmp_path)) == 0
    first = fake.stats.by_path.get("/uapi/domestic-stock/v1/quotations/"
                                   "inquire-daily-itemchartprice", 0)
    assert dl.run(_args(symbols="005930", data_dir=data),
                  lambda: _broker(fake, server, tmp_path)) == 0
    second = fake.stats.by_path["/uapi/domestic-stock/v1/quotations/"
                                "inquire-daily-itemchartprice"] - first
    assert _rows(data / "005930.csv") == _served(fake, "005930", date(2024, 1, 1),
                                                 date(2025, 6, 13))
    assert second < first  # ~2.5 months fetched again, not the whole range
    # an earlier --start fetches the missing head too
    assert dl.run(_args(symbols="005930", start=date(2023, 6, 1), data_dir=data),
                  lambda: _broker(fake, server, tmp_path)) == 0
    assert _rows(data / "005930.csv") == _served(fake, "005930", date(2023, 6, 1),
                                                 date(2025, 6, 13))


def test_a_changed_overlap_fetches_the_symbol_again(
        real_fake: tuple[FakeKIS, FakeKISServer], tmp_path: Path):
    fake, server = real_fake
    data = tmp_path / "data"
    assert dl.run(_args(symbols="000660", end=date(2025, 3, 31), data_dir=data),
                  lambda: _broker(fake, server, tmp_path)) == 0
    path = data / "000660.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    day, *_ = lines[-2].split(",")
    lines[-2] = f"{day},1,1,1,1,1"  # as if KIS had adjusted its prices since
    lines[5] = lines[5].rsplit(",", 1)[0] + ",7"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert dl.run(_args(symbols="000660", data_dir=data),
                  lambda: _broker(fake, server, tmp_path)) == 0
    assert _rows(path) == _served(fake, "000660", date(2024, 1, 1), date(2025, 6, 13))


def test_unknown_and_delisted_symbols_are_reported_and_the_rest_goes_on(
        real_fake: tuple[FakeKIS, FakeKISServer], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]):
    fake, server = real_fake
    fake.market.add_stock("900001", "상장폐지된회사", 5000, [])  # known code, no bars at all
    data = tmp_path / "data"
    code = dl.run(_args(symbols="999999,005930,900001", data_dir=data),
                  lambda: _broker(fake, server, tmp_path))
    assert code == 1
    err = capsys.readouterr().err
    assert "download: 999999: DataError: unknown stock code '999999'" in err
    assert "download: 900001: DataError: no bars between 2024-01-01 and 2025-06-13" in err
    assert "Traceback" not in err
    assert (data / "005930.csv").is_file()
    assert not (data / "999999.csv").exists()


def test_a_universe_file_or_name_chooses_the_symbols(
        real_fake: tuple[FakeKIS, FakeKISServer], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]):
    fake, server = real_fake
    listing = tmp_path / "mine.txt"
    listing.write_text("# my picks\n005930\n000660\n", encoding="utf-8")
    assert dl.run(_args(universe=str(listing), data_dir=tmp_path / "a"),
                  lambda: _broker(fake, server, tmp_path)) == 0
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["000660.csv", "005930.csv"]
    assert dl.resolve_universe("kospi200") == sorted(
        ["000270", "000660", "005380", "005490", "005930", "035420", "035720", "105560",
         "207940", "373220"])
    bad = tmp_path / "bad.txt"
    bad.write_text("005930\n59300\n", encoding="utf-8")
    capsys.readouterr()
    assert dl.run(_args(universe=str(bad)), lambda: _broker(fake, server, tmp_path)) == 2
    assert f"{bad}:2: code '59300'" in capsys.readouterr().err
    assert dl.run(_args(universe="nasdaq100"), lambda: _broker(fake, server, tmp_path)) == 2
    assert "expected a file or one of" in capsys.readouterr().err


def test_minute_history_pages_across_days(tmp_path: Path):
    fake = fast_fake(env="real", clock=FakeClock(datetime(2025, 6, 16, 11, 0, tzinfo=KST)))
    with FakeKISServer(fake) as server:
        _minute_history_pages_across_days(fake, server, tmp_path)


def _minute_history_pages_across_days(fake: FakeKIS, server: FakeKISServer, tmp_path: Path):
    data = tmp_path / "data"
    assert dl.run(_args(symbols="005930", start=date(2025, 6, 12), end=date(2025, 6, 16),
                        timeframe="minute", data_dir=data),
                  lambda: _broker(fake, server, tmp_path)) == 0
    rows = _rows(data / "minute" / "005930.csv")
    by_day: dict[str, int] = {}
    for r in rows:
        by_day[str(r[0])[:10]] = by_day.get(str(r[0])[:10], 0) + 1
    # two past days of 390 bars (4 pages of 120 each), the weekend skipped, today up to now
    assert by_day == {"2025-06-12": 390, "2025-06-13": 390, "2025-06-16": 121}
    expected = []
    for day in (date(2025, 6, 12), date(2025, 6, 13), date(2025, 6, 16)):
        for t, o, h, lo, c, v in fake.market.minute_bars_on("005930", day):
            expected.append((t.strftime("%Y-%m-%d %H:%M:%S"), o, h, lo, c, v))
    assert rows == expected
    assert [r[0] for r in rows] == sorted(r[0] for r in rows)
    frame = dl.read_bars(data / "minute" / "005930.csv", minute=True)
    # naive Asia/Seoul in the file
    assert frame.index[0] == datetime(2025, 6, 12, 9, 0, tzinfo=KST).replace(tzinfo=None)
    # resumed later in the day: today's partial day is completed, nothing doubled
    fake.advance(5 * 3600)
    assert dl.run(_args(symbols="005930", start=date(2025, 6, 12), end=date(2025, 6, 16),
                        timeframe="minute", data_dir=data),
                  lambda: _broker(fake, server, tmp_path)) == 0
    rows = _rows(data / "minute" / "005930.csv")
    assert len(rows) == 3 * 390
    assert len({r[0] for r in rows}) == len(rows)


def test_past_minute_bars_on_a_virtual_account_say_they_need_a_real_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    fake = fast_fake(clock=FakeClock(datetime(2025, 6, 16, 11, 0, tzinfo=KST)))
    with FakeKISServer(fake) as server:
        def factory() -> KISBroker:
            reset_rate_limiters()
            return KISBroker(make_settings(tmp_path / "t", server.base_url),
                             clock=fake.clock, sleep=lambda _s: None)

        assert dl.run(_args(symbols="005930", start=date(2025, 6, 12), end=date(2025, 6, 16),
                            timeframe="minute", data_dir=tmp_path / "d"), factory) == 0
    assert "need a real account" in capsys.readouterr().err
    assert len(_rows(tmp_path / "d" / "minute" / "005930.csv")) == 121  # today's only


def test_two_processes_of_one_app_key_share_the_budget(tmp_path: Path):
    """Two ``download`` processes at once against a strict 4/s window: the shared limiter
    keeps their sum under it (any EGW00201 would fail a symbol: no retries)."""
    fake = FakeKIS(rate_limit_per_s=4, clock=FakeClock(datetime.now(KST)))
    with FakeKISServer(fake) as server:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KIS_", "DATABASE"))}
        env.update({
            "KIS_APP_KEY": DEFAULT_APP_KEY, "KIS_APP_SECRET": DEFAULT_APP_SECRET,
            "KIS_ACCOUNT_NO": DEFAULT_ACCOUNT_NO, "KIS_ENV": "virtual",
            "KIS_BASE_URL": server.base_url, "KIS_TOKEN_DIR": str(tmp_path / "tokens"),
            "KIS_TRADER_STATE_DIR": str(tmp_path / "state"),
        })
        # one token first, so that the two processes read it from the cache
        with KISBroker(make_settings(tmp_path / "tokens", server.base_url, requests_per_s=1),
                       clock=fake.clock) as warm:
            warm.client.tokens.token()
        procs = [subprocess.Popen(
            [sys.executable, str(REPO / "main.py"), "download", "--symbols", symbols,
             "--start", "2024-06-01", "--end", "2025-06-13", "--data-dir",
             str(tmp_path / "data"), "--budget", "1", "--no-progress"],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for symbols in ("005930,000660", "035420,035720")]
        results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    assert fake.stats.rate_limited == 0
    assert all(len(_rows(tmp_path / "data" / f"{c}.csv")) > 200
               for c in ("005930", "000660", "035420", "035720"))


def test_bad_budget_and_dates_are_one_line(capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("KIS_APP_KEY", DEFAULT_APP_KEY)
    monkeypatch.setenv("KIS_APP_SECRET", DEFAULT_APP_SECRET)
    monkeypatch.setenv("KIS_ACCOUNT_NO", DEFAULT_ACCOUNT_NO)
    monkeypatch.setenv("KIS_ENV", "virtual")
    monkeypatch.setenv("KIS_TOKEN_DIR", str(tmp_path))
    assert dl.run(_args(symbols="005930", budget=5)) == 2
    assert "--budget 5: expected 1..1 requests/s on the virtual account" in (
        capsys.readouterr().err)
    assert dl.run(_args(symbols="005930", start=date(2025, 1, 2), end=date(2025, 1, 1))) == 2
    assert "is after --end" in capsys.readouterr().err


def test_a_second_run_says_up_to_date_and_adds_nothing(tmp_path: Path) -> None:
    import io
    from datetime import date, datetime

    from api import download as dl
    from tests.fakes.clock import FakeClock
    from tests.fakes.harness import fast_fake, mock_broker
    from utils.clock import KST

    fake = fast_fake(clock=FakeClock(datetime(2025, 6, 16, 16, 0, tzinfo=KST)))
    broker = mock_broker(fake, tmp_path / "tokens")
    down = dl.Downloader(broker, tmp_path / "data", date(2025, 1, 2), date(2025, 6, 13),
                         minute=False)
    first, second = io.StringIO(), io.StringIO()
    dl.download(["005930"], down, workers=1, progress=False, out=first, err=io.StringIO())
    dl.download(["005930"], down, workers=1, progress=False, out=second, err=io.StringIO())
    stored = len((tmp_path / "data" / "005930.csv").read_text(encoding="utf-8").splitlines()) - 1
    assert stored > 100
    assert first.getvalue().startswith(f"005930: {stored} new bars -> ")
    assert second.getvalue().startswith("005930: up to date -> ")
