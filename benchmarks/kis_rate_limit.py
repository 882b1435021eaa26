"""Benchmark: requests/s the KIS adapter sustains against the fake's strict limiter.

Run from the repository root::

    /work/venv/bin/python benchmarks/kis_rate_limit.py [--limit 18] [--threads 4] [--seconds 10]

Prints achieved requests/s, the fraction of the limit and the number of EGW00201 answers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fakes.load import run_load


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=18, help="requests/s (KIS real: 18)")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    result = run_load(limit_per_s=args.limit, threads=args.threads, duration_s=args.seconds)
    print(f"requests: {result.requests} in {result.seconds:.2f} s, "
          f"{result.per_s:.2f} req/s = {result.fraction:.1%} of {args.limit}/s; "
          f"EGW00201: {result.egw00201}; other errors: {result.errors}")
    return 0 if result.egw00201 == 0 and result.errors == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
