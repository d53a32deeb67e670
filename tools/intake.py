"""Alert intake in PostgreSQL: raw payloads, dedup into open incidents, resolution, and the durable run queue."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from state import Alert, TelemetrySpec

RUNS_CHANNEL = "incident_copilot_runs"


@dataclass(frozen=True)
class Accepted:
    """What the intake did with one alert."""

    incident_id: str | None
    status: str
    deduplicated: bool
    fingerprint: str


async def store_payload(conn: AsyncConnection, path: str, fmt: str | None, body: Any) -> int:
    """Keep the request body as it arrived; returns its id."""
    cur = await conn.execute(
        "INSERT INTO alert_payloads (path, format, body) VALUES (%s, %s, %s) RETURNING id", (path, fmt, Jsonb(body))
    )
    return (await cur.fetchone())["id"]


async def _open_or_attach(
    conn: AsyncConnection, new_id: str, alert: Alert, telemetry: TelemetrySpec
) -> tuple[str, bool, str]:
    """Insert a new open incident for the alert group, or attach to the open one: (id, deduplicated, status)."""
    cur = await conn.execute(
        """INSERT INTO incidents (id, fingerprint, dedup_key, service, alertname, source, status, alert, telemetry)
           VALUES (%s, %s, %s, %s, %s, %s, 'queued', %s, %s)
           ON CONFLICT (dedup_key) WHERE resolved_at IS NULL AND dedup_key IS NOT NULL
           DO UPDATE SET alert_count = incidents.alert_count + 1, last_alert_at = now()
           RETURNING id, status, (xmax = 0) AS inserted""",
        (
            new_id, alert.fingerprint, alert.fingerprint, alert.service, alert.alertname, alert.source,
            Jsonb(alert.model_dump(mode="json")), Jsonb(telemetry.model_dump(mode="json")),
        ),
    )
    row = await cur.fetchone()
    return row["id"], not row["inserted"], row["status"]


async def _resolve(conn: AsyncConnection, alert: Alert) -> str | None:
    """Mark the open incident of the alert group resolved by its source; returns its id if there was one."""
    cur = await conn.execute(
        """UPDATE incidents SET resolved_at = now(), resolved_by = %s, last_alert_at = now(), updated_at = now()
           WHERE dedup_key = %s AND resolved_at IS NULL RETURNING id""",
        (f"source:{alert.source}", alert.fingerprint),
    )
    row = await cur.fetchone()
    return row["id"] if row else None


async def accept_alerts(
    pool: AsyncConnectionPool,
    path: str,
    fmt: str,
    body: Any,
    alerts: list[tuple[Alert, TelemetrySpec]],
    new_id: Any,
) -> list[Accepted]:
    """Store the payload and every alert, open/attach/resolve incidents and queue runs, in one transaction.

    Alerts are handled in fingerprint order so that two requests touching the same groups cannot deadlock.
    Pipeline mode sends the statements without waiting for each reply: the round trips go from one per
    statement to one per result read (the payload id, each incident row), which halves a storm's latency.
    """
    results: dict[int, Accepted] = {}
    order = sorted(range(len(alerts)), key=lambda i: (alerts[i][0].fingerprint, i))
    async with pool.connection() as conn, conn.pipeline(), conn.transaction():
        payload_id = await store_payload(conn, path, fmt, body)
        for i in order:
            alert, telemetry = alerts[i]
            if alert.status == "firing":
                incident_id, deduplicated, status = await _open_or_attach(conn, new_id(), alert, telemetry)
                if not deduplicated:
                    await conn.execute(
                        "INSERT INTO runs (incident_id, kind) VALUES (%s, 'start')", (incident_id,)
                    )
            else:
                incident_id = await _resolve(conn, alert)
                deduplicated, status = incident_id is not None, "resolved" if incident_id else "no_open_incident"
            await conn.execute(
                """INSERT INTO alerts (payload_id, incident_id, fingerprint, status, deduplicated, alert)
                   VALUES (%s, %s, %s, %s, %s, %s)""",
                (payload_id, incident_id, alert.fingerprint, alert.status, deduplicated,
                 Jsonb(alert.model_dump(mode="json"))),
            )
            results[i] = Accepted(incident_id, status, deduplicated, alert.fingerprint)
        if any(not r.deduplicated and r.status == "queued" for r in results.values()):
            await conn.execute(f"NOTIFY {RUNS_CHANNEL}")
    return [results[i] for i in range(len(alerts))]


async def enqueue_run(conn: AsyncConnection, incident_id: str, kind: str, payload: dict[str, Any]) -> int:
    """Queue a run (resume, replay) for an incident and wake the workers."""
    cur = await conn.execute(
        "INSERT INTO runs (incident_id, kind, payload) VALUES (%s, %s, %s) RETURNING id",
        (incident_id, kind, Jsonb(payload)),
    )
    run_id = (await cur.fetchone())["id"]
    await conn.execute(f"NOTIFY {RUNS_CHANNEL}")
    return run_id


async def queue_resume(
    pool: AsyncConnectionPool, incident_id: str, interrupt_id: str, decision: dict[str, Any]
) -> int:
    """Store the decision for this gate (unique per interrupt: a second one raises UniqueViolation) and queue
    the resume, in one transaction."""
    async with pool.connection() as conn, conn.transaction():
        await conn.execute(
            """INSERT INTO approvals (incident_id, interrupt_id, decision, approver, comment)
               VALUES (%s, %s, %s, %s, %s)""",
            (incident_id, interrupt_id, decision["decision"], decision["by"], decision.get("comment", "")),
        )
        return await enqueue_run(conn, incident_id, "resume", {"interrupt_id": interrupt_id, "decision": decision})


async def queue_depth(pool: AsyncConnectionPool) -> dict[str, int]:
    """Runs by status (queued, running)."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT status, count(*) AS n FROM runs WHERE status IN ('queued', 'running') GROUP BY status"
        )
        counts = {row["status"]: row["n"] for row in await cur.fetchall()}
    return {"queued": counts.get("queued", 0), "running": counts.get("running", 0)}
