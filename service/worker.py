"""Run workers: procrastinate executes the queued runs (service/queue.py), and keeps executing through database
outages.

One procrastinate worker per process runs up to `concurrency` runs at once. Every query it makes goes through a
connector that waits for the database to come back instead of failing (a terminated connection, a network cut),
so heartbeats, job fetches and job results survive an outage, and the worker is restarted if it stops anyway. A
run whose worker died (no heartbeat for STALLED_SECONDS) is queued again and resumes from its last checkpoint;
side-effect nodes are idempotent (create_pr finds its branch), so nothing is repeated. A run that fails is retried
with exponential backoff until it has had `attempts` attempts (whatever ended them: an error, its worker dying),
then its incident is failed. A run whose database goes away waits for it and goes on from its last checkpoint,
in the same attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
from procrastinate import App, BaseRetryStrategy, JobContext, PsycopgConnector, RetryDecision, exceptions, jobs

from graph.context import Context
from nodes.approve import ApprovalDecision
from service import incidents
from service.queue import HEARTBEAT_SECONDS, QUEUE, STALLED_SECONDS, TASK
from service.runs import IncidentRunner, RunResult, thread_config
from service.settings import ServerSettings
from state import Alert, TelemetrySpec
from tools.background import stop_task
from tools.database import RECONNECT_SECONDS, Database, connection_parameters

log = logging.getLogger(__name__)

T = TypeVar("T")
SWEEP_SECONDS = 5.0  # stalled runs and expired alert groups are looked for this often
OUTAGE_RETRY_SECONDS = (0.2, 5.0)  # first and longest wait between tries while the database is away


def is_outage(exc: BaseException) -> bool:
    """True when `exc` (or what caused it) says the database could not be reached or dropped the connection,
    rather than that a query was wrong."""
    while exc is not None:
        if isinstance(exc, psycopg.OperationalError):  # a dropped connection, a refused one, a pool timeout
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def retry_delay(exc: BaseException, attempts: int, max_attempts: int) -> float | None:
    """Seconds before the next attempt of a run that raised `exc` after `attempts` earlier attempts (exponential:
    2, 4, 8 s...), or None when it has had its `max_attempts`. A worker that stops hands its runs back at once."""
    if isinstance(exc, asyncio.CancelledError):
        return 0.0
    return None if attempts + 1 >= max_attempts else 2.0 * 2**attempts


class RunRetry(BaseRetryStrategy):
    """procrastinate's retry decision from retry_delay."""

    def __init__(self, max_attempts: int):
        self.max_attempts = max_attempts

    def get_retry_decision(self, *, exception: BaseException, job: jobs.Job) -> RetryDecision | None:
        delay = retry_delay(exception, job.attempts, self.max_attempts)
        return None if delay is None else RetryDecision(retry_in={"seconds": delay})


async def patiently(call: Callable[[], Awaitable[T]], giving_up: Callable[[], bool] = lambda: False,
                    on_outage: Callable[[], None] = lambda: None) -> T:
    """Await `call()`; while the database is unreachable, try again with growing waits (until `giving_up()`)."""
    wait, longest = OUTAGE_RETRY_SECONDS
    while True:
        try:
            return await call()
        except Exception as exc:
            if giving_up() or not is_outage(exc):
                raise
            on_outage()
            log.warning("database unreachable (%s); trying again in %.1f s", exc, wait)
        await asyncio.sleep(wait)
        wait = min(wait * 2, longest)


class OutageTolerantConnector(PsycopgConnector):
    """A procrastinate connector whose queries wait for the database to come back instead of failing."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.closing = False
        self.last_outage = float("-inf")  # time.monotonic() of the last query that met the database away

    def _outage(self) -> None:
        self.last_outage = time.monotonic()

    async def _patiently(self, call: Callable[[], Awaitable[Any]]) -> Any:
        return await patiently(call, giving_up=lambda: self.closing, on_outage=self._outage)

    async def execute_query_async(self, query: Any, **arguments: Any) -> None:
        return await self._patiently(lambda: super(OutageTolerantConnector, self).execute_query_async(
            query, **arguments))

    async def execute_query_one_async(self, query: Any, **arguments: Any) -> dict[str, Any]:
        return await self._patiently(lambda: super(OutageTolerantConnector, self).execute_query_one_async(
            query, **arguments))

    async def execute_query_all_async(self, query: Any, **arguments: Any) -> list[dict[str, Any]]:
        return await self._patiently(lambda: super(OutageTolerantConnector, self).execute_query_all_async(
            query, **arguments))

    async def listen_notify(self, on_notification: Any, channels: Any) -> None:
        await self._patiently(lambda: super(OutageTolerantConnector, self).listen_notify(on_notification, channels))


class RunWorkers:
    """The process's run worker: start() begins executing queued runs, stop() ends it (in-flight runs are queued
    again and resume from their checkpoints)."""

    def __init__(
        self,
        db: Database,
        context: Context,
        *,
        concurrency: int = 2,
        attempts: int = 5,
        group_ttl_seconds: float = 86_400,
        on_finished: Callable[[dict[str, Any], RunResult | None, float], None] | None = None,
        on_step: Callable[[str, dict[str, Any], float], None] | None = None,
    ):
        self.db = db
        self.runner = IncidentRunner(db, context, on_step=on_step, fail_incidents=False)
        self.concurrency = concurrency
        self.attempts = attempts
        self.group_ttl_seconds = group_ttl_seconds
        self.on_finished = on_finished
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.connector = OutageTolerantConnector(conninfo=db.url, min_size=1, max_size=concurrency + 3,
                                                 reconnect_timeout=RECONNECT_SECONDS,
                                                 kwargs={"prepare_threshold": 0, **connection_parameters(db.url)})
        self.app = App(connector=self.connector)
        self.app.task(name=TASK, queue=QUEUE, pass_context=True, retry=RunRetry(attempts))(self._run_job)
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        """Open the queue's pool and start the worker and the sweep of stalled runs and expired groups."""
        await self.app.open_async()
        self._tasks = [asyncio.create_task(self._keep_working(), name="run-worker"),
                       asyncio.create_task(self._sweep_periodically(), name="run-sweep")]

    def running(self) -> bool:
        """Whether this process's worker takes runs: started, and neither stopped nor given up (it restarts
        procrastinate's worker after an error, so only stop() ends it)."""
        return bool(self._tasks) and not any(task.done() for task in self._tasks)

    async def stop(self) -> None:
        """Stop the worker: in-flight runs are cancelled and queued again (they resume from their checkpoints). A run
        whose queuing the database does not answer within stop_task's wait is left running in the database; a sweep
        (of any process, or of this one's next start) queues it again, its worker being gone."""
        self.connector.closing = True
        for task in self._tasks:
            await stop_task(task)
        self._tasks = []
        with contextlib.suppress(Exception):
            await self.app.close_async()

    async def _keep_working(self) -> None:
        """Run procrastinate's worker; should it stop on an error anyway, start it again."""
        while True:
            try:
                await self.app.run_worker_async(
                    name=self.name, queues=[QUEUE], concurrency=self.concurrency, install_signal_handlers=False,
                    update_heartbeat_interval=HEARTBEAT_SECONDS, stalled_worker_timeout=STALLED_SECONDS,
                    fetch_job_polling_interval=1.0, shutdown_graceful_timeout=0,
                )
                log.warning("run worker stopped; starting it again")
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("run worker failed; starting it again")
            await asyncio.sleep(1.0)

    async def _sweep_periodically(self) -> None:
        while True:
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is away: the next sweep will do
                log.warning("sweep failed: %s", exc)
            await asyncio.sleep(SWEEP_SECONDS)

    async def sweep(self) -> int:
        """Queue again the runs of dead workers (failing those that had their attempts: a poison run that kills
        its worker stops), and close expired alert groups. Returns how many runs were queued again."""
        requeued = 0
        stalled = await self.app.job_manager.get_stalled_jobs(seconds_since_heartbeat=STALLED_SECONDS)
        if time.monotonic() - self.connector.last_outage < STALLED_SECONDS:
            # after an outage every worker's heartbeat is old, the live ones' too: give them time to send one
            stalled = []
        for job in stalled:
            run_id = job.task_kwargs["run_id"]
            try:
                if job.attempts + 1 >= self.attempts:
                    await self.app.job_manager.finish_job(job, status=jobs.Status.FAILED, delete_job=False)
                    await self._run_failed(run_id, f"its worker died {job.attempts + 1} times")
                    continue
                await self.app.job_manager.retry_job(job)
            except exceptions.ConnectorException as exc:  # another worker's sweep took it first
                log.info("stalled job %s: %s", job.id, exc)
                continue
            await self._set_run(run_id, "queued")
            requeued += 1
        if requeued:
            log.warning("queued again %d run(s) of dead workers", requeued)
        await incidents.close_expired_groups(self.db.pool, self.group_ttl_seconds)
        return requeued

    async def _run_job(self, job_context: JobContext, run_id: int) -> None:
        """The procrastinate task: execute run `run_id`, keeping its row in step. A database outage on the way is
        waited out (the run goes on from its last checkpoint) and uses none of the run's attempts."""
        started = time.perf_counter()
        run = await patiently(lambda: self._claim(run_id))
        result: RunResult | None = None
        try:
            result = await patiently(lambda: self._run(run))
        except asyncio.CancelledError:
            await asyncio.shield(self._set_run(run_id, "queued"))  # stopping: procrastinate queues it again
            raise
        except Exception as exc:
            log.exception("run %s of incident %s failed", run_id, run["incident_id"])
            error = f"{type(exc).__name__}: {exc}"[:1000]
            if retry_delay(exc, job_context.job.attempts, self.attempts) is None:
                await self._run_failed(run_id, error)
            else:
                await self._set_run(run_id, "queued", error)
            raise
        finally:
            if self.on_finished is not None:
                self.on_finished(run, result, time.perf_counter() - started)
        await self._set_run(run_id, "done")

    async def _claim(self, run_id: int) -> dict[str, Any]:
        async with self.db.pool.connection() as conn:
            cur = await conn.execute(
                """UPDATE runs SET status = 'running', claimed_by = %s, started_at = now(), attempts = attempts + 1
                   WHERE id = %s RETURNING id, incident_id, kind, payload, attempts""",
                (self.name, run_id),
            )
            return await cur.fetchone()

    async def _set_run(self, run_id: int, status: str, error: str | None = None) -> None:
        async def update() -> None:
            async with self.db.pool.connection() as conn:
                await conn.execute(
                    """UPDATE runs SET status = %s, error = COALESCE(%s, error),
                              finished_at = CASE WHEN %s IN ('done', 'failed') THEN now() END WHERE id = %s""",
                    (status, error, status, run_id),
                )

        await patiently(update)

    async def _run_failed(self, run_id: int, error: str) -> None:
        """The run had its attempts: it and its incident are failed (the incident's alert group closes)."""
        await self._set_run(run_id, "failed", error)

        async def fail_incident() -> None:
            async with self.db.pool.connection() as conn:
                cur = await conn.execute("SELECT incident_id FROM runs WHERE id = %s", (run_id,))
                incident_id = (await cur.fetchone())["incident_id"]
            await incidents.update_incident(self.db.pool, incident_id, "failed")

        await patiently(fail_incident)

    async def _run(self, run: dict[str, Any]) -> RunResult:
        incident_id = run["incident_id"]
        snapshot = await self.runner.graph.aget_state(thread_config(incident_id))
        if run["kind"] == "start":
            if snapshot.values:  # a checkpoint exists: an earlier attempt got this far
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
            return await self.runner.continue_run(incident_id)  # resumed by an earlier attempt: go on
        if run["kind"] == "replay":
            return await self.runner.replay(incident_id, run["payload"]["checkpoint_id"])
        raise ValueError(f"unknown run kind {run['kind']!r}")


def service_context(settings: ServerSettings, context: Context) -> Context:
    """The run context of the service's workers: in sim mode the simulated fleet comes with its runbooks."""
    if settings.telemetry == "sim" and context.runbooks_dir is None:
        from sim import RUNBOOKS_DIR

        context.runbooks_dir = str(RUNBOOKS_DIR)
    return context


async def serve_workers(settings: ServerSettings, context: Context, concurrency: int,
                        metrics_address: tuple[str, int] | None = None) -> None:
    """`incident-copilot worker`: execute runs and deliver notifications until SIGINT or SIGTERM; with
    `metrics_address` (host, port), serve this process's run and node metrics there for Prometheus to scrape."""
    from service.metrics import ServerMetrics
    from tools.database import open_database
    from tools.notify.config import load_notify_config
    from tools.notify.outbox import OutboxDispatcher

    context = service_context(settings, context)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with open_database(settings.database_url, max_size=2 * concurrency + 2) as db:
        metrics = ServerMetrics(database_gauges=False)
        workers = RunWorkers(db, context, concurrency=concurrency, attempts=settings.run_attempts,
                             group_ttl_seconds=settings.group_ttl_seconds,
                             on_finished=metrics.run_finished, on_step=metrics.node_finished)
        if metrics_address:
            from prometheus_client import start_http_server

            host, port = metrics_address
            start_http_server(port, addr=host, registry=metrics.registry)  # a daemon thread, gone with the process
        dispatcher = OutboxDispatcher(db.pool, load_notify_config(context.notify_config))
        await workers.start()
        dispatcher.start()
        log.warning("run worker %s: %d run(s) at once", workers.name, concurrency)
        try:
            await stop.wait()
        finally:
            await dispatcher.stop()
            await workers.stop()
