"""Prices of the fake KIS: real daily bars from the shared data set plus a synthetic
intraday path, with test overrides.

Data directory: ``KIS_TRADER_DATA_DIR`` or ``<repo>/../shared/data``; daily files are read
from ``krx/daily_2023_2025/<code>_*.csv`` (header ``date,open,high,low,close,volume``).

Intraday path of a day with a real bar ``O H L C V``: 390 one-minute bars from 09:00 to
15:29, piecewise linear O -> H -> L -> C (O -> L -> H -> C when C < O), prices on the KRX
tick grid, volume V spread evenly. Before 09:00 the price is the previous close; after
15:30 it is the close. :meth:`FakeMarket.set_price` overrides the current price.

Names: the Korean name KIS shows as ``hts_kor_isnm``/``prdt_name`` (``KOREAN_NAMES`` for the
codes of the data set), else the file name's part after the code.
"""

from __future__ import annotations

import csv
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path

from utils.ticks import round_to_tick

from .clock import KST

REPO_ROOT = Path(__file__).resolve().parents[2]
OPEN = time(9, 0)
CLOSE = time(15, 30)
MINUTES = 390

Bar = tuple[date, int, int, int, int, int]

KOREAN_NAMES = {
    "000270": "기아",
    "000660": "SK하이닉스",
    "005380": "현대차",
    "005490": "POSCO홀딩스",
    "005930": "삼성전자",
    "035420": "NAVER",
    "035720": "카카오",
    "105560": "KB금융",
    "207940": "삼성바이오로직스",
    "373220": "LG에너지솔루션",
}
"""HTS names (한글 종목명) of the codes in the shared data set."""
MinuteBar = tuple[datetime, int, int, int, int, int]


def data_dir() -> Path:
    """Root of the shared market data."""
    env = os.environ.get("KIS_TRADER_DATA_DIR")
    return Path(env) if env else (REPO_ROOT.parent / "shared" / "data")


def load_daily_csv(path: Path) -> list[Bar]:
    rows: list[Bar] = []
    with path.open(newline="", encoding="utf-8") as fh:
        for rec in csv.DictReader(fh):
            rows.append((
                date.fromisoformat(rec["date"][:10]), int(float(rec["open"])),
                int(float(rec["high"])), int(float(rec["low"])), int(float(rec["close"])),
                int(float(rec["volume"])),
            ))
    rows.sort()
    return rows


@dataclass
class Stock:
    code: str
    name: str
    daily: list[Bar] = field(default_factory=list)
    override: int | None = None
    base_price: int = 10_000


class FakeMarket:
    """Prices per code, driven by the shared clock."""

    def __init__(self, clock: Callable[[], datetime], *, data_set: str = "daily_2023_2025",
                 codes: list[str] | None = None) -> None:
        self._clock = clock
        self._lock = threading.RLock()
        self.stocks: dict[str, Stock] = {}
        folder = data_dir() / "krx" / data_set
        if folder.is_dir():
            for path in sorted(folder.glob("*.csv")):
                code, _, name = path.stem.partition("_")
                if codes is None or code in codes:
                    self.stocks[code] = Stock(code, KOREAN_NAMES.get(code, name),
                                              load_daily_csv(path))

    # control -------------------------------------------------------------------------
    def add_stock(self, code: str, name: str, price: int, daily: list[Bar] | None = None) -> None:
        """A code without real data: flat at ``price`` (or the given daily bars)."""
        with self._lock:
            self.stocks[code] = Stock(code, name, sorted(daily or []), None, price)

    def set_price(self, code: str, price: int | None) -> None:
        """Override the current price (``None`` = back to the path)."""
        with self._lock:
            self.stocks[code].override = price

    # queries -------------------------------------------------------------------------
    def known(self, code: str) -> bool:
        return code in self.stocks

    def _today_bar(self, stock: Stock, today: date) -> Bar | None:
        for bar in reversed(stock.daily):
            if bar[0] == today:
                return bar
            if bar[0] < today:
                return None
        return None

    def prev_close(self, code: str) -> int:
        stock = self.stocks[code]
        today = self._clock().date()
        older = [b for b in stock.daily if b[0] < today]
        return older[-1][4] if older else stock.base_price

    def _path(self, stock: Stock, today: date) -> list[MinuteBar]:
        bar = self._today_bar(stock, today)
        start = datetime.combine(today, OPEN, tzinfo=KST)
        if bar is None:
            p = self.prev_close(stock.code)
            return [(start + timedelta(minutes=i), p, p, p, p, 0) for i in range(MINUTES)]
        _, o, h, low, c, v = bar
        knots = [o, h, low, c] if c >= o else [o, low, h, c]
        points: list[float] = []
        for i in range(MINUTES + 1):
            x = i / MINUTES * 3
            seg = min(int(x), 2)
            frac = x - seg
            points.append(knots[seg] + (knots[seg + 1] - knots[seg]) * frac)
        prices = [round_to_tick(max(p, 1.0)) for p in points]
        vol = v // MINUTES
        out: list[MinuteBar] = []
        for i in range(MINUTES):
            a, b = prices[i], prices[i + 1]
            out.append((start + timedelta(minutes=i), a, max(a, b), min(a, b), b, vol))
        return out

    def minute_bars(self, code: str, until: time | None = None) -> list[MinuteBar]:
        """Today's finished-or-current minute bars up to ``min(until, now)``, ascending."""
        now = self._clock()
        limit = now if until is None else min(now, datetime.combine(now.date(), until,
                                                                     tzinfo=KST))
        with self._lock:
            path = self._path(self.stocks[code], now.date())
        return [m for m in path if m[0] <= limit]

    def minute_bars_on(self, code: str, day: date, until: time | None = None) -> list[MinuteBar]:
        """Minute bars of a past (or the current) day up to ``until``, ascending; empty when
        the day has no daily bar (a holiday, before listing)."""
        if day >= self._clock().date():
            return self.minute_bars(code, until) if day == self._clock().date() else []
        with self._lock:
            stock = self.stocks[code]
            if self._today_bar(stock, day) is None:
                return []
            path = self._path(stock, day)
        if until is None:
            return path
        limit = datetime.combine(day, until, tzinfo=KST)
        return [m for m in path if m[0] <= limit]

    def price(self, code: str) -> int:
        """Current price in KRW."""
        with self._lock:
            stock = self.stocks[code]
            if stock.override is not None:
                return stock.override
        bars = self.minute_bars(code)
        return bars[-1][4] if bars else self.prev_close(code)

    def today(self, code: str) -> tuple[int, int, int, int, int]:
        """Today's ``(open, high, low, price, volume)`` so far."""
        bars = self.minute_bars(code)
        price = self.price(code)
        if not bars:
            return price, price, price, price, 0
        return (bars[0][1], max(max(b[2] for b in bars), price),
                min(min(b[3] for b in bars), price), price, sum(b[5] for b in bars))

    def daily(self, code: str, start: date, end: date) -> list[Bar]:
        """Bars of past days in ``[start, end]`` plus today's bar so far, ascending."""
        today = self._clock().date()
        with self._lock:
            rows = [b for b in self.stocks[code].daily if start <= b[0] <= end and b[0] < today]
        if start <= today <= end and self._clock().time() >= OPEN:
            o, h, low, c, v = self.today(code)
            rows.append((today, o, h, low, c, v))
        return rows

    def limits(self, code: str) -> tuple[int, int]:
        """(upper, lower) daily price limits: ±30 % of the previous close, on the tick grid."""
        base = self.prev_close(code)
        return round_to_tick(base * 1.3, "down"), round_to_tick(base * 0.7, "up")
