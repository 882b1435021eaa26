"""The operator's Telegram commands over :class:`core.control.Controls`.

==========================  ========================================================
command                     answer
==========================  ========================================================
``/strategies``             every strategy: trades or not, its switch, positions, P&L
``/strategy NAME on|off``   the strategy's on/off switch (:mod:`core.switches`)
``/sell CODE [STRATEGY]``   asks for ``/confirm`` within :data:`CONFIRM_S` seconds, then
                            sells every strategy's holding of CODE (or STRATEGY's) at market
``/confirm``                carries out the pending ``/sell``
``/daily``                  today's report (equity, P&L, trades, fills, positions)
``/balance``                cash, holdings' value and equity
``/reload``                 re-reads config.yaml and settings.yaml (refused with the
                            error when a file is invalid; the old configuration stays)
==========================  ========================================================

:meth:`OperatorCommands.run` is called on the notifier's worker thread (never on the
trading thread) and returns the Korean answer; a :class:`~core.control.ControlError`
becomes a one-line answer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from core.control import ControlError, Controls

CONFIRM_S: Final = 60.0

OPERATOR_COMMANDS: Final[Mapping[str, str]] = {
    "strategies": "전략 목록 (켜짐/꺼짐, 보유, 손익)",
    "strategy": "전략 켜기/끄기: /strategy 이름 on|off",
    "sell": "즉시 시장가 매도: /sell 종목코드 [전략] (확인 필요)",
    "confirm": "대기 중인 매도 실행",
    "daily": "오늘의 일일 보고",
    "balance": "현금·평가금액",
    "reload": "설정 다시 읽기 (config.yaml, settings.yaml)",
}
"""Commands added by :class:`OperatorCommands`, with their Korean descriptions."""


def _krw(value: Any) -> str:
    return f"{int(value):,}원"


class OperatorCommands:
    """Answers the commands of :data:`OPERATOR_COMMANDS` through ``controls``."""

    def __init__(self, controls: Controls, clock: Callable[[], float] = time.monotonic):
        self.controls = controls
        self.clock = clock
        self._pending: tuple[str, str | None, float] | None = None
        self._lock = threading.Lock()

    def run(self, name: str, args: list[str]) -> str:
        try:
            return getattr(self, f"_{name}")(args)
        except ControlError as exc:
            return f"⚠️ {exc}"

    def _strategies(self, _args: list[str]) -> str:
        lines = ["🧩 전략"]
        for s in self.controls.strategies():
            state = "켜짐" if s["enabled"] else "꺼짐"
            switch = f", 스위치 {s['switch']}" if s["switch"] else ""
            isolated = "" if s["active"] in (True, None) else ", 오류로 격리"
            lines.append(
                f"• {s['name']}: {state}{switch}{isolated} · 보유 {s['positions']}종목 · "
                f"평가손익 {s['unrealized_krw']:+,}원 · 실현손익 {s['realized_krw']:+,}원"
            )
        return "\n".join(lines)

    def _strategy(self, args: list[str]) -> str:
        if len(args) != 2 or args[1].lower() not in ("on", "off"):
            return "사용법: /strategy 이름 on|off"
        on = args[1].lower() == "on"
        self.controls.switch(args[0], on, "telegram")
        return f"{'▶️' if on else '⏹️'} {args[0]} 전략을 {'켰습니다' if on else '껐습니다'}."

    def _sell(self, args: list[str]) -> str:
        if not 1 <= len(args) <= 2:
            return "사용법: /sell 종목코드 [전략]"
        code, strategy = args[0], (args[1] if len(args) == 2 else None)
        held = self.controls.holdings_of(code, strategy)
        if not held:
            whose = f" ({strategy})" if strategy else ""
            return f"⚠️ {code}{whose}: 보유하고 있지 않습니다."
        with self._lock:
            self._pending = (code, strategy, self.clock() + CONFIRM_S)
        lines = [f"❓ 시장가 매도 확인: {code}"]
        lines += [f"• [{p['strategy']}] {p['qty']}주 (현재가 {p['price']:,.0f}원)" for p in held]
        lines.append(f"{CONFIRM_S:.0f}초 안에 /confirm 을 보내면 매도합니다.")
        return "\n".join(lines)

    def _confirm(self, _args: list[str]) -> str:
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is None or self.clock() > pending[2]:
            return "⚠️ 확인할 매도가 없습니다 (시간이 지났거나 요청이 없습니다)."
        code, strategy, _deadline = pending
        return f"📤 {self.controls.sell(code, strategy, 'telegram')}"

    def _daily(self, _args: list[str]) -> str:
        report = self.controls.daily_report()
        return (
            f"📊 일일 보고 {report['date']}\n평가자산: {_krw(report['equity_krw'])}\n"
            f"현금: {_krw(report['cash_krw'])}\n손익: {report['pnl_krw']:+,}원 "
            f"({report['pnl_pct']:+.2f}%)\n거래: {report['trades']}건 · 체결: {report['fills']}건\n"
            f"보유: {len(report['positions'])}종목"
        )

    def _balance(self, _args: list[str]) -> str:
        b = self.controls.balance()
        return (
            f"💳 잔고\n현금: {_krw(b['cash_krw'])}\n보유 평가: {_krw(b['holdings_krw'])}\n"
            f"평가자산: {_krw(b['equity_krw'])}"
        )

    def _reload(self, _args: list[str]) -> str:
        result = self.controls.reload("telegram")
        if not result.ok:
            return f"⚠️ 설정 다시 읽기 거부 (이전 설정으로 계속 거래): {result.message}"
        changed = ", ".join(result.changes) if result.changes else "변경 없음"
        return f"🔄 설정을 다시 읽었습니다: {changed}"


__all__ = ["CONFIRM_S", "OPERATOR_COMMANDS", "OperatorCommands"]
