"""Which market a stock trades on, from one symbol file (``code,name,market``, CSV).

The market decides the transaction tax (:mod:`utils.fees`) and the tick table
(:mod:`utils.ticks`). The shipped file ``config/symbols.csv`` covers every stock of the bundled
market data; a user file (``KIS_TRADER_SYMBOLS_FILE``, or ``symbols_file`` in
``config/settings.yaml``) is read over it, row by row, so a user adds a stock or corrects one
without editing the shipped file. The same format is written by :func:`write_symbols`, so a
refresh from KIS can replace a file in place.

File format (UTF-8, header required, ``#`` starts a comment line)::

    code,name,market,status,index
    005930,삼성전자,KOSPI,listed,KOSPI200
    069500,KODEX 200,ETF,listed,

``code`` is the 6-character KRX short code (7 for an ETN such as ``Q500001``); ``market`` is one
of ``KOSPI``, ``KOSDAQ``, ``KONEX``, ``ETF``, ``ETN``. The last two columns are optional (a
``code,name,market`` file is read as before): ``status`` is one of :class:`ListingStatus`
(``listed`` when absent), ``index`` the index a stock belongs to (``KOSPI200``,
``KOSDAQ150`` or empty). A stock found in no file is treated as KOSPI, with one warning per
code. ``python main.py symbols --refresh`` rewrites the file from KIS's master files
(:mod:`api.kis_master`).

A file holds one market per code, the current one: a stock that moved (Kakao from KOSDAQ to
KOSPI in 2017, NAVER in 2008) is priced by its current market's rules over its whole history.
Taxes are the same for KOSPI and KOSDAQ stocks in every period; only the pre-2023 tick
tables above 50,000 KRW differ.
"""

from __future__ import annotations

import csv
import functools
import logging
import os
import re
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from framework.errors import ConfigError

logger = logging.getLogger(__name__)

SHIPPED_PATH = Path(__file__).resolve().parent.parent / "config" / "symbols.csv"
INDEX_SIZES = {"KOSPI200": 200, "KOSDAQ150": 150}
"""Members of each index a universe can name (``kospi200``, ``kosdaq150``)."""
"""The symbol file shipped with the package."""

USER_FILE_ENV = "KIS_TRADER_SYMBOLS_FILE"
"""Environment variable naming a user symbol file read over the shipped one."""

HEADER = ("code", "name", "market", "status", "index")
"""Columns written; a file may stop after ``market`` (then status ``listed``, no index)."""
MIN_HEADER = HEADER[:3]
_CODE_RE = re.compile(r"^(?:[0-9A-Z]{6}|Q[0-9A-Z]{6})$")


class Market(StrEnum):
    """Where a listed product trades, as far as taxes and ticks differ."""

    KOSPI = "KOSPI"
    KOSDAQ = "KOSDAQ"
    KONEX = "KONEX"
    ETF = "ETF"
    ETN = "ETN"

    @property
    def is_fund(self) -> bool:
        """ETF or ETN: no transaction tax, fund tick table."""
        return self in (Market.ETF, Market.ETN)


DEFAULT_MARKET = Market.KOSPI
"""Market assumed for a code that no symbol file lists."""


class ListingStatus(StrEnum):
    """Whether a product can be traded: ``listed``; ``suspended`` (거래정지); ``delisting``
    (정리매매, the last days before delisting); ``delisted`` (no longer in KIS's master)."""

    LISTED = "listed"
    SUSPENDED = "suspended"
    DELISTING = "delisting"
    DELISTED = "delisted"

    @property
    def tradable(self) -> bool:
        return self in (ListingStatus.LISTED, ListingStatus.DELISTING)


@dataclass(frozen=True, slots=True)
class Symbol:
    """One listed product: KRX short code, Korean name, market, listing status and the
    index it belongs to (``"KOSPI200"``, ``"KOSDAQ150"`` or ``""``)."""

    code: str
    name: str
    market: Market
    status: ListingStatus = ListingStatus.LISTED
    index: str = ""


def read_symbols(path: Path) -> dict[str, Symbol]:
    """Symbols of one file, code → :class:`Symbol`, in file order.

    Raises ``ConfigError`` naming the file, the line and the field for a missing or wrong
    header, a bad code or market, an empty name or a code listed twice; nothing is loaded
    from a file with an error.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}", path=str(path)) from exc
    rows = [
        (n, line)
        for n, line in enumerate(text.splitlines(), 1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not rows:
        raise ConfigError(f"{path}: empty; expected the header {','.join(HEADER)}", path=str(path))
    (head_no, head), body = rows[0], rows[1:]
    header = tuple(c.strip() for c in next(csv.reader([head])))
    if header not in (MIN_HEADER, HEADER[:4], HEADER):
        raise ConfigError(
            f"{path}:{head_no}: header {','.join(header)!r}: expected "
            f"{','.join(MIN_HEADER)}[,status[,index]]",
            path=str(path),
        )
    symbols: dict[str, Symbol] = {}
    markets = ", ".join(m.value for m in Market)
    statuses = ", ".join(m.value for m in ListingStatus)
    for n, line in body:
        fields = [f.strip() for f in next(csv.reader([line]))]
        where = f"{path}:{n}"
        if len(fields) != len(header):
            raise ConfigError(
                f"{where}: {len(fields)} fields: expected {len(header)} ({','.join(header)})",
                path=str(path),
            )
        code, name, market = fields[:3]
        status_text = fields[3] if len(fields) > 3 else ListingStatus.LISTED.value
        index = fields[4] if len(fields) > 4 else ""
        try:
            status = ListingStatus(status_text.lower() or ListingStatus.LISTED.value)
        except ValueError:
            raise ConfigError(f"{where}: status {status_text!r}: expected one of {statuses}",
                              path=str(path), key="status") from None
        if not _CODE_RE.match(code):
            raise ConfigError(
                f"{where}: code {code!r}: expected a 6-character KRX code such as 005930 "
                "(quote it so that leading zeros stay)",
                path=str(path),
                key="code",
            )
        if not name:
            raise ConfigError(f"{where}: name: expected the stock's name, got nothing",
                              path=str(path), key="name")
        try:
            kind = Market(market.upper())
        except ValueError:
            raise ConfigError(
                f"{where}: market {market!r}: expected one of {markets}",
                path=str(path),
                key="market",
            ) from None
        if code in symbols:
            raise ConfigError(f"{where}: code {code} is listed twice", path=str(path), key="code")
        symbols[code] = Symbol(code, name, kind, status, index.upper())
    return symbols


def write_symbols(path: Path, symbols: Iterable[Symbol]) -> None:
    """Write ``symbols`` sorted by code in the file format above, atomically (a reader sees
    the old or the new file, never half of one). Raises ``OSError`` if the folder is not
    writable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(HEADER)
            for s in sorted(symbols, key=lambda s: s.code):
                writer.writerow((s.code, s.name, s.market.value, s.status.value, s.index))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class SymbolTable:
    """Code → :class:`Symbol` lookups with the KOSPI default for unknown codes. Thread-safe.

    Parameters
    ----------
    symbols:
        The symbols known (a later entry for a code replaces an earlier one).
    """

    def __init__(self, symbols: Iterable[Symbol] = ()):
        self._symbols: dict[str, Symbol] = {s.code: s for s in symbols}
        self._warned: set[str] = set()
        self._short_universes: set[str] = set()  # named universes already warned about
        self._lock = threading.Lock()

    @classmethod
    def load(cls, shipped: Path = SHIPPED_PATH, user: Path | None = None) -> SymbolTable:
        """The shipped file with ``user`` (if given) read over it. ``ConfigError`` for a bad
        file (see :func:`read_symbols`), also when ``user`` does not exist."""
        table = cls(read_symbols(shipped).values())
        if user is not None:
            table.update(read_symbols(user).values())
        return table

    def update(self, symbols: Iterable[Symbol]) -> None:
        """Add or replace symbols (a refresh from the broker, a user file)."""
        with self._lock:
            for s in symbols:
                self._symbols[s.code] = s
                self._warned.discard(s.code)

    def get(self, code: str) -> Symbol | None:
        return self._symbols.get(code)

    def name(self, code: str) -> str | None:
        s = self._symbols.get(code)
        return s.name if s else None

    def market(self, code: str) -> Market:
        """The market of ``code``; :data:`DEFAULT_MARKET` with one warning for an unknown one."""
        s = self._symbols.get(code)
        if s is not None:
            return s.market
        with self._lock:
            first = code not in self._warned
            self._warned.add(code)
        if first:
            logger.warning(
                "%s is in no symbol file (%s or %s); its taxes and ticks are KOSPI's",
                code,
                SHIPPED_PATH.name,
                USER_FILE_ENV,
            )
        return DEFAULT_MARKET

    def search(self, query: str, limit: int = 50) -> list[Symbol]:
        """Symbols whose code starts with ``query`` or whose name contains it (case- and
        space-insensitive): an exact code first, then names starting with it, then the rest,
        each by code. ``"삼성"`` finds 005930 삼성전자."""
        q = "".join(query.split()).upper()
        if not q:
            return []

        def rank(s: Symbol) -> tuple[int, str] | None:
            name = "".join(s.name.split()).upper()
            if s.code == q:
                return (0, s.code)
            if name.startswith(q):
                return (1, s.code)
            if s.code.startswith(q):
                return (2, s.code)
            if q in name:
                return (3, s.code)
            return None

        with self._lock:
            ranked = [(r, s) for s in self._symbols.values() if (r := rank(s)) is not None]
        return [s for _, s in sorted(ranked, key=lambda pair: pair[0])][:limit]

    def members(self, universe: str) -> list[str]:
        """Codes of a named universe, sorted: ``kospi``, ``kosdaq``, ``konex``, ``etf``,
        ``etn`` (a market), ``kospi200``, ``kosdaq150`` (an index), ``all``; listed and
        suspended products only (never ``delisted``). ``ConfigError`` for another name."""
        key = universe.strip().lower()
        markets = {m.value.lower(): m for m in Market}
        indexes = {"kospi200": "KOSPI200", "kosdaq150": "KOSDAQ150"}
        if key not in markets and key not in indexes and key != "all":
            names = ", ".join([*markets, *indexes, "all"])
            raise ConfigError(f"universe {universe!r}: expected a file or one of {names}",
                              key="universe")
        with self._lock:
            rows = [s for s in self._symbols.values() if s.status is not ListingStatus.DELISTED]
        if key in markets:
            rows = [s for s in rows if s.market is markets[key]]
        elif key in indexes:
            rows = [s for s in rows if s.index == indexes[key]]
            size = INDEX_SIZES[indexes[key]]
            if len(rows) < size and key not in self._short_universes:
                self._short_universes.add(key)
                logger.warning(
                    "universe %s: the symbol file knows %d of its %d members; "
                    "`python main.py symbols --refresh` rewrites it from KIS's master files",
                    key, len(rows), size,
                )
        return sorted(s.code for s in rows)

    def as_mapping(self) -> Mapping[str, Symbol]:
        with self._lock:
            return dict(self._symbols)

    def __contains__(self, code: object) -> bool:
        return code in self._symbols

    def __iter__(self) -> Iterator[Symbol]:
        return iter(list(self._symbols.values()))

    def __len__(self) -> int:
        return len(self._symbols)


_configured: SymbolTable | None = None
_configured_lock = threading.Lock()


@functools.lru_cache(maxsize=1)
def _from_environment() -> SymbolTable:
    user = os.environ.get(USER_FILE_ENV)
    return SymbolTable.load(user=Path(user).expanduser() if user else None)


def default_symbols() -> SymbolTable:
    """The process-wide table: the one :func:`configure_symbols` set, else the shipped file
    with ``KIS_TRADER_SYMBOLS_FILE`` over it (read once)."""
    with _configured_lock:
        if _configured is not None:
            return _configured
    return _from_environment()


def configure_symbols(user_file: Path | None) -> SymbolTable:
    """Make the shipped file with ``user_file`` over it the process-wide table (start-up,
    from the settings); ``KIS_TRADER_SYMBOLS_FILE``, when set, is read over both. Returns the
    table; ``ConfigError`` for a bad file."""
    global _configured
    table = SymbolTable.load(user=user_file)
    env = os.environ.get(USER_FILE_ENV)
    if env:
        table.update(read_symbols(Path(env).expanduser()).values())
    with _configured_lock:
        _configured = table
    return table


def read_code_list(path: Path) -> list[str]:
    """Codes of a universe file, in file order without repeats: one code a line, or a CSV
    whose first column (or ``code`` column) holds them; ``#`` comments and blank lines are
    skipped. ``ConfigError`` naming the file and the line for a bad code or an empty file."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}", path=str(path)) from exc
    codes: list[str] = []
    column = 0
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = [f.strip() for f in next(csv.reader([line]))]
        if not codes and "code" in fields:
            column = fields.index("code")
            continue
        code = fields[column] if column < len(fields) else ""
        if not _CODE_RE.match(code):
            raise ConfigError(f"{path}:{n}: code {code!r}: expected a 6-character KRX code "
                              "such as 005930", path=str(path), key="code")
        codes.append(code)
    if not codes:
        raise ConfigError(f"{path}: no stock codes in the file", path=str(path))
    return list(dict.fromkeys(codes))
