"""Benchmark: ``download`` rate for 20 symbols × 15 years of daily bars against the fake's
strict per-app-key sliding 1 s window, optionally with every core kept busy.

Run from the repository root::

    /work/venv/bin/python benchmarks/download_rate.py [--symbols 20] [--years 15] [--limit 18]
        [--workers 4[,8 …]] [--cpu-load 2] [--margin-ms 2]

Prints, per worker count: requests/s and the fraction of the limit, the EGW00201 count,
whether every file equals the rows the fake serves, and where the rest of the budget went.

The safety margin is measured at the fake: it records when it admitted each request, and
the shortest span holding ``limit + 1`` of them must exceed 1000 ms (a strict window would
refuse the last one otherwise); the excess is the margin the client actually kept.

The budget lost is about ``(margin + mean permit hold + wake-up) / 1 s``: a request holds its
permit from its grant until its answer (``mean hold``), and a slot is free again 1 s plus the
limiter's margin after the answer.

``--cpu-load N`` keeps N processes busy for the run: ``stress-ng --cpu N`` when it is
installed, else N Python busy loops.
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api.kis_http import DEFAULT_MARGIN_MS
from tests.fakes.load import run_download


def _burn(stop: object) -> None:
    x = 0
    while not stop.is_set():  # type: ignore[attr-defined]
        for _ in range(100_000):
            x = (x * 31 + 7) % 1_000_003


class CpuLoad:
    """``n`` busy processes while the ``with`` block runs."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.kind = "none"
        self._stress: subprocess.Popen[bytes] | None = None
        self._stop = multiprocessing.Event()
        self._burners: list[multiprocessing.Process] = []

    def __enter__(self) -> CpuLoad:
        if self.n <= 0:
            return self
        exe = shutil.which("stress-ng")
        if exe:
            self.kind = f"stress-ng --cpu {self.n}"
            self._stress = subprocess.Popen([exe, "--cpu", str(self.n), "--quiet"],  # noqa: S603
                                            stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL)
        else:
            self.kind = f"{self.n} Python busy loops"
            self._burners = [multiprocessing.Process(target=_burn, args=(self._stop,),
                                                     daemon=True) for _ in range(self.n)]
            for p in self._burners:
                p.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stress is not None:
            self._stress.terminate()
            self._stress.wait(timeout=30)
        self._stop.set()
        for p in self._burners:
            p.join()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=20)
    parser.add_argument("--years", type=int, default=15)
    parser.add_argument("--limit", type=int, default=18, help="requests/s (KIS real: 18)")
    parser.add_argument("--workers", default="4",
                        help="download threads; a comma-separated list runs each in turn")
    parser.add_argument("--cpu-load", type=int, default=0, help="busy processes during the run")
    parser.add_argument("--margin-ms", type=int, default=DEFAULT_MARGIN_MS,
                        help=f"limiter window margin (default {DEFAULT_MARGIN_MS})")
    args = parser.parse_args()
    ok = True
    with CpuLoad(args.cpu_load) as load:
        for workers in (int(w) for w in str(args.workers).split(",")):
            r = run_download(symbols=args.symbols, years=args.years, limit_per_s=args.limit,
                             workers=workers, margin_ms=args.margin_ms)
            print(f"workers {workers}, margin {args.margin_ms} ms, cpu load: {load.kind}")
            print(f"  {r.symbols} symbols, {r.rows} rows, {r.requests} requests in "
                  f"{r.seconds:.1f} s: {r.per_s:.2f} req/s = {r.fraction:.1%} of "
                  f"{args.limit}/s; EGW00201: {r.egw00201}; errors: {r.errors}; "
                  f"files equal the source rows: {r.files_equal}")
            print(f"  measured safety margin: the tightest {args.limit + 1} arrivals at the "
                  f"fake span {r.tightest_window_ms:.1f} ms (> 1000 ms is safe); mean permit "
                  f"hold (grant to answer) {r.mean_held_ms:.1f} ms")
            for message in r.messages[:5]:
                print(f"  error: {message}")
            ok = ok and r.egw00201 == 0 and r.errors == 0 and r.files_equal
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
