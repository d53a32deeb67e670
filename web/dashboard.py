"""The dashboard (server-rendered, no build step): the incidents list and one incident with its gate; the pages,
their routes and the sign-in."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from psycopg.errors import UniqueViolation
from psycopg_pool import AsyncConnectionPool

from service import incidents, intake
from service.auth import SESSION_COOKIE, authenticate, match_key
from service.errors import ApiError
from service.routers.incidents import load_snapshot
from service.runs import RunError, incident_view, thread_config
from service.settings import ServerSettings
from web.render import template_env, timeline


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

    async def index(self, pool: AsyncConnectionPool, status: str | None, service: str | None) -> str:
        """The incidents list, newest first."""
        rows = await incidents.list_incidents(pool, status=status, service=service, limit=100)
        for row in rows:
            row["age"] = _age(row["created_at"])
        return self.env.get_template("dashboard/index.html.j2").render(rows=rows, status=status, service=service)

    async def incident(self, app_state: Any, incident_id: str) -> str | None:
        """One incident: verdict, timeline of steps, evidence, hypotheses, the diff and the gate."""
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
        return self.env.get_template("dashboard/incident.html.j2").render(
            row=row, s=values, status=view.status, steps=steps, gate=view.gate, decision=view.decision,
            timeline=timeline(values) if values.get("window") else [],
        )

    def login(self, error: str | None) -> str:
        """The API-key form that sets the session cookie."""
        return self.env.get_template("dashboard/login.html.j2").render(error=error)


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
            with contextlib.suppress(UniqueViolation):  # decided meanwhile: the page shows the outcome
                await intake.queue_resume(request.app.state.db.pool, incident_id, snapshot.interrupts[0].id,
                                          {"decision": decision, "by": caller, "comment": comment})
        return RedirectResponse(f"/ui/incidents/{incident_id}", status_code=303)

    return router
