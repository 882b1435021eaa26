"""``/status`` shows the realtime split: symbols by ticks, symbols on REST polling."""

from __future__ import annotations

from notifier.answers import format_status


def test_status_shows_the_websocket_split() -> None:
    base = {"mode": "live", "env": "virtual", "state": "active", "market": "open",
            "equity_krw": 1, "cash_krw": 1, "strategies": []}
    text = format_status({**base, "realtime": {"live": True, "ws_symbols": 39,
                                               "rest_symbols": 11}})
    assert "실시간: 웹소켓 연결 · 체결틱 39종목 · REST 11종목" in text
    down = format_status({**base, "realtime": {"live": False, "ws_symbols": 0,
                                               "rest_symbols": 50}})
    assert "웹소켓 끊김 (REST 조회)" in down
    assert "실시간" not in format_status(base)
