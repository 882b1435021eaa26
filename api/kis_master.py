"""KIS's published stock master files (종목 마스터): ``kospi_code.mst``, ``kosdaq_code.mst``.

KIS publishes one zip a market, refreshed every business day before the open:
``https://new.real.download.dws.co.kr/common/master/<market>_code.mst.zip``. Each holds one
fixed-width text file in cp949, one product a line. The layout is the one of the official
samples, ``koreainvestment/open-trading-api``: ``stocks_info/kis_kospi_code_mst.py``,
``stocks_info/kis_kosdaq_code_mst.py`` and the C header ``stocks_info/종목마스터정보(코스피).h``
(field names below are the header's)::

    [0:9]    mksc_shrn_iscd     단축코드 (6 digits, padded; ETN codes start with Q)
    [9:21]   stnd_iscd          표준코드 (ISIN)
    [21:-T]  hts_kor_isnm       한글종목명 (variable width)
    [-T:]    part 2, T = 227 (KOSPI) or 221 (KOSDAQ) ASCII characters:
             scrt_grp_cls_code  증권그룹구분코드 at 0..2: ST 주권, EF ETF, EN ETN, MF, RT, ...
             etp_prod_cls_code  ETP 상품구분코드 (KOSPI 22, KOSDAQ 18): 3/4 = ETN
             kospi200_apnt_cls_code (KOSPI 18): KOSPI200 sector, 0 = not in KOSPI200
             KOSDAQ150 여부 (KOSDAQ 35): Y/N
             trht_yn            거래정지 여부 (KOSPI 60, KOSDAQ 55)
             sltr_yn            정리매매 여부 (KOSPI 61, KOSDAQ 56)

The group code ``EN`` for ETNs and "KOSPI200 sector ≠ 0 means a KOSPI200 member" are read
from the header's comments and third-party use, not stated outright by KIS (see
``docs/kis_market_data.md``). Products other than stocks, ETFs and ETNs (ELW, 신주인수권,
수익증권, 해외 ETF …) are skipped.
"""

from __future__ import annotations

import io
import logging
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from utils.symbols import ListingStatus, Market, Symbol

logger = logging.getLogger(__name__)

MASTER_URL = "https://new.real.download.dws.co.kr/common/master/{name}.mst.zip"
"""Where KIS publishes the master zips (``name`` = ``kospi_code`` or ``kosdaq_code``)."""


@dataclass(frozen=True)
class _Layout:
    market: Market
    tail: int
    etp: int
    trht: int
    sltr: int
    index_pos: int
    index_name: str


LAYOUTS = {
    "kospi_code": _Layout(Market.KOSPI, 227, etp=22, trht=60, sltr=61, index_pos=18,
                          index_name="KOSPI200"),
    "kosdaq_code": _Layout(Market.KOSDAQ, 221, etp=18, trht=55, sltr=56, index_pos=35,
                           index_name="KOSDAQ150"),
}
STOCK_GROUPS = {"ST", "MF", "RT", "SC", "IF", "DR", "FS"}
"""Group codes traded (and taxed, ticked) as stocks of their market."""


@dataclass(frozen=True)
class MasterProblem:
    """A line that could not be read: file, 1-based line number, what was wrong."""

    source: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.reason}"


def parse_master(
    text: str, kind: str, source: str = ""
) -> tuple[list[Symbol], list[MasterProblem]]:
    """Symbols of one master file's text (``kind`` ``kospi_code`` or ``kosdaq_code``) and the
    lines skipped as malformed (too short, a bad code, no name). Raises ``ValueError`` for
    an unknown ``kind``."""
    if kind not in LAYOUTS:
        raise ValueError(f"unknown master file {kind!r}: expected one of {', '.join(LAYOUTS)}")
    layout = LAYOUTS[kind]
    symbols: list[Symbol] = []
    problems: list[MasterProblem] = []
    where = source or f"{kind}.mst"
    for n, raw in enumerate(text.splitlines(), 1):
        row = raw.rstrip("\r\n")
        if not row.strip():
            continue
        if len(row) < 21 + layout.tail + 1:
            problems.append(MasterProblem(where, n, f"{len(row)} characters: expected at least "
                                                    f"{21 + layout.tail + 1}"))
            continue
        code = row[0:9].strip()
        name = row[21:-layout.tail].strip()
        tail = row[-layout.tail:]
        if not (len(code) == 6 and code.isalnum()) and not (len(code) == 7 and code[0] == "Q"):
            problems.append(MasterProblem(where, n, f"short code {code!r}: expected 6 characters"))
            continue
        if not name:
            problems.append(MasterProblem(where, n, f"{code}: no name"))
            continue
        group = tail[0:2]
        if group == "EF":
            market = Market.ETF
        elif group == "EN" or (tail[layout.etp] in ("3", "4") and group not in STOCK_GROUPS):
            market = Market.ETN
        elif group in STOCK_GROUPS:
            market = layout.market
        else:
            continue  # ELW, warrants, beneficiary certificates, foreign ETFs: not traded here
        if tail[layout.sltr] == "Y":
            status = ListingStatus.DELISTING
        elif tail[layout.trht] == "Y":
            status = ListingStatus.SUSPENDED
        else:
            status = ListingStatus.LISTED
        flag = tail[layout.index_pos]
        member = flag == "Y" if layout.index_name == "KOSDAQ150" else flag not in ("0", " ")
        index = layout.index_name if member and market is layout.market else ""
        symbols.append(Symbol(code, name, market, status, index))
    return symbols, problems


def read_master_file(path: Path) -> tuple[list[Symbol], list[MasterProblem]]:
    """:func:`parse_master` of a ``.mst`` file or of the ``.mst`` inside a ``.mst.zip``; the
    kind comes from the file name. ``OSError``/``ValueError`` for an unreadable file."""
    name = path.name.split(".")[0]
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            member = next((m for m in archive.namelist() if m.endswith(".mst")), None)
            if member is None:
                raise ValueError(f"{path}: no .mst file inside")
            data = archive.read(member)
    else:
        data = path.read_bytes()
    return parse_master(data.decode("cp949", errors="replace"), name, str(path))


def download_master(name: str, dest: Path, *, timeout_s: float = 60.0) -> Path:
    """Fetch ``<name>.mst.zip`` from :data:`MASTER_URL` into ``dest`` (a folder) and return
    the zip's path. ``httpx.HTTPError`` when the download fails."""
    import httpx

    url = MASTER_URL.format(name=name)
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / f"{name}.mst.zip"
    answer = httpx.get(url, timeout=timeout_s, follow_redirects=True)
    answer.raise_for_status()
    zipfile.ZipFile(io.BytesIO(answer.content)).testzip()
    target.write_bytes(answer.content)
    return target


def merge_master(old: Iterable[Symbol], new: Iterable[Symbol]) -> list[Symbol]:
    """The refreshed table: every product of ``new``; products of ``old`` missing from
    ``new`` are kept as ``delisted`` (history still needs their market for taxes and ticks)."""
    merged = {s.code: s for s in new}
    for s in old:
        if s.code not in merged:
            merged[s.code] = Symbol(s.code, s.name, s.market, ListingStatus.DELISTED, s.index)
    return sorted(merged.values(), key=lambda s: s.code)
