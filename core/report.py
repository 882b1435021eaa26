"""Backtest metrics and report files (JSON, CSV, interactive HTML, Excel).

``compute_metrics`` gives the summary numbers of a :class:`~core.results.BacktestResult`,
``write_report`` writes JSON/CSV/HTML/XLSX files, ``format_summary`` a terminal summary.
Units: money in integer KRW, percentages as percent (``12.5`` means 12.5 %), times in
Asia/Seoul. Text files carry ISO 8601 times with offset (``2024-01-02T00:00:00+09:00``);
Excel has no time zones, so the workbook holds naive Seoul local times.
"""

from __future__ import annotations

import html as html_lib
import json
import logging
import math
import unicodedata
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.results import (
    EQUITY_COLUMNS,
    FILL_COLUMNS,
    ORDER_COLUMNS,
    POSITION_COLUMNS,
    TRADE_COLUMNS,
    BacktestResult,
)

log = logging.getLogger(__name__)

TZ = "Asia/Seoul"
TRADING_DAYS_PER_YEAR = 252
EXCEL_MAX_ROWS = 1_048_576
"""Rows per worksheet in Excel, header included."""
MAX_PLOT_POINTS = 20_000
"""Line traces longer than this are downsampled (min/max per bucket) in ``report.html``."""
WEBGL_MIN_POINTS = 5_000
"""Traces with more points than this are drawn with ``Scattergl`` (WebGL)."""
REASON_SEP = "; "

Metrics = dict[str, float | int | None]


# --------------------------------------------------------------------------- metrics


def _num(value: Any) -> float | None:
    """Plain float, or None for NaN/inf/None (keeps metrics JSON-serialisable)."""
    if value is None:
        return None
    out = float(value)
    return out if math.isfinite(out) else None


def periods_per_year(index: pd.DatetimeIndex) -> float | None:
    """Bars per year used to annualise per-bar statistics.

    The median spacing between bar times decides: below 20 h the bars are intraday and
    the result is ``252 × median bars per trading day`` (counted per Seoul calendar date,
    e.g. 381 one-minute bars a day → 96,012); below 4 days they are daily → ``252``;
    longer spacings give ``365.25 days / spacing`` (weekly ≈ 52.2, monthly ≈ 12).
    None with fewer than two bars.
    """
    if len(index) < 2:
        return None
    spacing_s = float(np.median(np.diff(index.asi8))) / 1e9
    if spacing_s <= 0:
        return None
    if spacing_s < 20 * 3600:
        local = index.tz_convert(TZ) if index.tz is not None else index
        per_day = float(pd.Series(1, index=local).groupby(local.date).size().median())
        return TRADING_DAYS_PER_YEAR * per_day
    if spacing_s < 4 * 86400:
        return float(TRADING_DAYS_PER_YEAR)
    return 365.25 * 86400 / spacing_s


def drawdown_pct(equity_krw: pd.Series) -> pd.Series:
    """Drawdown per bar in percent, ``<= 0``: ``(equity / running peak - 1) × 100``.

    Example: peak 10,000,000 then 9,000,000 → ``-10.0``.
    """
    values = equity_krw.astype(float)
    peak = values.cummax().where(lambda p: p > 0)
    return (values / peak - 1.0) * 100.0


def compute_metrics(result: BacktestResult) -> Metrics:
    """Summary statistics of one backtest; all values are int, float or None.

    Keys and units
    --------------
    ``bars`` (int, equity rows), ``trades`` (int, closed round trips), ``initial_cash`` and
    ``final_equity`` (int KRW), ``net_pnl_krw`` (int, final - initial), ``fees_krw`` (int,
    commission + tax of all fills), ``total_return_pct`` (final / initial - 1, in %),
    ``cagr_pct`` (% per year from initial cash to final equity over the calendar time between
    the first and last equity timestamp, year = 365.25 days; None if that is < 1 day),
    ``max_drawdown_pct`` (positive %, largest peak-to-trough fall of ``equity_krw``; 0 when it
    never falls), ``sharpe`` (mean / sample std (ddof 1) of per-bar simple returns of
    ``equity_krw`` × sqrt(``periods_per_year``), risk-free 0; None with < 2 returns or zero
    std), ``periods_per_year`` (see :func:`periods_per_year`), ``win_rate_pct`` (% of trades
    with ``pnl_krw > 0``), ``profit_factor`` (sum of positive ``pnl_krw`` / |sum of
    negative|; None when there is no losing trade), ``avg_trade_pct`` (mean ``return_pct``),
    ``best_trade_pct`` / ``worst_trade_pct``, ``exposure_pct`` (% of bars with
    ``holdings_value_krw > 0``), ``open_positions`` (int), ``elapsed_s`` (float seconds),
    ``sortino`` (mean / root-mean-square of the negative per-bar returns × sqrt(ppy); None
    without a losing bar), ``calmar`` (``cagr_pct / max_drawdown_pct``; None without a
    drawdown), ``expectancy_krw`` (mean ``pnl_krw`` per trade), ``avg_holding_days`` (mean
    exit − entry time in days), ``max_consecutive_losses`` (int), ``turnover`` (sum of fill
    amounts / mean equity), ``commission_krw`` and ``tax_krw`` (int, summed over fills).
    Trade statistics are None when there are no trades; equity statistics are None when
    there are no bars.

    Example: initial 10,000,000, final 11,000,000 after exactly 2 years →
    ``total_return_pct`` 10.0 and ``cagr_pct`` ≈ 4.88.
    """
    eq = result.equity
    initial = int(result.initial_cash_krw)
    final = int(result.final_equity_krw)
    m: Metrics = {
        "bars": len(eq),
        "trades": len(result.trades),
        "initial_cash": initial,
        "final_equity": final,
        "net_pnl_krw": final - initial,
        "fees_krw": _fees_krw(result.fills),
        "total_return_pct": _num((final / initial - 1) * 100) if initial > 0 else None,
        **dict.fromkeys(
            ("cagr_pct", "max_drawdown_pct", "sharpe", "sortino", "calmar", "periods_per_year",
             "exposure_pct", "turnover")
        ),
        "commission_krw": _sum_krw(result.fills, "commission_krw"),
        "tax_krw": _sum_krw(result.fills, "tax_krw"),
    }
    if not eq.empty:
        values = eq["equity_krw"].to_numpy(dtype=float)
        span_days = (eq.index[-1] - eq.index[0]).total_seconds() / 86400
        if span_days >= 1 and initial > 0:
            growth = max(final / initial, 0.0)
            m["cagr_pct"] = _num((growth ** (365.25 / span_days) - 1) * 100)
        dd = drawdown_pct(eq["equity_krw"]).min()
        m["max_drawdown_pct"] = _num(-dd) if pd.notna(dd) and dd < 0 else 0.0
        ppy = periods_per_year(pd.DatetimeIndex(eq.index))
        m["periods_per_year"] = _num(ppy)
        with np.errstate(divide="ignore", invalid="ignore"):
            returns = values[1:] / values[:-1] - 1.0
        returns = returns[np.isfinite(returns)]
        if ppy is not None and len(returns) >= 2:
            std = float(np.std(returns, ddof=1))
            if std > 1e-15:
                m["sharpe"] = _num(float(np.mean(returns)) / std * math.sqrt(ppy))
            downside = math.sqrt(float(np.mean(np.minimum(returns, 0.0) ** 2)))
            if downside > 1e-15:
                m["sortino"] = _num(float(np.mean(returns)) / downside * math.sqrt(ppy))
        mdd, cagr = m["max_drawdown_pct"], m["cagr_pct"]
        if mdd and cagr is not None:
            m["calmar"] = _num(float(cagr) / float(mdd))
        mean_equity = float(values.mean())
        if mean_equity > 0:
            traded = pd.to_numeric(_col(result.fills, "amount_krw"), errors="coerce").sum()
            m["turnover"] = _num(float(traded) / mean_equity)
        held = eq["holdings_value_krw"].to_numpy(dtype=float) > 0
        m["exposure_pct"] = _num(held.mean() * 100)
    m.update(_trade_metrics(result.trades))
    pos = result.positions
    m["open_positions"] = (
        int((pos["qty"] > 0).sum()) if "qty" in pos.columns and not pos.empty else len(pos)
    )
    m["elapsed_s"] = _num(result.elapsed_s)
    return m


def _fees_krw(fills: pd.DataFrame) -> int:
    cols = [c for c in ("commission_krw", "tax_krw") if c in fills.columns]
    values = fills[cols].apply(pd.to_numeric, errors="coerce").fillna(0)
    return int(values.to_numpy(dtype=float).sum())


def _sum_krw(fills: pd.DataFrame, column: str) -> int:
    return int(pd.to_numeric(_col(fills, column), errors="coerce").fillna(0).sum())


def max_consecutive_losses(pnl_krw: np.ndarray) -> int:
    """Longest run of trades with ``pnl_krw < 0`` in trade order (0 without a loss)."""
    best = run = 0
    for loss in pnl_krw < 0:
        run = run + 1 if loss else 0
        best = max(best, run)
    return best


def _trade_metrics(trades: pd.DataFrame) -> Metrics:
    out: Metrics = dict.fromkeys(
        ("win_rate_pct", "profit_factor", "avg_trade_pct", "best_trade_pct", "worst_trade_pct",
         "expectancy_krw", "avg_holding_days", "max_consecutive_losses")
    )
    if trades.empty:
        return out
    pnl = pd.to_numeric(trades["pnl_krw"], errors="coerce").dropna().to_numpy(dtype=float)
    if len(pnl):
        gross_profit = float(pnl[pnl > 0].sum())
        gross_loss = float(-pnl[pnl < 0].sum())
        out["win_rate_pct"] = _num((pnl > 0).mean() * 100)
        out["profit_factor"] = _num(gross_profit / gross_loss) if gross_loss > 0 else None
        out["expectancy_krw"] = _num(pnl.mean())
        out["max_consecutive_losses"] = max_consecutive_losses(pnl)
    held = pd.to_datetime(trades["exit_time"], utc=True) - pd.to_datetime(
        trades["entry_time"], utc=True
    )
    if held.notna().any():
        out["avg_holding_days"] = _num(held.dt.total_seconds().mean() / 86400)
    ret = pd.to_numeric(trades["return_pct"], errors="coerce").dropna()
    if len(ret):
        out["avg_trade_pct"] = _num(ret.mean())
        out["best_trade_pct"] = _num(ret.max())
        out["worst_trade_pct"] = _num(ret.min())
    return out


# --------------------------------------------------------------------------- text


_LABELS = (
    ("bars", "Bars / 봉 수", "{:,}"),
    ("initial_cash", "Initial cash / 초기 자금", "{:,} KRW"),
    ("final_equity", "Final equity / 최종 자산", "{:,} KRW"),
    ("net_pnl_krw", "Net P&L / 순손익", "{:+,} KRW"),
    ("fees_krw", "Fees and tax / 수수료·세금", "{:,} KRW"),
    ("total_return_pct", "Total return / 총 수익률", "{:+.2f} %"),
    ("cagr_pct", "CAGR / 연환산 수익률", "{:+.2f} %"),
    ("max_drawdown_pct", "Max drawdown / 최대 낙폭", "{:.2f} %"),
    ("sharpe", "Sharpe (rf 0)", "{:.2f}"),
    ("sortino", "Sortino (rf 0)", "{:.2f}"),
    ("calmar", "Calmar (CAGR / MDD)", "{:.2f}"),
    ("commission_krw", "Commission / 수수료", "{:,} KRW"),
    ("tax_krw", "Transaction tax / 거래세", "{:,} KRW"),
    ("turnover", "Turnover / 회전율 (× avg equity)", "{:.2f}"),
    ("trades", "Closed trades / 청산 거래", "{:,}"),
    ("win_rate_pct", "Win rate / 승률", "{:.1f} %"),
    ("profit_factor", "Profit factor", "{:.2f}"),
    ("avg_trade_pct", "Avg trade / 평균 거래 수익률", "{:+.2f} %"),
    ("expectancy_krw", "Expectancy / 거래당 기대손익", "{:+,.0f} KRW"),
    ("avg_holding_days", "Avg holding / 평균 보유 기간", "{:.1f} days"),
    ("max_consecutive_losses", "Max consecutive losses / 최대 연속 손실", "{:,}"),
    ("exposure_pct", "Exposure / 보유 비중", "{:.1f} %"),
    ("open_positions", "Open positions / 미청산 포지션", "{:,}"),
    ("elapsed_s", "Elapsed / 소요 시간", "{:.2f} s"),
)


def format_summary(metrics: Mapping[str, Any]) -> str:
    """Multi-line human summary, e.g. ``Final equity / 최종 자산: 10,234,500 KRW``.

    Missing or None values print as ``n/a``; unknown keys are ignored.
    """
    width = max(_display_width(label) for _, label, _ in _LABELS)
    lines = []
    for key, label, fmt in _LABELS:
        if key in metrics:
            text = "n/a" if metrics[key] is None else fmt.format(metrics[key])
            lines.append(f"{label}{' ' * (width - _display_width(label))} : {text}")
    return "\n".join(lines)


def run_notes(result: BacktestResult, most: int = 5) -> list[str]:
    """Lines on what stopped or limited trading during the run, for the end of the
    summary: each error-level event (the portfolio stop that sold everything and halted,
    a database or broker failure) as ``YYYY-MM-DD HH:MM message``, at most ``most`` of
    them and then how many more; and on how many days the daily loss lock stopped new
    buys. Empty when nothing did."""
    lines: list[str] = []
    serious = [e for e in result.events if e.get("level") in ("error", "critical")]
    for event in serious[:most]:
        at = event.get("at")
        when = at.strftime("%Y-%m-%d %H:%M") if isinstance(at, datetime) else str(at or "")
        lines.append(f"{when} {event.get('message', event.get('kind', ''))}".strip())
    if len(serious) > most:
        lines.append(f"... and {len(serious) - most} more (events in the database)")
    locks: set[date] = set()
    for event in result.events:
        at, data = event.get("at"), event.get("data")
        if (
            event.get("kind") == "risk_limit"
            and isinstance(data, dict)
            and data.get("rule") == "daily_loss_lock"
            and isinstance(at, datetime)
        ):
            locks.add(at.date())
    if locks:
        lines.append(f"daily loss lock: no new buys on {len(locks):,} day(s)")
    return lines


def _display_width(text: str) -> int:
    """Terminal columns: Hangul and other East Asian wide characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


# --------------------------------------------------------------------------- files


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if isinstance(value, Path | Decimal):
        return str(value)
    if hasattr(value, "model_dump"):  # pydantic settings
        return value.model_dump(mode="json")
    return str(value)


def _iso(value: Any) -> str:
    return "" if _missing(value) else pd.Timestamp(value).isoformat()


def _text_value(value: Any) -> Any:
    """Cell for CSV/Excel: lists joined with '; ', dicts as JSON, others unchanged."""
    if isinstance(value, list | tuple | set | frozenset):
        return REASON_SEP.join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, default=_json_default)
    return value


def _with_columns(df: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    """The declared columns first (missing ones empty), extra columns kept after them."""
    extra = [c for c in df.columns if c not in columns]
    return df.reindex(columns=[*columns, *extra])


def _for_csv(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    for col in out.columns:
        s = out[col]
        if pd.api.types.is_datetime64_any_dtype(s.dtype):
            out[col] = s.map(_iso).astype(object)
        elif s.dtype == object:
            out[col] = s.map(lambda v: v.isoformat() if isinstance(v, datetime) else _text_value(v))
    return out


def _time_frame(df: pd.DataFrame, index_name: str = "time") -> pd.DataFrame:
    out = df.copy()
    out.index = pd.DatetimeIndex(out.index, name=index_name)
    return out.reset_index()


def write_report(
    result: BacktestResult,
    out_dir: Path,
    *,
    html: bool = True,
    xlsx: bool = True,
    xlsx_max_rows: int = EXCEL_MAX_ROWS,
    xlsx_bars: bool = False,
    benchmark: pd.Series | None = None,
) -> dict[str, Path]:
    """Write the report files of one run into ``out_dir`` (created if missing).

    Files (key in the returned dict → path): ``summary`` → ``summary.json`` (run_id,
    strategies, start, end, started_at, every :func:`compute_metrics` key at top level, and
    ``settings``; UTF-8, indent 2), ``trades``/``orders``/``fills``/``positions``/``equity``
    → ``<name>.csv`` (declared columns first, ISO times, tuples of reasons joined with
    ``"; "``), ``html`` → ``report.html`` and ``xlsx`` → ``report.xlsx`` when enabled.
    Existing files are overwritten. The workbook (xlsxwriter, constant memory) has the
    sheets summary, trades, orders, fills, positions and daily_equity (the last equity row of
    each day); ``xlsx_bars`` adds one ``bars_<code>`` sheet per stock. ``benchmark`` is a
    close series (KRW) to compare the equity with in ``report.html`` (default: buy-and-hold
    of the traded stocks, equal weights).

    ``xlsx_max_rows`` is the sheet row limit (header included); longer tables are cut and
    end with a note row saying how many rows were left out (the CSVs stay complete).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = compute_metrics(result)
    paths: dict[str, Path] = {}

    summary = _summary_dict(result, metrics)
    paths["summary"] = out_dir / "summary.json"
    paths["summary"].write_text(
        json.dumps(summary, indent=2, ensure_ascii=False, default=_json_default) + "\n",
        encoding="utf-8",
    )
    for name, df in _tables(result).items():
        path = out_dir / f"{name}.csv"
        _for_csv(df).to_csv(path, index=False, encoding="utf-8")
        paths[name] = path
    if html:
        paths["html"] = out_dir / "report.html"
        _write_html(result, metrics, paths["html"], benchmark)
    if xlsx:
        paths["xlsx"] = out_dir / "report.xlsx"
        _write_xlsx(result, summary, paths["xlsx"], xlsx_max_rows, xlsx_bars)
    log.info("report written to %s (%d files)", out_dir, len(paths))
    return paths


def _summary_dict(result: BacktestResult, metrics: Metrics) -> dict[str, Any]:
    eq = result.equity
    return {
        "run_id": result.run_id,
        "strategies": list(result.strategies),
        "start": _iso(eq.index[0]) if len(eq) else None,
        "end": _iso(eq.index[-1]) if len(eq) else None,
        "started_at": _iso(result.started_at) or None,
        **metrics,
        "symbols": _run_symbols(result),
        "settings": result.settings,
    }


def _run_symbols(result: BacktestResult) -> dict[str, str]:
    """Code → name (``""`` if unknown) of every stock with bars or fills in the run."""
    codes = set(map(str, result.bars)) | set(_col(result.fills, "code").dropna().astype(str))
    return {code: stock_name(code) for code in sorted(codes)}


def stock_name(code: Any) -> str:
    """The symbol file's name of ``code`` (:func:`utils.symbols.default_symbols`: the
    shipped ``config/symbols.csv`` and the user's file), ``""`` when it does not know it."""
    from utils.symbols import default_symbols

    if _missing(code):
        return ""
    return default_symbols().name(str(code)) or ""


def _with_names(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with a ``name`` column (the stock's name, ``""`` if unknown) after ``code``."""
    if "code" not in df.columns or "name" in df.columns:
        return df
    out = df.copy()
    out.insert(list(out.columns).index("code") + 1, "name",
               [stock_name(c) for c in out["code"]])
    return out


def _tables(result: BacktestResult) -> dict[str, pd.DataFrame]:
    """The CSV tables; trades, orders, fills and positions carry the stock's name beside its
    code (declared columns first, ``name`` right after ``code``)."""
    equity = _with_columns(result.equity, EQUITY_COLUMNS)
    return {
        "trades": _with_names(_with_columns(result.trades, TRADE_COLUMNS)),
        "orders": _with_names(_with_columns(result.orders, ORDER_COLUMNS)),
        "fills": _with_names(_with_columns(result.fills, FILL_COLUMNS)),
        "positions": _with_names(_with_columns(result.positions, POSITION_COLUMNS)),
        "equity": _time_frame(equity),
    }


# --------------------------------------------------------------------------- html


def _local_naive(index: Any) -> pd.DatetimeIndex:
    idx = pd.DatetimeIndex(index)
    return idx.tz_convert(TZ).tz_localize(None) if idx.tz is not None else idx


def downsample_minmax(
    x: pd.DatetimeIndex, y: np.ndarray, max_points: int = MAX_PLOT_POINTS
) -> tuple[pd.DatetimeIndex, np.ndarray]:
    """Keep at most about ``max_points`` points: the min and max of each of
    ``max_points // 2`` equal buckets plus the first and last point, in time order,
    so peaks and troughs survive. Shorter series are returned unchanged."""
    n = len(y)
    if n <= max_points:
        return x, y
    buckets = max(max_points // 2 - 1, 1)
    s = pd.Series(y, dtype=float).ffill().bfill()
    groups = s.groupby(np.arange(n) * buckets // n)
    keep = np.unique(
        np.concatenate([groups.idxmin().to_numpy(), groups.idxmax().to_numpy(), [0, n - 1]])
    )
    return x[keep], y[keep]


EXIT_TYPES = ("stop_loss", "take_profit", "trailing_stop", "time_cut", "exit_at_close",
              "portfolio_stop")
MAX_CANDLES = 2_000
"""Candles drawn per stock at most; longer series are merged into coarser OHLC candles."""
MAX_CANDLES_TOTAL = 12_000
"""Candles drawn over all stocks at most (keeps ``report.html`` small at 100 stocks)."""
_TEMPLATE = {"layout": {"paper_bgcolor": "white", "plot_bgcolor": "white",
                        "font": {"size": 11}, "xaxis": {"gridcolor": "#eee"},
                        "yaxis": {"gridcolor": "#eee"}}}
"""A small plot template: the built-in ones add ~10 kB to each chart of the page."""
REPORT_POINTS = 6_000
"""Points per equity/drawdown line in ``report.html`` (min/max per bucket kept)."""
MAX_TABLE_TRADES = 5_000
"""Trades listed in the HTML table (the latest); every trade is in ``trades.csv``."""


def _x(index: Any) -> list[str]:
    """Chart x values as short Seoul local strings (``2024-01-02`` or ``2024-01-02 09:31``);
    plotly would write nanosecond timestamps of 30 characters each."""
    local = _local_naive(index)
    valid = local[local.notna()]
    daily = bool(len(valid)) and bool((valid == valid.normalize()).all())
    return list(local.strftime("%Y-%m-%d" if daily else "%Y-%m-%d %H:%M:%S"))


def exit_type(exit_reasons: Any) -> str:
    """``stop_loss``, ``take_profit``, ``trailing_stop``, ``time_cut``, ``exit_at_close``,
    ``portfolio_stop`` (protective exits name their rule first) or ``signal``."""
    text = "" if _missing(exit_reasons) else str(_text_value(exit_reasons))
    head = text.split(":", 1)[0].strip()
    return head if head in EXIT_TYPES else "signal"


def resample_ohlcv(frame: pd.DataFrame, max_bars: int) -> pd.DataFrame:
    """At most ``max_bars`` rows: consecutive bars merged (first open, max high, min low,
    last close, summed volume, last value of other columns), stamped with the first time.
    NaN values are skipped in the high, low and volume of a merged bar."""
    n = len(frame)
    if n <= max_bars:
        return frame
    starts = np.searchsorted(np.arange(n) * max_bars // n, np.arange(max_bars))
    ends = np.append(starts[1:], n) - 1
    out = {}
    for col in frame.columns:
        values = frame[col].to_numpy()
        if col in ("high", "low", "volume"):
            ufunc = {"high": np.fmax, "low": np.fmin, "volume": np.add}[col]
            as_float = values.astype(float)
            if col == "volume":
                as_float = np.nan_to_num(as_float)
            out[col] = ufunc.reduceat(as_float, starts)
        else:
            out[col] = values[starts if col == "open" else ends]
    return pd.DataFrame(out, index=frame.index[starts], columns=frame.columns)


def benchmark_equity(
    result: BacktestResult, benchmark: pd.Series | None
) -> tuple[str, pd.Series] | None:
    """Equity (KRW) of holding ``benchmark`` (a close series) or, without one, an equal-weight
    buy-and-hold of the traded stocks, from the initial cash at the first equity bar."""
    eq = result.equity
    if eq.empty:
        return None
    if benchmark is not None:
        closes = {str(benchmark.name or "benchmark"): benchmark}
        label = f"{benchmark.name} buy-and-hold"
    else:
        closes = {c: f["close"] for c, f in result.bars.items() if not f.empty}
        label = "buy-and-hold (equal weight) / 단순 보유"
    parts = []
    for close in closes.values():
        s = close.astype(float).reindex(eq.index, method="ffill")
        first = s.dropna()
        if first.empty:
            continue
        parts.append(s.ffill().bfill() / first.iloc[0])
    if not parts:
        return None
    return label, pd.concat(parts, axis=1).mean(axis=1) * result.initial_cash_krw


def monthly_returns(equity_krw: pd.Series) -> pd.DataFrame:
    """Year × month (1–12) table of month-over-month equity returns in %."""
    local = equity_krw.copy()
    local.index = _local_naive(local.index)
    month_end = local.groupby(local.index.to_period("M")).last()
    start = float(equity_krw.iloc[0]) if len(equity_krw) else float("nan")
    prev = month_end.shift(1).fillna(start)
    ret = (month_end / prev - 1.0) * 100.0
    table = pd.DataFrame({"year": ret.index.year, "month": ret.index.month, "ret": ret.values})
    return table.pivot(index="year", columns="month", values="ret").reindex(
        columns=range(1, 13)
    )


def _trade_table(trades: pd.DataFrame) -> pd.DataFrame:
    if trades.empty:
        return trades
    t = trades.copy()
    t["exit_type"] = t["exit_reasons"].map(exit_type)
    held = pd.to_datetime(t["exit_time"], utc=True) - pd.to_datetime(t["entry_time"], utc=True)
    t["holding_days"] = held.dt.total_seconds() / 86400
    return t


def group_stats(trades: pd.DataFrame, by: str) -> pd.DataFrame:
    """Trades, win rate %, net P&L (KRW), mean return %, fees (KRW) per value of ``by``."""
    if trades.empty:
        return pd.DataFrame(columns=["trades", "win_rate_pct", "pnl_krw", "avg_return_pct",
                                     "fees_krw"])
    pnl = pd.to_numeric(trades["pnl_krw"], errors="coerce")
    g = trades.assign(_pnl=pnl, _win=pnl > 0).groupby(by)
    return pd.DataFrame({
        "trades": g.size(),
        "win_rate_pct": g["_win"].mean() * 100,
        "pnl_krw": g["_pnl"].sum().round().astype("int64"),
        "avg_return_pct": g["return_pct"].mean(),
        "fees_krw": pd.to_numeric(g["fees_krw"].sum(), errors="coerce").fillna(0).astype("int64"),
    })


def _html_table(
    df: pd.DataFrame, table_id: str, sortable: bool = False, pick_column: int | None = None
) -> str:
    """HTML table; ``sortable`` headers sort on click; a click on a row draws the chart of the
    stock whose code is in column ``pick_column``."""
    esc = html_lib.escape
    head = "".join(f"<th>{esc(str(c))}</th>" for c in df.columns)
    rows = []
    for rec in df.itertuples(index=False, name=None):
        cells = []
        for v in rec:
            if isinstance(v, float):
                text = "" if not math.isfinite(v) else f"{v:,.2f}"
                cells.append(f"<td data-v='{v if math.isfinite(v) else ''}'>{text}</td>")
            elif isinstance(v, int | np.integer):
                cells.append(f"<td data-v='{v}'>{int(v):,}</td>")
            else:
                text = "" if _missing(v) else str(_text_value(v))
                cells.append(f"<td class='t'>{esc(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    classes = " ".join(c for c, on in (("sortable", sortable), ("picks", pick_column is not None))
                       if on)
    attrs = (f" class='{classes}'" if classes else "") + (
        f" data-code='{pick_column}'" if pick_column is not None else "")
    return (f"<table id='{table_id}'{attrs}><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


_PAGE_CSS = """body{font-family:sans-serif;margin:16px;color:#222}table{border-collapse:collapse;
font-size:12px;margin:8px 0}th,td{border:1px solid #ddd;padding:3px 6px;text-align:right}
th{background:#f3f3f3;cursor:pointer}table.picks tbody tr{cursor:pointer}
table.picks tbody tr:hover{background:#f6f9ff}td.t{text-align:left}
td:nth-child(-n+4){white-space:nowrap}h2{margin-top:28px}
.note{color:#666;font-size:12px}"""
_SORT_JS = """document.querySelectorAll('table.sortable th').forEach(function(th){
th.addEventListener('click',function(){var t=th.closest('table'),b=t.tBodies[0],
i=Array.prototype.indexOf.call(th.parentNode.children,th),d=th.dataset.d==='1'?-1:1;
th.dataset.d=d===1?'1':'0';var r=Array.prototype.slice.call(b.rows);r.sort(function(x,y){
var a=x.cells[i],c=y.cells[i],p=a.dataset.v,q=c.dataset.v;if(p!==undefined&&q!==undefined&&
p!==''&&q!==''){return d*(parseFloat(p)-parseFloat(q));}return d*a.textContent.localeCompare(
c.textContent);});r.forEach(function(x){b.appendChild(x);});});});"""


_CHART_JS = r"""(function(){
var D=JSON.parse(document.getElementById('report-data').textContent);
var CFG={responsive:true,displaylogo:false};
var GRID='#eee';
function kind(n){return n>D.webgl?'scattergl':'scatter';}
function layout(extra){var base={paper_bgcolor:'white',plot_bgcolor:'white',font:{size:11},
margin:{t:30,l:70,r:20,b:40},hovermode:'closest',legend:{orientation:'h',y:-0.12}};
for(var k in extra){base[k]=extra[k];}return base;}
function axes(lay,heights,titles){var gap=0.03,total=1-gap*(heights.length-1),top=1;
heights.forEach(function(h,k){var hh=h*total;
lay[k?'yaxis'+(k+1):'yaxis']={domain:[Math.max(top-hh,0),top],gridcolor:GRID,title:{text:titles[k]||''}};top-=hh+gap;});
lay.xaxis={anchor:heights.length>1?'y'+heights.length:'y',gridcolor:GRID,
rangeslider:{visible:false}};
return lay;}
var e=D.equity;
if(e){var t=[{type:kind(e.x.length),mode:'lines',x:e.x,y:e.equity,name:'equity / 자산',
line:{color:'#2ca02c'}}];
if(e.bench){t.push({type:kind(e.x.length),mode:'lines',x:e.x,y:e.bench,name:e.bench_label,
line:{color:'#7f7f7f',width:1}});}
t.push({type:kind(e.x.length),mode:'lines',x:e.x,y:e.dd,name:'drawdown / 낙폭',fill:'tozeroy',
line:{color:'#d62728'},yaxis:'y2'});
Plotly.newPlot('equity',t,axes(layout({height:520}),[0.7,0.3],
['Equity / 자산 (KRW)','Drawdown / 낙폭 (%)']),CFG);}
var m=D.monthly;
if(m){Plotly.newPlot('monthly',[{type:'heatmap',z:m.z,x:m.x,y:m.y,text:m.text,
texttemplate:'%{text}',colorscale:[[0,'#1f4fd6'],[0.5,'#f7f7f7'],[1,'#d62728']],
zmid:0,colorbar:{title:{text:'%'}},
hovertemplate:'%{y}-%{x}: %{z:+.2f} %<extra></extra>'}],layout({height:120+22*m.y.length,
margin:{t:20,l:70,r:20,b:40},xaxis:{type:'category'},yaxis:{autorange:'reversed',
type:'category'}}),CFG);}
var MARKS=[['buy','triangle-up','#b00000','entry ▲ / 매수'],
['sell','triangle-down','#00309f','exit ▼ / 매도']];
function draw(i){var s=D.symbols[i];if(!s){return;}
var label=s.code+(s.name?' '+s.name:'');
var tr=[{type:'candlestick',x:s.x,open:s.o,high:s.h,low:s.l,close:s.c,name:label+' OHLC',
increasing:{line:{color:'#d62728'}},decreasing:{line:{color:'#1f4fd6'}}},
{type:'bar',x:s.x,y:s.v,name:'volume / 거래량',marker:{color:'#9fb3c8'},yaxis:'y2'}];
s.overlays.forEach(function(o){tr.push({type:'scatter',mode:'lines',x:s.x,y:o[1],name:o[0],
line:{width:1.2}});});
s.panels.forEach(function(p,k){tr.push({type:'scatter',mode:'lines',x:s.x,y:p[1],name:p[0],
line:{width:1},yaxis:'y'+(k+3)});});
MARKS.forEach(function(mk){var f=s[mk[0]];if(!f.x.length){return;}
tr.push({type:kind(f.x.length),mode:'markers',x:f.x,y:f.y,text:f.text,name:mk[3],
hovertemplate:'%{text}<extra></extra>',marker:{symbol:mk[1],size:11,color:mk[2],
line:{width:1,color:'#fff'}}});});
var n=s.panels.length,heights=n?[0.6,0.15]:[0.78,0.22],titles=['price / 가격 (KRW)','volume'];
s.panels.forEach(function(p){heights.push(0.25/n);titles.push(p[0]);});
var lay=axes(layout({height:560+140*n,updatemenus:[{type:'buttons',direction:'right',x:0,
y:1.08,xanchor:'left',buttons:[{label:'linear / 선형',method:'relayout',
args:[{'yaxis.type':'linear'}]},{label:'log / 로그',method:'relayout',
args:[{'yaxis.type':'log'}]}]}]}),heights,titles);
Plotly.react('chart',tr,lay,CFG);
document.getElementById('chart-title').textContent=label+' — candles, volume, indicators / '+
'캔들·거래량·지표 ('+s.trades+' trades / 거래)';}
var sel=document.getElementById('symbol');
function pick(code,scroll){for(var i=0;i<D.symbols.length;i++){if(D.symbols[i].code===code){
sel.selectedIndex=i;draw(i);if(scroll){document.getElementById('chart-title').scrollIntoView();}
return true;}}return false;}
if(sel){sel.addEventListener('change',function(){draw(sel.selectedIndex);
history.replaceState(null,'','#'+D.symbols[sel.selectedIndex].code);});
if(!pick(decodeURIComponent(location.hash.slice(1)),false)){draw(0);}
window.addEventListener('hashchange',function(){pick(decodeURIComponent(location.hash.slice(1)),true);});
document.querySelectorAll('table.picks tbody tr').forEach(function(tr){
tr.addEventListener('click',function(){var c=tr.cells[tr.parentNode.parentNode.dataset.code|0];
if(c&&pick(c.textContent,true)){history.replaceState(null,'','#'+c.textContent);}});});}
})();"""
"""Draws the page's charts from the data embedded once in ``report.html``: equity, drawdown and
the monthly heatmap at load; one stock's candles at a time, the one picked in the list (or
named in the address after ``#``, or clicked in a table)."""


def _json_numbers(values: Any, digits: int = 4) -> list[Any]:
    """Numbers for the page's JSON: rounded to ``digits`` decimals, integers where every value
    is whole (prices and volumes), None for NaN/inf."""
    a = np.round(np.asarray(values, dtype=float), digits)
    bad = ~np.isfinite(a)
    good = a[~bad]
    if good.size and np.all(good == np.floor(good)) and np.abs(good).max() < 2**53:
        out: list[Any] = np.where(bad, 0, a).astype(np.int64).tolist()
    else:
        out = a.tolist()
    for i in np.flatnonzero(bad):
        out[i] = None
    return out


def _symbol_data(
    code: str, frame: pd.DataFrame, indicator_columns: list[str], max_candles: int,
    fills: pd.DataFrame, reasons: Mapping[str, str], exit_of: Mapping[tuple[str, str], str],
    trades: int,
) -> tuple[dict[str, Any], bool]:
    """One stock's chart data (candles, volume, indicators, markers) and whether the candles
    were merged for display."""
    shown = resample_ohlcv(frame, max_candles)
    close_med = float(np.nanmedian(frame["close"].to_numpy(dtype=float)))
    overlays: list[list[Any]] = []
    panels: list[list[Any]] = []
    for col in indicator_columns:
        med = float(np.nanmedian(np.abs(frame[col].to_numpy(dtype=float))))
        values = [str(col), _json_numbers(shown[col])]
        (overlays if 0.5 * close_med <= med <= 2 * close_med else panels).append(values)
    data: dict[str, Any] = {
        "code": code, "name": stock_name(code), "trades": trades, "x": _x(shown.index),
        **{k: _json_numbers(shown[col], 2) for k, col in
           (("o", "open"), ("h", "high"), ("l", "low"), ("c", "close"), ("v", "volume"))},
        "overlays": overlays, "panels": panels,
    }
    for side in ("buy", "sell"):
        sel = fills[_col(fills, "side").astype(str).str.lower() == side]
        text = [
            _fill_hover(r, reasons)
            + (f"<br>exit type: {exit_of.get((code, _iso(r.get('time'))), 'signal')}"
               if side == "sell" else "")
            for r in sel.to_dict("records")
        ]
        data[side] = {"x": _x(sel["time"]) if len(sel) else [],
                      "y": _json_numbers(pd.to_numeric(sel["price"], errors="coerce"), 2),
                      "text": text}
    return data, len(shown) < len(frame)


def _write_html(
    result: BacktestResult, metrics: Metrics, path: Path, benchmark: pd.Series | None = None
) -> None:
    from plotly.offline import get_plotlyjs

    downsampled = False

    def line(x: Any, y: Any) -> tuple[list[str], list[Any]]:
        nonlocal downsampled
        xs, ys = downsample_minmax(_local_naive(x), np.asarray(y, dtype=float), REPORT_POINTS)
        downsampled |= len(ys) < len(y)
        return _x(xs), _json_numbers(ys, 2)

    data: dict[str, Any] = {"webgl": WEBGL_MIN_POINTS, "equity": None, "monthly": None,
                            "symbols": []}
    eq = result.equity
    if not eq.empty:
        x, equity = line(eq.index, eq["equity_krw"])
        data["equity"] = {"x": x, "equity": equity,
                          "dd": line(eq.index, drawdown_pct(eq["equity_krw"]).fillna(0.0))[1]}
        bench = benchmark_equity(result, benchmark)
        if bench is not None:
            data["equity"].update(bench_label=bench[0], bench=line(eq.index, bench[1])[1])
        table = monthly_returns(eq["equity_krw"])
        data["monthly"] = {
            "z": [_json_numbers(r, 3) for r in table.to_numpy()],
            "x": [f"{m:02d}" for m in table.columns], "y": [str(y) for y in table.index],
            "text": [[("" if pd.isna(v) else f"{v:+.1f}") for v in r] for r in table.to_numpy()],
        }

    reasons = _order_reasons(result.orders)
    trades = _trade_table(result.trades)
    exit_of: dict[tuple[str, str], str] = {}
    trade_counts: dict[str, int] = {}
    if not trades.empty:
        exit_of = {(str(c), _iso(t)): x for c, t, x in
                   zip(trades["code"], trades["exit_time"], trades["exit_type"], strict=True)}
        trade_counts = trades["code"].astype(str).value_counts().to_dict()
    fill_codes = _col(result.fills, "code").astype(str)
    fills_of = dict(tuple(result.fills.groupby(fill_codes))) if len(result.fills) else {}
    codes = sorted(set(result.bars) | set(fill_codes.dropna()))
    per_code = max(120, min(MAX_CANDLES, MAX_CANDLES_TOTAL // max(len(codes), 1)))
    for code in codes:
        bars = result.bars.get(code)
        if bars is None or bars.empty:
            continue
        ind = result.indicators.get(code)
        frame = bars if ind is None else bars.join(ind, how="left")
        symbol, merged = _symbol_data(
            code, frame, [] if ind is None else list(ind.columns), per_code,
            fills_of.get(code, result.fills.iloc[:0]), reasons, exit_of,
            int(trade_counts.get(code, 0)),
        )
        downsampled |= merged
        data["symbols"].append(symbol)

    esc = html_lib.escape
    summary = "".join(
        f"<tr><th>{esc(label)}</th><td>"
        f"{'n/a' if metrics.get(key) is None else esc(fmt.format(metrics[key]))}</td></tr>"
        for key, label, fmt in _LABELS if key in metrics
    )
    body = [f"<h1>Backtest / 백테스트 {esc(result.run_id)} · "
            f"{esc(', '.join(result.strategies))}</h1>",
            f"<table id='metrics'>{summary}</table>"]
    notes = ["Times are Asia/Seoul local. ▲ entry (buy fill), ▼ exit (sell fill); hover a "
             "marker for its reasons and exit type. Pick a stock in the list, or click its row "
             "in a table below, to draw its chart."]
    if downsampled:
        notes.append(f"Long series are downsampled for display (lines: min and max per bucket, "
                     f"at most {REPORT_POINTS:,} points; candles merged to at most "
                     f"{per_code:,} per stock); markers are exact; full data in the CSV files.")
    body.append("".join(f"<p class='note'>{esc(n)}</p>" for n in notes))
    if data["equity"] is not None:
        body.append("<h2>Equity vs benchmark / 자산 대 벤치마크</h2><div id='equity'></div>"
                    "<h2>Monthly returns / 월별 수익률 (%)</h2><div id='monthly'></div>")
    if data["symbols"]:
        options = "".join(
            f"<option value='{esc(s['code'])}'>{esc(s['code'])} {esc(s['name'])} "
            f"({s['trades']:,} trades)</option>"
            for s in data["symbols"]
        )
        body.append("<h2 id='chart-title'>Candles / 캔들</h2><p><label>Stock / 종목 "
                    f"<select id='symbol'>{options}</select></label> "
                    f"<span class='note'>{len(data['symbols']):,} stocks</span></p>"
                    "<div id='chart'></div>")
    if not trades.empty:
        body.append("<h2>Per symbol / 종목별</h2>")
        body.append(_html_table(_with_names(group_stats(trades, "code").reset_index()),
                                "per-symbol", True, pick_column=0))
        body.append("<h2>Per exit type / 청산 유형별</h2>")
        body.append(_html_table(group_stats(trades, "exit_type").reset_index(), "per-exit", True))
    shown_trades = trades.tail(MAX_TABLE_TRADES)
    body.append(f"<h2>Trades / 거래 ({len(trades):,})</h2>")
    if len(shown_trades) < len(trades):
        body.append(f"<p class='note'>the latest {len(shown_trades):,} trades; all of them are in "
                    "trades.csv</p>")
    cols = ["strategy", "code", "name", "entry_time", "exit_time", "entry_price", "exit_price",
            "qty", "pnl_krw", "return_pct", "holding_days", "exit_type", "reasons", "exit_reasons"]
    table = (_with_names(shown_trades).reindex(columns=cols) if not trades.empty
             else pd.DataFrame(columns=cols))
    for c in ("entry_time", "exit_time"):
        when = pd.to_datetime(table[c], utc=True)
        table[c] = pd.Series(_x(when), index=table.index).where(when.notna(), "")
    body.append(_html_table(table, "trades", sortable=True, pick_column=1))
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>Backtest {esc(result.run_id)}</title><style>{_PAGE_CSS}</style>"
        f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>"
        + "".join(body)
        + "<script type='application/json' id='report-data'>"
        + payload.replace("</", "<\\/")
        + f"</script><script>{_SORT_JS}</script><script>{_CHART_JS}</script></body></html>"
    )
    path.write_text(page, encoding="utf-8")


def _col(df: pd.DataFrame, name: str) -> pd.Series:
    return df[name] if name in df.columns else pd.Series(index=df.index, dtype=object)


def _missing(value: Any) -> bool:
    if isinstance(value, list | tuple | set | frozenset | dict):
        return False
    return value is None or bool(pd.isna(value))


def _order_reasons(orders: pd.DataFrame) -> dict[str, str]:
    if "client_order_id" not in orders.columns:
        return {}
    pairs = zip(orders["client_order_id"], _col(orders, "reasons"), strict=True)
    return {str(cid): "" if _missing(r) else str(_text_value(r)) for cid, r in pairs}


def _fill_hover(fill: Mapping[str, Any], reasons: Mapping[str, str]) -> str:
    esc = html_lib.escape
    qty: Any = fill.get("qty")
    price: Any = fill.get("price")
    parts = [
        f"<b>{esc(str(fill.get('side', '')).upper())} {esc(str(fill.get('code', '')))} "
        f"{esc(stock_name(fill.get('code')))}</b>",
        f"strategy: {esc(str(fill.get('strategy', '')))}",
        "qty: n/a" if _missing(qty) else f"qty: {int(qty):,}",
        "price: n/a" if _missing(price) else f"price: {float(price):,.0f} KRW",
        f"time: {_iso(fill.get('time'))}",
    ]
    why = reasons.get(str(fill.get("client_order_id")), "")
    return "<br>".join([*parts, f"reasons: {esc(why)}"] if why else parts)


# --------------------------------------------------------------------------- xlsx


def _excel_value(value: Any) -> Any:
    if isinstance(value, datetime):
        ts = pd.Timestamp(value)
        return (ts.tz_convert(TZ).tz_localize(None) if ts.tz is not None else ts).to_pydatetime()
    if isinstance(value, np.generic):
        return value.item()
    value = _text_value(value)
    if isinstance(value, str):  # Excel caps a cell at 32,767 characters
        return value[:32_767]
    if value is None or isinstance(value, int | float | bool | Decimal | date):
        return value
    return _excel_value(str(value))


_EXCEL_EPOCH = pd.Timestamp("1899-12-30")
"""Day 0 of Excel's serial dates (right for every date from 1900-03-01 on)."""


def _excel_serial(local_naive: pd.Series) -> list[Any]:
    """Naive datetimes as Excel serial days (float), None for NaT."""
    days = (local_naive - _EXCEL_EPOCH) / pd.Timedelta(days=1)
    return days.astype(object).where(days.notna(), None).tolist()


def _excel_columns(df: pd.DataFrame) -> list[tuple[str, list[Any]]]:
    """Cells per column, typed once per column rather than once per cell: ``("date", serial
    days)``, ``("number", numbers)``, ``("string", texts)`` or ``("any", values for
    worksheet.write)``; None is an empty cell."""
    out: list[tuple[str, list[Any]]] = []
    for col in df.columns:
        s = df[col]
        if isinstance(s.dtype, pd.DatetimeTZDtype):
            out.append(("date", _excel_serial(s.dt.tz_convert(TZ).dt.tz_localize(None))))
        elif pd.api.types.is_datetime64_dtype(s.dtype):
            out.append(("date", _excel_serial(s)))
        elif pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
            out.append(("number", s.astype(object).where(s.notna(), None).tolist()))
        else:
            values = s.map(_excel_value)
            present = values[values.notna()]
            if len(present) and all(isinstance(v, datetime) for v in present):
                out.append(("date", _excel_serial(pd.to_datetime(values))))
            elif all(isinstance(v, str) for v in present):
                out.append(("string", values.astype(object).where(values.notna(), None).tolist()))
            else:
                out.append(("any", values.astype(object).where(values.notna(), None).tolist()))
    return out


def _write_sheet(wb: Any, title: str, df: pd.DataFrame, max_rows: int) -> None:
    """One sheet, written row by row (the workbook is in constant-memory mode)."""
    ws = wb.add_worksheet(title[:31])
    bold = wb.add_format({"bold": True})
    when = wb.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
    limit = len(df) if len(df) <= max_rows - 1 else max(max_rows - 2, 0)
    cells = _excel_columns(df.iloc[:limit])
    columns = [str(c) for c in df.columns]
    for i, (col, (kind, values)) in enumerate(zip(columns, cells, strict=True)):
        width = 19 if kind == "date" else max(
            [len(col)] + [len(str(v)) for v in values[:200] if v is not None]
        )
        ws.set_column(i, i, min(max(width + 2, 8), 60))
    ws.freeze_panes(1, 0)
    ws.write_row(0, 0, columns, bold)
    writers = [
        (c, {"date": ws.write_number, "number": ws.write_number, "string": ws.write_string}.get(
            kind, ws.write), when if kind == "date" else None)
        for c, (kind, _) in enumerate(cells)
    ]
    r = 0
    for r, row in enumerate(zip(*(values for _, values in cells), strict=True), start=1):
        for (c, write, fmt), value in zip(writers, row, strict=True):
            if value is not None:
                write(r, c, value, fmt)
    if limit < len(df):
        note = (
            f"truncated: {len(df) - limit:,} of {len(df):,} rows not shown (Excel limit "
            f"{max_rows:,} rows per sheet); full tables are in the CSV files and input data"
        )
        ws.write(r + 1, 0, note, wb.add_format({"italic": True, "font_color": "#C00000"}))
        log.warning("sheet %s truncated to %d of %d rows", title, limit, len(df))


def daily_equity(equity: pd.DataFrame) -> pd.DataFrame:
    """The last equity row of each Seoul calendar day (the whole frame for daily bars)."""
    if equity.empty:
        return equity
    local = pd.DatetimeIndex(equity.index).tz_convert(TZ)
    return equity.groupby(local.normalize()).tail(1)


def _write_xlsx(
    result: BacktestResult,
    summary: Mapping[str, Any],
    path: Path,
    max_rows: int,
    bars: bool = False,
) -> None:
    import xlsxwriter

    wb = xlsxwriter.Workbook(
        str(path),
        {
            "constant_memory": True,
            "default_date_format": "yyyy-mm-dd hh:mm:ss",
            "nan_inf_to_errors": True,
            "strings_to_numbers": False,
            "strings_to_formulas": False,
            "strings_to_urls": False,
        },
    )
    rows: list[tuple[str, Any]] = []
    for key, value in summary.items():
        if key == "settings" and isinstance(value, Mapping):
            rows += [(f"settings.{k}", _json_cell(v)) for k, v in value.items()]
        else:
            rows.append((key, _json_cell(value)))
    _write_sheet(wb, "summary", pd.DataFrame(rows, columns=["key", "value"]), max_rows)
    tables = _tables(result)
    for name in ("trades", "orders", "fills", "positions"):
        _write_sheet(wb, name, tables[name], max_rows)
    equity = _with_columns(daily_equity(result.equity), EQUITY_COLUMNS)
    _write_sheet(wb, "daily_equity", _time_frame(equity), max_rows)
    if bars:
        for code in sorted(result.bars):
            _write_sheet(wb, f"bars_{code}", _time_frame(result.bars[code]), max_rows)
    wb.close()


def _json_cell(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return json.dumps(value, ensure_ascii=False, default=_json_default)
