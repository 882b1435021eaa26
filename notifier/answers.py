"""Korean answers of the Telegram commands (pure functions of what :class:`core.control.Controls`
returns), and the command list shown by ``/help``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from notifier.formatting import (
    ENV_KO,
    KO,
    MARKET_KO,
    STATE_KO,
    format_count,
    format_krw,
    format_pct,
    format_qty,
    format_signed_krw,
    mappings,
    position_lines,
    price_or_market,
    side_of,
    state_label,
    stock_of,
    to_number,
)

CONFIRM_S: Final = 60.0
"""Seconds within which a ``/sell`` must be confirmed with ``/confirm``."""

COMMANDS: Final[Mapping[str, str]] = {
    "status": "상태 요약",
    "positions": "보유 종목",
    "pnl": "오늘 손익",
    "orders": "미체결 주문",
    "pause": "거래 중지 (HALTED)",
    "resume": "거래 재개 (ACTIVE)",
    "reduce_only": "청산 주문만 허용 (REDUCE_ONLY)",
    "stop": "자동매매 종료",
    "strategies": "전략 목록 (켜짐/꺼짐, 보유, 손익)",
    "strategy": "전략 켜기/끄기: /strategy 이름 on|off",
    "sell": "즉시 시장가 매도: /sell 종목코드 [전략] (확인 필요)",
    "confirm": "대기 중인 매도 실행",
    "daily": "오늘의 일일 보고",
    "balance": "현금·평가금액",
    "reload": "설정 다시 읽기 (config.yaml, settings.yaml)",
    "help": "도움말",
}
"""Commands the bot answers, with their Korean descriptions."""

HELP_TEXT: Final = "🤖 사용 가능한 명령\n" + "\n".join(
    f"/{name} – {text}" for name, text in COMMANDS.items()
)


def format_status(status: Mapping[str, Any]) -> str:
    """Answer to ``/status``: mode, environment, trading state, market, equity, strategies."""
    env, mode = str(status.get("env") or "-"), str(status.get("mode") or "-")
    market = str(status.get("market") or "-")
    state = str(status.get("state") or "-")
    lines = [
        KO["status"],
        f"{KO['mode']}: {ENV_KO.get(env, env)} · {mode}",
        f"{KO['state']}: {state_label(state)} ({STATE_KO.get(state.lower(), '-')})",
        f"{KO['market']}: {MARKET_KO.get(market.lower(), market)}",
    ]
    if status.get("next_event"):
        lines.append(f"{KO['next_event']}: {status['next_event']}")
    lines.append(f"{KO['equity']}: {format_krw(status.get('equity_krw'))}")
    lines.append(f"{KO['cash']}: {format_krw(status.get('cash_krw'))}")
    realtime = status.get("realtime")
    if isinstance(realtime, Mapping):
        link = KO["realtime_on"] if realtime.get("live") else KO["realtime_off"]
        lines.append(
            f"{KO['realtime']}: {link} · 체결틱 {int(realtime.get('ws_symbols') or 0)}종목"
            f" · REST {int(realtime.get('rest_symbols') or 0)}종목"
        )
    strategies = mappings(status.get("strategies"))
    lines.append(f"{KO['strategies']} {len(strategies)}{KO['items']}")
    for s in strategies:
        active = KO["active"] if s.get("active") else KO["inactive"]
        if s.get("enabled") is False:  # switched off (or off in config.yaml)
            active = "꺼짐" if s.get("active") else f"꺼짐, {KO['inactive']}"
        trades, errors = format_count(s.get("trades_today")), format_count(s.get("errors"))
        lines.append(
            f"• {s.get('name', '-')}: {active} · {KO['trades_today']} {trades}"
            f" · {KO['errors']} {errors}"
        )
    return "\n".join(lines)


def format_positions(positions: Sequence[Mapping[str, Any]]) -> str:
    """Answer to ``/positions``: one block per holding."""
    rows = mappings(positions)
    if not rows:
        return KO["no_positions"]
    lines = [f"{KO['positions']} {len(rows)}{KO['items']}"]
    for position in rows:
        lines.extend(position_lines(position))
    return "\n".join(lines)


def format_pnl(pnl: Mapping[str, Any]) -> str:
    """Answer to ``/pnl``: today's P&L against the start-of-day equity."""
    return "\n".join([
        f"{KO['pnl']} {pnl.get('date') or ''}".rstrip(),
        f"{KO['pnl_line']}: {format_signed_krw(pnl.get('pnl_krw'))}"
        f" ({format_pct(pnl.get('pnl_pct'))})",
        f"{KO['start_equity']}: {format_krw(pnl.get('start_equity_krw'))}",
        f"{KO['equity']}: {format_krw(pnl.get('equity_krw'))}",
        f"{KO['realized']}: {format_signed_krw(pnl.get('realized_krw'))}"
        f" · {KO['unrealized']}: {format_signed_krw(pnl.get('unrealized_krw'))}",
        f"{KO['trades']}: {format_count(pnl.get('trades'))}",
    ])


def _clock(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%H:%M:%S")
    return str(value) if value else ""


def format_orders(orders: Sequence[Mapping[str, Any]]) -> str:
    """Answer to ``/orders``: open orders with their fill progress."""
    rows = mappings(orders)
    if not rows:
        return KO["no_orders"]
    lines = [f"{KO['orders']} {format_count(len(rows))}"]
    for order in rows:
        line = (
            f"• {side_of(order)} {stock_of(order)} {format_qty(order.get('qty'))}"
            f" @ {price_or_market(order.get('price'))}"
        )
        filled = to_number(order.get("filled_qty"))
        if filled:
            line += f" ({KO['filled']} {format_qty(filled)})"
        if order.get("status"):
            line += f" · {order['status']}"
        lines.append(line)
        details = [str(x) for x in (order.get("strategy"), _clock(order.get("created_at")),
                                    order.get("client_order_id")) if x]
        if details:
            lines.append("  " + " · ".join(details))
    return "\n".join(lines)


def format_strategies(rows: Sequence[Mapping[str, Any]]) -> str:
    """Answer to ``/strategies``: each strategy on/off, its switch, holdings and P&L."""
    lines = ["🧩 전략"]
    for s in rows:
        state = "켜짐" if s["enabled"] else "꺼짐"
        switch = f", 스위치 {s['switch']}" if s["switch"] else ""
        isolated = "" if s["active"] in (True, None) else ", 오류로 격리"
        lines.append(
            f"• {s['name']}: {state}{switch}{isolated} · 보유 {s['positions']}종목 · "
            f"평가손익 {s['unrealized_krw']:+,}원 · 실현손익 {s['realized_krw']:+,}원"
        )
    return "\n".join(lines)


def format_switched(name: str, on: bool) -> str:
    """Answer to ``/strategy NAME on|off``."""
    return f"{'▶️' if on else '⏹️'} {name} 전략을 {'켰습니다' if on else '껐습니다'}."


def format_sell_question(code: str, held: Sequence[Mapping[str, Any]]) -> str:
    """Answer to ``/sell``: what would be sold, and how to confirm it."""
    lines = [f"❓ 시장가 매도 확인: {stock_of(held[0]) if held else code}"]
    lines += [f"• [{p['strategy']}] {p['qty']}주 (현재가 {p['price']:,.0f}원)" for p in held]
    lines.append(f"{CONFIRM_S:.0f}초 안에 /confirm 을 보내면 매도합니다.")
    return "\n".join(lines)


def format_daily(report: Mapping[str, Any]) -> str:
    """Answer to ``/daily``: today's equity, cash, P&L, trades, fills and holdings."""
    return (
        f"📊 일일 보고 {report['date']}\n평가자산: {format_krw(report['equity_krw'])}\n"
        f"현금: {format_krw(report['cash_krw'])}\n손익: {format_signed_krw(report['pnl_krw'])} "
        f"({format_pct(report['pnl_pct'])})\n거래: {format_count(report['trades'])} · "
        f"체결: {format_count(report['fills'])}\n보유: {len(report['positions'])}종목"
    )


def format_balance(balance: Mapping[str, int]) -> str:
    """Answer to ``/balance``."""
    return (
        f"💳 잔고\n현금: {format_krw(balance['cash_krw'])}\n"
        f"보유 평가: {format_krw(balance['holdings_krw'])}\n"
        f"평가자산: {format_krw(balance['equity_krw'])}"
    )


def format_reload(ok: bool, message: str, changes: Sequence[str]) -> str:
    """Answer to ``/reload``: what changed, or why the file was refused."""
    if not ok:
        return f"⚠️ 설정 다시 읽기 거부 (이전 설정으로 계속 거래): {message}"
    return f"🔄 설정을 다시 읽었습니다: {', '.join(changes) if changes else '변경 없음'}"
