"""Benchmark: ``download`` rate for 20 symbols × 15 years of daily bars against the fake's
strict per-app-key sliding 1 s window, optionally with every core kept busy.

Run from the repository root::

    /work/venv/bin/python benchmarks/download_rate.py [--symbols 20] [--years 15] [--limit 18]
        [--workers 4] [--cpu-load 2] [--margin-ms 30]

Prints requests/s, the fraction of the limit, the EGW00201 count and whether every file
equals the rows the fake serves. ``--cpu-load N`` starts N busy processes for the run;
``--margin-ms`` tries another limiter window margin (the measured choice is the default).
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fakes.load import run_download


def _burn(stop: object) -> None:
    x = 0
    while not stop.is_set():  # type: ignore[attr-defined]
        for _ in range(100_000):
            x = (x * 31 + 7) % 1_000_003


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=20)
    parser.add_argument("--years", type=int, default=15)
    parser.add_argument("--limit", type=int, default=18, help="requests/s (KIS real: 18)")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--cpu-load", type=int, default=0, help="busy processes during the run")
    parser.add_argument("--margin-ms", type=int, default=None)
    args = parser.parse_args()
    stop = multiprocessing.Event()
    burners = [multiprocessing.Process(target=_burn, args=(stop,), daemon=True)
               for _ in range(args.cpu_load)]
    for p in burners:
        p.start()
    try:
        r = run_download(symbols=args.symbols, years=args.years, limit_per_s=args.limit,
                         workers=args.workers, margin_ms=args.margin_ms)
    finally:
        stop.set()
        for p in burners:
            p.join()
    print(f"{r.symbols} symbols, {r.rows} rows, {r.requests} requests in {r.seconds:.1f} s: "
          f"{r.per_s:.2f} req/s = {r.fraction:.1%} of {args.limit}/s; EGW00201: {r.egw00201}; "
          f"errors: {r.errors}; files equal the source rows: {r.files_equal} "
          f"(cpu load {args.cpu_load}, margin {args.margin_ms or 'default'} ms)")
    for message in r.messages[:5]:
        print(f"  error: {message}")
    return 0 if r.egw00201 == 0 and r.errors == 0 and r.files_equal else 1


if __name__ == "__main__":
    raise SystemExit(main())
