"""POST /alerts and its alias for the seeds' webhook path: parse, store, group, queue (DESIGN.md 4.4)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from service import intake
from service.alert_payloads import PayloadError, decode_body, parse_payload
from service.auth import allowed, authenticate
from service.errors import ApiError, documented_errors, is_json_media_type
from service.queue import queue_or_429
from service.runs import new_incident_id
from service.settings import ServerSettings
from state import Alert, TelemetrySpec


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


async def read_json_body(request: Request, limit: int) -> Any:
    """The request body as JSON, refusing other media types (415) and bodies over `limit` bytes before reading
    them whole (413)."""
    if not is_json_media_type(request.headers.get("content-type")):
        raise ApiError(415, "unsupported_media_type", "the body must be JSON (Content-Type: application/json)")
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
    # A lone UTF-16 surrogate, which no database column can hold, comes from a \u escape or from its three UTF-8
    # bytes (lead byte 0xED), which Python's JSON decoder lets through.
    if b"\\u" in raw or b"\xed" in raw:
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
    # isdigit() alone takes "²" and other digits int() refuses; a seed is a short run of ASCII digits
    if not (seed.isascii() and seed.isdigit() and len(seed) <= 9):
        raise ApiError(422, "invalid_field", "sim mode: label 'seed' must be a whole number of at most 9 digits")
    return TelemetrySpec(kind="sim", scenario=scenario, seed=int(seed), end=alert.starts_at)


def intake_router() -> APIRouter:
    """POST /alerts and POST /webhook/trigger_agent."""
    router = APIRouter(tags=["intake"])

    async def receive(request: Request) -> JSONResponse:
        # The role check called directly, not as a route dependency: resolving it took about 6% of the intake's CPU
        # per alert (py-spy, solve_dependencies).
        allowed(authenticate(request), "post_alerts")
        app = request.app
        settings: ServerSettings = app.state.settings
        body = await read_json_body(request, settings.max_body_bytes)
        try:
            parsed = parse_payload(body, received_at=datetime.now(UTC), max_alerts=settings.max_alerts_per_request)
        except PayloadError as exc:
            raise ApiError(422, exc.code, exc.message) from exc
        pairs = [(alert, telemetry_for(settings, alert)) for alert in parsed.alerts]
        # each firing group may open an incident and queue its run
        groups = len({alert.fingerprint for alert in parsed.alerts if alert.status == "firing"})
        # Within the deadline, or 503: a partition must not hold the sender until the network is back. A 503 that
        # cut a statement short cannot say whether it was stored; the sender's retry is then a second alert of
        # its group, which opens no second incident.
        async with app.state.db.pool.connection_within(settings.db_deadline) as conn:
            await queue_or_429(app.state.queue_limit.check(conn, groups))
            accepted = await intake.accept_alerts(
                conn, request.scope["path"], parsed.format, body, pairs, new_incident_id
            )
        app.state.metrics.alerts_accepted(parsed.format, accepted)
        first = accepted[0]
        # IntakeResponse's shape, built as plain data: a model per alert costs every request for nothing
        response = {"incident_id": first.incident_id, "status": first.status, "deduplicated": first.deduplicated,
                    "alerts": [vars(a) for a in accepted]}
        return JSONResponse(response, status_code=202)

    for path in ("/alerts", "/webhook/trigger_agent"):
        router.add_api_route(
            path, receive, methods=["POST"], status_code=202, response_model=IntakeResponse,
            responses=documented_errors(400, 401, 403, 413, 415, 422, 429, 503),
            openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "description": "Grafana, Alertmanager v4 or {service_name, lookup_window_seconds}",
            }}}}},
        )
    return router
