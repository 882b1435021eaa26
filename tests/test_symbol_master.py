"""KIS master files -> the symbol file; ``python main.py symbols`` search and refresh."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

import main
from api.kis_master import merge_master, parse_master, read_master_file
from utils.fees import default_tax_table
from utils.symbols import ListingStatus, Market, Symbol, SymbolTable, read_symbols

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "kis"


def test_the_kospi_master_gives_names_markets_status_and_index():
    symbols, problems = read_master_file(FIXTURES / "kospi_code.mst")
    by_code = {s.code: s for s in symbols}
    assert by_code["005930"] == Symbol("005930", "삼성전자", Market.KOSPI,
                                       ListingStatus.LISTED, "KOSPI200")
    assert by_code["069500"].market is Market.ETF
    assert by_code["Q500001"].market is Market.ETN
    assert by_code["005935"].index == ""  # a preferred share outside KOSPI200
    assert by_code["123450"].status is ListingStatus.SUSPENDED
    assert by_code["123460"].status is ListingStatus.DELISTING
    assert "58F123" not in by_code  # an ELW: not a product this bot trades
    # the cut line is reported with its file and line number; the rest was read
    assert [str(p) for p in problems] == [
        f"{FIXTURES / 'kospi_code.mst'}:9: 47 characters: expected at least 249"]


def test_the_kosdaq_master_uses_its_own_layout(tmp_path: Path):
    archive = tmp_path / "kosdaq_code.mst.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(FIXTURES / "kosdaq_code.mst", "kosdaq_code.mst")
    symbols, problems = read_master_file(archive)  # the zip KIS publishes reads the same
    by_code = {s.code: s for s in symbols}
    assert by_code["247540"] == Symbol("247540", "에코프로비엠", Market.KOSDAQ,
                                       ListingStatus.LISTED, "KOSDAQ150")
    assert by_code["293490"].index == ""
    assert len(problems) == 1
    assert ":3:" in str(problems[0])


def test_a_line_with_a_bad_code_is_skipped_with_a_reason():
    good = (FIXTURES / "kospi_code.mst").read_bytes().decode("cp949").splitlines()[0]
    bad = "00-59    " + good[9:]
    symbols, problems = parse_master(f"{bad}\n{good}\n", "kospi_code", "x.mst")
    assert [s.code for s in symbols] == ["005930"]
    assert str(problems[0]) == "x.mst:1: short code '00-59': expected 6 characters"
    with pytest.raises(ValueError, match="unknown master file"):
        parse_master(good, "nyse_code")


def test_a_product_gone_from_the_master_is_kept_as_delisted():
    old = [Symbol("999990", "상장폐지된회사", Market.KOSDAQ),
           Symbol("005930", "옛이름", Market.KOSPI)]
    new = [Symbol("005930", "삼성전자", Market.KOSPI, index="KOSPI200")]
    merged = {s.code: s for s in merge_master(old, new)}
    assert merged["999990"].status is ListingStatus.DELISTED
    assert merged["999990"].market is Market.KOSDAQ  # history still taxed and ticked right
    assert merged["005930"].name == "삼성전자"
    table = SymbolTable(merged.values())
    assert table.members("kosdaq") == []  # delisted: in no universe
    assert table.members("kospi200") == ["005930"]


def test_an_index_universe_short_of_its_members_says_how_to_refresh(
    caplog: pytest.LogCaptureFixture,
):
    full = SymbolTable([Symbol(f"{100000 + k:06d}", f"종목{k}", Market.KOSPI, index="KOSPI200")
                        for k in range(200)])
    with caplog.at_level("WARNING", logger="utils.symbols"):
        assert len(full.members("kospi200")) == 200
    assert not caplog.records
    short = SymbolTable.load()
    with caplog.at_level("WARNING", logger="utils.symbols"):
        known = short.members("kospi200")
        short.members("KOSPI200")  # once per universe, not per strategy
    assert len(caplog.records) == 1
    assert f"knows {len(known)} of its 200 members" in caplog.text
    assert "symbols --refresh" in caplog.text


def test_search_finds_names_and_codes():
    table = SymbolTable.load()
    assert [s.code for s in table.search("삼성")] == ["005930", "207940"]
    assert table.search("069500")[0].market is Market.ETF
    assert [s.code for s in table.search("sk 하이")] == ["000660"]
    assert table.search("없는종목") == []


def test_the_etf_is_taxed_and_ticked_as_a_fund():
    from datetime import date

    from utils.ticks import tick_size

    table = SymbolTable.load()
    assert table.market("069500") is Market.ETF
    assert default_tax_table().rate(date(2025, 6, 16), table.market("069500")) == 0
    assert default_tax_table().rate(date(2025, 6, 16), table.market("005930")) > 0
    assert tick_size(12_345, market=Market.ETF, on=date(2025, 6, 16)) == 5


def test_symbols_command_searches_and_refreshes(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert main.main(["symbols", "삼성"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["005930", "삼성전자"]
    # columns line up in a terminal: a Hangul syllable takes two columns
    wide = [sum(2 if "\uac00" <= ch <= "\ud7a3" else 1 for ch in line.split("KOSPI")[0])
            for line in lines if "KOSPI" in line]
    assert len(wide) >= 2
    assert len(set(wide)) == 1
    assert main.main(["symbols", "없는종목"]) == 1
    assert "nothing matches '없는종목'" in capsys.readouterr().err

    target = tmp_path / "symbols.csv"
    target.write_text("code,name,market\n999990,사라진회사,KOSDAQ\n", encoding="utf-8")
    assert main.main(["symbols", "--refresh", "--master-dir", str(FIXTURES),
                      "--out", str(target)]) == 0
    captured = capsys.readouterr()
    assert "kospi_code.mst:9" in captured.err  # the malformed line is named, the rest written
    table = read_symbols(target)
    assert table["005930"].index == "KOSPI200"
    assert table["247540"].market is Market.KOSDAQ
    assert table["999990"].status is ListingStatus.DELISTED
    assert main.main(["symbols", "--refresh", "--master-dir", str(tmp_path / "none"),
                      "--out", str(target)]) == 2
