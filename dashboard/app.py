"""The dashboard's FastAPI application: a JSON API behind every page (OpenAPI docs at
``/docs``), Jinja2 pages and a server-sent event stream; see :mod:`dashboard.security` for
who may read and write.

Pages: ``/`` overview, ``/strategies``, ``/positions``, ``/orders`` (open orders, today's
fills, history with filters), ``/runs`` (backtest runs: list, compare, report), ``/events``
(live equity curve and event feed). Writes (``POST /api/...``) go through
:class:`core.control.Controls` and exist only in the bot's own process.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI, Form, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel

from core.control import ControlError
from dashboard.data import DashboardData
from dashboard.security import COOKIE, CSRF_HEADER, Guard

if TYPE_CHECKING:
    from core.control import Controls
    from db.repository import Repository

HERE = Path(__file__).resolve().parent
PAGES = ("overview", "strategies", "positions", "orders", "runs", "events")
STREAM_POLL_S = 1.0


class SwitchBody(BaseModel):
    on: bool


class StateBody(BaseModel):
    state: str


class SellBody(BaseModel):
    code: str
    strategy: str | None = None


def create_app(repository: Repository, *, run_id: str | None = None,
               controls: Controls | None = None, token: str | None = None) -> FastAPI:
    """The app over ``repository`` (book ``run_id``, default the newest live book); with
    ``controls`` (the bot's process) it shows live figures and accepts the controls."""
    data = DashboardData(repository, run_id, controls)
    guard = Guard(token)
    app = FastAPI(title="kis-trader dashboard", version="1")
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    def _bearer(request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        return header[7:] if header.lower().startswith("bearer ") else None

    def reader(request: Request) -> None:
        if not guard.may_read(_bearer(request), request.cookies.get(COOKIE)):
            raise HTTPException(401, "a valid dashboard token is required")

    def writer(request: Request) -> None:
        why = guard.write_refusal(_bearer(request), request.cookies.get(COOKIE),
                                  request.headers.get(CSRF_HEADER))
        if why is not None:
            raise HTTPException(403, why)
        if controls is None:
            raise HTTPException(409, "read-only: the dashboard runs apart from the bot")

    def _control(fn: Any, *args: Any) -> dict[str, Any]:
        try:
            return {"ok": True, "message": fn(*args, "dashboard")}
        except ControlError as exc:
            raise HTTPException(400, str(exc)) from None

    # --- JSON API (read) -------------------------------------------------------------
    read = [Depends(reader)]

    @app.get("/api/overview", dependencies=read)
    def api_overview() -> dict[str, Any]:
        return data.overview()

    @app.get("/api/strategies", dependencies=read)
    def api_strategies() -> list[dict[str, Any]]:
        return data.strategies()

    @app.get("/api/positions", dependencies=read)
    def api_positions() -> list[dict[str, Any]]:
        return data.positions()

    @app.get("/api/orders", dependencies=read)
    def api_orders(status: str | None = None, strategy: str | None = None,
                   code: str | None = None, side: str | None = None,
                   open_only: bool = False,
                   limit: int = Query(500, ge=1, le=5000)) -> list[dict[str, Any]]:
        return data.orders(status=status, strategy=strategy, code=code, side=side,
                           open_only=open_only, limit=limit)

    @app.get("/api/fills", dependencies=read)
    def api_fills(today_only: bool = True) -> list[dict[str, Any]]:
        return data.fills(today_only=today_only)

    @app.get("/api/equity", dependencies=read)
    def api_equity(run_id: str | None = None) -> list[dict[str, Any]]:
        return data.equity(run_id)

    @app.get("/api/events", dependencies=read)
    def api_events(after_id: int = 0) -> list[dict[str, Any]]:
        return data.events(after_id)

    @app.get("/api/runs", dependencies=read)
    def api_runs() -> list[dict[str, Any]]:
        return data.runs()

    @app.get("/api/stream", dependencies=read)
    async def api_stream(request: Request, after_id: int = 0) -> StreamingResponse:
        """Server-sent events: ``event`` (one engine event) and ``equity`` (the newest
        snapshot), polled from the database every second."""

        async def stream() -> AsyncIterator[str]:
            last_id, last_equity = after_id, None
            while not await request.is_disconnected():
                for event in await asyncio.to_thread(data.events, last_id):
                    last_id = event["id"]
                    yield f"event: event\ndata: {json.dumps(event)}\n\n"
                curve = await asyncio.to_thread(data.equity)
                if curve and curve[-1] != last_equity:
                    last_equity = curve[-1]
                    yield f"event: equity\ndata: {json.dumps(last_equity)}\n\n"
                await asyncio.sleep(STREAM_POLL_S)

        return StreamingResponse(stream(), media_type="text/event-stream")

    @app.get("/runs/{run_id}/report", dependencies=read, response_model=None)
    def run_report(run_id: str) -> FileResponse:
        path = data.report_path(run_id)
        if path is None:
            raise HTTPException(404, f"run {run_id}: no report.html stored")
        return FileResponse(path)

    # --- JSON API (write) ------------------------------------------------------------
    write = [Depends(writer)]

    @app.post("/api/strategies/{name}/switch", dependencies=write)
    def api_switch(name: str, body: SwitchBody) -> dict[str, Any]:
        assert controls is not None  # noqa: S101 - writer() refused otherwise
        return _control(controls.switch, name, body.on)

    @app.post("/api/state", dependencies=write)
    def api_state(body: StateBody) -> dict[str, Any]:
        assert controls is not None  # noqa: S101
        return _control(controls.set_state, body.state)

    @app.post("/api/stop", dependencies=write)
    def api_stop() -> dict[str, Any]:
        assert controls is not None  # noqa: S101
        return _control(controls.request_stop)

    @app.post("/api/sell", dependencies=write)
    def api_sell(body: SellBody) -> dict[str, Any]:
        assert controls is not None  # noqa: S101
        return _control(controls.sell, body.code, body.strategy)

    @app.post("/api/reload", dependencies=write)
    def api_reload() -> dict[str, Any]:
        assert controls is not None  # noqa: S101
        try:
            result = controls.reload("dashboard")
        except ControlError as exc:
            raise HTTPException(400, str(exc)) from None
        return result.to_json()

    # --- pages -----------------------------------------------------------------------
    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_form(request: Request) -> HTMLResponse:
        return templates.TemplateResponse(request, "login.html", {"error": None})

    @app.post("/login", include_in_schema=False, response_model=None)
    def login(request: Request, token_given: str = Form(alias="token")) -> Any:
        if not guard.token_ok(token_given, None):
            return templates.TemplateResponse(
                request, "login.html", {"error": "wrong token"}, status_code=401
            )
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, token_given, httponly=True, samesite="strict")
        return response

    def page(name: str) -> Any:
        def render(request: Request) -> Any:
            if not guard.may_read(_bearer(request), request.cookies.get(COOKIE)):
                return RedirectResponse("/login", status_code=303)
            context = {
                "page": name, "pages": PAGES, "csrf": guard.csrf(),
                "controls": controls is not None and guard.has_token,
                "overview": data.overview(),
            }
            context[name] = getattr(data, name)() if name not in ("orders", "events") else None
            if name == "orders":
                q = request.query_params
                filters = {k: q.get(k) or "" for k in ("status", "strategy", "code", "side")}
                context["open_orders"] = data.orders(open_only=True)
                context["fills"] = data.fills()
                context["filters"] = filters
                context["history"] = data.orders(
                    status=filters["status"] or None, strategy=filters["strategy"] or None,
                    code=filters["code"] or None, side=filters["side"] or None,
                )
            if name == "events":
                context["events"] = data.events()
            return templates.TemplateResponse(request, f"{name}.html", context)

        render.__name__ = f"page_{name}"
        return render

    for name in PAGES:
        app.get("/" if name == "overview" else f"/{name}", response_class=HTMLResponse,
                include_in_schema=False)(page(name))
    return app


__all__ = ["create_app"]
