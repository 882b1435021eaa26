"""Metrics and report files of core.report, checked against independent hand computations
on real KRX daily prices (Samsung Electronics 2023-12 … 2025-06)."""

from __future__ import annotations

import csv
import json
import math
import os
import re
from datetime import datetime
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest

from core.report import compute_metrics, format_summary, write_report
from core.results import (
    EQUITY_COLUMNS,
    FILL_COLUMNS,
    ORDER_COLUMNS,
    POSITION_COLUMNS,
    TRADE_COLUMNS,
    BacktestResult,
)

TZ = "Asia/Seoul"
CASH = 10_000_000
SAMSUNG = "krx/daily_2023_2025/005930_samsung_electronics.csv"



def named(columns: tuple[str, ...]) -> tuple[str, ...]:
    """A report table's columns: the declared ones with the stock's ``name`` after ``code``."""
    out = list(columns)
    out.insert(out.index("code") + 1, "name")
    return tuple(out)

def _data_dir() -> Path:
    env = os.environ.get("KIS_TRADER_DATA_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="module")
def samsung() -> pd.DataFrame:
    path = _data_dir() / SAMSUNG
    if not path.exists():
        pytest.skip(f"real data not found: {path}")
    df = pd.read_csv(path)
    df.index = pd.DatetimeIndex(pd.to_datetime(df.pop("date"))).tz_localize(TZ)
    return df


def _frame(columns: tuple[str, ...], rows: list[dict[str, object]] | None = None) -> pd.DataFrame:
    return pd.DataFrame(rows or [], columns=list(columns))


def _equity(times: pd.DatetimeIndex, cash: list[int], holdings: list[int]) -> pd.DataFrame:
    return pd.DataFrame(
        {"cash_krw": cash, "holdings_value_krw": holdings,
         "equity_krw": [c + h for c, h in zip(cash, holdings, strict=True)]},
        index=times,
    )


def _result(equity: pd.DataFrame, **kw: object) -> BacktestResult:
    args: dict[str, object] = {
        "run_id": "test-run", "strategies": ["sma_cross"], "initial_cash_krw": CASH,
        "equity": equity, "bars": {}, "orders": _frame(ORDER_COLUMNS),
        "fills": _frame(FILL_COLUMNS), "trades": _frame(TRADE_COLUMNS),
        "positions": _frame(POSITION_COLUMNS),
    }
    args.update(kw)
    return BacktestResult(**args)  # type: ignore[arg-type]


def _buy_and_hold(bars: pd.DataFrame) -> BacktestResult:
    """Buy as many shares as cash allows at the first close (fee 15 KRW) and hold."""
    first = int(bars["close"].iloc[0])
    qty = (CASH - 15) // first
    cash = CASH - qty * first - 15
    closes = [int(c) for c in bars["close"]]
    equity = _equity(bars.index, [cash] * len(bars), [qty * c for c in closes])
    t0 = bars.index[0]
    orders = _frame(ORDER_COLUMNS, [{
        "client_order_id": "o1", "strategy": "sma_cross", "code": "005930", "side": "buy",
        "order_type": "market", "qty": qty, "price": first, "status": "filled",
        "filled_qty": qty, "avg_fill_price": first, "commission_krw": 15, "tax_krw": 0,
        "created_at": t0, "updated_at": t0, "signal_type": "buy",
        "reasons": ("골든크로스 SMA5>SMA20", "volume spike <x2>"),
    }])
    fills = _frame(FILL_COLUMNS, [{
        "fill_id": "f1", "client_order_id": "o1", "strategy": "sma_cross", "code": "005930",
        "side": "buy", "qty": qty, "price": first, "amount_krw": qty * first,
        "commission_krw": 15, "tax_krw": 0, "time": t0,
    }])
    positions = _frame(POSITION_COLUMNS, [{
        "strategy": "sma_cross", "code": "005930", "qty": qty, "avg_price": first,
        "last_price": closes[-1], "market_value_krw": qty * closes[-1],
        "unrealized_pnl_krw": qty * (closes[-1] - first), "opened_at": t0,
        "stop_loss": None, "target_price": None, "reasons": ("골든크로스 SMA5>SMA20",),
    }])
    return _result(equity, bars={"005930": bars}, orders=orders, fills=fills,
                   positions=positions, settings={"fee_rate": 0.00015, "data": Path("x")})


def _round_trips(bars: pd.DataFrame) -> tuple[BacktestResult, list[int], list[float]]:
    """Ten real round trips (buy close day i, sell close day i+7), fee 0.015 % + tax 0.18 %."""
    closes = bars["close"].astype(int).tolist()
    rows, pnls, rets = [], [], []
    for k in range(10):
        i, j = 30 * k, 30 * k + 7
        qty = 10
        fees = round(qty * closes[i] * 0.00015) + round(qty * closes[j] * (0.00015 + 0.0018))
        pnl = qty * (closes[j] - closes[i]) - fees
        ret = pnl / (qty * closes[i]) * 100
        pnls.append(pnl)
        rets.append(ret)
        rows.append({
            "strategy": "sma_cross", "code": "005930", "entry_time": bars.index[i],
            "exit_time": bars.index[j], "entry_price": closes[i], "exit_price": closes[j],
            "qty": qty, "pnl_krw": pnl, "return_pct": ret, "fees_krw": fees,
            "reasons": ("entry a", "entry b"), "exit_reasons": ("time stop",),
        })
    flat = _equity(bars.index, [CASH] * len(bars), [0] * len(bars))
    return _result(flat, trades=_frame(TRADE_COLUMNS, rows)), pnls, rets


# ------------------------------------------------------------------ metrics


def test_buy_and_hold_metrics_match_hand_computation(samsung: pd.DataFrame) -> None:
    result = _buy_and_hold(samsung)
    values = result.equity["equity_krw"].tolist()

    m = compute_metrics(result)

    peak, worst = values[0], 0.0
    for v in values:  # explicit peak-to-trough walk
        peak = max(peak, v)
        worst = max(worst, (peak - v) / peak)
    days = (samsung.index[-1].date() - samsung.index[0].date()).days
    r = np.diff(np.array(values, dtype=float)) / np.array(values[:-1], dtype=float)
    assert m["bars"] == len(samsung) == 370
    assert m["final_equity"] == values[-1]
    assert m["initial_cash"] == CASH
    assert m["total_return_pct"] == pytest.approx((values[-1] - CASH) / CASH * 100)
    assert m["max_drawdown_pct"] == pytest.approx(worst * 100)
    assert worst > 0.1  # Samsung fell hard in 2024: a real drawdown
    assert m["cagr_pct"] == pytest.approx(((values[-1] / CASH) ** (365.25 / days) - 1) * 100)
    assert m["periods_per_year"] == 252
    assert m["sharpe"] == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(252))
    assert m["exposure_pct"] == 100.0
    assert m["trades"] == 0
    assert m["win_rate_pct"] is None
    assert m["open_positions"] == 1
    assert m["fees_krw"] == 15
    json.dumps(m, allow_nan=False)
    assert all(v is None or type(v) in (int, float) for v in m.values())


def test_trade_statistics_on_real_round_trips(samsung: pd.DataFrame) -> None:
    result, pnls, rets = _round_trips(samsung)
    scratch = result.trades.iloc[[0]].assign(pnl_krw=0, return_pct=0.0)  # break-even trade
    result.trades = pd.concat([result.trades, scratch], ignore_index=True)
    pnls.append(0)
    rets.append(0.0)

    m = compute_metrics(result)

    wins = [p for p in pnls if p > 0]
    losses = [p for p in pnls if p < 0]
    assert wins  # the real data gives both winners and losers,
    assert losses  # so the ratio is meaningful
    assert m["trades"] == 11
    assert m["win_rate_pct"] == pytest.approx(len(wins) / 11 * 100)  # a win is pnl > 0
    assert m["profit_factor"] == pytest.approx(sum(wins) / -sum(losses))
    assert m["avg_trade_pct"] == pytest.approx(sum(rets) / 11)
    assert m["best_trade_pct"] == pytest.approx(max(rets))
    assert m["worst_trade_pct"] == pytest.approx(min(rets))


def test_profit_factor_none_without_losing_trade(samsung: pd.DataFrame) -> None:
    result, pnls, _ = _round_trips(samsung)
    winners = result.trades[result.trades["pnl_krw"] > 0].reset_index(drop=True)
    result.trades = winners

    m = compute_metrics(result)

    assert m["profit_factor"] is None
    assert m["win_rate_pct"] == 100.0
    assert m["trades"] == sum(p > 0 for p in pnls)


def test_flat_equity_has_no_sharpe_and_zero_drawdown(samsung: pd.DataFrame) -> None:
    result = _result(_equity(samsung.index, [CASH] * len(samsung), [0] * len(samsung)))

    m = compute_metrics(result)

    assert m["sharpe"] is None
    assert m["max_drawdown_pct"] == 0.0
    assert m["total_return_pct"] == 0.0
    assert m["cagr_pct"] == 0.0
    assert m["exposure_pct"] == 0.0
    assert m["trades"] == 0
    assert m["profit_factor"] is None
    assert m["avg_trade_pct"] is None
    assert m["open_positions"] == 0


def test_cagr_over_known_span_and_none_below_one_day() -> None:
    times = pd.DatetimeIndex(["2024-01-02", "2024-07-01", "2025-01-02"]).tz_localize(TZ)
    final = 11_000_000
    result = _result(_equity(times, [CASH, 10_500_000, final], [0, 0, 0]))

    m = compute_metrics(result)

    assert m["cagr_pct"] == pytest.approx((1.1 ** (365.25 / 366) - 1) * 100)
    assert m["total_return_pct"] == pytest.approx(10.0)

    same_day = pd.date_range("2024-01-02 09:00", periods=3, freq="1h", tz=TZ)
    assert compute_metrics(_result(_equity(same_day, [CASH] * 3, [0] * 3)))["cagr_pct"] is None


def test_intraday_sharpe_uses_bars_per_trading_day(samsung: pd.DataFrame) -> None:
    # Real closes replayed as 1-minute bars over three KRX sessions (09:00-15:30, 391 bars).
    days = ["2024-03-04", "2024-03-05", "2024-03-06"]
    times = pd.DatetimeIndex(np.concatenate([
        pd.date_range(f"{d} 09:00", f"{d} 15:30", freq="1min", tz=TZ) for d in days
    ]))
    closes = np.resize(samsung["close"].to_numpy(dtype=np.int64), len(times))
    result = _result(_equity(times, [0] * len(times), (closes * 100).tolist()))

    m = compute_metrics(result)

    v = (closes * 100).astype(float)
    r = v[1:] / v[:-1] - 1
    assert m["periods_per_year"] == 252 * 391
    assert m["sharpe"] == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(252 * 391))


def test_empty_equity_and_single_bar() -> None:
    empty = _result(pd.DataFrame(columns=list(EQUITY_COLUMNS),
                                 index=pd.DatetimeIndex([], tz=TZ)))
    m = compute_metrics(empty)
    assert m["bars"] == 0
    assert m["final_equity"] == CASH
    assert m["sharpe"] is None
    assert m["max_drawdown_pct"] is None

    one = _result(_equity(pd.DatetimeIndex(["2024-01-02"]).tz_localize(TZ), [CASH], [0]))
    assert compute_metrics(one)["sharpe"] is None


def test_format_summary_uses_thousands_separators(samsung: pd.DataFrame) -> None:
    m = compute_metrics(_buy_and_hold(samsung))

    text = format_summary(m)

    lines = dict(line.split(" : ", 1) for line in text.splitlines())
    labels = {k.strip(): v for k, v in lines.items()}
    assert labels["Final equity / 최종 자산"] == f"{m['final_equity']:,} KRW"
    assert labels["Initial cash / 초기 자금"] == "10,000,000 KRW"
    assert labels["Win rate / 승률"] == "n/a"
    assert labels["Total return / 총 수익률"] == f"{m['total_return_pct']:+.2f} %"
    assert len(labels) >= 10


# ------------------------------------------------------------------ files


def test_write_report_writes_all_files(samsung: pd.DataFrame, tmp_path: Path) -> None:
    result = _buy_and_hold(samsung)
    result.trades = _round_trips(samsung)[0].trades
    out = tmp_path / "nested" / "run"

    paths = write_report(result, out)

    assert set(paths) == {"summary", "trades", "orders", "fills", "positions", "equity",
                          "html", "xlsx"}
    assert all(p.exists() and p.parent == out for p in paths.values())

    summary = json.loads(paths["summary"].read_text(encoding="utf-8"))
    for key in ("run_id", "strategies", "settings", "start", "end", "final_equity",
                "sharpe", "max_drawdown_pct", "cagr_pct", "win_rate_pct", "profit_factor"):
        assert key in summary
    assert summary["start"] == "2023-12-05T00:00:00+09:00"
    assert datetime.fromisoformat(summary["end"]) == samsung.index[-1]
    assert summary["final_equity"] == compute_metrics(result)["final_equity"]
    assert summary["settings"]["data"] == "x"

    with paths["trades"].open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    assert tuple(rows[0]) == named(TRADE_COLUMNS)
    first = dict(zip(rows[0], rows[1], strict=True))
    assert (first["code"], first["name"]) == ("005930", "삼성전자")
    assert first["reasons"] == "entry a; entry b"
    assert datetime.fromisoformat(first["entry_time"]) == samsung.index[0]
    orders = pd.read_csv(paths["orders"])
    assert tuple(orders.columns) == named(ORDER_COLUMNS)
    assert orders.loc[0, "reasons"] == "골든크로스 SMA5>SMA20; volume spike <x2>"
    assert tuple(pd.read_csv(paths["fills"]).columns) == named(FILL_COLUMNS)
    equity = pd.read_csv(paths["equity"])
    assert tuple(equity.columns) == ("time", *EQUITY_COLUMNS)
    assert equity["equity_krw"].tolist() == result.equity["equity_krw"].tolist()

    page = paths["html"].read_text(encoding="utf-8")
    assert "plotly" in page.lower()
    assert len(page) > 1_000_000  # plotly.js is embedded
    assert not re.search(r"<script[^>]*\bsrc=", page)  # no external scripts at all
    assert "volume spike &amp;lt;x2&amp;gt;" in page or "volume spike &lt;x2&gt;" in page
    assert "triangle-up" in page


def test_xlsx_sheets_headers_and_naive_local_times(samsung: pd.DataFrame,
                                                   tmp_path: Path) -> None:
    result = _buy_and_hold(samsung)

    default = write_report(result, tmp_path / "default", html=False, xlsx=True)
    assert openpyxl.load_workbook(default["xlsx"]).sheetnames == [
        "summary", "trades", "orders", "fills", "positions", "daily_equity"]

    paths = write_report(result, tmp_path, html=False, xlsx_bars=True)

    assert "html" not in paths
    assert not (tmp_path / "report.html").exists()
    wb = openpyxl.load_workbook(paths["xlsx"], read_only=False)
    assert wb.sheetnames == ["summary", "trades", "orders", "fills", "positions",
                             "daily_equity", "bars_005930"]
    expected = {"orders": named(ORDER_COLUMNS), "fills": named(FILL_COLUMNS),
                "trades": named(TRADE_COLUMNS), "positions": named(POSITION_COLUMNS),
                "daily_equity": ("time", *EQUITY_COLUMNS),
                "bars_005930": ("time", "open", "high", "low", "close", "volume")}
    for name, cols in expected.items():
        ws = wb[name]
        assert tuple(c.value for c in ws[1]) == cols, name
        assert ws.freeze_panes == "A2"
        assert ws["A1"].font.b
    eq = wb["daily_equity"]
    assert eq.max_row == len(samsung) + 1
    assert eq["A2"].value == samsung.index[0].tz_localize(None).to_pydatetime()
    assert eq["A2"].value.tzinfo is None
    assert eq.cell(row=eq.max_row, column=4).value == result.equity["equity_krw"].iloc[-1]
    fills = wb["fills"]
    header = [c.value for c in fills[1]]
    assert fills.cell(row=2, column=header.index("time") + 1).value == datetime(  # noqa: DTZ001
        2023, 12, 5)
    assert fills.cell(row=2, column=header.index("name") + 1).value == "삼성전자"
    summary = {r[0]: r[1] for r in wb["summary"].iter_rows(min_row=2, values_only=True)}
    assert summary["run_id"] == "test-run"
    assert summary["final_equity"] == result.final_equity_krw
    assert summary["settings.fee_rate"] == 0.00015


def test_xlsx_truncates_long_sheets_with_note(samsung: pd.DataFrame, tmp_path: Path) -> None:
    result = _buy_and_hold(samsung)

    paths = write_report(result, tmp_path, html=False, xlsx_max_rows=100, xlsx_bars=True)

    ws = openpyxl.load_workbook(paths["xlsx"])["bars_005930"]
    assert ws.max_row == 100
    assert "truncated" in str(ws.cell(row=100, column=1).value)
    assert f"{len(samsung) - 98:,} of {len(samsung):,}" in str(ws.cell(row=100, column=1).value)
    assert ws.cell(row=99, column=5).value == samsung["close"].iloc[97]
    assert len(pd.read_csv(paths["equity"])) == len(samsung)  # CSV stays complete


def test_empty_run_writes_report(tmp_path: Path) -> None:
    result = _result(pd.DataFrame(columns=list(EQUITY_COLUMNS),
                                  index=pd.DatetimeIndex([], tz=TZ)))

    paths = write_report(result, tmp_path)

    assert json.loads(paths["summary"].read_text(encoding="utf-8"))["start"] is None
    assert tuple(pd.read_csv(paths["trades"]).columns) == named(TRADE_COLUMNS)
    assert openpyxl.load_workbook(paths["xlsx"]).sheetnames[0] == "summary"


def test_long_series_are_downsampled_in_html(samsung: pd.DataFrame, tmp_path: Path) -> None:
    n = 25_000
    times = pd.date_range("2024-01-02 09:00", periods=n, freq="1min", tz=TZ)
    closes = np.resize(samsung["close"].to_numpy(dtype=np.int64), n)
    bars = pd.DataFrame({"open": closes, "high": closes, "low": closes, "close": closes,
                         "volume": 1}, index=times)
    result = _result(_equity(times, [0] * n, (closes * 10).tolist()), bars={"005930": bars})

    paths = write_report(result, tmp_path, xlsx=False)

    page = paths["html"].read_text(encoding="utf-8")
    assert "downsampled" in page
    assert "scattergl" in page
    assert paths["html"].stat().st_size < 12_000_000


def _page_data(page: str) -> dict[str, object]:
    found = re.search(r"<script type='application/json' id='report-data'>(.*?)</script>", page,
                      re.S)
    assert found is not None
    return json.loads(found.group(1))


def test_html_embeds_chart_data_once_per_stock(samsung: pd.DataFrame, tmp_path: Path) -> None:
    result = _buy_and_hold(samsung)
    result.trades = _round_trips(samsung)[0].trades

    page = write_report(result, tmp_path, xlsx=False)["html"].read_text(encoding="utf-8")

    data = _page_data(page)
    symbols = data["symbols"]
    assert isinstance(symbols, list)
    assert [s["code"] for s in symbols] == ["005930"]
    stock = symbols[0]
    assert stock["c"] == samsung["close"].astype(int).tolist()  # every daily candle, exact
    assert stock["x"][0] == "2023-12-05"
    assert stock["buy"]["y"] == [int(samsung["close"].iloc[0])]
    assert "volume spike &lt;x2&gt;" in stock["buy"]["text"][0]
    assert stock["trades"] == 10
    assert "<option value='005930'>005930 삼성전자 (10 trades)</option>" in page
    assert stock["name"] == "삼성전자"
    equity = data["equity"]
    assert isinstance(equity, dict)
    assert equity["equity"] == result.equity["equity_krw"].tolist()


def test_long_series_merge_into_ohlc_candles() -> None:
    from core.report import resample_ohlcv

    n = 10_007
    rng = np.random.default_rng(7)
    close = rng.integers(50_000, 60_000, n)
    frame = pd.DataFrame(
        {"open": close - 100, "high": close + 300, "low": close - 300, "close": close,
         "volume": rng.integers(1, 1_000, n), "sma": rng.random(n)},
        index=pd.date_range("2024-01-02 09:00", periods=n, freq="1min", tz=TZ),
    )

    merged = resample_ohlcv(frame, 500)

    group = np.arange(n) * 500 // n
    expected = frame.groupby(group).agg({"open": "first", "high": "max", "low": "min",
                                         "close": "last", "volume": "sum", "sma": "last"})
    assert len(merged) == 500
    assert np.array_equal(merged.to_numpy(dtype=float), expected.to_numpy(dtype=float))
    assert merged.index[1] == frame.index[np.argmax(group == 1)]
    assert resample_ohlcv(frame, n) is frame


def test_names_of_etfs_and_kosdaq_stocks_stand_beside_their_codes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import utils.symbols as symbols

    user = tmp_path / "my_symbols.csv"
    kosdaq = symbols.Symbol("247540", "에코프로비엠", symbols.Market.KOSDAQ)
    symbols.write_symbols(user, [kosdaq])
    monkeypatch.setattr(symbols, "_configured", None)  # restored after the test
    symbols.configure_symbols(user)
    t0 = pd.Timestamp("2024-01-02", tz=TZ)
    positions = _frame(POSITION_COLUMNS, [
        {"strategy": "s", "code": code, "qty": 1, "avg_price": 10_000}
        for code in ("069500", kosdaq.code, "999990")])
    fills = _frame(FILL_COLUMNS, [{
        "fill_id": "f1", "client_order_id": "o1", "strategy": "s", "code": "069500",
        "side": "buy", "qty": 1, "price": 10_000, "amount_krw": 10_000, "commission_krw": 2,
        "tax_krw": 0, "time": t0}])
    equity = _equity(pd.DatetimeIndex([t0]), [CASH - 10_002], [10_000])
    paths = write_report(_result(equity, positions=positions, fills=fills), tmp_path)

    table = pd.read_csv(paths["positions"], dtype={"code": str}, keep_default_na=False)
    assert dict(zip(table["code"], table["name"], strict=True)) == {
        "069500": "KODEX 200", kosdaq.code: kosdaq.name, "999990": ""}  # unknown: blank
    summary = json.loads(paths["summary"].read_text(encoding="utf-8"))
    assert summary["symbols"] == {"069500": "KODEX 200"}


def test_the_summary_notes_say_when_the_portfolio_stop_halted_trading(krx_long: Path) -> None:
    from core.backtest import Backtest, BacktestSettings
    from core.data_collector import load_bars_csv
    from core.report import run_notes
    from core.risk import RiskLimits
    from strategies.config import StrategyConfig
    from strategies.sma_cross.strategy import SmaCrossParameters, SmaCrossStrategy

    bars = {"005930": load_bars_csv(krx_long / "005930_samsung_electronics.csv")}
    config = StrategyConfig(name="sma_cross", universe=("005930",),
                            parameters=SmaCrossParameters(fast=5, slow=20),
                            risk_management={"max_position_size": 1.0})
    limits = RiskLimits(portfolio_stop_pct=0.10, daily_loss_limit_pct=0.02)
    result = Backtest([SmaCrossStrategy(config)], bars,
                      BacktestSettings(cash_krw=CASH, risk_limits=limits)).run()
    (stop,) = [e for e in result.events if (e.get("data") or {}).get("rule") == "portfolio_stop"]
    notes = run_notes(result)
    assert notes[0] == f"{stop['at']:%Y-%m-%d %H:%M} {stop['message']}"
    assert "halting" in notes[0]
    # nothing was bought after the stop: the last fill is the sale it made
    last_fill = pd.Timestamp(result.fills["time"].max())
    assert last_fill <= pd.Timestamp(stop["at"]) + pd.Timedelta(days=1)
    locks = {e["at"].date() for e in result.events
             if (e.get("data") or {}).get("rule") == "daily_loss_lock"}
    assert notes[-1] == f"daily loss lock: no new buys on {len(locks):,} day(s)"
    assert locks
