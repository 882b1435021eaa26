"""What the dashboard shows, read from the database (a stopped bot, backtest runs) and, in
the bot's own process, from the running session (live prices, trading state, switches).

Every method returns JSON-able dicts: money in KRW (int), quantities in shares, prices in KRW
per share, percentages as %, times ISO 8601 in Asia/Seoul.
"""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from core.risk import stop_level, target_level, trail_level
from utils.market_calendar import KST

if TYPE_CHECKING:
    from core.control import Controls
    from db.repository import Repository

LIVE_MODES = ("live", "dry_run")


def mask_account(run_id: str) -> str:
    """The book id hashes the account number; only its mode and env are shown in full."""
    parts = run_id.split("-")
    return "-".join([*parts[:-1], parts[-1][:4] + "…"]) if len(parts) > 1 else run_id[:6] + "…"


def _plain(value: Any) -> Any:
    if isinstance(value, pd.Timestamp | datetime):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is pd.NA or value is None:
        return None
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: _plain(v) for k, v in row.items()} for row in frame.to_dict("records")]


class DashboardData:
    """The figures of the book ``run_id`` (default: the newest live or dry-run book)."""

    def __init__(self, repository: Repository, run_id: str | None = None,
                 controls: Controls | None = None, clock: Any = None):
        self.repository = repository
        self.controls = controls
        if controls is not None:
            run_id = controls.session.run_id
        self._run_id = run_id
        self.clock = clock or (controls.session.clock if controls is not None else None)

    @property
    def run_id(self) -> str | None:
        if self._run_id is None:
            books = [r for r in self.repository.list_runs() if r["mode"] in LIVE_MODES]
            if books:
                return str(books[-1]["run_id"])
        return self._run_id

    def _today(self) -> Any:
        now = self.clock() if self.clock is not None else datetime.now(KST)
        return now.astimezone(KST).date()

    # --- pages ---------------------------------------------------------------------------
    def overview(self) -> dict[str, Any]:
        run_id = self.run_id
        run = self.repository.get_run(run_id) if run_id else None
        out: dict[str, Any] = {
            "run_id": run_id, "account": mask_account(run_id) if run_id else None,
            "mode": run["mode"] if run else None,
            "env": (run["config"] or {}).get("env") if run else None,
            "connected": self.controls is not None,
            "state": None, "cash_krw": None, "equity_krw": None, "pnl_today_krw": None,
            "pnl_today_pct": None, "broker": None, "storage_error": None,
        }
        if self.controls is not None:
            s = self.controls.session
            pnl = s.pnl()
            out.update(
                state=s.risk.state.value, cash_krw=s.trader.cash_krw,
                equity_krw=pnl["equity_krw"], pnl_today_krw=pnl["pnl_krw"],
                pnl_today_pct=round(pnl["pnl_pct"], 3),
                broker=("unreachable" if s.failed_jobs else "ok"),
                storage_error=s.trader.storage_error,
            )
        elif run_id:
            last = self.repository.get_last_equity(run_id)
            if last is not None:
                out.update(cash_krw=int(last["cash_krw"]), equity_krw=int(last["equity_krw"]))
        errors = [e for e in self.events(limit=500) if e["level"] in ("warning", "error")]
        out["last_errors"] = errors[-5:]
        return out

    def strategies(self) -> list[dict[str, Any]]:
        if self.controls is not None:
            return self.controls.strategies()
        rows = []
        positions = self.positions()
        for row in self.repository.get_strategies():
            mine = [p for p in positions if p["strategy"] == row["name"]]
            rows.append({
                "name": row["name"], "enabled": bool(row["enabled"]),
                "file_enabled": (row["config"] or {}).get("enabled"), "switch": None,
                "active": None, "trades_today": None, "errors": None, "positions": len(mine),
                "value_krw": sum(p["value_krw"] for p in mine),
                "unrealized_krw": sum(p["pnl_krw"] for p in mine), "realized_krw": None,
            })
        return rows

    def positions(self) -> list[dict[str, Any]]:
        """Open positions: ``strategy, code, name, qty, avg_price, price, value_krw, pnl_krw,
        pnl_pct, stop_loss, target_price`` (``price``: the last quote in the bot's process,
        else the average price; in the bot's process ``stop_loss`` is the higher of the stop
        and the trailing stop the exits apply, ``target_price`` the take-profit level)."""
        if self.controls is not None:
            rows = self.controls.session.positions()
            trader = self.controls.session.trader
            for r in rows:  # the levels the exits apply (a Signal's, else risk_management's)
                pos = trader.position(r["strategy"], r["code"])
                if pos is None:
                    continue
                policy = trader.exit_policy(r["strategy"])
                stops = [v for v in (stop_level(pos, policy), trail_level(pos, policy))
                         if v is not None]
                r["stop_loss"] = max(stops) if stops else None
                r["target_price"] = target_level(pos, policy)
        else:
            rows = []
            for p in self.repository.get_positions(self.run_id, status="holding"):
                rows.append({
                    "strategy": p["strategy"], "code": p["stock_code"], "name": None,
                    "qty": int(p["qty"]), "avg_price": float(p["avg_price"]),
                    "price": float(p["avg_price"]), "pnl_krw": 0, "pnl_pct": 0.0,
                    "stop_loss": p["stop_loss"], "target_price": p["target_price"],
                })
        for r in rows:
            r["value_krw"] = round(r["qty"] * r["price"])
            r["pnl_pct"] = round(r["pnl_pct"], 3)
        return rows

    def orders(self, *, status: str | None = None, strategy: str | None = None,
               code: str | None = None, side: str | None = None,
               open_only: bool = False, limit: int = 500) -> list[dict[str, Any]]:
        run_id = self.run_id
        if run_id is None:
            return []
        frame = self.repository.get_orders(run_id)
        if frame.empty:
            return []
        if open_only:
            frame = frame[~frame["status"].isin(["filled", "cancelled", "rejected", "expired"])]
        for column, wanted in (("status", status), ("strategy", strategy),
                               ("stock_code", code), ("side", side)):
            if wanted:
                frame = frame[frame[column] == wanted]
        keep = ["client_order_id", "strategy", "stock_code", "side", "order_type", "qty",
                "price", "filled_qty", "avg_fill_price", "status", "created_at", "updated_at"]
        return _records(frame[[c for c in keep if c in frame.columns]].tail(limit).iloc[::-1])

    def fills(self, *, today_only: bool = True) -> list[dict[str, Any]]:
        run_id = self.run_id
        if run_id is None:
            return []
        frame = self.repository.get_fills(run_id)
        if frame.empty:
            return []
        if today_only:
            days = pd.to_datetime(frame["time"]).dt.tz_convert(KST).dt.date
            frame = frame[days == self._today()]
        return _records(frame.iloc[::-1])

    def equity(self, run_id: str | None = None) -> list[dict[str, Any]]:
        run_id = run_id or self.run_id
        if run_id is None:
            return []
        frame = self.repository.get_equity(run_id)
        return [
            {"time": _plain(t), "equity_krw": int(row["equity_krw"]),
             "cash_krw": int(row["cash_krw"])}
            for t, row in frame.iterrows()
        ]

    def events(self, after_id: int = 0, limit: int = 200) -> list[dict[str, Any]]:
        run_id = self.run_id
        if run_id is None:
            return []
        rows = [r for r in self.repository.get_events(run_id) if int(r["id"]) > after_id]
        return [
            {"id": int(r["id"]), "at": _plain(r["at"]), "kind": r["kind"], "level": r["level"],
             "message": r["message"]}
            for r in rows[-limit:]
        ]

    def runs(self) -> list[dict[str, Any]]:
        out = []
        for r in reversed(self.repository.list_runs("backtest")):
            summary = r["summary"] or {}
            out.append({
                "run_id": r["run_id"], "started_at": _plain(r["started_at"]),
                "strategies": sorted((r["config"] or {}).get("strategies") or []),
                "summary": {k: v for k, v in summary.items() if isinstance(v, int | float | str)},
                "has_report": self.report_path(r["run_id"]) is not None,
            })
        return out

    def report_path(self, run_id: str) -> Path | None:
        run = self.repository.get_run(run_id)
        folder = ((run or {}).get("summary") or {}).get("report_dir")
        if not folder:
            return None
        path = Path(folder) / "report.html"
        return path if path.is_file() else None
