"""The symbol file: what ships, how a user file extends it, how bad input is reported."""

from __future__ import annotations

import logging
import re
import tomllib
from pathlib import Path

import pytest

import main
from framework.errors import ConfigError
from utils import symbols as symbols_module
from utils.symbols import (
    SHIPPED_PATH,
    USER_FILE_ENV,
    ListingStatus,
    Market,
    Symbol,
    SymbolTable,
    configure_symbols,
    default_symbols,
    read_symbols,
    write_symbols,
)

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def process_table(monkeypatch: pytest.MonkeyPatch):
    """Leave the process-wide table as it was found."""
    monkeypatch.delenv(USER_FILE_ENV, raising=False)
    before = symbols_module._configured
    yield
    symbols_module._configured = before


def test_every_krx_data_file_has_an_entry(data_dir: Path):
    shipped = read_symbols(SHIPPED_PATH)
    codes = {
        m.group(1)
        for path in (data_dir / "krx").rglob("*.csv")
        if (m := re.match(r"^([0-9A-Z]{6})_", path.name))
    }
    assert len(codes) >= 11
    assert codes <= set(shipped), f"missing: {sorted(codes - set(shipped))}"
    assert shipped["069500"].market is Market.ETF
    assert shipped["005930"] == Symbol("005930", "삼성전자", Market.KOSPI,
                                       ListingStatus.LISTED, "KOSPI200")


def test_the_symbol_and_tax_files_are_packaged():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert "*.csv" in pyproject["tool"]["setuptools"]["package-data"]["*"]
    assert (REPO / "config" / "__init__.py").is_file()
    assert SHIPPED_PATH.parent == REPO / "config"


def test_a_user_file_adds_and_corrects_entries(tmp_path: Path):
    user = tmp_path / "mine.csv"
    user.write_text(
        "code,name,market\n# my additions\n247540,에코프로비엠,KOSDAQ\n035720,카카오,kosdaq\n",
        encoding="utf-8",
    )
    table = SymbolTable.load(user=user)
    assert table.market("247540") is Market.KOSDAQ
    assert table.market("035720") is Market.KOSDAQ  # the user file wins
    assert table.market("005930") is Market.KOSPI
    assert table.name("247540") == "에코프로비엠"


def test_the_environment_and_the_settings_name_user_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, process_table: None
):
    from_settings = tmp_path / "settings.csv"
    from_settings.write_text("code,name,market\n091990,셀트리온헬스케어,KOSDAQ\n", "utf-8")
    from_env = tmp_path / "env.csv"
    from_env.write_text("code,name,market\n091990,셀트리온헬스케어,KONEX\n", "utf-8")
    assert configure_symbols(from_settings).market("091990") is Market.KOSDAQ
    assert default_symbols().market("091990") is Market.KOSDAQ
    monkeypatch.setenv(USER_FILE_ENV, str(from_env))
    assert configure_symbols(from_settings).market("091990") is Market.KONEX


def test_main_reads_the_settings_symbol_file_and_reports_a_bad_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], process_table: None
):
    bad = tmp_path / "bad.csv"
    bad.write_text("code,name,market\n005930,삼성전자,NASDAQ\n", encoding="utf-8")
    settings = tmp_path / "settings.yaml"
    settings.write_text(f"symbols_file: {bad}\n", encoding="utf-8")
    assert main.main(["--settings", str(settings), "strategies"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    expected = "market 'NASDAQ': expected one of KOSPI, KOSDAQ, KONEX, ETF, ETN"
    assert err == [f"error: {bad}:2: {expected}"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty; expected the header code,name,market"),
        ("code,market\n", ":1: header 'code,market': expected code,name,market"),
        ("code,name,market\n5930,삼성전자,KOSPI\n", ":2: code '5930': expected a 6-character"),
        ("code,name,market\n005930,,KOSPI\n", ":2: name: expected the stock's name"),
        ("code,name,market\n005930,삼성전자\n", ":2: 2 fields: expected 3"),
        ("code,name,market\n005930,a,KOSPI\n\n005930,b,KOSPI\n", ":4: code 005930 is listed twice"),
    ],
)
def test_bad_input_names_the_file_line_and_field(tmp_path: Path, content: str, message: str):
    path = tmp_path / "symbols.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        read_symbols(path)
    assert str(info.value).startswith(str(path))
    assert message in str(info.value)


def test_a_missing_user_file_is_an_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="cannot read"):
        SymbolTable.load(user=tmp_path / "nope.csv")


def test_written_files_read_back_the_same(tmp_path: Path):
    rows = [
        Symbol("Q500001", "신한 인버스 WTI원유 선물 ETN(H)", Market.ETN),
        Symbol("000660", "SK하이닉스", Market.KOSPI),
        Symbol("123456", 'name, with "comma"', Market.KONEX),
    ]
    path = tmp_path / "out" / "symbols.csv"
    write_symbols(path, rows)
    back = read_symbols(path)
    assert list(back) == ["000660", "123456", "Q500001"]  # sorted by code
    assert set(back.values()) == set(rows)
    assert [p.name for p in path.parent.iterdir()] == ["symbols.csv"]  # no temp file left


def test_an_unknown_code_is_kospi_with_one_warning(caplog: pytest.LogCaptureFixture):
    table = SymbolTable([Symbol("005930", "삼성전자", Market.KOSPI)])
    with caplog.at_level(logging.WARNING, logger="utils.symbols"):
        markets = [table.market("999990") for _ in range(5)]
    assert markets == [Market.KOSPI] * 5
    assert len(caplog.records) == 1
    assert "999990" in caplog.records[0].getMessage()
    table.update([Symbol("999990", "새 종목", Market.KOSDAQ)])
    assert table.market("999990") is Market.KOSDAQ
