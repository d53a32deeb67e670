"""The dashboard (server-rendered, no build step): the incidents list and one incident with its gate, their live
updates as server-sent events, the team's runbooks; the pages, their routes and the sign-in."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup
from psycopg.errors import UniqueViolation
from psycopg_pool import AsyncConnectionPool
from sse_starlette import EventSourceResponse

from service import incidents, intake
from service.auth import SESSION_COOKIE, authenticate, match_key
from service.errors import ApiError, error_response
from service.routers.incidents import load_snapshot
from service.runs import RunError, incident_view, thread_config
from service.settings import ServerSettings
from tools.redact import redact_value
from web.render import redacted_view, template_env
from web.view import incident_page

LIVE_INTERVAL_SECONDS = 2.0  # how often an open page checks for changes
STATIC_DIR = Path(__file__).parent / "static"


def _age(created: datetime) -> str:
    seconds = int((datetime.now(UTC) - created).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


class DashboardViews:
    """Renders the pages from the incidents table and the checkpoints."""

    def __init__(self) -> None:
        self.env = template_env(True)

    async def index(self, pool: AsyncConnectionPool, status: str | None, service: str | None,
                    main_only: bool = False) -> str:
        """The incidents list, newest first, with those waiting for approval pinned above it."""
        status = status if status in incidents.STATUSES else None
        rows = await incidents.list_incidents(pool, status=status, service=service or None, limit=100)
        waiting = await incidents.list_incidents(pool, status="awaiting_approval", limit=50)
        for row in [*rows, *waiting]:
            row["age"] = _age(row["created_at"])
        main = self.env.get_template("dashboard/index_main.html.j2").render(
            rows=redact_value(rows), waiting=redact_value(waiting), status=status, service=service,
            statuses=incidents.STATUSES,
            services=await incidents.list_services(pool),
        )
        if main_only:
            return main
        query = urlencode({k: v for k, v in (("status", status), ("service", service), ("v", version(main))) if v})
        page = self.env.get_template("dashboard/index.html.j2")
        return page.render(main=Markup(main), waiting=waiting, live=f"?{query}")

    async def incident(self, app_state: Any, incident_id: str, main_only: bool = False,
                       form_fields: str = "") -> str | None:
        """One incident: the card, the charts, the logs, the gate, the timeline, the hypotheses, the checkpoints."""
        row = await incidents.get_incident(app_state.db.pool, incident_id)
        if row is None:
            return None
        snapshot = await app_state.graph.aget_state(thread_config(incident_id))
        values = snapshot.values
        try:
            steps = await app_state.runner.history(incident_id) if values else []
        except RunError:
            steps = []
        view = await incident_view(app_state.db.pool, snapshot, row["status"])
        row = redact_value(row)  # the page is built from redacted data only
        page = incident_page(redacted_view(values), app_state.runner.context, status=view.status,
                             gate=redact_value(view.gate), decision=redact_value(view.decision), alert_row=row)
        main = self.env.get_template("dashboard/incident_main.html.j2").render(
            p=page, row=row, steps=steps, form_fields=form_fields
        )
        if main_only:
            return main
        full = self.env.get_template("dashboard/incident.html.j2")
        return full.render(p=page, main=Markup(main), live=f"?v={version(main)}")

    def runbook(self, folder: str | None, name: str) -> str | None:
        """A runbook of the configured folder as a page (its Markdown shown as text), or None."""
        if not folder:
            return None
        root = Path(folder).resolve()
        path = (root / name).resolve()
        if not path.is_relative_to(root) or path.suffix != ".md" or not path.is_file():
            return None
        return self.env.get_template("dashboard/runbook.html.j2").render(name=name, text=path.read_text("utf-8"))

    def login(self, error: str | None) -> str:
        """The API-key form that sets the session cookie."""
        return self.env.get_template("dashboard/login.html.j2").render(error=error)


def version(html: str) -> str:
    """A short fingerprint of a page's content: the page tells the event stream what it already shows."""
    return hashlib.sha256(html.encode()).hexdigest()[:16]


async def live_events(render: Callable[[], Awaitable[str | None]], disconnected: Callable[[], Awaitable[bool]],
                      shown: str | None) -> AsyncIterator[dict[str, str]]:
    """Server-sent events for a page: its main content each time it changed from what the page shows (`shown`,
    a `version`), checked every few seconds; ends when the client leaves or the page is gone."""
    while not await disconnected():
        html = await render()
        if html is None:
            return
        if version(html) != shown:
            shown = version(html)
            yield {"event": "page", "data": html}
        await asyncio.sleep(LIVE_INTERVAL_SECONDS)


def dashboard_router() -> APIRouter:
    """GET /, the incident page, sign-in and the gate's form; cookie auth."""
    router = APIRouter(include_in_schema=False)

    def session_identity(request: Request) -> str | None:
        try:
            return authenticate(request)
        except ApiError:
            return None

    @router.get("/", response_class=HTMLResponse)
    async def index(request: Request, status: str | None = None, service: str | None = None) -> Response:
        if session_identity(request) is None:
            return RedirectResponse("/ui/login", status_code=303)
        return HTMLResponse(await request.app.state.views.index(request.app.state.db.pool, status, service))

    @router.get("/ui/incidents/{incident_id}", response_class=HTMLResponse)
    async def incident_page(request: Request, incident_id: str) -> Response:
        if session_identity(request) is None:
            return RedirectResponse("/ui/login", status_code=303)
        page = await request.app.state.views.incident(request.app.state, incident_id)
        return HTMLResponse(page, status_code=200 if page else 404)

    # live updates: the page's main content again, as a server-sent event, whenever it changed
    @router.get("/ui/events")
    async def index_events(request: Request, status: str | None = None, service: str | None = None,
                           v: str | None = None) -> Response:
        if session_identity(request) is None:
            return error_response(401, "unauthorized", "sign in first")
        views, pool = request.app.state.views, request.app.state.db.pool
        return EventSourceResponse(live_events(lambda: views.index(pool, status, service, main_only=True),
                                               request.is_disconnected, v), ping=15)

    @router.get("/ui/incidents/{incident_id}/events")
    async def incident_events(request: Request, incident_id: str, v: str | None = None) -> Response:
        if session_identity(request) is None:
            return error_response(401, "unauthorized", "sign in first")
        views = request.app.state.views
        return EventSourceResponse(live_events(lambda: views.incident(request.app.state, incident_id, main_only=True),
                                               request.is_disconnected, v), ping=15)

    @router.get("/ui/runbooks/{name:path}", response_class=HTMLResponse)
    async def runbook(request: Request, name: str) -> Response:
        if session_identity(request) is None:
            return RedirectResponse("/ui/login", status_code=303)
        page = request.app.state.views.runbook(request.app.state.runner.context.runbooks_dir, name)
        return HTMLResponse(page or "no such runbook", status_code=200 if page else 404)

    @router.get("/ui/login", response_class=HTMLResponse)
    async def login_form(request: Request) -> HTMLResponse:
        return HTMLResponse(request.app.state.views.login(error=None))

    @router.post("/ui/login")
    async def login(request: Request, api_key: Annotated[str, Form(max_length=512)]) -> Response:
        settings: ServerSettings = request.app.state.settings
        if not settings.auth_disabled and match_key(settings, api_key) is None:
            return HTMLResponse(request.app.state.views.login(error="invalid key"), status_code=401)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(SESSION_COOKIE, api_key, httponly=True, samesite="strict", max_age=8 * 3600)
        return response

    @router.post("/ui/incidents/{incident_id}/approval")
    async def approve_form(
        request: Request, incident_id: str, decision: Annotated[Literal["approve", "reject"], Form()],
        comment: Annotated[str, Form(max_length=2000)] = "",
    ) -> Response:
        caller = session_identity(request)
        if caller is None:
            return RedirectResponse("/ui/login", status_code=303)
        snapshot = await load_snapshot(request, incident_id)
        if snapshot.interrupts:
            with contextlib.suppress(UniqueViolation, incidents.DecisionStands):  # the page shows the outcome
                await intake.queue_resume(request.app.state.db.pool, incident_id, snapshot.interrupts[0],
                                          {"decision": decision, "by": caller, "comment": comment})
        return RedirectResponse(f"/ui/incidents/{incident_id}", status_code=303)

    return router
