"""The project's own incident table: one row per incident, kept beside the checkpoints."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from psycopg import AsyncConnection
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


# A concluded or failed incident closes its alert group: the group's next firing alert opens a new incident.
CLOSING_STATUSES = {"completed": "concluded", "not_an_incident": "concluded", "failed": "failed"}


async def update_incident(
    pool: AsyncConnectionPool, incident_id: str, status: str, severity: str | None = None,
    root_cause: RootCause | None = None, notices: Sequence[tuple[str, dict[str, Any]]] = (),
) -> None:
    """Record the status (and, once known, severity and root cause) of an incident, and the notification events
    (kind, payload) that announce it, in one transaction: people hear of a status change exactly when it is made.
    A concluded or failed incident closes its alert group."""
    if status not in STATUSES:
        raise ValueError(f"unknown incident status {status!r}")
    async with pool.connection() as conn, conn.transaction():
        await conn.execute(
            """UPDATE incidents SET status = %(status)s, severity = COALESCE(%(severity)s, severity),
                      root_cause = COALESCE(%(root_cause)s, root_cause), updated_at = now(),
                      closed_at = CASE WHEN %(closes)s::text IS NULL THEN closed_at ELSE COALESCE(closed_at, now()) END,
                      closed_reason = COALESCE(closed_reason, %(closes)s)
               WHERE id = %(id)s""",
            {"status": status, "severity": severity, "id": incident_id, "closes": CLOSING_STATUSES.get(status),
             "root_cause": Jsonb(root_cause.model_dump(mode="json")) if root_cause else None},
        )
        for kind, payload in notices:
            await record_event(conn, incident_id, kind, payload)


async def resolve_incident(pool: AsyncConnectionPool, incident_id: str, by: str) -> dict[str, Any] | None:
    """Mark an incident resolved by a person and close its group; None when there is no such incident.

    Resolving twice keeps the first resolution."""
    async with pool.connection() as conn:
        await conn.execute(
            """UPDATE incidents SET resolved_at = now(), resolved_by = %s, updated_at = now(),
                      closed_at = COALESCE(closed_at, now()), closed_reason = COALESCE(closed_reason, 'resolved')
               WHERE id = %s AND resolved_at IS NULL""",
            (by, incident_id),
        )
        cur = await conn.execute("SELECT * FROM incidents WHERE id = %s", (incident_id,))
        return await cur.fetchone()


async def close_expired_groups(pool: AsyncConnectionPool, ttl_seconds: float) -> int:
    """Close every open alert group whose last alert is older than `ttl_seconds`; returns how many closed."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            """UPDATE incidents SET closed_at = now(), closed_reason = 'expired'
               WHERE closed_at IS NULL AND dedup_key IS NOT NULL
                 AND last_alert_at < now() - make_interval(secs => %s)""",
            (ttl_seconds,),
        )
        return cur.rowcount


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
                      resolved_at, resolved_by, alert_count, closed_at, closed_reason
               FROM incidents WHERE (%(status)s::text IS NULL OR status = %(status)s)
                 AND (%(service)s::text IS NULL OR service = %(service)s)
               ORDER BY created_at DESC, id LIMIT %(limit)s OFFSET %(offset)s""",
            {"status": status, "service": service, "limit": limit, "offset": offset},
        )
        return await cur.fetchall()


def patch_digest(gate: dict[str, Any] | None) -> str | None:
    """sha256 of the diff a gate asks about (its interrupt value), the key a decision holds for."""
    diff = ((gate or {}).get("patch") or {}).get("diff")
    return hashlib.sha256(diff.encode()).hexdigest() if diff else None


async def record_approval(
    conn: AsyncConnection, incident_id: str, interrupt_id: str, decision: dict[str, Any], digest: str | None
) -> None:
    """Keep a decision taken at a gate. A second decision for the same gate raises UniqueViolation; a decision
    taken earlier on the same patch (at a gate a replay passed again) raises DecisionStands."""
    standing = await standing_decision(conn, incident_id, digest)
    if standing is not None and standing["interrupt_id"] != interrupt_id:
        raise DecisionStands(standing)
    await conn.execute(
        """INSERT INTO approvals (incident_id, interrupt_id, decision, approver, comment, patch_digest)
           VALUES (%s, %s, %s, %s, %s, %s)""",
        (incident_id, interrupt_id, decision["decision"], decision["by"], decision.get("comment", ""), digest),
    )


class DecisionStands(Exception):
    """The patch of this gate was decided at an earlier gate of the incident; that decision holds."""

    def __init__(self, standing: dict[str, Any]):
        self.standing = standing
        super().__init__(f"this patch was already decided ({standing['decision']} by {standing['approver']})")


async def standing_decision(conn: AsyncConnection, incident_id: str, digest: str | None) -> dict[str, Any] | None:
    """The first approve/reject decision taken on this patch in the incident, at whichever gate."""
    if digest is None:
        return None
    cur = await conn.execute(
        """SELECT interrupt_id, decision, approver, comment, decided_at FROM approvals
           WHERE incident_id = %s AND patch_digest = %s AND decision IN ('approve', 'reject') ORDER BY id LIMIT 1""",
        (incident_id, digest),
    )
    return await cur.fetchone()


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
