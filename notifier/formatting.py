"""Korean texts of the Telegram alerts: wording, money, stock names and one ``format_*`` per
alert (pure functions of the event's fields; plain text, no parse mode).

A stock is shown as ``삼성전자(005930)`` when its name is known (the event, the live quotes or
the symbol file, :mod:`utils.symbols`), else as its code. Money is whole KRW (``72,000원``),
quantities shares (``10주``), percentages already in % (``+1.23%``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from utils.symbols import default_symbols

logger = logging.getLogger(__name__)

Names = Callable[[str], str | None]
"""Stock code -> Korean name (``None`` when unknown)."""

# == Korean wording (every user-visible word lives here) =========================================

WON: Final = "원"
SHARES: Final = "주"
SIDE_KO: Final[Mapping[str, str]] = {"buy": "매수", "sell": "매도"}
ENV_KO: Final[Mapping[str, str]] = {"virtual": "모의투자", "real": "실전투자"}
ORDER_TYPE_KO: Final[Mapping[str, str]] = {"limit": "지정가", "market": "시장가"}
MARKET_KO: Final[Mapping[str, str]] = {"open": "개장", "closed": "폐장"}
STATE_EMOJI: Final[Mapping[str, str]] = {"active": "▶️", "halted": "⏸️", "reduce_only": "🔻"}
STATE_KO: Final[Mapping[str, str]] = {
    "active": "정상 거래",
    "halted": "신규 주문 중지",
    "reduce_only": "청산 주문만 허용",
}
RISK_RULE_KO: Final[Mapping[str, str]] = {
    "stop_loss": "손절",
    "take_profit": "익절",
    "trailing_stop": "트레일링 스탑",
    "portfolio_stop": "포트폴리오 손실 한도",
}
BREAKER_KO: Final[Mapping[str, str]] = {
    "closed": "정상",
    "open": "API 호출 일시 중단",
    "half_open": "복구 확인 중",
}
RECONCILE_KO: Final[Mapping[str, str]] = {
    "adopted": "계좌 보유분 편입",
    "closed_outside": "외부 청산",
    "qty_adjusted": "수량 조정",
    "order_resolved": "주문 정리",
}
KO: Final[Mapping[str, str]] = {
    "session_started": "🚀 자동매매 시작",
    "session_stopped": "🛑 자동매매 종료",
    "order_sent": "📤 {side} 주문",
    "fill_buy": "📈 매수 체결",
    "fill_sell": "📉 매도 체결",
    "cancel": "❎ 주문 취소",
    "rejected": "⚠️ 주문 거부",
    "error": "⚠️ 오류",
    "breaker": "🔌 서킷 브레이커",
    "reconcile": "🔄 재시작 대사",
    "daily_report": "📊 일일 리포트",
    "risk_exit": "🛡️ {rule} 발동",
    "state": "거래 상태",
    "status": "📋 자동매매 상태",
    "positions": "📦 보유 종목",
    "no_positions": "📦 보유 종목 없음",
    "holdings": "보유 종목",
    "pnl": "💰 오늘 손익",
    "orders": "📝 미체결 주문",
    "no_orders": "📝 미체결 주문 없음",
    "strategies": "전략",
    "realtime": "실시간",
    "realtime_on": "웹소켓 연결",
    "realtime_off": "웹소켓 끊김 (REST 조회)",
    "strategy": "전략",
    "hook": "단계",
    "isolated": "격리됨",
    "reason": "사유",
    "realized": "실현손익",
    "unrealized": "미실현손익",
    "pnl_line": "손익",
    "equity": "평가자산",
    "start_equity": "시작 자산",
    "cash": "현금",
    "mode": "모드",
    "market": "장",
    "next_event": "다음 일정",
    "trades": "거래",
    "fills": "체결",
    "count": "건",
    "items": "개",
    "active": "활성",
    "inactive": "비활성",
    "trades_today": "오늘 거래",
    "errors": "오류",
    "avg_price": "평단",
    "price": "현재가",
    "trigger_price": "기준가",
    "stop_loss": "손절",
    "target": "목표",
    "filled": "체결",
    "retry": "재주문 {n}회차",
    "diff": "차이",
    "matched": "일치",
    "check": "⚠️ 확인 필요",
    "db": "DB",
    "account": "계좌",
    "by": "요청",
    "none": "없음",
    "market_order": "시장가",
    "pause": "⏸️ 거래를 중지했습니다 (HALTED): 신규 주문을 내지 않습니다.",
    "resume": "▶️ 거래를 재개했습니다 (ACTIVE).",
    "reduce_only": "🔻 청산 주문만 허용합니다 (REDUCE_ONLY).",
    "stop_ack": "🛑 종료 요청을 받았습니다. 자동매매를 종료합니다.",
    "not_allowed": "⛔ 명령 권한이 없습니다 (TELEGRAM_ALLOWED_USER_IDS에 없는 사용자).",
    "command_failed": "⚠️ 명령 처리 실패 ({command}): {error}",
}


# == pure formatters =============================================================================


def to_number(value: Any) -> float | None:
    """``value`` as a finite float, or ``None`` (missing, a bool, not a number)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def format_krw(value: Any) -> str:
    """``72000`` -> ``"72,000원"`` (rounded to whole won; ``"-"`` when missing)."""
    number = to_number(value)
    return "-" if number is None else f"{round(number):,}{WON}"


def format_signed_krw(value: Any) -> str:
    """``12345`` -> ``"+12,345원"``, ``-500`` -> ``"-500원"``, ``0`` -> ``"0원"``."""
    number = to_number(value)
    if number is None:
        return "-"
    won = round(number)
    return f"{won:+,}{WON}" if won else f"0{WON}"


def format_pct(value: Any) -> str:
    """A percentage (already in %, as elsewhere in kis-trader): ``1.234`` -> ``"+1.23%"``."""
    number = to_number(value)
    return "-" if number is None else f"{number:+.2f}%"


def format_qty(value: Any) -> str:
    """``10`` -> ``"10주"``."""
    number = to_number(value)
    return "-" if number is None else f"{round(number):,}{SHARES}"


def format_count(value: Any) -> str:
    """``3`` -> ``"3건"``."""
    number = to_number(value)
    return f"{0 if number is None else round(number):,}{KO['count']}"


def format_stock(code: Any, name: Any = None) -> str:
    """``삼성전자(005930)`` when a name is known, else just the code."""
    if name and code:
        return f"{name}({code})"
    return str(name or code or "-")


def stock_name(code: Any, names: Names | None = None) -> str | None:
    """The name of ``code``: from ``names`` (e.g. the session's live quotes) first, then the
    symbol file (:func:`utils.symbols.default_symbols`); ``None`` when neither knows it."""
    if not code:
        return None
    try:
        return (names(str(code)) if names else None) or default_symbols().name(str(code))
    except Exception:  # a name is a nicety; never let a lookup break an alert
        logger.debug("stock name lookup failed for %s", code, exc_info=True)
        return None


def named(data: Mapping[str, Any], names: Names | None = None) -> dict[str, Any]:
    """A copy of ``data`` with ``name`` filled in from :func:`stock_name` where missing (also
    in its ``positions`` and ``differences`` lists)."""
    out = dict(data)
    if not out.get("name"):
        name = stock_name(out.get("code"), names)
        if name:
            out["name"] = name
    for key in ("positions", "differences"):
        if key in out:
            out[key] = [named(item, names) for item in mappings(out[key])]
    return out


def stock_of(data: Mapping[str, Any]) -> str:
    """:func:`format_stock` of ``data``'s ``code`` and ``name``."""
    return format_stock(data.get("code"), data.get("name"))


def side_of(data: Mapping[str, Any]) -> str:
    """``매수`` / ``매도``."""
    side = str(data.get("side") or "")
    return SIDE_KO.get(side.lower(), side)


def price_or_market(price: Any) -> str:
    """The price in KRW, or ``시장가`` for a market order (``None``)."""
    return KO["market_order"] if price is None else format_krw(price)


def _reasons(data: Mapping[str, Any]) -> str | None:
    reasons = data.get("reasons")
    if isinstance(reasons, str):
        reasons = [reasons]
    if not isinstance(reasons, Iterable):
        return None
    text = ", ".join(str(r) for r in reasons if str(r).strip())
    return f"{KO['reason']}: {text}" if text else None


def state_label(state: Any) -> str:
    """``⏸️ HALTED``."""
    name = str(state or "-")
    emoji = STATE_EMOJI.get(name.lower(), "")
    return f"{emoji} {name.upper()}".strip()


def format_session_started(data: Mapping[str, Any]) -> str:
    """``🚀 자동매매 시작 (모의투자, live)`` and the strategies run."""
    env = str(data.get("env") or "-")
    mode = str(data.get("mode") or "-")
    lines = [f"{KO['session_started']} ({ENV_KO.get(env, env)}, {mode})"]
    strategies = data.get("strategies") or []
    if isinstance(strategies, str):
        strategies = [strategies]
    if strategies:
        lines.append(f"{KO['strategies']}: {', '.join(str(s) for s in strategies)}")
    return "\n".join(lines)


def format_session_stopped(data: Mapping[str, Any]) -> str:
    """``🛑 자동매매 종료: <reason>``."""
    reason = data.get("reason")
    return f"{KO['session_stopped']}: {reason}" if reason else KO["session_stopped"]


def format_order_sent(data: Mapping[str, Any]) -> str:
    """``📤 매수 주문: 삼성전자(005930) 10주 @ 72,000원 (지정가)`` (``@ 시장가`` for a market
    order; ``재주문 n회차`` for a re-placement), then the strategy and the reasons."""
    price = data.get("price")
    order_type = str(data.get("order_type") or ("market" if price is None else "limit"))
    head = (
        f"{KO['order_sent'].format(side=side_of(data))}: {stock_of(data)} "
        f"{format_qty(data.get('qty'))} @ {price_or_market(price)}"
    )
    notes = []
    if price is not None:
        notes.append(ORDER_TYPE_KO.get(order_type.lower(), order_type))
    attempt = to_number(data.get("attempt"))
    if attempt and attempt > 0:
        notes.append(KO["retry"].format(n=round(attempt)))
    if notes:
        head += f" ({', '.join(notes)})"
    lines = [head]
    if data.get("strategy"):
        lines.append(f"{KO['strategy']}: {data['strategy']}")
    reasons = _reasons(data)
    if reasons:
        lines.append(reasons)
    return "\n".join(lines)


def format_fill(data: Mapping[str, Any]) -> str:
    """Exactly ``📈 매수 체결: 삼성전자(005930) 10주 @ 72,000원`` (``📉 매도 체결`` for a sell),
    then ``사유: a, b`` when there are reasons and, for a sell with ``realized_pnl_krw``,
    ``실현손익: +12,345원``."""
    is_sell = str(data.get("side") or "").lower() == "sell"
    title = KO["fill_sell"] if is_sell else KO["fill_buy"]
    qty, price = format_qty(data.get("qty")), format_krw(data.get("price"))
    lines = [f"{title}: {stock_of(data)} {qty} @ {price}"]
    reasons = _reasons(data)
    if reasons:
        lines.append(reasons)
    if is_sell and to_number(data.get("realized_pnl_krw")) is not None:
        lines.append(f"{KO['realized']}: {format_signed_krw(data['realized_pnl_krw'])}")
    return "\n".join(lines)


def format_cancel(data: Mapping[str, Any]) -> str:
    """``❎ 주문 취소: 삼성전자(005930) 매수 10주 (체결 3주)`` and the reason."""
    line = f"{KO['cancel']}: {stock_of(data)} {side_of(data)} {format_qty(data.get('qty'))}"
    filled = to_number(data.get("filled_qty"))
    if filled:
        line += f" ({KO['filled']} {format_qty(filled)})"
    lines = [line]
    if data.get("reason"):
        lines.append(f"{KO['reason']}: {data['reason']}")
    return "\n".join(lines)


def format_rejected(data: Mapping[str, Any]) -> str:
    """``⚠️ 주문 거부: 삼성전자(005930) 매수 10주 @ 72,000원`` and the reason."""
    line = f"{KO['rejected']}: {stock_of(data)} {side_of(data)} {format_qty(data.get('qty'))}"
    if "price" in data:
        line += f" @ {price_or_market(data.get('price'))}"
    lines = [line]
    if data.get("strategy"):
        lines.append(f"{KO['strategy']}: {data['strategy']}")
    if data.get("reason"):
        lines.append(f"{KO['reason']}: {data['reason']}")
    return "\n".join(lines)


def format_error(message: str, data: Mapping[str, Any], *, isolated: bool = False) -> str:
    """``⚠️ 오류: <message>`` and the strategy and hook when known."""
    lines = [f"{KO['error']}: {message}"]
    details = []
    if data.get("strategy"):
        details.append(f"{KO['strategy']}: {data['strategy']}")
    if data.get("hook"):
        details.append(f"{KO['hook']}: {data['hook']}")
    if isolated:
        details.append(KO["isolated"])
    if details:
        lines.append(" · ".join(details))
    return "\n".join(lines)


def format_circuit_breaker(data: Mapping[str, Any]) -> str:
    """``🔌 서킷 브레이커: closed → open (API 호출 일시 중단)``."""
    old, new = str(data.get("old_state") or "-"), str(data.get("new_state") or "-")
    line = f"{KO['breaker']}: {old} → {new}"
    meaning = BREAKER_KO.get(new.lower())
    return f"{line} ({meaning})" if meaning else line


def format_reconcile(data: Mapping[str, Any]) -> str:
    """``🔄 재시작 대사: 차이 n건`` and one line per difference that is not ``matched``."""
    raw = data.get("differences") or []
    differences = [d for d in raw if isinstance(d, Mapping) and d.get("kind") != "matched"]
    head = f"{KO['reconcile']}: {KO['diff']} {format_count(len(differences))}"
    if not differences and data.get("ok", True):
        head += f" ({KO['matched']})"
    lines = [head]
    for diff in differences:
        kind = str(diff.get("kind") or "-")
        line = f"• {RECONCILE_KO.get(kind, kind)}: {stock_of(diff)}"
        if diff.get("strategy"):
            line += f" [{diff['strategy']}]"
        db_qty, account_qty = diff.get("db_qty"), diff.get("account_qty")
        if db_qty is not None and account_qty is not None:
            line += f" {KO['db']} {format_qty(db_qty)} → {KO['account']} {format_qty(account_qty)}"
        elif account_qty is not None:
            line += f" {KO['account']} {format_qty(account_qty)}"
        elif db_qty is not None:
            line += f" {KO['db']} {format_qty(db_qty)}"
        if diff.get("detail"):
            line += f" ({diff['detail']})"
        lines.append(line)
    if data.get("ok") is False:
        lines.append(KO["check"])
    return "\n".join(lines)


def position_lines(position: Mapping[str, Any]) -> list[str]:
    """A holding's lines: stock [strategy], shares · average · price, P&L, stop and target."""
    head = f"• {stock_of(position)}"
    if position.get("strategy"):
        head += f" [{position['strategy']}]"
    lines = [
        head,
        f"  {format_qty(position.get('qty'))} · "
        f"{KO['avg_price']} {format_krw(position.get('avg_price'))}"
        f" · {KO['price']} {format_krw(position.get('price'))}",
        f"  {KO['pnl_line']} {format_signed_krw(position.get('pnl_krw'))}"
        f" ({format_pct(position.get('pnl_pct'))})",
    ]
    limits = []
    if position.get("stop_loss") is not None:
        limits.append(f"{KO['stop_loss']} {format_krw(position['stop_loss'])}")
    if position.get("target_price") is not None:
        limits.append(f"{KO['target']} {format_krw(position['target_price'])}")
    if limits:
        lines.append("  " + " · ".join(limits))
    return lines


def mappings(value: Any) -> list[Mapping[str, Any]]:
    """The mappings in a list-like ``value`` (anything else: empty)."""
    if not isinstance(value, Iterable) or isinstance(value, str | bytes | Mapping):
        return []
    return [item for item in value if isinstance(item, Mapping)]


def format_daily_report(data: Mapping[str, Any]) -> str:
    """``📊 일일 리포트 2025-06-16`` with equity, cash, P&L, trades, fills and positions."""
    positions = mappings(data.get("positions"))
    lines = [
        f"{KO['daily_report']} {data.get('date') or ''}".rstrip(),
        f"{KO['equity']}: {format_krw(data.get('equity_krw'))}",
        f"{KO['cash']}: {format_krw(data.get('cash_krw'))}",
        f"{KO['pnl_line']}: {format_signed_krw(data.get('pnl_krw'))}"
        f" ({format_pct(data.get('pnl_pct'))})",
        f"{KO['trades']}: {format_count(data.get('trades'))}"
        f" · {KO['fills']}: {format_count(data.get('fills'))}",
        f"{KO['holdings']}: {len(positions)}{KO['items']}",
    ]
    for position in positions:
        lines.extend(position_lines(position))
    return "\n".join(lines)


def format_risk_exit(data: Mapping[str, Any]) -> str:
    """``🛡️ 손절 발동: 삼성전자(005930) 현재가 68,000원 (기준가 68,400원)`` and the strategy
    (``익절`` / ``트레일링 스탑`` / ``포트폴리오 손실 한도`` for the other rules)."""
    rule = str(data.get("rule") or "-")
    head = KO["risk_exit"].format(rule=RISK_RULE_KO.get(rule, rule))
    parts = []
    if data.get("code") or data.get("name"):
        parts.append(stock_of(data))
    if data.get("price") is not None:
        parts.append(f"{KO['price']} {format_krw(data['price'])}")
    line = f"{head}: {' '.join(parts)}" if parts else head
    if data.get("trigger_price") is not None:
        line += f" ({KO['trigger_price']} {format_krw(data['trigger_price'])})"
    lines = [line]
    if data.get("strategy"):
        lines.append(f"{KO['strategy']}: {data['strategy']}")
    return "\n".join(lines)


def format_state_changed(data: Mapping[str, Any]) -> str:
    """``⏸️ 거래 상태: HALTED (신규 주문 중지, 요청: telegram)``."""
    state = str(data.get("state") or "-")
    notes = [n for n in (STATE_KO.get(state.lower()),) if n]
    if data.get("by"):
        notes.append(f"{KO['by']}: {data['by']}")
    emoji = STATE_EMOJI.get(state.lower(), "ℹ️")
    line = f"{emoji} {KO['state']}: {state.upper()}"
    return f"{line} ({', '.join(notes)})" if notes else line


