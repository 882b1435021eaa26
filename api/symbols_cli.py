"""``python main.py symbols``: look up and refresh the symbol file.

Usage::

    python main.py symbols 삼성                 # code, name, market, status, index of matches
    python main.py symbols 069500
    python main.py symbols --refresh [--master-dir DIR] [--out FILE]
    python main.py symbols --info 005930,Q500001 [--out FILE]   # ask KIS, real accounts

``--refresh`` reads KIS's master files (:mod:`api.kis_master`; downloaded from KIS unless
``--master-dir`` holds ``kospi_code.mst``/``kosdaq_code.mst`` or their ``.zip``), keeps the
products no longer listed as ``delisted``, and rewrites ``FILE`` (default: the shipped
``config/symbols.csv`` the engine reads, :mod:`utils.symbols`) atomically. A malformed
master line is reported (file:line: what) and skipped; the rest is written.

``--info`` asks KIS's stock-info query (:mod:`api.kis_stock_info`, CTPF1002R, real accounts
only; credentials from ``KIS_*``) about each code and writes what it says into ``FILE``: a
code missing from the master files is added, a delisted one is marked ``delisted``. A code
KIS does not know is one line and the others go on (status 1).
"""

from __future__ import annotations

import argparse
import sys
import unicodedata
from pathlib import Path
from typing import Any

from api.kis_master import LAYOUTS, download_master, merge_master, read_master_file
from framework.errors import ConfigError, KisTraderError
from utils.symbols import SHIPPED_PATH, Symbol, default_symbols, read_symbols, write_symbols

EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_USAGE = 2


def configure_parser(p: argparse.ArgumentParser) -> None:
    """Add the ``symbols`` options to ``p``."""
    p.add_argument("query", nargs="?", default=None,
                   help="part of a name or a code (e.g. 삼성, 0059); none = every symbol")
    p.add_argument("--refresh", action="store_true",
                   help="rewrite the symbol file from KIS's master files")
    p.add_argument("--master-dir", type=Path, default=None,
                   help="folder with kospi_code.mst / kosdaq_code.mst (default: download)")
    p.add_argument("--out", type=Path, default=SHIPPED_PATH,
                   help=f"symbol file to write (default: {SHIPPED_PATH})")
    p.add_argument("--info", default=None, metavar="CODES",
                   help="comma-separated codes to look up with KIS's stock-info query "
                        "(real accounts) and write into the symbol file")
    p.add_argument("--limit", type=int, default=50, help="most matches shown (default 50)")


NAME_COLUMNS = 24
"""Terminal columns the name is padded to (a Hangul syllable takes two)."""


def _width(text: str) -> int:
    """Columns ``text`` takes in a terminal: wide and full-width characters count two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _line(s: Symbol) -> str:
    """One symbol as aligned columns: code, name, market, listing status, index."""
    name = s.name + " " * max(1, NAME_COLUMNS - _width(s.name))
    return f"{s.code:<8}{name}{s.market.value:<8}{s.status.value:<10}{s.index}".rstrip()


def refresh(out: Path, master_dir: Path | None) -> int:
    """Rebuild ``out`` from the master files; return how many symbols it holds."""
    found: list[Symbol] = []
    sources: list[Path] = []
    for name in LAYOUTS:
        if master_dir is None:
            sources.append(download_master(name, out.parent / ".master"))
            continue
        candidates = [master_dir / f"{name}.mst", master_dir / f"{name}.mst.zip"]
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            print(f"symbols: {master_dir}: no {name}.mst or {name}.mst.zip; skipped",
                  file=sys.stderr)
            continue
        sources.append(path)
    if not sources:
        raise ConfigError(f"{master_dir}: no master file found", path=str(master_dir))
    for path in sources:
        symbols, problems = read_master_file(path)
        for problem in problems:
            print(f"symbols: skipped {problem}", file=sys.stderr)
        found.extend(symbols)
    old = read_symbols(out).values() if out.is_file() else ()
    merged = merge_master(old, found)
    write_symbols(out, merged)
    return len(merged)


def lookup(out: Path, codes: list[str], client: Any) -> int:
    """Ask KIS about ``codes`` and write each answer into ``out``; one line per code on
    stdout (the symbol) or stderr (why not). Returns 0, or 1 if a code failed.
    ``ConfigError`` (before any request) on a virtual account."""
    from api.kis_stock_info import stock_info

    if not client.settings.is_real:
        raise ConfigError("--info uses KIS's stock-info query (search-stock-info, CTPF1002R), "
                          "a real-account service; the virtual (모의투자) account cannot use "
                          "it (symbols --refresh reads the master files instead)")
    table = read_symbols(out) if out.is_file() else {}
    status = EXIT_OK
    found = 0
    for code in codes:
        try:
            symbol = stock_info(client, code)
        except (KisTraderError, ValueError) as exc:
            text = str(exc).removeprefix(f"{code}: ")
            print(f"symbols: {code}: {text}", file=sys.stderr)
            status = EXIT_NOT_FOUND
            continue
        table[symbol.code] = symbol
        found += 1
        print(_line(symbol))
    if found:
        write_symbols(out, sorted(table.values(), key=lambda s: s.code))
        print(f"{out}: {found} symbols updated, {len(table)} in the file")
    return status


def _lookup_from_env(out: Path, text: str) -> int:
    from api.kis_http import KISClient
    from api.kis_settings import KISSettings

    codes = list(dict.fromkeys(c.strip().upper() for c in text.split(",") if c.strip()))
    if not codes:
        raise ValueError("--info: no codes given")
    client = KISClient(KISSettings.from_env())
    try:
        return lookup(out, codes, client)
    finally:
        client.close()


def run(args: argparse.Namespace) -> int:
    """Search, refresh or look up; 0 on success, 1 when nothing matches or a code failed,
    2 on bad input."""
    try:
        if getattr(args, "info", None):
            return _lookup_from_env(Path(args.out), args.info)
        if args.refresh:
            count = refresh(Path(args.out), args.master_dir)
            print(f"{args.out}: {count} symbols")
            return EXIT_OK
        table = default_symbols()
        matches = table.search(args.query, args.limit) if args.query else list(table)
    except ConfigError as exc:
        print(f"symbols: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (OSError, ValueError) as exc:
        print(f"symbols: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # httpx errors of the master download
        print(f"symbols: cannot fetch the master files: {exc}", file=sys.stderr)
        return EXIT_NOT_FOUND
    if not matches:
        print(f"symbols: nothing matches {args.query!r} in the symbol file "
              "(python main.py symbols --refresh updates it)", file=sys.stderr)
        return EXIT_NOT_FOUND
    for s in matches:
        print(_line(s))
    return EXIT_OK
