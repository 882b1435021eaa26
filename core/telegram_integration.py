"""Telegram alerts and remote commands for the live trading bot (python-telegram-bot 22).

What is sent
    Plain-text Korean messages (no parse mode) to one chat, ``chat_id``:

    * engine events given to :meth:`Notifier.on_event` (session start/stop, orders sent, fills,
      cancels, rejections and strategy errors, circuit breaker, restart reconciliation, daily
      report, risk exits, state changes), each mapped to one of :data:`ALERT_KINDS` and rendered
      by a small pure ``format_*`` function of this module;
    * free text given to :meth:`Notifier.send`;
    * answers to the commands ``/status /positions /pnl /orders /pause /resume /reduce_only
      /stop /help``, read with ``getUpdates`` long polling from that chat only (messages from
      any other chat are logged at warning with their chat id and never answered), and obeyed
      only from the senders in ``allowed_user_ids`` (``TELEGRAM_ALLOWED_USER_IDS``): anyone
      else in that chat — a group member — is refused, logged and told so once. Updates that
      were pending before :meth:`Notifier.start` are dropped (``deleteWebhook`` with
      ``drop_pending_updates``), so a ``/stop`` sent while the bot was down is never executed.

    All user-visible Korean words live in the "Korean wording" section below.

Threading model
    :meth:`Notifier.start` starts one daemon thread that owns an asyncio event loop running a
    sender task (drains a bounded in-memory FIFO queue, one message at a time) and, when
    ``commands`` is on and a controller is given, a polling task. Callers on any thread only
    append to the queue under a short lock and wake the loop with ``call_soon_threadsafe``, so
    :meth:`Notifier.send` and :meth:`Notifier.on_event` never wait for the network. Controller
    methods run on a one-worker thread pool, so a slow controller does not hold up alerts.

Errors
    :meth:`Notifier.send` and :meth:`Notifier.on_event` never raise. A failed ``sendMessage``
    (network error, timeout, HTTP 5xx, 429 flood control) is retried ``retry_attempts`` times in
    all with exponential back-off (tenacity; a 429's ``retry_after`` is honoured), then counted in
    :attr:`Notifier.failed_count` and logged. Client errors (bad request, wrong token, blocked)
    are not retried. Delivery is at least once: a timed-out attempt may have arrived.
    :meth:`Notifier.stop` flushes the queue for at most its timeout and always returns by then.

Secrets
    The bot token never reaches python-telegram-bot or httpx: the :class:`telegram.Bot` is built
    with a placeholder token and a small httpx transport puts the real one into the URL path
    on the wire. So no URL, exception text, ``repr`` or log record of these libraries (httpx logs
    every request URL at INFO, python-telegram-bot logs its API URL at DEBUG and puts the token in
    some error texts and in ``repr(bot)``) can carry it. A masking :class:`logging.Filter` on
    this module's, httpx's, httpcore's and telegram's loggers is a second line of defence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, Final, Literal, Protocol, TypeVar
from urllib.parse import quote, urlsplit

import httpx
from telegram import Bot, Chat, Update
from telegram.error import (
    BadRequest,
    Conflict,
    InvalidToken,
    NetworkError,
    RetryAfter,
)
from telegram.request import HTTPXRequest
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from core.telegram_commands import OPERATOR_COMMANDS, OperatorCommands
from framework.events import Event, OrderCancelled, OrderFilled
from utils.log_masking import install_log_masking, mask_text, register_secret

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

__all__ = [
    "ALERT_KINDS",
    "COMMANDS",
    "DEFAULT_BASE_URL",
    "EVENT_ALERT_KINDS",
    "HELP_TEXT",
    "Controller",
    "Notifier",
    "event_data",
    "format_cancel",
    "format_circuit_breaker",
    "format_daily_report",
    "format_error",
    "format_event",
    "format_fill",
    "format_krw",
    "format_order_sent",
    "format_orders",
    "format_pct",
    "format_pnl",
    "format_positions",
    "format_reconcile",
    "format_rejected",
    "format_risk_exit",
    "format_session_started",
    "format_session_stopped",
    "format_signed_krw",
    "format_state_changed",
    "format_status",
    "format_stock",
    "parse_user_ids",
]

ALERT_KINDS: Final[tuple[str, ...]] = (
    "start", "stop", "order_sent", "fill", "cancel", "error", "circuit_breaker", "reconcile",
    "daily_report", "risk",
)
"""Alert kinds that can be switched off with ``Notifier(alerts={kind: False})``."""

EVENT_ALERT_KINDS: Final[Mapping[str, str]] = {
    "session_started": "start",
    "session_stopped": "stop",
    "order_sent": "order_sent",
    "order_filled": "fill",
    "order_cancelled": "cancel",
    "order_rejected": "error",
    "strategy_error": "error",
    "strategy_isolated": "error",
    "circuit_breaker": "circuit_breaker",
    "reconcile": "reconcile",
    "daily_report": "daily_report",
    "risk_exit": "risk",
    "risk_limit": "risk",
    "state_changed": "risk",
}
"""Engine event kind -> alert kind; other events are ignored unless ``data["level"] == "error"``."""

DEFAULT_BASE_URL: Final = "https://api.telegram.org"
MAX_MESSAGE_CHARS: Final = 4000  # Telegram's limit is 4096; longer texts go out in parts
_TOKEN_PLACEHOLDER: Final = "REDACTED"  # noqa: S105 - what the libraries see instead
_MAX_RETRY_AFTER_S: Final = 60.0
_MAX_BACKOFF_S: Final = 30.0


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

COMMANDS: Final[Mapping[str, str]] = {
    "status": "상태 요약",
    "positions": "보유 종목",
    "pnl": "오늘 손익",
    "orders": "미체결 주문",
    "pause": "거래 중지 (HALTED)",
    "resume": "거래 재개 (ACTIVE)",
    "reduce_only": "청산 주문만 허용 (REDUCE_ONLY)",
    "stop": "자동매매 종료",
    **OPERATOR_COMMANDS,
    "help": "도움말",
}
"""Commands the bot answers, with their Korean descriptions."""

HELP_TEXT: Final = "🤖 사용 가능한 명령\n" + "\n".join(
    f"/{name} – {text}" for name, text in COMMANDS.items()
)


# == pure formatters =============================================================================


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def format_krw(value: Any) -> str:
    """``72000`` -> ``"72,000원"`` (rounded to whole won; ``"-"`` when missing)."""
    number = _number(value)
    return "-" if number is None else f"{round(number):,}{WON}"


def format_signed_krw(value: Any) -> str:
    """``12345`` -> ``"+12,345원"``, ``-500`` -> ``"-500원"``, ``0`` -> ``"0원"``."""
    number = _number(value)
    if number is None:
        return "-"
    won = round(number)
    return f"{won:+,}{WON}" if won else f"0{WON}"


def format_pct(value: Any) -> str:
    """A percentage (already in %, as elsewhere in kis-trader): ``1.234`` -> ``"+1.23%"``."""
    number = _number(value)
    return "-" if number is None else f"{number:+.2f}%"


def _qty(value: Any) -> str:
    number = _number(value)
    return "-" if number is None else f"{round(number):,}{SHARES}"


def _count(value: Any) -> str:
    number = _number(value)
    return f"{0 if number is None else round(number):,}{KO['count']}"


def format_stock(code: Any, name: Any = None) -> str:
    """``삼성전자 (005930)`` when a name is known, else just the code."""
    if name and code:
        return f"{name} ({code})"
    return str(name or code or "-")


def _stock(data: Mapping[str, Any]) -> str:
    return format_stock(data.get("code"), data.get("name"))


def _side(data: Mapping[str, Any]) -> str:
    side = str(data.get("side") or "")
    return SIDE_KO.get(side.lower(), side)


def _price_or_market(price: Any) -> str:
    return KO["market_order"] if price is None else format_krw(price)


def _reasons(data: Mapping[str, Any]) -> str | None:
    reasons = data.get("reasons")
    if isinstance(reasons, str):
        reasons = [reasons]
    if not isinstance(reasons, Iterable):
        return None
    text = ", ".join(str(r) for r in reasons if str(r).strip())
    return f"{KO['reason']}: {text}" if text else None


def _state_label(state: Any) -> str:
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
    """``📤 매수 주문: 삼성전자 (005930) 10주 @ 72,000원 (지정가)`` (``@ 시장가`` for a market
    order; ``재주문 n회차`` for a re-placement), then the strategy and the reasons."""
    price = data.get("price")
    order_type = str(data.get("order_type") or ("market" if price is None else "limit"))
    head = (
        f"{KO['order_sent'].format(side=_side(data))}: {_stock(data)} {_qty(data.get('qty'))} "
        f"@ {_price_or_market(price)}"
    )
    notes = []
    if price is not None:
        notes.append(ORDER_TYPE_KO.get(order_type.lower(), order_type))
    attempt = _number(data.get("attempt"))
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
    """Exactly ``📈 매수 체결: 삼성전자 (005930) 10주 @ 72,000원`` (``📉 매도 체결`` for a sell),
    then ``사유: a, b`` when there are reasons and, for a sell with ``realized_pnl_krw``,
    ``실현손익: +12,345원``."""
    is_sell = str(data.get("side") or "").lower() == "sell"
    title = KO["fill_sell"] if is_sell else KO["fill_buy"]
    lines = [f"{title}: {_stock(data)} {_qty(data.get('qty'))} @ {format_krw(data.get('price'))}"]
    reasons = _reasons(data)
    if reasons:
        lines.append(reasons)
    if is_sell and _number(data.get("realized_pnl_krw")) is not None:
        lines.append(f"{KO['realized']}: {format_signed_krw(data['realized_pnl_krw'])}")
    return "\n".join(lines)


def format_cancel(data: Mapping[str, Any]) -> str:
    """``❎ 주문 취소: 삼성전자 (005930) 매수 10주 (체결 3주)`` and the reason."""
    line = f"{KO['cancel']}: {_stock(data)} {_side(data)} {_qty(data.get('qty'))}"
    filled = _number(data.get("filled_qty"))
    if filled:
        line += f" ({KO['filled']} {_qty(filled)})"
    lines = [line]
    if data.get("reason"):
        lines.append(f"{KO['reason']}: {data['reason']}")
    return "\n".join(lines)


def format_rejected(data: Mapping[str, Any]) -> str:
    """``⚠️ 주문 거부: 삼성전자 (005930) 매수 10주 @ 72,000원`` and the reason."""
    line = f"{KO['rejected']}: {_stock(data)} {_side(data)} {_qty(data.get('qty'))}"
    if "price" in data:
        line += f" @ {_price_or_market(data.get('price'))}"
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
    head = f"{KO['reconcile']}: {KO['diff']} {_count(len(differences))}"
    if not differences and data.get("ok", True):
        head += f" ({KO['matched']})"
    lines = [head]
    for diff in differences:
        kind = str(diff.get("kind") or "-")
        line = f"• {RECONCILE_KO.get(kind, kind)}: {_stock(diff)}"
        if diff.get("strategy"):
            line += f" [{diff['strategy']}]"
        db_qty, account_qty = diff.get("db_qty"), diff.get("account_qty")
        if db_qty is not None and account_qty is not None:
            line += f" {KO['db']} {_qty(db_qty)} → {KO['account']} {_qty(account_qty)}"
        elif account_qty is not None:
            line += f" {KO['account']} {_qty(account_qty)}"
        elif db_qty is not None:
            line += f" {KO['db']} {_qty(db_qty)}"
        if diff.get("detail"):
            line += f" ({diff['detail']})"
        lines.append(line)
    if data.get("ok") is False:
        lines.append(KO["check"])
    return "\n".join(lines)


def _position_lines(position: Mapping[str, Any]) -> list[str]:
    head = f"• {_stock(position)}"
    if position.get("strategy"):
        head += f" [{position['strategy']}]"
    lines = [
        head,
        f"  {_qty(position.get('qty'))} · {KO['avg_price']} {format_krw(position.get('avg_price'))}"
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


def _mappings(value: Any) -> list[Mapping[str, Any]]:
    if not isinstance(value, Iterable) or isinstance(value, str | bytes | Mapping):
        return []
    return [item for item in value if isinstance(item, Mapping)]


def format_daily_report(data: Mapping[str, Any]) -> str:
    """``📊 일일 리포트 2025-06-16`` with equity, cash, P&L, trades, fills and positions."""
    positions = _mappings(data.get("positions"))
    lines = [
        f"{KO['daily_report']} {data.get('date') or ''}".rstrip(),
        f"{KO['equity']}: {format_krw(data.get('equity_krw'))}",
        f"{KO['cash']}: {format_krw(data.get('cash_krw'))}",
        f"{KO['pnl_line']}: {format_signed_krw(data.get('pnl_krw'))}"
        f" ({format_pct(data.get('pnl_pct'))})",
        f"{KO['trades']}: {_count(data.get('trades'))}"
        f" · {KO['fills']}: {_count(data.get('fills'))}",
        f"{KO['holdings']}: {len(positions)}{KO['items']}",
    ]
    for position in positions:
        lines.extend(_position_lines(position))
    return "\n".join(lines)


def format_risk_exit(data: Mapping[str, Any]) -> str:
    """``🛡️ 손절 발동: 삼성전자 (005930) 현재가 68,000원 (기준가 68,400원)`` and the strategy
    (``익절`` / ``트레일링 스탑`` / ``포트폴리오 손실 한도`` for the other rules)."""
    rule = str(data.get("rule") or "-")
    head = KO["risk_exit"].format(rule=RISK_RULE_KO.get(rule, rule))
    parts = []
    if data.get("code") or data.get("name"):
        parts.append(_stock(data))
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


def format_status(status: Mapping[str, Any]) -> str:
    """Answer to ``/status``: mode, environment, trading state, market, equity, strategies."""
    env, mode = str(status.get("env") or "-"), str(status.get("mode") or "-")
    market = str(status.get("market") or "-")
    state = str(status.get("state") or "-")
    lines = [
        KO["status"],
        f"{KO['mode']}: {ENV_KO.get(env, env)} · {mode}",
        f"{KO['state']}: {_state_label(state)} ({STATE_KO.get(state.lower(), '-')})",
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
    strategies = _mappings(status.get("strategies"))
    lines.append(f"{KO['strategies']} {len(strategies)}{KO['items']}")
    for s in strategies:
        active = KO["active"] if s.get("active") else KO["inactive"]
        trades, errors = _count(s.get("trades_today")), _count(s.get("errors"))
        lines.append(
            f"• {s.get('name', '-')}: {active} · {KO['trades_today']} {trades}"
            f" · {KO['errors']} {errors}"
        )
    return "\n".join(lines)


def format_positions(positions: Sequence[Mapping[str, Any]]) -> str:
    """Answer to ``/positions``: one block per holding."""
    rows = _mappings(positions)
    if not rows:
        return KO["no_positions"]
    lines = [f"{KO['positions']} {len(rows)}{KO['items']}"]
    for position in rows:
        lines.extend(_position_lines(position))
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
        f"{KO['trades']}: {_count(pnl.get('trades'))}",
    ])


def _clock(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%H:%M:%S")
    return str(value) if value else ""


def format_orders(orders: Sequence[Mapping[str, Any]]) -> str:
    """Answer to ``/orders``: open orders with their fill progress."""
    rows = _mappings(orders)
    if not rows:
        return KO["no_orders"]
    lines = [f"{KO['orders']} {_count(len(rows))}"]
    for order in rows:
        line = (
            f"• {_side(order)} {_stock(order)} {_qty(order.get('qty'))}"
            f" @ {_price_or_market(order.get('price'))}"
        )
        filled = _number(order.get("filled_qty"))
        if filled:
            line += f" ({KO['filled']} {_qty(filled)})"
        if order.get("status"):
            line += f" · {order['status']}"
        lines.append(line)
        details = [str(x) for x in (order.get("strategy"), _clock(order.get("created_at")),
                                    order.get("client_order_id")) if x]
        if details:
            lines.append("  " + " · ".join(details))
    return "\n".join(lines)


def _lookup(names: Callable[[str], str | None] | None, code: Any) -> str | None:
    if names is None or not code:
        return None
    try:
        return names(str(code)) or None
    except Exception:  # a name is a nicety; never let a lookup break an alert
        logger.debug("stock name lookup failed for %s", code, exc_info=True)
        return None


def _named(data: Mapping[str, Any], names: Callable[[str], str | None] | None) -> dict[str, Any]:
    """A copy of ``data`` with ``name`` filled from ``names(code)`` where missing (also in the
    ``positions`` and ``differences`` lists)."""
    out = dict(data)
    if not out.get("name"):
        name = _lookup(names, out.get("code"))
        if name:
            out["name"] = name
    for key in ("positions", "differences"):
        if key in out:
            out[key] = [_named(item, names) for item in _mappings(out[key])]
    return out


def event_data(event: Event) -> dict[str, Any]:
    """The fields of ``event`` as the formatters read them: ``level`` added; for a fill
    ``qty``/``price`` are the fill's, for a cancel ``qty`` is the unfilled rest."""
    data = event.data()
    data["level"] = event.level
    if isinstance(event, OrderFilled):
        data["qty"], data["price"] = event.fill_qty, event.fill_price
    elif isinstance(event, OrderCancelled):
        data["qty"] = event.unfilled_qty
    return data


def format_event(
    kind: str,
    message: str,
    data: Mapping[str, Any],
    names: Callable[[str], str | None] | None = None,
) -> tuple[str, str] | None:
    """``(alert kind, Korean text)`` for an engine event, or None when it is not alerted.

    Known kinds are in :data:`EVENT_ALERT_KINDS`; any other event is an ``error`` alert when
    ``data["level"] == "error"`` and ignored otherwise. ``names`` maps a stock code to its name.
    """
    data = _named(data if isinstance(data, Mapping) else {}, names)
    alert = EVENT_ALERT_KINDS.get(kind)
    if alert is None:
        if str(data.get("level") or "").lower() not in ("error", "critical"):
            return None
        return "error", format_error(message, data)
    formatter: Callable[[Mapping[str, Any]], str] | None = {
        "session_started": format_session_started,
        "session_stopped": format_session_stopped,
        "order_sent": format_order_sent,
        "order_filled": format_fill,
        "order_cancelled": format_cancel,
        "order_rejected": format_rejected,
        "circuit_breaker": format_circuit_breaker,
        "reconcile": format_reconcile,
        "daily_report": format_daily_report,
        "risk_exit": format_risk_exit,
        "risk_limit": format_risk_exit,
        "state_changed": format_state_changed,
    }.get(kind)
    if formatter is not None:
        return alert, formatter(data)
    return alert, format_error(message, data, isolated=kind == "strategy_isolated")


def _split_text(text: str, limit: int = MAX_MESSAGE_CHARS) -> list[str]:
    """Split a long text into parts of at most ``limit`` characters, at line breaks if possible."""
    if len(text) <= limit:
        return [text]
    parts: list[str] = []
    current = ""
    for line in text.split("\n"):
        while len(line) > limit:
            if current:
                parts.append(current)
                current = ""
            parts.append(line[:limit])
            line = line[limit:]
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) > limit:
            parts.append(current)
            current = line
        else:
            current = candidate
    if current:
        parts.append(current)
    return [p for p in parts if p.strip()]


# == the controller the live session implements ==================================================


class Controller(Protocol):
    """What the commands read and change; implemented by the live session. Called from the
    notifier's worker thread, so implementations must be thread-safe."""

    def status(self) -> dict[str, Any]:
        """``{"mode", "env", "state", "market", "next_event", "equity_krw", "cash_krw",
        "strategies": [{"name", "active", "trades_today", "errors"}]}``."""
        ...

    def positions(self) -> list[dict[str, Any]]:
        """``[{"strategy", "code", "name", "qty", "avg_price", "price", "pnl_krw", "pnl_pct",
        "stop_loss", "target_price"}]``."""
        ...

    def pnl(self) -> dict[str, Any]:
        """``{"date", "start_equity_krw", "equity_krw", "pnl_krw", "pnl_pct", "realized_krw",
        "unrealized_krw", "trades"}``."""
        ...

    def orders(self) -> list[dict[str, Any]]:
        """Open orders ``[{"client_order_id", "strategy", "code", "name", "side", "qty",
        "filled_qty", "price" (None = market), "status", "created_at"}]``."""
        ...

    def set_state(self, state: str) -> None:
        """Switch trading to ``"halted"``, ``"active"`` or ``"reduce_only"``."""
        ...

    def request_stop(self) -> None:
        """Ask the session to shut down."""
        ...


# == secrets: keep the token out of URLs, reprs and log records ==================================


class _Secret:
    """Holds the token; its repr never shows it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "_Secret('***')"


_MASKED_LOGGER_PREFIXES: Final = ("httpx", "httpcore", "telegram")


def _install_mask_filter() -> None:
    """Attach the masking filter to this module's logger and to every existing httpx, httpcore and
    telegram logger (a logger's filters only see records created on that very logger)."""
    loggers: list[logging.Logger] = [logger]
    for name, item in list(logging.Logger.manager.loggerDict.items()):
        if isinstance(item, logging.Logger) and name.split(".")[0] in _MASKED_LOGGER_PREFIXES:
            loggers.append(item)
    for name in _MASKED_LOGGER_PREFIXES:
        loggers.append(logging.getLogger(name))
    for each in loggers:
        install_log_masking(each)


class _TokenTransport(httpx.AsyncBaseTransport):
    """Swaps the placeholder token in ``/bot<placeholder>/`` for the real one on the wire only;
    httpx and python-telegram-bot keep seeing (and logging) the placeholder."""

    def __init__(self, inner: httpx.AsyncBaseTransport, secret: _Secret) -> None:
        self._inner = inner
        self._secret = secret
        self._needle = f"/bot{_TOKEN_PLACEHOLDER}/".encode("ascii")

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        raw_path = request.url.raw_path
        if self._needle in raw_path:
            token = quote(self._secret.reveal(), safe=":").encode("ascii")
            real = raw_path.replace(self._needle, b"/bot" + token + b"/", 1)
            request = httpx.Request(
                request.method,
                request.url.copy_with(raw_path=real),
                headers=request.headers,
                stream=request.stream,
                extensions=request.extensions,
            )
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()

    def __repr__(self) -> str:
        return "_TokenTransport()"


def _env_proxy(url: str) -> str | None:
    """The proxy the environment (``HTTPS_PROXY`` etc., ``NO_PROXY``) gives for ``url``: httpx
    ignores those variables once a custom transport is given, so it is applied here."""
    parts = urlsplit(url)
    if not parts.hostname or urllib.request.proxy_bypass(parts.hostname):
        return None
    proxies = urllib.request.getproxies()
    return proxies.get(parts.scheme) or proxies.get("all")


def _retryable(exc: BaseException) -> bool:
    """Network trouble, timeouts, HTTP 5xx and flood control are retried; client errors not."""
    if isinstance(exc, RetryAfter):
        return True
    return isinstance(exc, NetworkError) and not isinstance(exc, BadRequest)


def _seconds(value: Any) -> float:
    if isinstance(value, timedelta):
        return value.total_seconds()
    number = _number(value)
    return 1.0 if number is None else number


def _describe(exc: BaseException) -> str:
    return mask_text(f"{type(exc).__name__}: {exc}")[:300]


# == the notifier ================================================================================

_Counter = Literal["sent", "dropped", "failed"]


def parse_user_ids(text: str | None, name: str = "TELEGRAM_ALLOWED_USER_IDS") -> frozenset[int]:
    """``"123, 456"`` -> ``{123, 456}`` (empty or ``None`` -> empty). Raises ``ValueError``
    naming ``name`` and the bad item for anything but comma-separated numeric ids."""
    ids: set[int] = set()
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        if not item.isdigit():
            raise ValueError(
                f"{name}: {item!r} is not a numeric Telegram user id "
                "(expected e.g. 123456789,987654321)"
            )
        ids.add(int(item))
    return frozenset(ids)


class Notifier:
    """Telegram alerts and commands for one chat; see the module docstring.

    Args:
        token: bot token from @BotFather (secret: never logged, not in ``repr``).
        chat_id: the chat alerts go to and the only chat whose commands are obeyed (an int id,
            or ``"@channel"``).
        base_url: root of the Bot API (default ``https://api.telegram.org``); requests go to
            ``{base_url}/bot{token}/{method}``.
        alerts: alert kind -> enabled (see :data:`ALERT_KINDS`, plus ``"info"`` for
            :meth:`send`'s default kind); a missing kind is enabled. Unknown kinds raise
            ValueError.
        controller: answers the commands; without one (or with ``commands=False``, or without
            ``allowed_user_ids``) no ``getUpdates`` polling runs.
        allowed_user_ids: Telegram user ids whose commands are obeyed (in ``chat_id`` only);
            anyone else in that chat is refused and logged. Empty or ``None``: commands off
            (said once at :meth:`start`), alerts still go out.
        names: stock code -> Korean name, for codes whose event data carries no name.
        max_queue: queued messages beyond this are dropped and counted.
        send_timeout_s: connect/read/write timeout of one Telegram request.
        poll_interval_s: how long one ``getUpdates`` long poll may wait on the server (rounded up
            to whole seconds, at least 1; commands are answered as soon as they arrive either
            way), and the base of the back-off after a failed poll.
        retry_attempts: attempts per message (first try included).
        retry_backoff_s: first back-off between attempts, doubled each time (at most 30 s).

    Raises:
        ValueError: for an empty token or chat id, unknown alert kinds or non-positive limits.
    """

    def __init__(
        self,
        token: str,
        chat_id: str | int,
        *,
        base_url: str | None = None,
        alerts: Mapping[str, bool] | None = None,
        controller: Controller | None = None,
        operator: OperatorCommands | None = None,
        commands: bool = True,
        allowed_user_ids: Iterable[int] | None = None,
        names: Callable[[str], str | None] | None = None,
        max_queue: int = 1000,
        send_timeout_s: float = 10.0,
        poll_interval_s: float = 1.0,
        retry_attempts: int = 3,
        retry_backoff_s: float = 1.0,
    ) -> None:
        if not isinstance(token, str) or not token.strip():
            raise ValueError("a Telegram bot token is required")
        if chat_id is None or (isinstance(chat_id, str) and not chat_id.strip()):
            raise ValueError("a Telegram chat id is required")
        unknown = sorted(set(alerts or {}) - {*ALERT_KINDS, "info"})
        if unknown:
            raise ValueError(f"unknown alert kinds {unknown}; known: {', '.join(ALERT_KINDS)}")
        if max_queue < 1 or send_timeout_s <= 0 or poll_interval_s <= 0 or retry_attempts < 1:
            raise ValueError("max_queue, send_timeout_s, poll_interval_s and retry_attempts "
                             "must be positive")
        if retry_backoff_s < 0:
            raise ValueError("retry_backoff_s must not be negative")
        self._token = _Secret(token.strip())
        register_secret(self._token.reveal())
        self._chat_id: str | int = chat_id.strip() if isinstance(chat_id, str) else chat_id
        self._base_url = (base_url or DEFAULT_BASE_URL).rstrip("/")
        self._alerts = {kind: bool(on) for kind, on in (alerts or {}).items()}
        self._controller = controller
        self._operator = operator
        self._allowed_users = frozenset(int(u) for u in (allowed_user_ids or ()))
        self._commands_wanted = bool(commands) and controller is not None
        self._commands = self._commands_wanted and bool(self._allowed_users)
        self._refused_users: set[int] = set()
        self._names = names
        self._max_queue = int(max_queue)
        self._send_timeout_s = float(send_timeout_s)
        self._poll_interval_s = float(poll_interval_s)
        self._long_poll_s = max(1, math.ceil(poll_interval_s))
        self._retry_attempts = int(retry_attempts)
        self._retry_backoff_s = float(retry_backoff_s)

        self._lock = threading.Lock()
        self._queue: deque[str] = deque()
        self._state = "new"  # new -> running -> stopping -> stopped
        self._counts = {"sent": 0, "dropped": 0, "failed": 0}
        self._full_logged = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._wakeup: asyncio.Event | None = None
        self._stop_requested: asyncio.Event | None = None
        self._flush_deadline = 0.0
        self._closing = False
        self._bot: Bot | None = None
        self._requests: tuple[HTTPXRequest, ...] = ()
        self._executor: ThreadPoolExecutor | None = None
        self._username: str | None = None

    def __repr__(self) -> str:
        return (
            f"Notifier(chat_id={self._chat_id!r}, base_url={self._base_url!r}, "
            f"state={self._state!r}, commands={self._commands}, sent={self.sent_count}, "
            f"dropped={self.dropped_count}, failed={self.failed_count})"
        )

    # -- counters ---------------------------------------------------------------------------------

    @property
    def sent_count(self) -> int:
        """Messages delivered (alerts, free text and command answers)."""
        with self._lock:
            return self._counts["sent"]

    @property
    def dropped_count(self) -> int:
        """Messages never attempted: queue full, notifier not running, or still queued when
        :meth:`stop` ran out of time. Disabled alert kinds are not counted."""
        with self._lock:
            return self._counts["dropped"]

    @property
    def failed_count(self) -> int:
        """Messages attempted but not delivered (retries exhausted, a client error, or cut off
        by :meth:`stop`)."""
        with self._lock:
            return self._counts["failed"]

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        with self._lock:
            return self._state == "running"

    def _bump(self, counter: _Counter) -> None:
        with self._lock:
            self._counts[counter] += 1

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the background thread (sender, and command polling when enabled).

        Does nothing when already running. Raises RuntimeError after :meth:`stop` (a notifier
        is not restartable) and ValueError for a malformed ``base_url``.
        """
        with self._lock:
            if self._state == "running":
                return
            if self._state != "new":
                raise RuntimeError("a stopped Notifier cannot be started again")
            _install_mask_filter()
            self._bot, self._requests = self._build_bot()
            self._loop = asyncio.new_event_loop()
            self._wakeup = asyncio.Event()
            self._stop_requested = asyncio.Event()
            if self._commands:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="telegram-command")
            self._thread = threading.Thread(target=self._run, name="telegram-notifier",
                                            daemon=True)
            self._state = "running"
            self._thread.start()
        logger.info("telegram notifier started (commands %s)", "on" if self._commands else "off")
        if self._commands_wanted and not self._commands:
            logger.warning(
                "telegram commands are off: set TELEGRAM_ALLOWED_USER_IDS to the numeric user "
                "ids allowed to send them (alerts still go out)"
            )

    def stop(self, timeout_s: float = 5.0) -> None:
        """Flush queued messages (for at most ``timeout_s``), stop polling and close the HTTP
        clients. Returns within ``timeout_s`` even when Telegram hangs; messages still queued
        then are dropped and counted. Idempotent; never raises."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        with self._lock:
            if self._state == "new":
                self._state = "stopped"
                return
            thread = self._thread
            if self._state == "running":
                self._state = "stopping"
                margin = min(0.5, 0.2 * max(0.0, timeout_s))
                if self._loop is not None:
                    with contextlib.suppress(RuntimeError):  # the loop already ended
                        self._loop.call_soon_threadsafe(self._begin_stop, deadline - margin)
        if thread is None or thread is threading.current_thread():
            return
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            logger.warning("telegram notifier did not finish within %.1f s", timeout_s)

    def __enter__(self) -> Notifier:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the public, non-blocking entry points ----------------------------------------------------

    def send(self, text: str, kind: str = "info") -> bool:
        """Queue ``text`` for the chat. Never blocks and never raises.

        Returns False when the message is dropped: its ``kind`` is disabled, the queue holds
        ``max_queue`` messages, or the notifier is not running.
        """
        try:
            if not self._alerts.get(kind, True):
                return False
            return self._enqueue(str(text), from_loop=False)
        except Exception:
            logger.exception("telegram send failed before queueing")
            return False

    def on_event(self, event: Event) -> None:
        """Engine event subscriber (``Trader(subscribers=[notifier.on_event])``): maps the
        typed event to an alert kind and Korean text (see :func:`format_event`) and queues it.
        Never blocks, never raises."""
        kind = event.kind
        try:
            message, data = event.message, event_data(event)
            try:
                formatted = format_event(kind, message, data, self._names)
            except Exception:
                logger.exception("could not format engine event %s", kind)
                alert = EVENT_ALERT_KINDS.get(kind)
                formatted = None if alert is None else (alert, f"ℹ️ {kind}: {message}")
            if formatted is not None:
                self.send(formatted[1], formatted[0])
        except Exception:
            logger.exception("telegram on_event failed for %s", kind)

    def _enqueue(self, text: str, *, from_loop: bool) -> bool:
        if not text.strip():
            return False
        with self._lock:
            accepting = self._state == "running" or (from_loop and self._state == "stopping")
            if not accepting or self._loop is None or self._wakeup is None:
                self._counts["dropped"] += 1
                return False
            if len(self._queue) >= self._max_queue:
                self._counts["dropped"] += 1
                if not self._full_logged:
                    self._full_logged = True
                    logger.warning("telegram queue full (%d); dropping messages", self._max_queue)
                return False
            self._queue.append(text)
            if from_loop:
                self._wakeup.set()
            else:
                try:
                    self._loop.call_soon_threadsafe(self._wakeup.set)
                except RuntimeError:  # the loop has ended
                    self._queue.pop()
                    self._counts["dropped"] += 1
                    return False
        return True

    # -- the background thread --------------------------------------------------------------------

    def _build_bot(self) -> tuple[Bot, tuple[HTTPXRequest, ...]]:
        parts = urlsplit(self._base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"base_url must be an http(s) URL, got {self._base_url!r}")
        proxy = _env_proxy(self._base_url)
        timeout = self._send_timeout_s

        def request(pool: int) -> HTTPXRequest:
            inner = httpx.AsyncHTTPTransport(
                limits=httpx.Limits(max_connections=pool), proxy=proxy
            )
            return HTTPXRequest(
                connection_pool_size=pool,
                read_timeout=timeout,
                write_timeout=timeout,
                connect_timeout=timeout,
                pool_timeout=timeout,
                httpx_kwargs={"transport": _TokenTransport(inner, self._token)},
            )

        send_request, updates_request = request(4), request(1)
        bot = Bot(
            _TOKEN_PLACEHOLDER,
            base_url=f"{self._base_url}/bot",
            base_file_url=f"{self._base_url}/file/bot",
            request=send_request,
            get_updates_request=updates_request,
        )
        return bot, (send_request, updates_request)

    def _run(self) -> None:
        loop = _need(self._loop)
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._main())
        except BaseException:
            logger.exception("telegram notifier loop crashed")
        finally:
            with self._lock:
                self._state = "stopped"
                leftover = len(self._queue)
                self._queue.clear()
                self._counts["dropped"] += leftover
            if leftover:
                logger.warning("telegram notifier stopped with %d unsent messages", leftover)
            try:
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for task in pending:
                    task.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                asyncio.set_event_loop(None)
                loop.close()

    def _begin_stop(self, flush_deadline: float) -> None:
        self._flush_deadline = flush_deadline
        if self._stop_requested is not None:
            self._stop_requested.set()

    async def _main(self) -> None:
        stop_requested, wakeup = _need(self._stop_requested), _need(self._wakeup)
        sender = asyncio.create_task(self._sender(), name="telegram-sender")
        poller = (
            asyncio.create_task(self._poller(), name="telegram-poller") if self._commands else None
        )
        try:
            await stop_requested.wait()
        finally:
            if poller is not None:
                poller.cancel()
                await asyncio.gather(poller, return_exceptions=True)
            self._closing = True
            wakeup.set()
            budget = max(0.0, self._flush_deadline - time.monotonic())
            try:
                await asyncio.wait_for(sender, budget)
            except TimeoutError:
                logger.warning("telegram notifier: flushing the queue timed out")
            except Exception:
                logger.exception("telegram sender failed")
            await self._close_clients()
            if self._executor is not None:
                self._executor.shutdown(wait=False, cancel_futures=True)

    async def _close_clients(self) -> None:
        try:
            await asyncio.wait_for(
                asyncio.gather(*(r.shutdown() for r in self._requests), return_exceptions=True),
                1.0,
            )
        except TimeoutError:
            logger.warning("telegram notifier: closing the HTTP clients timed out")

    # -- sending ----------------------------------------------------------------------------------

    def _pop(self) -> str | None:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
            self._full_logged = False
            return None

    async def _sender(self) -> None:
        wakeup = _need(self._wakeup)
        while True:
            text = self._pop()
            if text is not None:
                await self._deliver(text)
                continue
            if self._closing:
                return
            wakeup.clear()
            with self._lock:
                if self._queue:
                    continue
            await wakeup.wait()

    async def _deliver(self, text: str) -> None:
        try:
            for part in _split_text(text):
                await self._send_part(part)
        except asyncio.CancelledError:
            self._bump("failed")
            raise
        except Exception as exc:
            self._bump("failed")
            logger.warning("telegram message not delivered: %s", _describe(exc))
        else:
            self._bump("sent")

    def _retry_wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, RetryAfter):
            return min(_seconds(exc.retry_after), _MAX_RETRY_AFTER_S)
        return min(self._retry_backoff_s * 2 ** (state.attempt_number - 1), _MAX_BACKOFF_S)

    def _log_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        logger.debug("telegram send attempt %d failed (%s); retrying", state.attempt_number,
                     _describe(exc) if exc else "?")

    async def _send_part(self, text: str) -> None:
        bot = _need(self._bot)
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._retry_attempts),
            wait=self._retry_wait,
            retry=retry_if_exception(_retryable),
            before_sleep=self._log_retry,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                await bot.send_message(chat_id=self._chat_id, text=text)

    # -- commands ---------------------------------------------------------------------------------

    def _poll_backoff(self, failures: int) -> float:
        return min(self._poll_interval_s * 2 ** min(failures - 1, 8), _MAX_BACKOFF_S)

    async def _bootstrap(self) -> bool:
        """Learn the bot's username and drop updates sent while it was down; retried until done.
        False when the token is rejected."""
        bot = _need(self._bot)
        failures = 0
        while True:
            try:
                me = await bot.get_me()
                self._username = me.username
                await bot.delete_webhook(drop_pending_updates=True)
            except InvalidToken:
                logger.error("telegram rejected the bot token; commands are off")
                return False
            except Exception as exc:
                failures += 1
                level = logging.WARNING if failures == 1 else logging.DEBUG
                logger.log(level, "telegram command setup failed (%s); retrying", _describe(exc))
                await asyncio.sleep(self._poll_backoff(failures))
            else:
                logger.info("telegram commands on for @%s (pending updates dropped)",
                            self._username)
                return True

    async def _poller(self) -> None:
        if not await self._bootstrap():
            return
        bot = _need(self._bot)
        offset: int | None = None
        failures = 0
        while True:
            try:
                updates = await bot.get_updates(
                    offset=offset, timeout=self._long_poll_s, allowed_updates=["message"]
                )
            except InvalidToken:
                logger.error("telegram rejected the bot token; commands are off")
                return
            except Exception as exc:
                failures += 1
                level = logging.WARNING if failures == 1 else logging.DEBUG
                if isinstance(exc, Conflict):
                    level = logging.WARNING
                logger.log(level, "telegram getUpdates failed (%s)", _describe(exc))
                await asyncio.sleep(self._poll_backoff(failures))
                continue
            failures = 0
            for update in updates:
                offset = update.update_id + 1
                try:
                    await self._handle_update(update)
                except Exception:
                    logger.exception("telegram update %s could not be handled", update.update_id)

    def _is_our_chat(self, chat: Chat) -> bool:
        wanted = self._chat_id
        if isinstance(wanted, int):
            return chat.id == wanted
        if wanted.lstrip("-").isdigit():
            return chat.id == int(wanted)
        if wanted.startswith("@"):
            return (chat.username or "").lower() == wanted[1:].lower()
        return False

    async def _handle_update(self, update: Update) -> None:
        message = update.message
        if message is None:
            return
        if not self._is_our_chat(message.chat):
            logger.warning("ignored a telegram message from unauthorized chat %s",
                           message.chat.id)
            return
        text = (message.text or "").strip()
        word = text.split(maxsplit=1)[0] if text else ""
        command, _, target = word.partition("@")
        if target and self._username and target.lower() != self._username.lower():
            return  # addressed to another bot in a group
        sender = message.from_user.id if message.from_user is not None else None
        if sender is None or sender not in self._allowed_users:
            logger.warning(
                "refused telegram %r from user %s in chat %s: not in TELEGRAM_ALLOWED_USER_IDS",
                word[:40], sender, message.chat.id,
            )
            if sender is not None and sender not in self._refused_users:
                self._refused_users.add(sender)  # told once, so a group is not flooded
                self._enqueue(KO["not_allowed"], from_loop=True)
            return
        name = command[1:].lower() if command.startswith("/") else ""
        await self._run_command(name, text.split()[1:])

    async def _run_command(self, name: str, args: list[str] | None = None) -> None:
        controller = self._controller
        if name not in COMMANDS or name == "help" or controller is None or (
            name in OPERATOR_COMMANDS and self._operator is None
        ):
            self._enqueue(HELP_TEXT, from_loop=True)
            return
        if name in OPERATOR_COMMANDS:
            operator = self._operator
            assert operator is not None  # noqa: S101 - checked above
            await self._answer(name, lambda: operator.run(name, list(args or ())))
            return
        if name == "stop":  # acknowledge first: the session may stop this notifier right away
            self._enqueue(KO["stop_ack"], from_loop=True)
        names = self._names

        def set_state(state: str, answer: str) -> str:
            controller.set_state(state)
            return answer

        def request_stop() -> str:
            controller.request_stop()
            return ""  # already acknowledged

        actions: dict[str, Callable[[], str]] = {
            "status": lambda: format_status(controller.status()),
            "positions": lambda: format_positions(
                [_named(p, names) for p in _mappings(controller.positions())]
            ),
            "pnl": lambda: format_pnl(controller.pnl()),
            "orders": lambda: format_orders(
                [_named(o, names) for o in _mappings(controller.orders())]
            ),
            "pause": lambda: set_state("halted", KO["pause"]),
            "resume": lambda: set_state("active", KO["resume"]),
            "reduce_only": lambda: set_state("reduce_only", KO["reduce_only"]),
            "stop": request_stop,
        }
        await self._answer(name, actions[name])

    async def _answer(self, name: str, action: Callable[[], str]) -> None:
        """Run ``action`` on the worker thread; its answer (or the failure) is sent."""
        loop = asyncio.get_running_loop()
        try:
            answer = await loop.run_in_executor(self._executor, action)
        except Exception as exc:
            logger.exception("telegram command /%s failed", name)
            answer = KO["command_failed"].format(command=f"/{name}", error=_describe(exc))
        if answer:
            self._enqueue(answer, from_loop=True)


def _need(value: _T | None) -> _T:
    if value is None:
        raise RuntimeError("the notifier is not started")
    return value
