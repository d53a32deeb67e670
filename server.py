"""The HTTP service: alert intake, incidents and approval API, dashboard, health and metrics (DESIGN.md 4.4)."""

from __future__ import annotations

import contextlib
import gc
import hmac
import json
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Form, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from psycopg.errors import DataError, UniqueViolation
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse
from starlette.exceptions import HTTPException

from graph.context import Context
from graph.runs import incident_view, new_incident_id, thread_config
from graph.summary import incident_report
from graph.worker import RunWorkers
from state import Alert, TelemetrySpec
from tools import incidents, intake
from tools.alert_payloads import PayloadError, decode_body, parse_payload
from tools.database import open_database
from web.dashboard import STATIC_DIR, DashboardViews, live_events
from web.metrics import ServerMetrics

log = logging.getLogger("incident_copilot.server")
PLACEHOLDER_SECRETS = {"", "changeme", "change-me", "secret", "placeholder", "password", "test", "xxx", "todo"}
SESSION_COOKIE = "ic_session"


class SettingsError(ValueError):
    """The server's settings are unusable; it refuses to start."""


@dataclass(frozen=True)
class ServerSettings:
    """Settings of the HTTP service, validated before it starts."""

    database_url: str | None = None
    api_keys: dict[str, str] = field(default_factory=dict)  # key -> identity of its holder
    auth_disabled: bool = False
    local_mode: bool = False
    max_body_bytes: int = 1_048_576
    max_alerts_per_request: int = 1000
    workers: int = 2
    run_workers: bool = True
    telemetry: Literal["live", "sim"] = "live"
    output_dir: str = "output"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> ServerSettings:
        """From INCIDENT_COPILOT_* variables (see README); explicit, no hidden defaults for secrets."""
        env = dict(os.environ if env is None else env)
        keys: dict[str, str] = {}
        for item in filter(None, (env.get("INCIDENT_COPILOT_API_KEYS") or "").split(",")):
            identity, sep, key = item.partition("=")
            if not sep:
                raise SettingsError("INCIDENT_COPILOT_API_KEYS takes identity=key pairs separated by commas")
            keys[key.strip()] = identity.strip()
        if env.get("WEBHOOK_API_KEY") is not None:
            keys[env["WEBHOOK_API_KEY"].strip()] = "webhook"
        truthy = ("1", "true", "yes", "on")
        return cls(
            database_url=env.get("DATABASE_URL") or None,
            api_keys=keys,
            auth_disabled=env.get("INCIDENT_COPILOT_AUTH", "").lower() == "disabled",
            local_mode=env.get("INCIDENT_COPILOT_LOCAL", "").lower() in truthy,
            max_body_bytes=int(env.get("INCIDENT_COPILOT_MAX_BODY_BYTES", 1_048_576)),
            workers=int(env.get("INCIDENT_COPILOT_WORKERS", 2)),
            run_workers=env.get("INCIDENT_COPILOT_RUN_WORKERS", "true").lower() in truthy,
            telemetry="sim" if env.get("INCIDENT_COPILOT_TELEMETRY", "live") == "sim" else "live",
            output_dir=env.get("OUTPUT_DIR", "output"),
        )

    def validate(self) -> None:
        """Refuse unsafe or impossible settings."""
        if self.auth_disabled and not self.local_mode:
            raise SettingsError("auth can only be disabled in local mode (INCIDENT_COPILOT_LOCAL=true)")
        if not self.auth_disabled and not self.api_keys:
            raise SettingsError("no API key: set WEBHOOK_API_KEY or INCIDENT_COPILOT_API_KEYS")
        weak = [k for k in self.api_keys if k.lower() in PLACEHOLDER_SECRETS or len(k) < 16]
        if weak and not self.local_mode:
            raise SettingsError("an API key is a placeholder or shorter than 16 characters")
        if not 1 <= self.workers <= 64:
            raise SettingsError("INCIDENT_COPILOT_WORKERS must be between 1 and 64")
        if self.max_body_bytes < 1024:
            raise SettingsError("INCIDENT_COPILOT_MAX_BODY_BYTES must be at least 1024")


# --- errors ------------------------------------------------------------------------------------------


class ApiError(Exception):
    """An error answered with the stable shape {"error": {"code", "message"}}."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The one error shape of the API."""
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Every error leaves in the same shape, and no internal exception text leaves at all."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(422, "invalid_request", f"{where}: {first.get('msg', 'invalid')}"[:300])

    # Starlette's base class: the router's own 404 and 405 are raised as it, not as FastAPI's subclass.
    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = str(exc.detail)[:300] if exc.status_code < 500 else "error"
        return error_response(exc.status_code, code, message, exc.headers)  # e.g. 405's Allow

    @app.exception_handler(DataError)
    async def _unstorable(request: Request, exc: DataError) -> JSONResponse:
        # A value PostgreSQL refuses as data (a NUL character in text, a number out of range): the caller's input.
        log.warning("refused data on %s %s: %s", request.method, request.url.path, exc)
        return error_response(422, "invalid_field", "a value in the request cannot be stored (e.g. a NUL character)")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "internal error; see the server log")


# --- auth --------------------------------------------------------------------------------------------


def _match_key(settings: ServerSettings, presented: str | None) -> str | None:
    """The identity of the presented key; every key is compared, in constant time."""
    if not presented:
        return None
    found = None
    for key, identity in settings.api_keys.items():
        if hmac.compare_digest(presented.encode(), key.encode()):
            found = identity
    return found


def authenticate(request: Request) -> str:
    """Bearer token, X-Webhook-API-Key, or the dashboard's session cookie; the identity of the caller."""
    settings: ServerSettings = request.app.state.settings
    if settings.auth_disabled:
        return "anonymous (auth disabled)"
    header = request.headers.get("authorization", "")
    bearer = header[7:].strip() if header[:7].lower() == "bearer " else None
    for presented in (bearer, request.headers.get("x-webhook-api-key"), request.cookies.get(SESSION_COOKIE)):
        identity = _match_key(settings, presented)
        if identity is not None:
            return identity
    raise ApiError(401, "unauthorized", "missing or invalid credentials", {"WWW-Authenticate": "Bearer"})


async def caller_identity(request: Request) -> str:
    """`authenticate` as an async dependency: FastAPI runs a sync one in a worker thread, on every request."""
    return authenticate(request)


Caller = Annotated[str, Depends(caller_identity)]


# --- request and response bodies ------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    """What went wrong: a stable machine-readable code and a message for people."""

    model_config = {"extra": "forbid"}
    code: str
    message: str


class ErrorBody(BaseModel):
    """The body of every error response."""

    model_config = {"extra": "forbid"}
    error: ErrorDetail


def documented_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses, all in the one error shape (422 too, not FastAPI's)."""
    return {status: {"model": ErrorBody} for status in statuses}


class AlertAccepted(BaseModel):
    """What happened to one alert of the request."""

    incident_id: str | None
    status: str
    deduplicated: bool
    fingerprint: str


class IntakeResponse(BaseModel):
    """202 body: the first alert's outcome at the top level, every alert's in `alerts`."""

    incident_id: str | None
    status: str
    deduplicated: bool
    alerts: list[AlertAccepted]


class ApprovalBody(BaseModel):
    """A decision at the approval gate."""

    model_config = {"extra": "forbid"}
    decision: Literal["approve", "reject"]
    comment: str = Field(default="", max_length=2000)


class ReplayBody(BaseModel):
    """Replay from a checkpoint of the incident's history."""

    model_config = {"extra": "forbid"}
    checkpoint_id: str = Field(min_length=1, max_length=100)


class Queued(BaseModel):
    """202 body of the approval and replay endpoints."""

    incident_id: str
    status: str
    run_id: int


# --- intake ------------------------------------------------------------------------------------------


async def read_json_body(request: Request, limit: int) -> Any:
    """The request body as JSON, refusing bodies over `limit` bytes before reading them whole."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise ApiError(413, "body_too_large", f"request body over {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "body_too_large", f"request body over {limit} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    try:
        body = decode_body(raw)
    except PayloadError as exc:
        raise ApiError(400, "invalid_json", exc.message) from exc
    if b"\\u" in raw:  # only an escape can make a lone surrogate, which no database column can hold
        try:
            json.dumps(body, ensure_ascii=False).encode()
        except UnicodeEncodeError as exc:
            raise ApiError(400, "invalid_json", "body: a string holds an unpaired UTF-16 surrogate") from exc
    return body


def telemetry_for(settings: ServerSettings, alert: Alert) -> TelemetrySpec:
    """Live backends in production; in sim mode the alert's `scenario`/`seed` labels pick the simulated data."""
    if settings.telemetry == "live":
        return TelemetrySpec(kind="live")
    from sim.scenarios import SCENARIOS

    scenario = alert.labels.get("scenario")
    if scenario not in SCENARIOS:
        raise ApiError(422, "invalid_field", f"sim mode: label 'scenario' must be one of {', '.join(SCENARIOS)}")
    seed = alert.labels.get("seed", "0")
    if not seed.isdigit():
        raise ApiError(422, "invalid_field", "sim mode: label 'seed' must be a whole number")
    return TelemetrySpec(kind="sim", scenario=scenario, seed=int(seed), end=alert.starts_at)


def intake_router() -> APIRouter:
    """POST /alerts and its alias for the seeds' webhook path."""
    router = APIRouter(tags=["intake"])

    async def receive(request: Request, caller: Caller) -> JSONResponse:
        app = request.app
        settings: ServerSettings = app.state.settings
        body = await read_json_body(request, settings.max_body_bytes)
        try:
            parsed = parse_payload(body, received_at=datetime.now(UTC), max_alerts=settings.max_alerts_per_request)
        except PayloadError as exc:
            raise ApiError(422, exc.code, exc.message) from exc
        pairs = [(alert, telemetry_for(settings, alert)) for alert in parsed.alerts]
        accepted = await intake.accept_alerts(
            app.state.db.pool, request.url.path, parsed.format, body, pairs, new_incident_id
        )
        app.state.metrics.alerts_accepted(parsed.format, accepted)
        first = accepted[0]
        response = IntakeResponse(
            incident_id=first.incident_id, status=first.status, deduplicated=first.deduplicated,
            alerts=[AlertAccepted(**vars(a)) for a in accepted],
        )
        return JSONResponse(response.model_dump(), status_code=202)

    for path in ("/alerts", "/webhook/trigger_agent"):
        router.add_api_route(
            path, receive, methods=["POST"], status_code=202, response_model=IntakeResponse,
            responses=documented_errors(400, 401, 413, 422),
            openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "description": "Grafana, Alertmanager v4 or {service_name, lookup_window_seconds}",
            }}}}},
        )
    return router


# --- incidents ---------------------------------------------------------------------------------------


async def load_snapshot(request: Request, incident_id: str) -> Any:
    """The incident's latest checkpoint, or 404."""
    snapshot = await request.app.state.graph.aget_state(thread_config(incident_id))
    if not snapshot.values:
        raise ApiError(404, "not_found", f"no incident {incident_id}")
    return snapshot


def incidents_router() -> APIRouter:
    """The incidents resource: list, one, its history, its approval gate, replays."""
    router = APIRouter(prefix="/incidents", tags=["incidents"])

    @router.get("", responses=documented_errors(401, 422))
    async def list_incidents(
        request: Request, caller: Caller,
        status: Annotated[str | None, Query(max_length=40)] = None,
        service: Annotated[str | None, Query(max_length=128)] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    ) -> dict[str, Any]:
        rows = await incidents.list_incidents(
            request.app.state.db.pool, status=status, service=service, limit=limit, offset=offset
        )
        return {"items": [_row_json(r) for r in rows], "limit": limit, "offset": offset,
                "next_offset": offset + limit if len(rows) == limit else None}

    @router.get("/{incident_id}", responses=documented_errors(401, 404, 422))
    async def get_incident(request: Request, caller: Caller, incident_id: str) -> dict[str, Any]:
        row = await incidents.get_incident(request.app.state.db.pool, incident_id)
        if row is None:
            raise ApiError(404, "not_found", f"no incident {incident_id}")
        snapshot = await request.app.state.graph.aget_state(thread_config(incident_id))
        values = snapshot.values
        view = await incident_view(request.app.state.db.pool, snapshot, row["status"])
        body = _row_json(row)
        body["run_status"] = view.status
        body["report"] = incident_report(values) if values.get("window") else None
        body["brief"] = values["brief"].markdown if values.get("brief") else None
        body["awaiting_approval"] = view.gate
        body["decision"] = view.decision
        return body

    @router.get("/{incident_id}/history", responses=documented_errors(401, 404, 422))
    async def history(request: Request, caller: Caller, incident_id: str) -> dict[str, Any]:
        from graph.runs import RunError

        try:
            entries = await request.app.state.runner.history(incident_id)
        except RunError as exc:
            raise ApiError(404, "not_found", str(exc)) from exc
        return {"incident_id": incident_id, "checkpoints": [vars(e) for e in entries]}

    @router.post("/{incident_id}/approval", status_code=202, response_model=Queued,
                 responses=documented_errors(401, 404, 409, 422))
    async def approval(request: Request, caller: Caller, incident_id: str, body: ApprovalBody) -> Queued:
        snapshot = await load_snapshot(request, incident_id)
        if not snapshot.interrupts:
            raise ApiError(409, "not_awaiting_approval", f"incident {incident_id} is not waiting for approval")
        decision = {"decision": body.decision, "by": caller, "comment": body.comment}
        try:
            run_id = await intake.queue_resume(
                request.app.state.db.pool, incident_id, snapshot.interrupts[0].id, decision
            )
        except UniqueViolation as exc:
            raise ApiError(409, "already_decided", "this approval gate was already decided") from exc
        return Queued(incident_id=incident_id, status="resuming", run_id=run_id)

    @router.post("/{incident_id}/replay", status_code=202, response_model=Queued,
                 responses=documented_errors(401, 404, 422))
    async def replay(request: Request, caller: Caller, incident_id: str, body: ReplayBody) -> Queued:
        await load_snapshot(request, incident_id)
        past = await request.app.state.graph.aget_state(thread_config(incident_id, body.checkpoint_id))
        if not past.values and not past.next:
            raise ApiError(404, "not_found", f"no checkpoint {body.checkpoint_id} in incident {incident_id}")
        async with request.app.state.db.pool.connection() as conn:
            run_id = await intake.enqueue_run(conn, incident_id, "replay", {"checkpoint_id": body.checkpoint_id})
        return Queued(incident_id=incident_id, status="replaying", run_id=run_id)

    return router


def _row_json(row: dict[str, Any]) -> dict[str, Any]:
    """An incidents row as JSON."""
    keep = ("id", "service", "alertname", "source", "status", "severity", "root_cause", "created_at", "updated_at",
            "resolved_at", "resolved_by", "alert_count")
    return {k: (row[k].isoformat() if isinstance(row.get(k), datetime) else row.get(k)) for k in keep}


# --- health and metrics --------------------------------------------------------------------------------


def ops_router() -> APIRouter:
    """Liveness, readiness and Prometheus metrics (no auth: scraped and probed inside the cluster)."""
    router = APIRouter(tags=["operations"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", responses=documented_errors(503))
    async def readyz(request: Request) -> JSONResponse:
        try:
            async with request.app.state.db.pool.connection(timeout=2) as conn:
                await conn.execute("SELECT 1")
        except Exception:
            return error_response(503, "not_ready", "database unreachable")
        return JSONResponse({"status": "ready"})

    @router.get("/metrics", response_class=Response)
    async def metrics(request: Request) -> Response:
        body, content_type = await request.app.state.metrics.render(request.app.state.db.pool)
        return Response(body, media_type=content_type)

    return router


# --- dashboard -----------------------------------------------------------------------------------------


def dashboard_router() -> APIRouter:
    """Server-rendered pages: the incidents list and an incident page with the gate; cookie auth."""
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
        if not settings.auth_disabled and _match_key(settings, api_key) is None:
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


# --- the app -------------------------------------------------------------------------------------------


def create_app(settings: ServerSettings | None = None, context: Context | None = None) -> FastAPI:
    """The FastAPI app; settings are validated, and the pool, checkpointer and workers opened, once, at start-up."""
    settings = settings or ServerSettings.from_env()
    settings.validate()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        run_context = context or Context.from_env(output_dir=settings.output_dir)
        if settings.telemetry == "sim" and run_context.runbooks_dir is None:
            from sim import RUNBOOKS_DIR

            run_context.runbooks_dir = str(RUNBOOKS_DIR)  # the simulated fleet comes with its runbooks
        metrics = ServerMetrics()
        async with open_database(settings.database_url, max_size=2 * settings.workers + 8) as db:
            workers = RunWorkers(db, run_context, concurrency=settings.workers,
                                 on_finished=metrics.run_finished, on_step=metrics.node_finished)
            app.state.db, app.state.metrics = db, metrics
            app.state.runner, app.state.graph = workers.runner, workers.runner.graph
            app.state.views = DashboardViews()
            if settings.run_workers:
                await workers.start()
            # Start-up's objects (modules, the compiled graph: ~150k) live as long as the process; frozen, the
            # collector's full passes skip them instead of pausing every request for ~100 ms each time.
            gc.freeze()
            try:
                yield
            finally:
                await workers.stop()

    app = FastAPI(title="Incident CoPilot", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    install_error_handlers(app)
    app.include_router(intake_router())
    app.include_router(incidents_router())
    app.include_router(ops_router())
    app.include_router(dashboard_router())
    app.mount("/ui/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
