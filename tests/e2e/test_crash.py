"""Crash test: ``python main.py live`` (as a process, over the fake KIS on loopback with faults
on ~10 % of calls) is SIGKILLed again and again over a simulated day and restarted.

Kill points are drawn by **event count**: the fake counts every KIS request the running bot
makes, before and after processing it, and kills the bot synchronously at the drawn count
(before processing: the request never happened; after: it took effect and its answer is
lost). The bot is blocked on that request, so a seed reproduces the same kill points. At the
close, per strategy: no order sent twice, no fill lost, each strategy's holdings equal the
fills it owns, the sum equals the account and the cash equals the account's to the won.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from db.repository import Repository
from tests.e2e.day import CODES, DAY, DayScript, env_for_subprocess, kis_env
from tests.fakes.account import BUY
from tests.fakes.clock import FakeClock
from tests.fakes.harness import fast_fake
from tests.fakes.kis_server import FakeKISServer

REPO = Path(__file__).resolve().parents[2]
KILLS = 32
SEED = int(os.environ.get("KIS_TRADER_CRASH_SEED", "20250616"))
FAULT_KINDS = ("http_500", "timeout", "malformed_json", "rate_limit", "no_odno")


class Killer:
    """Kills the running bot at the n-th event (a KIS request, before or after it is
    processed) since it started; the counts are drawn from the seed."""

    def __init__(self, rng: random.Random):
        self.targets = [rng.randint(4, 140) for _ in range(KILLS)]
        self.pid: int | None = None
        self.events = 0
        self.kills: list[str] = []

    def start(self, pid: int) -> None:
        self.pid, self.events = pid, 0

    def __call__(self, path: str, stage: str) -> None:
        if self.pid is None or not self.targets:
            return
        self.events += 1
        if self.events < self.targets[0]:
            return
        self.targets.pop(0)
        self.kills.append(f"{stage} {path.rsplit('/', 1)[-1]} #{self.events}")
        os.kill(self.pid, signal.SIGKILL)
        self.pid = None


def run_bot(args: list[str], env: dict[str, str], log: Path, killer: Killer) -> tuple[int, str]:
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.e2e.bot_process", *args],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=err, text=True,
        )
        killer.start(proc.pid)
        out, _ = proc.communicate(timeout=600)
    return proc.returncode, out


def check_per_strategy(repo: Repository, run_id: str, account: Any) -> dict[str, Any]:
    """The invariants of the module docstring; ``AssertionError`` names the first broken."""
    orders = repo.get_orders(run_id)
    sent = orders[orders["broker_order_id"].notna()]
    dup = [b for b, n in Counter(sent["broker_order_id"]).items() if n > 1]
    assert not dup, f"broker orders tracked twice: {dup}"
    real = {o.odno: o for o in account.orders if not o.cancel_record}
    assert set(sent["broker_order_id"]) == set(real), "an order at the broker is not in the book"
    journal = repo.get_fill_journal(run_id)
    fills_of: Counter[str] = Counter()
    owned: Counter[tuple[str, str]] = Counter()
    for r in journal:
        signed = r["qty"] if r["side"] == "buy" else -r["qty"]
        owned[(r["strategy"], r["stock_code"])] += signed
        if r["kind"] == "fill":
            fills_of[r["broker_order_id"]] += r["qty"]
    for odno, order in real.items():
        assert fills_of[odno] == order.filled_qty, (
            f"order {odno}: {order.filled_qty} filled at the broker, {fills_of[odno]} recorded"
        )
    assert [r for r in journal if r["kind"] != "fill"] == [], "shares no fill explains"
    holding = {(r["strategy"], r["stock_code"]): int(r["qty"])
               for r in repo.get_positions(run_id, status="holding")}
    assert Counter(holding) == +owned, f"positions {holding} != the fills owned {dict(+owned)}"
    by_code: Counter[str] = Counter()
    for (_, code), qty in holding.items():
        by_code[code] += qty
    assert by_code == +Counter({c: h.qty for c, h in account.holdings.items()})
    for strategy in {s for s, _ in holding}:  # every strategy's shares are its fills'
        assert strategy in set(orders["strategy"])
    last = repo.get_last_equity(run_id)
    assert last is not None
    assert last["cash_krw"] == account.cash_krw, (
        f"cash: book {last['cash_krw']:,} != account {account.cash_krw:,}"
    )
    bought = sum(o.filled_qty for o in real.values() if o.side == BUY)
    return {"orders": len(real), "bought": bought, "holding": holding}


@pytest.mark.timeout(1500)
def test_killed_at_32_event_counts_with_faults_every_fill_is_applied_once(
    tmp_path: Path,
) -> None:
    rng = random.Random(SEED)
    fake = fast_fake(clock=FakeClock(DAY), fill_qty_per_match=10, codes=CODES,
                     fault_rate=0.10, fault_kinds=FAULT_KINDS, fault_seed=SEED)
    fake.fault_hold_s = 0.0
    fake.on_clock.append(DayScript(fake).after)
    killer = Killer(rng)
    fake.on_request.append(killer)
    db_url = f"sqlite:///{tmp_path / 'live.db'}"
    restarts = 0
    with FakeKISServer(fake) as server:
        env = env_for_subprocess(kis_env(server.base_url, tmp_path / "tokens"))
        args = [server.base_url, db_url, str(tmp_path)]
        while True:
            rc, out = run_bot(args, env, tmp_path / f"bot{restarts}.log", killer)
            if rc == -signal.SIGKILL:
                restarts += 1
                continue
            log = (tmp_path / f"bot{restarts}.log").read_text()[-3000:]
            assert rc == 0, log
            assert "day complete" in out
            break
        print(f"{restarts} kills: {', '.join(killer.kills)}; faults {fake.stats.faults_fired}")
        assert restarts >= 30
        assert fake.stats.faults_fired > 0
        repo = Repository(db_url)
        try:
            run_id = repo.list_runs("live")[0]["run_id"]
            figures = check_per_strategy(repo, run_id, fake.account())
            started = repo.get_events(run_id=run_id, kind="session_started")
        finally:
            repo.close()
    assert figures["bought"] > 0, "nothing traded: the test would prove nothing"
    assert 1 <= len(started) <= restarts + 1  # a kill during reconciliation starts nothing
