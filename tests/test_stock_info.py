"""KIS's stock-info query (search-stock-info, CTPF1002R) fills and refreshes single symbols:
name, market (ETF too), listing status; unknown codes and the virtual account are one line."""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path

import pytest

from api import symbols_cli
from api.kis_broker import KISBroker
from api.kis_stock_info import stock_info
from framework.errors import ConfigError, DataError
from tests.fakes import FakeKISServer
from tests.fakes.clock import FakeClock
from tests.fakes.harness import fast_fake, mock_broker
from tests.fakes.kis_server import DEFAULT_ACCOUNT_NO, DEFAULT_APP_KEY, DEFAULT_APP_SECRET
from utils.clock import KST
from utils.symbols import ListingStatus, Market, Symbol, read_symbols, write_symbols

NOW = datetime(2025, 6, 16, 8, 0, tzinfo=KST)


def _fake(env: str = "real", now: datetime = NOW):  # type: ignore[no-untyped-def]
    fake = fast_fake(env=env, clock=FakeClock(now))
    fake.product_info = {
        "069500": {"prdt_abrv_name": "KODEX 200", "scty_grp_id_cd": "EF"},
        "900001": {"prdt_abrv_name": "옛날회사", "lstg_abol_dt": "20240102"},
        "900002": {"prdt_abrv_name": "코스닥회사", "mket_id_cd": "KSQ", "tr_stop_yn": "Y"},
    }
    return fake


@pytest.fixture
def real(tmp_path: Path) -> KISBroker:
    return mock_broker(_fake(), tmp_path, env="real")


def test_a_listed_stock_an_etf_a_delisted_and_a_suspended_one(real: KISBroker):
    samsung = stock_info(real.client, "005930")
    assert (samsung.code, samsung.name, samsung.market, samsung.status) == (
        "005930", "삼성전자", Market.KOSPI, ListingStatus.LISTED)
    etf = stock_info(real.client, "069500")
    assert (etf.name, etf.market, etf.market.is_fund) == ("KODEX 200", Market.ETF, True)
    gone = stock_info(real.client, "900001")
    assert gone.status is ListingStatus.DELISTED
    halted = stock_info(real.client, "900002")
    assert (halted.market, halted.status) == (Market.KOSDAQ, ListingStatus.SUSPENDED)


def test_an_unknown_code_is_a_data_error_and_a_bad_code_a_value_error(real: KISBroker):
    with pytest.raises(DataError, match="123450: KIS's stock-info query knows no such"):
        stock_info(real.client, "123450")
    with pytest.raises(ValueError, match="12345"):
        stock_info(real.client, "12345")


def test_the_virtual_account_says_it_is_real_only(tmp_path: Path):
    broker = mock_broker(_fake("virtual"), tmp_path)
    with pytest.raises(ConfigError, match=r"stock-info query .*real-account KIS service"):
        stock_info(broker.client, "005930")


def _cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: str, codes: str,
         out: Path) -> int:
    fake = _fake(env, datetime.now(KST))  # the CLI runs on the wall clock
    with FakeKISServer(fake) as server:
        for key, value in {"KIS_APP_KEY": DEFAULT_APP_KEY, "KIS_APP_SECRET": DEFAULT_APP_SECRET,
                           "KIS_ACCOUNT_NO": DEFAULT_ACCOUNT_NO, "KIS_ENV": env,
                           "KIS_BASE_URL": server.base_url,
                           "KIS_TOKEN_DIR": str(tmp_path / "tokens")}.items():
            monkeypatch.setenv(key, value)
        args = argparse.Namespace(info=codes, out=out, refresh=False, query=None, limit=50,
                                  master_dir=None)
        return symbols_cli.run(args)


def test_symbols_info_adds_and_marks_symbols_in_the_file_and_goes_on_after_an_unknown(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    out = tmp_path / "symbols.csv"
    write_symbols(out, [Symbol("900001", "옛날회사", Market.KOSPI),
                        Symbol("000660", "SK하이닉스", Market.KOSPI)])
    status = _cli(tmp_path, monkeypatch, "real", "900001,123450,069500", out)
    captured = capsys.readouterr()
    assert status == symbols_cli.EXIT_NOT_FOUND
    assert captured.err.strip().splitlines() == [
        "symbols: 123450: KIS's stock-info query knows no such product (search-stock-info "
        "answered without a name)"]
    table = read_symbols(out)
    assert table["900001"].status is ListingStatus.DELISTED  # marked, not dropped
    assert table["069500"].market is Market.ETF               # added
    assert table["000660"].name == "SK하이닉스"                 # untouched
    assert "123450" not in table
    assert "2 symbols updated, 3 in the file" in captured.out


def test_symbols_info_on_the_virtual_account_is_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    out = tmp_path / "symbols.csv"
    assert _cli(tmp_path, monkeypatch, "virtual", "005930", out) == symbols_cli.EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "real-account service" in err[0]
    assert "symbols --refresh" in err[0]
    assert not out.exists()
