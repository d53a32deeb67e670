"""The dashboard (server-rendered, no build step): the incidents list and one incident with its gate, their live
updates as server-sent events, the team's runbooks; the pages, their routes and the sign-in."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup
from psycopg.errors import UniqueViolation
from psycopg_pool import AsyncConnectionPool
from sse_starlette import EventSourceResponse

from service import incidents, intake, sessions
from service.auth import ANONYMOUS, Principal, match_key, principal_named
from service.errors import error_response
from service.routers.incidents import load_snapshot
from service.runs import RunError, incident_view, thread_config
from service.sessions import Session
from service.settings import ServerSettings
from state import invalid_incident_id
from tools.redact import redact_value
from web.render import redacted_view, template_env
from web.view import incident_page

LIVE_INTERVAL_SECONDS = 2.0  # how often an open page checks for changes
SESSION_COOKIE = "ic_session"
LOGIN_COOKIE = "ic_login"  # the sign-in form's own CSRF token (there is no session yet)
STATIC_DIR = Path(__file__).parent / "static"


def _age(created: datetime) -> str:
    seconds = int((datetime.now(UTC) - created).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@dataclass(frozen=True)
class SignedIn:
    """A browser with a live session: who it is, the session, and its id (for signing out)."""

    principal: Principal
    session: Session
    session_id: str

    def form_fields(self) -> Markup:
        """The hidden field every form of the session carries."""
        return Markup('<input type="hidden" name="csrf_token" value="{}">').format(self.session.csrf_token)


class DashboardViews:
    """Renders the pages from the incidents table and the checkpoints."""

    def __init__(self) -> None:
        self.env = template_env(True)

    async def index(self, pool: AsyncConnectionPool, status: str | None, service: str | None,
                    main_only: bool = False, signed_in: SignedIn | None = None) -> str:
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
        return page.render(main=Markup(main), waiting=waiting, live=f"?{query}", signed_in=signed_in)

    async def incident(self, app_state: Any, incident_id: str, main_only: bool = False,
                       signed_in: SignedIn | None = None) -> str | None:
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
            p=page, row=row, steps=steps, form_fields=signed_in.form_fields() if signed_in else "",
            can_decide=signed_in is not None and signed_in.principal.may("decide"),
        )
        if main_only:
            return main
        full = self.env.get_template("dashboard/incident.html.j2")
        return full.render(p=page, main=Markup(main), live=f"?v={version(main)}", signed_in=signed_in)

    def runbook(self, folder: str | None, name: str, signed_in: SignedIn | None = None) -> str | None:
        """A runbook of the configured folder as a page (its Markdown shown as text), or None."""
        if not folder:
            return None
        root = Path(folder).resolve()
        path = (root / name).resolve()
        if not path.is_relative_to(root) or path.suffix != ".md" or not path.is_file():
            return None
        return self.env.get_template("dashboard/runbook.html.j2").render(name=name, text=path.read_text("utf-8"),
                                                                         signed_in=signed_in)

    def login(self, error: str | None, token: str) -> str:
        """The API-key form that starts a session; `token` is the form's CSRF token."""
        return self.env.get_template("dashboard/login.html.j2").render(error=error, token=token)


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


def own_origins(request: Request, settings: ServerSettings) -> set[str]:
    """The origins this dashboard is served from: the request's own, and the public URL's when one is set."""
    origins = {f"{request.url.scheme}://{request.headers.get('host', '')}"}
    if settings.public_url:
        public = urlsplit(settings.public_url)
        origins.add(f"{public.scheme}://{public.netloc}")
    return origins


def from_this_dashboard(request: Request, settings: ServerSettings) -> bool:
    """Whether a form was posted from one of our own pages: its Origin (else its Referer's origin) is ours. A
    browser always sends Origin on a cross-origin POST, and a page elsewhere cannot choose it."""
    origin = request.headers.get("origin")
    if origin is None:
        referer = urlsplit(request.headers.get("referer", ""))
        origin = f"{referer.scheme}://{referer.netloc}" if referer.netloc else None
    return origin is not None and origin in own_origins(request, settings)


def secure_cookies(request: Request, settings: ServerSettings) -> bool:
    """Cookies are Secure when the dashboard is served over HTTPS (directly, or behind the public URL)."""
    return request.url.scheme == "https" or (settings.public_url or "").startswith("https://")


def refused(message: str, status: int = 403) -> HTMLResponse:
    return HTMLResponse(f"<!doctype html><title>Refused</title><p class=fail>{Markup.escape(message)}</p>",
                        status_code=status)


def dashboard_router() -> APIRouter:
    """GET /, the incident page, sign-in and sign-out, the gate's form; a server-side session per browser."""
    router = APIRouter(include_in_schema=False)

    async def signed_in(request: Request) -> SignedIn | None:
        """The browser's live session, if its cookie is ours and its holder's key still reads."""
        settings: ServerSettings = request.app.state.settings
        session_id = sessions.session_id_of(settings, request.cookies.get(SESSION_COOKIE))
        if session_id is None:
            return None
        session = await sessions.load_session(request.app.state.db.pool, session_id)
        principal = principal_named(settings, session.identity) if session else None
        if session is None or principal is None or not principal.may("read"):
            return None
        return SignedIn(principal, session, session_id)

    def checked_form(request: Request, who: SignedIn | None, token: str) -> Response | None:
        """Why a posted form is refused (a response), or None: it must come from our pages, in a session, with the
        session's token."""
        if who is None:
            return RedirectResponse("/ui/login", status_code=303)
        if not from_this_dashboard(request, request.app.state.settings):
            return refused("refused: this form was not sent from this dashboard")
        if not hmac.compare_digest(token.encode(), who.session.csrf_token.encode()):
            return refused("refused: the form's token does not match your session; reload the page")
        return None

    async def start_session(request: Request, principal: Principal) -> Response:
        settings: ServerSettings = request.app.state.settings
        session_id, _ = await sessions.create_session(request.app.state.db.pool, principal.name,
                                                      settings.session_hours)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(SESSION_COOKIE, sessions.cookie_value(settings, session_id), httponly=True,
                            samesite="strict", secure=secure_cookies(request, settings),
                            max_age=int(settings.session_hours * 3600))
        response.delete_cookie(LOGIN_COOKIE)
        return response

    @router.get("/", response_class=HTMLResponse)
    async def index(request: Request, status: str | None = None, service: str | None = None) -> Response:
        who = await signed_in(request)
        if who is None:
            return RedirectResponse("/ui/login", status_code=303)
        return HTMLResponse(await request.app.state.views.index(request.app.state.db.pool, status, service,
                                                                signed_in=who))

    @router.get("/ui/incidents/{incident_id}", response_class=HTMLResponse)
    async def incident_page(request: Request, incident_id: str) -> Response:
        who = await signed_in(request)
        if who is None:
            return RedirectResponse("/ui/login", status_code=303)
        page = None
        if invalid_incident_id(incident_id) is None:
            page = await request.app.state.views.incident(request.app.state, incident_id, signed_in=who)
        return HTMLResponse(page or "no such incident", status_code=200 if page else 404)

    # live updates: the page's main content again, as a server-sent event, whenever it changed
    @router.get("/ui/events")
    async def index_events(request: Request, status: str | None = None, service: str | None = None,
                           v: str | None = None) -> Response:
        who = await signed_in(request)
        if who is None:
            return error_response(401, "unauthorized", "sign in first")
        views, pool = request.app.state.views, request.app.state.db.pool
        return EventSourceResponse(live_events(lambda: views.index(pool, status, service, main_only=True),
                                               request.is_disconnected, v), ping=15)

    @router.get("/ui/incidents/{incident_id}/events")
    async def incident_events(request: Request, incident_id: str, v: str | None = None) -> Response:
        who = await signed_in(request)
        if who is None:
            return error_response(401, "unauthorized", "sign in first")
        if invalid_incident_id(incident_id) is not None:
            return error_response(404, "not_found", "no such incident")
        views = request.app.state.views
        return EventSourceResponse(live_events(
            lambda: views.incident(request.app.state, incident_id, main_only=True, signed_in=who),
            request.is_disconnected, v), ping=15)

    @router.get("/ui/runbooks/{name:path}", response_class=HTMLResponse)
    async def runbook(request: Request, name: str) -> Response:
        who = await signed_in(request)
        if who is None:
            return RedirectResponse("/ui/login", status_code=303)
        page = request.app.state.views.runbook(request.app.state.runner.context.runbooks_dir, name, who)
        return HTMLResponse(page or "no such runbook", status_code=200 if page else 404)

    @router.get("/ui/login", response_class=HTMLResponse)
    async def login_form(request: Request) -> Response:
        settings: ServerSettings = request.app.state.settings
        if settings.auth_disabled:  # local set-up: everyone is the anonymous admin, still with a session and tokens
            return await start_session(request, Principal(ANONYMOUS, "admin"))
        token = secrets.token_urlsafe(24)
        response = HTMLResponse(request.app.state.views.login(error=None, token=token))
        response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", max_age=3600,
                            secure=secure_cookies(request, settings))
        return response

    @router.post("/ui/login")
    async def login(request: Request, api_key: Annotated[str, Form(max_length=512)],
                    login_token: Annotated[str, Form(max_length=100)] = "") -> Response:
        settings: ServerSettings = request.app.state.settings
        views, pool = request.app.state.views, request.app.state.db.pool

        def again(error: str, status: int, headers: dict[str, str] | None = None) -> HTMLResponse:
            token = secrets.token_urlsafe(24)
            response = HTMLResponse(views.login(error=error, token=token), status_code=status, headers=headers)
            response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", max_age=3600,
                                secure=secure_cookies(request, settings))
            return response

        if not from_this_dashboard(request, settings):
            return refused("refused: this sign-in was not sent from this dashboard")
        cookie_token = request.cookies.get(LOGIN_COOKIE, "")
        if not cookie_token or not hmac.compare_digest(cookie_token.encode(), login_token.encode()):
            return again("the sign-in form expired; please sign in again", 403)
        client = request.client.host if request.client else "unknown"
        wait = await sessions.login_wait_seconds(pool, client, settings.login_attempts)
        if wait:
            return again(f"too many failed sign-ins from your address; try again in {wait} s", 429,
                         {"Retry-After": str(wait)})
        principal = match_key(settings, api_key)
        if principal is None:
            await sessions.record_login_failure(pool, client)
            return again("invalid key", 401)
        if not principal.may("read"):
            return again(f"this key ({principal.name}, role {principal.role}) may only post alerts", 403)
        return await start_session(request, principal)

    @router.post("/ui/logout")
    async def logout(request: Request, csrf_token: Annotated[str, Form(max_length=100)] = "") -> Response:
        who = await signed_in(request)
        problem = checked_form(request, who, csrf_token)
        if problem is not None:
            return problem
        await sessions.end_session(request.app.state.db.pool, who.session_id)
        response = RedirectResponse("/ui/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    @router.post("/ui/incidents/{incident_id}/approval")
    async def approve_form(
        request: Request, incident_id: str, decision: Annotated[Literal["approve", "reject"], Form()],
        comment: Annotated[str, Form(max_length=2000)] = "", csrf_token: Annotated[str, Form(max_length=100)] = "",
    ) -> Response:
        who = await signed_in(request)
        problem = checked_form(request, who, csrf_token)
        if problem is not None:
            return problem
        if not who.principal.may("decide"):
            return refused(f"{who.principal.name} (role {who.principal.role}) may not decide at an approval gate")
        if invalid_incident_id(incident_id) is not None:
            return refused("no such incident", 404)
        snapshot = await load_snapshot(request, incident_id)
        if snapshot.interrupts:
            with contextlib.suppress(UniqueViolation, incidents.DecisionStands):  # the page shows the outcome
                await intake.queue_resume(request.app.state.db.pool, incident_id, snapshot.interrupts[0],
                                          {"decision": decision, "by": who.principal.name, "comment": comment})
        return RedirectResponse(f"/ui/incidents/{incident_id}", status_code=303)

    return router
