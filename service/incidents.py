"""The project's own incident table: one row per incident, kept beside the checkpoints."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from service.statuses import STATUSES
from state import Alert, RootCause, TelemetrySpec
from tools.notify.outbox import record_event


async def create_incident(pool: AsyncConnectionPool, incident_id: str, alert: Alert, telemetry: TelemetrySpec) -> None:
    """Insert the incident row (idempotent on id)."""
    async with pool.connection() as conn:
        await conn.execute(
            """INSERT INTO incidents (id, fingerprint, service, alertname, source, status, alert, telemetry)
               VALUES (%s, %s, %s, %s, %s, 'investigating', %s, %s) ON CONFLICT (id) DO NOTHING""",
            (
                incident_id, alert.fingerprint, alert.service, alert.alertname, alert.source,
                Jsonb(alert.model_dump(mode="json")), Jsonb(telemetry.model_dump(mode="json")),
            ),
        )


async def update_incident(
    pool: AsyncConnectionPool, incident_id: str, status: str, severity: str | None = None,
    root_cause: RootCause | None = None, notices: Sequence[tuple[str, dict[str, Any]]] = (),
) -> None:
    """Record the status (and, once known, severity and root cause) of an incident, and the notification events
    (kind, payload) that announce it, in one transaction: people hear of a status change exactly when it is made."""
    if status not in STATUSES:
        raise ValueError(f"unknown incident status {status!r}")
    async with pool.connection() as conn, conn.transaction():
        await conn.execute(
            """UPDATE incidents SET status = %s, severity = COALESCE(%s, severity),
                      root_cause = COALESCE(%s, root_cause), updated_at = now() WHERE id = %s""",
            (status, severity, Jsonb(root_cause.model_dump(mode="json")) if root_cause else None, incident_id),
        )
        for kind, payload in notices:
            await record_event(conn, incident_id, kind, payload)


async def get_incident(pool: AsyncConnectionPool, incident_id: str) -> dict[str, Any] | None:
    """One incident row, or None."""
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT * FROM incidents WHERE id = %s", (incident_id,))
        return await cur.fetchone()


async def list_incidents(
    pool: AsyncConnectionPool, *, status: str | None = None, service: str | None = None, limit: int = 50,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Incidents, newest first, optionally filtered."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            """SELECT id, service, alertname, source, status, severity, root_cause, created_at, updated_at,
                      resolved_at, resolved_by, alert_count
               FROM incidents WHERE (%(status)s::text IS NULL OR status = %(status)s)
                 AND (%(service)s::text IS NULL OR service = %(service)s)
               ORDER BY created_at DESC, id LIMIT %(limit)s OFFSET %(offset)s""",
            {"status": status, "service": service, "limit": limit, "offset": offset},
        )
        return await cur.fetchall()


async def record_approval(
    pool: AsyncConnectionPool, incident_id: str, interrupt_id: str, decision: str, by: str, comment: str
) -> None:
    """Keep every decision taken at a gate; a second decision for the same gate raises UniqueViolation."""
    async with pool.connection() as conn:
        await conn.execute(
            """INSERT INTO approvals (incident_id, interrupt_id, decision, approver, comment)
               VALUES (%s, %s, %s, %s, %s)""",
            (incident_id, interrupt_id, decision, by, comment),
        )


async def gate_decision(pool: AsyncConnectionPool, incident_id: str, interrupt_id: str) -> dict[str, Any] | None:
    """The decision already taken at this gate, if any."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT decision, approver, comment FROM approvals WHERE incident_id = %s AND interrupt_id = %s",
            (incident_id, interrupt_id),
        )
        return await cur.fetchone()


async def has_active_run(pool: AsyncConnectionPool, incident_id: str | None) -> bool:
    """True while a run of the incident is queued or running."""
    if incident_id is None:
        return False
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT EXISTS (SELECT 1 FROM runs WHERE incident_id = %s AND status IN ('queued', 'running')) AS busy",
            (incident_id,),
        )
        return (await cur.fetchone())["busy"]


async def list_services(pool: AsyncConnectionPool, limit: int = 500) -> list[str]:
    """The services incidents were opened for, by name."""
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT DISTINCT service FROM incidents ORDER BY service LIMIT %s", (limit,))
        return [row["service"] for row in await cur.fetchall()]
