"""The incidents resource: list, one, its history, its approval gate, replays."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from psycopg.errors import UniqueViolation
from pydantic import BaseModel, Field

from graph.summary import incident_report
from service import incidents, intake
from service.auth import Decider, Operator, Reader
from service.errors import ApiError, documented_errors, is_json_media_type
from service.queue import enqueue_run, queue_or_429
from service.runs import RunError, incident_view, thread_config
from state import INCIDENT_ID_MAX_LENGTH, INCIDENT_ID_PATTERN
from tools.redact import redact_value

IncidentId = Annotated[str, Path(pattern=INCIDENT_ID_PATTERN, max_length=INCIDENT_ID_MAX_LENGTH,
                                 description="an incident id: letters, digits, '-' and '_'")]


async def json_only(request: Request) -> None:
    """Bodies of the JSON API are JSON: any other media type is refused with 415 (a form cannot stand in)."""
    if not is_json_media_type(request.headers.get("content-type")):
        raise ApiError(415, "unsupported_media_type", "the body must be JSON (Content-Type: application/json)")


JsonOnly = Annotated[None, Depends(json_only)]  # declared after the caller: 401/403 come before 415


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
    """202 body of the approval, replay and retry endpoints; `deduplicated`: the same run was queued already."""

    incident_id: str
    status: str
    run_id: int
    deduplicated: bool = False


async def load_snapshot(request: Request, incident_id: IncidentId) -> Any:
    """The incident's latest checkpoint, or 404."""
    snapshot = await request.app.state.graph.aget_state(thread_config(incident_id))
    if not snapshot.values:
        raise ApiError(404, "not_found", f"no incident {incident_id}")
    return snapshot


def row_json(row: dict[str, Any]) -> dict[str, Any]:
    """An incidents row as JSON."""
    keep = ("id", "service", "alertname", "source", "status", "severity", "root_cause", "created_at", "updated_at",
            "resolved_at", "resolved_by", "alert_count", "closed_at", "closed_reason")
    return redact_value({k: (row[k].isoformat() if isinstance(row.get(k), datetime) else row.get(k)) for k in keep})


def incidents_router() -> APIRouter:
    """GET /incidents, GET /incidents/{id}, its history, POST approval and replay."""
    router = APIRouter(prefix="/incidents", tags=["incidents"])

    @router.get("", responses=documented_errors(401, 403, 422, 503))
    async def list_incidents(
        request: Request, caller: Reader,
        status: Annotated[str | None, Query(max_length=40)] = None,
        service: Annotated[str | None, Query(max_length=128)] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    ) -> dict[str, Any]:
        rows = await incidents.list_incidents(
            request.app.state.db.pool, status=status, service=service, limit=limit, offset=offset
        )
        return {"items": [row_json(r) for r in rows], "limit": limit, "offset": offset,
                "next_offset": offset + limit if len(rows) == limit else None}

    @router.get("/{incident_id}", responses=documented_errors(401, 403, 404, 422, 503))
    async def get_incident(request: Request, caller: Reader, incident_id: IncidentId) -> dict[str, Any]:
        row = await incidents.get_incident(request.app.state.db.pool, incident_id)
        if row is None:
            raise ApiError(404, "not_found", f"no incident {incident_id}")
        snapshot = await request.app.state.graph.aget_state(thread_config(incident_id))
        values = snapshot.values
        view = await incident_view(request.app.state.db.pool, snapshot, row["status"])
        body = row_json(row)
        body["run_status"] = view.status
        body["report"] = incident_report(values) if values.get("window") else None
        body["brief"] = values["brief"].markdown if values.get("brief") else None
        body["awaiting_approval"] = view.gate
        body["decision"] = view.decision
        return redact_value(body)  # API fields never carry a secret, whatever the alert or the telemetry held

    @router.get("/{incident_id}/history", responses=documented_errors(401, 403, 404, 422, 503))
    async def history(request: Request, caller: Reader, incident_id: IncidentId) -> dict[str, Any]:
        try:
            entries = await request.app.state.runner.history(incident_id)
        except RunError as exc:
            raise ApiError(404, "not_found", str(exc)) from exc
        return {"incident_id": incident_id, "checkpoints": [vars(e) for e in entries]}

    @router.post("/{incident_id}/approval", status_code=202, response_model=Queued,
                 responses=documented_errors(400, 401, 403, 404, 409, 415, 422, 503))
    async def approval(request: Request, caller: Decider, _json: JsonOnly, incident_id: IncidentId,
                       body: ApprovalBody) -> Queued:
        snapshot = await load_snapshot(request, incident_id)
        if not snapshot.interrupts:
            raise ApiError(409, "not_awaiting_approval", f"incident {incident_id} is not waiting for approval")
        decision = {"decision": body.decision, "by": caller.name, "comment": body.comment}
        try:
            run_id = await intake.queue_resume(request.app.state.db.pool, incident_id, snapshot.interrupts[0], decision)
        except UniqueViolation as exc:
            raise ApiError(409, "already_decided", "this approval gate was already decided") from exc
        except incidents.DecisionStands as exc:
            raise ApiError(409, "already_decided", str(exc)) from exc
        return Queued(incident_id=incident_id, status="resuming", run_id=run_id)

    @router.post("/{incident_id}/replay", status_code=202, response_model=Queued,
                 responses=documented_errors(400, 401, 403, 404, 415, 422, 429, 503))
    async def replay(request: Request, caller: Operator, _json: JsonOnly, incident_id: IncidentId,
                     body: ReplayBody) -> Queued:
        await load_snapshot(request, incident_id)
        past = await request.app.state.graph.aget_state(thread_config(incident_id, body.checkpoint_id))
        if not past.values and not past.next:
            raise ApiError(404, "not_found", f"no checkpoint {body.checkpoint_id} in incident {incident_id}")
        async with request.app.state.db.pool.connection() as conn, conn.transaction():
            queued = await queue_or_429(enqueue_run(
                conn, incident_id, "replay", {"checkpoint_id": body.checkpoint_id},
                max_queued=request.app.state.settings.max_queued_runs,
            ))
        return Queued(incident_id=incident_id, status="replaying", run_id=queued.run_id,
                      deduplicated=queued.deduplicated)

    @router.post("/{incident_id}/resolve", responses=documented_errors(401, 403, 404, 422, 503))
    async def resolve(request: Request, caller: Operator, incident_id: IncidentId) -> dict[str, Any]:
        row = await incidents.resolve_incident(request.app.state.db.pool, incident_id, f"api:{caller.name}")
        if row is None:
            raise ApiError(404, "not_found", f"no incident {incident_id}")
        return row_json(row)

    @router.post("/{incident_id}/retry", status_code=202, response_model=Queued,
                 responses=documented_errors(401, 403, 404, 409, 422, 429, 503))
    async def retry(request: Request, caller: Operator, incident_id: IncidentId) -> Queued:
        row = await incidents.get_incident(request.app.state.db.pool, incident_id)
        if row is None:
            raise ApiError(404, "not_found", f"no incident {incident_id}")
        run_id = await queue_or_429(intake.queue_retry(
            request.app.state.db.pool, incident_id, request.app.state.settings.max_queued_runs))
        if run_id is None:
            raise ApiError(409, "not_failed", f"incident {incident_id} has not failed (status {row['status']})")
        return Queued(incident_id=incident_id, status="queued", run_id=run_id)

    return router
