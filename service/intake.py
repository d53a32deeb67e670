"""Alert intake in PostgreSQL: raw payloads, dedup into open incidents, resolution, and the durable run queue."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from pydantic_core import to_json

from service import incidents
from service.queue import JOB_FOR_RUN, enqueue_run
from state import Alert, TelemetrySpec


@dataclass(frozen=True)
class Accepted:
    """What the intake did with one alert."""

    incident_id: str | None
    status: str
    deduplicated: bool
    fingerprint: str


# Every alert is one statement, which stores the payload too when it is the request's first: a one-alert webhook
# (the usual case) is a single round trip and a single-statement transaction.
_NEW_PAYLOAD = """WITH payload AS (
    INSERT INTO alert_payloads (path, format, body) VALUES (%(path)s, %(format)s, %(body)s) RETURNING id
)"""
_STORED_PAYLOAD = "WITH payload AS (SELECT %(payload_id)s::bigint AS id)"

# Open a new incident for the alert group (and queue its run), or attach to the open one; store the alert.
_FIRING = f""", incident AS (
    INSERT INTO incidents (id, fingerprint, dedup_key, service, alertname, source, status, alert, telemetry)
    VALUES (%(new_id)s, %(fingerprint)s, %(fingerprint)s, %(service)s, %(alertname)s, %(source)s, 'queued',
            %(alert)s, %(telemetry)s)
    ON CONFLICT (dedup_key) WHERE closed_at IS NULL AND dedup_key IS NOT NULL
    DO UPDATE SET alert_count = incidents.alert_count + 1, last_alert_at = now()
    RETURNING id, status, (xmax = 0) AS inserted
), new AS (
    SELECT id AS incident_id, 'start' AS queueing_key FROM incident WHERE inserted
), job AS (
    {JOB_FOR_RUN}
), run AS (
    INSERT INTO runs (id, incident_id, kind, job_id) SELECT run_id, incident_id, 'start', id FROM job
), stored AS (
    INSERT INTO alerts (payload_id, incident_id, fingerprint, status, deduplicated, alert)
    SELECT payload.id, incident.id, %(fingerprint)s, 'firing', NOT incident.inserted, %(alert)s FROM payload, incident
)
SELECT payload.id AS payload_id, incident.id, incident.status, NOT incident.inserted AS deduplicated
FROM payload, incident"""

# The source says the alert ended: every unresolved incident of the group is resolved (a concluded one too, so its
# people hear it ended) and the open one closes; the answer names the newest. Store the alert.
_RESOLVED = """, resolved AS (
    UPDATE incidents SET resolved_at = now(), resolved_by = %(resolved_by)s, last_alert_at = now(), updated_at = now(),
                         closed_at = COALESCE(closed_at, now()), closed_reason = COALESCE(closed_reason, 'resolved')
    WHERE dedup_key = %(fingerprint)s AND resolved_at IS NULL RETURNING id, created_at
), incident AS (
    SELECT id FROM resolved ORDER BY created_at DESC, id DESC LIMIT 1
), stored AS (
    INSERT INTO alerts (payload_id, incident_id, fingerprint, status, deduplicated, alert)
    SELECT payload.id, incident.id, %(fingerprint)s, 'resolved', incident.id IS NOT NULL, %(alert)s
    FROM payload LEFT JOIN incident ON true
)
SELECT payload.id AS payload_id, incident.id,
       CASE WHEN incident.id IS NULL THEN 'no_open_incident' ELSE 'resolved' END AS status,
       incident.id IS NOT NULL AS deduplicated
FROM payload LEFT JOIN incident ON true"""


def _as_is(text: str) -> str:
    """The JSON dumps for a text that pydantic already serialised (several times faster than dict + json.dumps)."""
    return text


def _statement(alert: Alert, telemetry: TelemetrySpec, new_id: Any, payload: dict[str, Any]) -> tuple[str, dict]:
    """The one statement for an alert, with its parameters; `payload` holds the body or the stored payload id."""
    params = {**payload, "fingerprint": alert.fingerprint, "alert": Jsonb(alert.model_dump_json(), dumps=_as_is)}
    if alert.status == "firing":
        sql = _FIRING
        params.update(new_id=new_id(), service=alert.service, alertname=alert.alertname, source=alert.source,
                      telemetry=Jsonb(telemetry.model_dump_json(), dumps=_as_is))
    else:
        sql, params["resolved_by"] = _RESOLVED, f"source:{alert.source}"
    return (_STORED_PAYLOAD if "payload_id" in payload else _NEW_PAYLOAD) + sql, params


async def accept_alerts(
    conn: AsyncConnection,
    path: str,
    fmt: str,
    body: Any,
    alerts: list[tuple[Alert, TelemetrySpec]],
    new_id: Any,
) -> list[Accepted]:
    """Store the payload and every alert, open/attach/resolve incidents and queue runs, all or nothing.

    Several alerts share one transaction and are handled in fingerprint order, so that two requests touching
    the same groups cannot deadlock. After the first, their statements go in one pipeline (one round trip, not
    one each), so the incident rows of a big batch stay locked for a short time.
    """
    first, *rest = sorted(range(len(alerts)), key=lambda i: (alerts[i][0].fingerprint, i))
    new_payload = {"path": path, "format": fmt, "body": Jsonb(body, dumps=to_json)}
    async with conn.transaction() if rest else nullcontext():
        cur = await conn.execute(*_statement(*alerts[first], new_id, new_payload))
        rows = {first: await cur.fetchone()}
        if rest:
            payload = {"payload_id": rows[first]["payload_id"]}
            async with conn.pipeline():
                cursors = [(i, await conn.execute(*_statement(*alerts[i], new_id, payload))) for i in rest]
                rows.update([(i, await cur.fetchone()) for i, cur in cursors])
        return [Accepted(rows[i]["id"], rows[i]["status"], rows[i]["deduplicated"], alerts[i][0].fingerprint)
                for i in range(len(alerts))]


async def queue_resume(
    pool: AsyncConnectionPool, incident_id: str, gate: Any, decision: dict[str, Any]
) -> int:
    """Store the decision for this gate (`gate`: the pending Interrupt) and queue the resume, in one transaction.

    A second decision for the gate raises UniqueViolation; a patch decided at an earlier gate, DecisionStands."""
    async with pool.connection() as conn, conn.transaction():
        await incidents.record_approval(conn, incident_id, gate.id, decision, incidents.patch_digest(gate.value))
        queued = await enqueue_run(conn, incident_id, "resume", {"interrupt_id": gate.id, "decision": decision})
        return queued.run_id


async def queue_retry(pool: AsyncConnectionPool, incident_id: str, max_queued: int) -> int | None:
    """Queue a failed incident's run again (it goes on from its last checkpoint); None when it has not failed.

    The incident's alert group stays closed: alerts that came meanwhile opened a new incident."""
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            """UPDATE incidents SET status = 'queued', updated_at = now()
               WHERE id = %s AND status = 'failed' RETURNING id""",
            (incident_id,),
        )
        if await cur.fetchone() is None:
            return None
        return (await enqueue_run(conn, incident_id, "start", {}, max_queued=max_queued)).run_id


