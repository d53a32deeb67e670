"""The run queue: each graph run is a row of `runs` and one procrastinate job, written in the caller's transaction.

procrastinate (a PostgreSQL task queue) executes the jobs (service/worker.py). A job's `lock` is its incident, so
at most one run drives an incident at a time, in the order the runs were queued; its `queueing_lock` refuses a
second waiting job for the same start, resume or replay. `runs` stays the project's record of what was asked
(kind, payload, status, attempts) and what the API answers with (`run_id`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from service.errors import ApiError

QUEUE = "runs"
TASK = "incident_copilot.run"
# A worker whose heartbeat is older than this is gone; the jobs it held are stalled and run again.
STALLED_SECONDS = 30.0
HEARTBEAT_SECONDS = 5.0
T = TypeVar("T")

# A job for a run whose id is drawn first, so that the job's args and the run's row name each other. Used by the
# intake's one statement (as a CTE over the incidents it opened) and by enqueue_run.
JOB_FOR_RUN = f"""INSERT INTO procrastinate_jobs (queue_name, task_name, lock, queueing_lock, args)
    SELECT '{QUEUE}', '{TASK}', new.incident_id, new.incident_id || ':' || new.queueing_key,
           jsonb_build_object('run_id', nextval(pg_get_serial_sequence('runs', 'id')))
    FROM new RETURNING id, (args->>'run_id')::bigint AS run_id, lock AS incident_id"""

_ENQUEUE = f"""WITH new AS (SELECT %(incident_id)s::text AS incident_id, %(queueing_key)s::text AS queueing_key),
job AS ({JOB_FOR_RUN})
INSERT INTO runs (id, incident_id, kind, payload, job_id)
SELECT run_id, incident_id, %(kind)s, %(payload)s, id FROM job RETURNING id"""


RETRY_AFTER_SECONDS = 30  # what a refused caller is told to wait: about a run's length under load


class QueueFull(Exception):
    """The queue holds as many waiting runs as it may: come back later."""


async def queue_or_429(queuing: Awaitable[T]) -> T:
    """Await a call that queues runs; a full queue answers 429 with Retry-After."""
    try:
        return await queuing
    except QueueFull as exc:
        raise ApiError(429, "queue_full", f"{exc}; try again later",
                       headers={"Retry-After": str(RETRY_AFTER_SECONDS)}) from exc


@dataclass(frozen=True)
class Enqueued:
    """A run queued, or the identical run already waiting or running."""

    run_id: int
    deduplicated: bool


def queueing_key(kind: str, payload: dict[str, Any]) -> str:
    """What makes two waiting runs of an incident the same: the kind, and what it replays or answers."""
    if kind == "replay":
        return f"replay:{payload['checkpoint_id']}"
    if kind == "resume":
        return f"resume:{payload['interrupt_id']}"
    return kind


async def enqueue_run(
    conn: AsyncConnection, incident_id: str, kind: str, payload: dict[str, Any], *, max_queued: int | None = None
) -> Enqueued:
    """Queue a run of the incident in the caller's transaction; an identical run (same kind and checkpoint or gate)
    that is still queued or running is answered instead. QueueFull when `max_queued` runs wait already."""
    key = queueing_key(kind, payload)
    # Serialise the incident's enqueues, so that the identical-run check below cannot race.
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (incident_id,))
    cur = await conn.execute(
        """SELECT r.id FROM runs r JOIN procrastinate_jobs j ON j.id = r.job_id
           WHERE r.incident_id = %s AND j.queueing_lock = %s AND j.status IN ('todo', 'doing') LIMIT 1""",
        (incident_id, f"{incident_id}:{key}"),
    )
    if (same := await cur.fetchone()) is not None:
        return Enqueued(same["id"], True)
    if max_queued is not None and await queued_runs(conn) >= max_queued:
        raise QueueFull(f"{max_queued} runs are waiting already")
    cur = await conn.execute(_ENQUEUE, {"incident_id": incident_id, "queueing_key": key, "kind": kind,
                                        "payload": Jsonb(payload)})
    return Enqueued((await cur.fetchone())["id"], False)


async def queued_runs(conn: AsyncConnection) -> int:
    """How many runs wait for a worker."""
    cur = await conn.execute("SELECT count(*) AS n FROM runs WHERE status = 'queued'")
    return (await cur.fetchone())["n"]


async def queue_depth(pool: AsyncConnectionPool) -> dict[str, int]:
    """Runs by status (queued, running)."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT status, count(*) AS n FROM runs WHERE status IN ('queued', 'running') GROUP BY status"
        )
        counts = {row["status"]: row["n"] for row in await cur.fetchall()}
    return {"queued": counts.get("queued", 0), "running": counts.get("running", 0)}


async def live_workers(pool: AsyncConnectionPool) -> int:
    """Run workers of every process with a heartbeat in the last STALLED_SECONDS (procrastinate's registry)."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM procrastinate_workers WHERE last_heartbeat > now() - make_interval(secs => %s)",
            (STALLED_SECONDS,),
        )
        return (await cur.fetchone())["n"]


class QueueLimit:
    """The cap on waiting runs as the intake checks it: against a count at most `max_age` seconds old, so that
    an acknowledgement costs no extra query."""

    def __init__(self, cap: int, max_age: float = 0.5):
        self.cap, self.max_age = cap, max_age
        self._count, self._at = 0, float("-inf")

    async def check(self, conn: AsyncConnection, new_runs: int) -> None:
        """QueueFull when `new_runs` more would take the waiting runs over the cap."""
        if new_runs == 0:
            return
        now = time.monotonic()
        if now - self._at > self.max_age:
            self._count, self._at = await queued_runs(conn), now
        if self._count + new_runs > self.cap:
            raise QueueFull(f"{self._count} runs are waiting, at most {self.cap}")
