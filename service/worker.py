"""Durable background runs: a bounded pool of workers claims queued runs from PostgreSQL and executes them.

A worker claims a run and takes a session advisory lock on it in one transaction, and holds the lock while the run
executes. A run marked running whose lock anybody can take belongs to a dead worker: it is queued again and resumes
from its last checkpoint. Side-effect nodes are idempotent (create_pr finds its branch), so nothing is repeated.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any

from graph.context import Context
from nodes.approve import ApprovalDecision
from service import incidents
from service.intake import RUNS_CHANNEL
from service.runs import IncidentRunner, RunResult, thread_config
from state import Alert, TelemetrySpec
from tools.database import Database

log = logging.getLogger(__name__)
LOCK_SPACE = 0x49434F  # first key of the two-key advisory locks on run ids


class RunWorkers:
    """A pool of `concurrency` workers; start() recovers orphaned runs, then claims queued ones."""

    def __init__(
        self,
        db: Database,
        context: Context,
        *,
        concurrency: int = 2,
        poll_seconds: float = 1.0,
        recover_seconds: float = 10.0,
        group_ttl_seconds: float = 86_400,
        on_finished: Callable[[dict[str, Any], RunResult | None, float], None] | None = None,
        on_step: Callable[[str, dict[str, Any], float], None] | None = None,
    ):
        self.db = db
        self.runner = IncidentRunner(db, context, on_step=on_step)
        self.concurrency = concurrency
        self.poll_seconds = poll_seconds
        self.recover_seconds = recover_seconds
        self.group_ttl_seconds = group_ttl_seconds
        self.on_finished = on_finished
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._stopping = False

    async def start(self) -> None:
        """Requeue orphaned runs, then start the workers, the listener and the periodic recovery."""
        await self.recover()
        self._tasks = [asyncio.create_task(self._work(), name=f"run-worker-{i}") for i in range(self.concurrency)]
        self._tasks.append(asyncio.create_task(self._listen(), name="run-listener"))
        self._tasks.append(asyncio.create_task(self._recover_periodically(), name="run-recovery"))

    async def stop(self) -> None:
        """Stop claiming; cancel in-flight runs (they resume from their checkpoints on the next start)."""
        self._stopping = True
        self._wake.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []

    async def recover(self) -> int:
        """Queue again every running run whose worker is gone (its advisory lock is free). Returns how many."""
        recovered = 0
        async with self.db.pool.connection() as conn:
            cur = await conn.execute("SELECT id FROM runs WHERE status = 'running'")
            for row in await cur.fetchall():
                got = await (await conn.execute("SELECT pg_try_advisory_lock(%s, %s::int) AS ok",
                                                (LOCK_SPACE, row["id"]))).fetchone()
                if not got["ok"]:
                    continue  # a live worker holds it
                try:
                    cur2 = await conn.execute(
                        "UPDATE runs SET status = 'queued', claimed_by = NULL WHERE id = %s AND status = 'running'",
                        (row["id"],),
                    )
                    recovered += cur2.rowcount
                finally:
                    await conn.execute("SELECT pg_advisory_unlock(%s, %s::int)", (LOCK_SPACE, row["id"]))
        if recovered:
            log.warning("recovered %d run(s) of dead workers", recovered)
            self._wake.set()
        return recovered

    async def _recover_periodically(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.recover_seconds)
            try:
                await self.recover()
                await incidents.close_expired_groups(self.db.pool, self.group_ttl_seconds)
            except Exception:
                log.exception("run recovery failed")

    async def _listen(self) -> None:
        """Wake the workers on NOTIFY; polling covers a lost connection."""
        from psycopg import AsyncConnection

        while not self._stopping:
            try:
                async with await AsyncConnection.connect(self.db.url, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {RUNS_CHANNEL}")
                    async for _ in conn.notifies():
                        self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception:
                await asyncio.sleep(self.poll_seconds)

    async def _work(self) -> None:
        while not self._stopping:
            self._wake.clear()  # before claiming, so a NOTIFY that arrives meanwhile is not lost
            async with self.db.pool.connection() as lock_conn:
                run = await self._claim(lock_conn)
                if run is not None:
                    try:
                        await self._execute(run)
                    finally:
                        await lock_conn.execute("SELECT pg_advisory_unlock(%s, %s::int)", (LOCK_SPACE, run["id"]))
                    continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_seconds)

    async def _claim(self, conn: Any) -> dict[str, Any] | None:
        """Claim the oldest queued run and lock it, in one transaction (no window where it looks orphaned)."""
        async with conn.transaction():
            cur = await conn.execute(
                """UPDATE runs SET status = 'running', claimed_by = %s, started_at = now(), attempts = attempts + 1
                   WHERE id = (SELECT id FROM runs WHERE status = 'queued' ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 1)
                   RETURNING id, incident_id, kind, payload, attempts""",
                (self.worker_id,),
            )
            run = await cur.fetchone()
            if run is not None:
                await conn.execute("SELECT pg_advisory_lock(%s, %s::int)", (LOCK_SPACE, run["id"]))
        return run

    async def _execute(self, run: dict[str, Any]) -> None:
        started = time.perf_counter()
        result: RunResult | None = None
        try:
            result = await self._run(run)
            status, error = "done", None
        except asyncio.CancelledError:
            raise  # shutting down: the run stays 'running' and is recovered from its checkpoint
        except Exception as exc:
            log.exception("run %s of incident %s failed", run["id"], run["incident_id"])
            status, error = "failed", f"{type(exc).__name__}: {exc}"[:1000]
        async with self.db.pool.connection() as conn:
            await conn.execute(
                "UPDATE runs SET status = %s, finished_at = now(), error = %s WHERE id = %s", (status, error, run["id"])
            )
        if self.on_finished is not None:
            self.on_finished(run, result, time.perf_counter() - started)

    async def _run(self, run: dict[str, Any]) -> RunResult:
        incident_id = run["incident_id"]
        snapshot = await self.runner.graph.aget_state(thread_config(incident_id))
        if run["kind"] == "start":
            if snapshot.values:  # a checkpoint exists: the run was in flight when its worker died
                return await self.runner.continue_run(incident_id)
            row = await incidents.get_incident(self.db.pool, incident_id)
            alert, telemetry = Alert.model_validate(row["alert"]), TelemetrySpec.model_validate(row["telemetry"])
            return await self.runner.start(alert, telemetry, incident_id=incident_id, record=False)
        if run["kind"] == "resume":
            payload = run["payload"]
            pending = snapshot.interrupts[0].id if snapshot.interrupts else None
            if pending is not None and pending == payload.get("interrupt_id"):
                decision = ApprovalDecision.model_validate(payload["decision"])
                return await self.runner.resume(incident_id, decision, record=False)
            return await self.runner.continue_run(incident_id)  # already resumed before a crash: go on
        if run["kind"] == "replay":
            return await self.runner.replay(incident_id, run["payload"]["checkpoint_id"])
        raise ValueError(f"unknown run kind {run['kind']!r}")

