"""``api.download``: daily bars from the fake KIS into backtest CSV files."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import pytest

from api import download
from api.kis_broker import KISBroker
from tests.fakes import FakeKISServer
from tests.fakes.harness import fast_fake, make_settings


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    download.configure_parser(parser)
    return parser.parse_args(argv)


def test_download_writes_backtest_csvs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake = fast_fake()
    out = tmp_path / "data"
    with FakeKISServer(fake) as server:
        settings = make_settings(tmp_path / "tokens", server.base_url)
        args = parse(["--symbols", "005930,000660", "--start", "2015-01-01",
                      "--end", "2025-06-13", "--data-dir", str(out)])
        code = download.run(args, broker_factory=lambda: KISBroker(settings, clock=fake.clock))
    assert code == 0
    for symbol in ("005930", "000660"):
        path = out / f"{symbol}.csv"
        assert path.read_text().splitlines()[0] == "date,open,high,low,close,volume"
        frame = pd.read_csv(path)
        assert list(frame.columns) == ["date", "open", "high", "low", "close", "volume"]
        assert frame["date"].iloc[0] == "2023-12-05"
        assert frame["date"].iloc[-1] == "2025-06-13"
        assert frame["date"].is_monotonic_increasing
        assert frame["date"].is_unique
        assert all(str(frame[c].dtype) == "int64" for c in frame.columns[1:])
    assert "005930: 368 new bars" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["--symbols", "5930", "--start", "2024-01-01"],
        ["--symbols", " , ", "--start", "2024-01-01"],
        ["--symbols", "005930", "--start", "2024-02-01", "--end", "2024-01-01"],
    ],
)
def test_bad_input_is_one_line_and_non_zero(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = parse([*argv, "--data-dir", str(tmp_path)])
    code = download.run(args, broker_factory=lambda: pytest.fail("must not connect"))
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_unknown_symbol_and_missing_config(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fast_fake()
    with FakeKISServer(fake) as server:
        settings = make_settings(tmp_path / "tokens", server.base_url)
        args = parse(["--symbols", "999999", "--start", "2024-01-01", "--end", "2024-03-01",
                      "--data-dir", str(tmp_path)])
        code = download.run(args, broker_factory=lambda: KISBroker(settings, clock=fake.clock))
    assert code == 1
    assert "DataError" in capsys.readouterr().err
    for var in ("KIS_APP_KEY", "KIS_APP_SECRET", "KIS_ACCOUNT_NO"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    code = download.run(parse(["--symbols", "005930", "--start", "2024-01-01"]))
    err = capsys.readouterr().err
    assert code == 2
    assert "KIS_APP_KEY" in err
    assert len(err.strip().splitlines()) == 1
