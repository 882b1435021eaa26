"""A simulated KRX trading day against the fake KIS (and fake Telegram), for the e2e tests.

The bot is wired exactly as ``python main.py live`` wires it (:func:`main.build_live_session`)
and driven by :class:`core.live.SteppedRunner` over the fake's clock, so a whole day
(2025-06-16, real prices of the shared data set) runs in seconds. The script of the day:

* ``day_trader`` buys 005930 with a limit 3 % under the market: it rests, at 09:01 4 of its
  10 shares fill (a partial fill), then it times out; the rest is cancelled and re-placed at
  the current price. It buys 000660 at market and 035720 with a marketable limit;
* at 11:00 the price of 000660 drops 12 %: its 5 % stop loss sells it at market;
* ``broken`` raises in every hook and is isolated;
* at 15:30 the fake expires the day's open orders, as KIS does.

:func:`check_book` compares the database with the fake account at the close.
"""

from __future__ import annotations

import os
from collections import Counter
from datetime import datetime, time
from pathlib import Path
from typing import Any

from config.settings import Settings, load_settings
from utils.market_calendar import KST

E2E_DIR = Path(__file__).resolve().parent
STRATEGIES = E2E_DIR / "strategies"
DAY = datetime(2025, 6, 16, 8, 50, tzinfo=KST)
CODES = ["005930", "000660", "035720"]
DROP_CODE, DROP_AT, DROP_PCT = "000660", time(11, 0), 0.12
SETTINGS_YAML = """
risk:
  cooldown_s: 600
  daily_loss_limit_pct: 0.5
  portfolio_stop_pct: 0.5
live:
  schedule:
    quote_interval_s: 30
    signal_interval_s: 60
    fill_poll_interval_s: 10
    account_sync_interval_s: 120
    close_report_delay_s: 300
  orders:
    buy_timeout_s: 120
    sell_timeout_s: 120
    max_replacements: 2
  history_days: 60
telegram:
  alerts:
    order_sent: false
"""


def write_settings(folder: Path) -> Path:
    path = folder / "settings.yaml"
    path.write_text(SETTINGS_YAML, encoding="utf-8")
    return path


def settings_for(folder: Path) -> Settings:
    return load_settings(write_settings(folder))


def kis_env(base_url: str, token_dir: Path) -> dict[str, str]:
    """Environment of a bot talking to the fake KIS at ``base_url`` (virtual account)."""
    from tests.fakes.kis_server import DEFAULT_ACCOUNT_NO, DEFAULT_APP_KEY, DEFAULT_APP_SECRET

    return {
        "KIS_APP_KEY": DEFAULT_APP_KEY,
        "KIS_APP_SECRET": DEFAULT_APP_SECRET,
        "KIS_ACCOUNT_NO": DEFAULT_ACCOUNT_NO,
        "KIS_ENV": "virtual",
        "KIS_BASE_URL": base_url,
        "KIS_TOKEN_DIR": str(token_dir),
    }


PARTIAL_CODE, PARTIAL_AT, PARTIAL_QTY = "005930", time(9, 1), 4


class DayScript:
    """What happens at the fake KIS during the day, applied as its clock moves (in the
    process that owns the fake, so a restarted bot cannot replay it)."""

    def __init__(self, fake: Any):
        self.fake = fake
        self.partial = False
        self.dropped = False
        self.expired = False

    def after(self, now: datetime) -> None:
        fake, wall = self.fake, now.timetz().replace(tzinfo=None)
        if not self.partial and wall >= PARTIAL_AT:
            resting = [o for o in fake.account().open_orders() if o.code == PARTIAL_CODE]
            if resting:
                self.partial = True
                fake.fill_order(resting[0].odno, PARTIAL_QTY, resting[0].price)
        if not self.dropped and wall >= DROP_AT:
            self.dropped = True
            fake.set_price(DROP_CODE, int(fake.market.price(DROP_CODE) * (1 - DROP_PCT)))
        if not self.expired and wall >= time(15, 30):
            self.expired = True
            fake.end_of_day()


def check_book(repository: Any, run_id: str, account: Any) -> dict[str, Any]:
    """Compare the database's book with the fake account; returns the figures compared.

    Raises ``AssertionError`` naming the first difference.
    """
    db_qty: Counter[str] = Counter()
    for row in repository.get_positions(run_id, status="holding"):
        db_qty[row["stock_code"]] += int(row["qty"])
    acct_qty = Counter({c: h.qty for c, h in account.holdings.items() if h.qty > 0})
    assert +db_qty == +acct_qty, f"holdings: db {dict(db_qty)} != account {dict(acct_qty)}"
    last = repository.get_last_equity(run_id)
    assert last is not None, "no equity snapshot"
    assert last["cash_krw"] == account.cash_krw, (
        f"cash: db {last['cash_krw']:,} != account {account.cash_krw:,}"
    )
    orders = repository.get_orders(run_id)
    sent = orders[orders["broker_order_id"].notna()]
    broker_ids = Counter(sent["broker_order_id"])
    dup = [b for b, n in broker_ids.items() if n > 1]
    assert not dup, f"broker orders tracked twice: {dup}"
    real = [o for o in account.orders if not o.cancel_record]
    assert len(real) == len(broker_ids), (
        f"{len(real)} orders reached the broker, {len(broker_ids)} are in the database"
    )
    fills = repository.get_fills(run_id)
    db_filled: Counter[tuple[str, str]] = Counter()
    for row in fills.itertuples():
        db_filled[(str(row.stock_code), str(row.side))] += int(row.qty)
    from tests.fakes.account import BUY

    acct_filled: Counter[tuple[str, str]] = Counter()
    for o in real:
        side = "buy" if o.side == BUY else "sell"
        acct_filled[(o.code, side)] += o.filled_qty
    assert +db_filled == +acct_filled, f"fills: db {dict(db_filled)} != broker {dict(acct_filled)}"
    return {
        "holdings": dict(db_qty),
        "cash_krw": account.cash_krw,
        "orders": len(real),
        "fills": len(fills),
    }


def env_for_subprocess(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KIS_", "TELEGRAM_"))}
    env.pop("DATABASE_URL", None)
    for kept in ("KIS_TRADER_DATA_DIR", "KIS_TRADER_STATE_DIR"):
        if kept in os.environ:
            env[kept] = os.environ[kept]
    env.update(extra)
    return env
