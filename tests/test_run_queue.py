"""The run queue (issue 10, points 1 and 4 of what failed): one run drives an incident at a time, identical replays
run once, the queue is capped, and run workers outlive terminated database connections."""

from __future__ import annotations

import asyncio
import re
import signal
import time

import httpx
import psycopg
import pytest

from graph.context import Context
from service.runs import IncidentRunner
from service.worker import RunWorkers
from tests.live_server import free_port, start_server, start_worker
from tests.test_incident_runs import case
from tests.test_server_api import AUTH, client, fixture
from tools.database import open_database


def rows(database_url: str, sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(sql, params).fetchall()


async def incident_with_history(database_url: str, tmp_path, name: str = "memory_leak") -> tuple[str, list]:
    """A finished (or gated) incident made by the runner, and its checkpoints."""
    scenario, telemetry = case(name, 1)
    async with open_database(database_url) as db:
        runner = IncidentRunner(db, Context(output_dir=str(tmp_path)))
        result = await runner.start(scenario.alert, telemetry)
        return result.incident_id, await runner.history(result.incident_id)


async def test_identical_replays_run_once_and_queued_runs_are_capped(database_url, tmp_path):
    incident_id, history = await incident_with_history(database_url, tmp_path)
    before_rca = next(e.checkpoint_id for e in history if set(e.next) == {"rca", "suggest"})
    before_brief = next(e.checkpoint_id for e in history if e.next == ["brief"])
    async with client(database_url, tmp_path, max_queued_runs=3, max_alerts_per_request=2) as c:
        replays = await asyncio.gather(*(c.post(f"/incidents/{incident_id}/replay", headers=AUTH,
                                                json={"checkpoint_id": before_rca}) for _ in range(6)))
        assert [r.status_code for r in replays] == [202] * 6
        assert len({r.json()["run_id"] for r in replays}) == 1
        assert sorted(r.json()["deduplicated"] for r in replays) == [False] + [True] * 5
        other = await c.post(f"/incidents/{incident_id}/replay", json={"checkpoint_id": before_brief}, headers=AUTH)
        assert other.status_code == 202 and other.json()["deduplicated"] is False

        body = fixture("alertmanager-0.25-firing.json")
        assert (await c.post("/alerts", json=body, headers=AUTH)).status_code == 202  # the third waiting run
        await asyncio.sleep(0.6)  # the intake's count of waiting runs is at most half a second old
        body["alerts"][0]["fingerprint"] = "another-group"
        full = await c.post("/alerts", json=body, headers=AUTH)
        assert full.status_code == 429, full.text
        assert full.headers["Retry-After"].isdigit() and full.json()["error"]["code"] == "queue_full"
        refused = await c.post(f"/incidents/{incident_id}/replay", json={"checkpoint_id": history[-1].checkpoint_id},
                               headers=AUTH)
        assert refused.status_code == 429 and "Retry-After" in refused.headers
        # a repeat of an open group queues nothing: it is still taken
        body["alerts"][0]["fingerprint"] = fixture("alertmanager-0.25-firing.json")["alerts"][0]["fingerprint"]
        body["alerts"][0]["status"] = "resolved"
        assert (await c.post("/alerts", json=body, headers=AUTH)).status_code == 202
    assert rows(database_url, "SELECT kind, count(*) FROM runs GROUP BY kind ORDER BY kind") == [
        ("replay", 2), ("start", 1)]
    locks = rows(database_url, "SELECT DISTINCT j.lock FROM procrastinate_jobs j JOIN runs r ON r.job_id = j.id "
                               "WHERE r.incident_id = %s", (incident_id,))
    assert locks == [(incident_id,)]


async def test_one_run_drives_an_incident_at_a_time(database_url, tmp_path):
    """An approval's resume and a replay queued together: with two workers free, they still run one after the
    other (the replay waits for the lock of its incident)."""
    incident_id, history = await incident_with_history(database_url, tmp_path, "deployment_regression")
    before_rca = next(e.checkpoint_id for e in history if set(e.next) == {"rca", "suggest"})
    async with client(database_url, tmp_path, run_workers=True, workers=2, telemetry="sim") as c:
        approval = c.post(f"/incidents/{incident_id}/approval", json={"decision": "approve"}, headers=AUTH)
        replay = c.post(f"/incidents/{incident_id}/replay", json={"checkpoint_id": before_rca}, headers=AUTH)
        assert [r.status_code for r in await asyncio.gather(approval, replay)] == [202, 202]
        deadline = time.monotonic() + 120
        while rows(database_url, "SELECT count(*) FROM runs WHERE status <> 'done'") != [(0,)]:
            assert time.monotonic() < deadline, rows(database_url, "SELECT * FROM runs")
            await asyncio.sleep(0.2)
    spans = rows(database_url, "SELECT kind, started_at, finished_at FROM runs ORDER BY started_at")
    assert sorted(kind for kind, *_ in spans) == ["replay", "resume"]
    (_, _, first_end), (_, second_start, _) = spans
    assert first_end <= second_start, f"two runs drove {incident_id} at once: {spans}"


def terminate_backends(database_url: str) -> int:
    """pg_terminate_backend on every other connection to the database; how many there were."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        return conn.execute("""SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                               WHERE datname = current_database() AND pid <> pg_backend_pid()""").fetchone()[0]


@pytest.fixture
def server_of(database_url, tmp_path):
    servers = []

    def start(**kwargs):
        servers.append(start_server(database_url, tmp_path / "work", **kwargs))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()
        print(server.log()[-3000:])


def test_run_workers_outlive_ten_terminations_of_their_connections(database_url, server_of):
    server = server_of(telemetry="live")
    terminated = 0
    for _ in range(10):
        terminated += terminate_backends(database_url)
        time.sleep(0.3)
    assert terminated > 0
    alert = fixture("alertmanager-0.25-firing.json")
    answer = None
    for _ in range(20):  # the first requests may meet connections that were terminated under the pool
        answer = httpx.post(f"{server.url}/alerts", json=alert, headers=server.headers, timeout=60)
        if answer.status_code == 202:
            break
        time.sleep(0.2)
    assert answer.status_code == 202, answer.text
    deadline = time.monotonic() + 60
    while rows(database_url, "SELECT status FROM runs") != [("done",)]:
        assert time.monotonic() < deadline, f"the run never finished: {rows(database_url, 'SELECT * FROM runs')}"
        time.sleep(0.2)
    assert server.process.poll() is None
    # a clean stop: uvicorn's graceful shutdown (the lifespan stopping the run workers and the dispatcher) ends by
    # raising the signal it caught again, and the run worker unregistered
    assert server.stop() == -signal.SIGTERM, "serve did not stop on SIGTERM"
    assert rows(database_url, "SELECT count(*) FROM procrastinate_workers") == [(0,)]


def test_a_worker_process_runs_what_an_intake_only_server_accepts(database_url, tmp_path, server_of):
    """... and its runs are observable: the worker serves its run and node metrics on its own port, and the
    intake's /metrics counts the live workers (a worker process records nothing in the intake's registry)."""
    server = server_of(run_workers=False, telemetry="live")
    metrics_port = free_port()
    worker = start_worker(database_url, tmp_path / "worker", telemetry="live", metrics_port=metrics_port)
    try:
        answer = httpx.post(f"{server.url}/alerts", json=fixture("alertmanager-0.25-firing.json"),
                            headers=server.headers, timeout=30)
        assert answer.status_code == 202, answer.text
        deadline = time.monotonic() + 60
        while rows(database_url, "SELECT status, claimed_by FROM runs")[0][0] != "done":
            assert time.monotonic() < deadline and worker.poll() is None, rows(database_url, "SELECT * FROM runs")
            time.sleep(0.2)
        [(claimed_by,)] = rows(database_url, "SELECT claimed_by FROM runs")
        assert claimed_by.endswith(f":{worker.pid}"), "the run was not executed by the worker process"
        worker_metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
        assert re.search(r'^incident_copilot_run_duration_seconds_count\{kind="start",outcome="[a-z_]+"\} 1\.0$',
                         worker_metrics, re.M), worker_metrics
        assert 'incident_copilot_node_duration_seconds_count{node="collect"}' in worker_metrics
        time.sleep(5.5)  # the intake reads its database gauges at most every 5 s
        intake_metrics = httpx.get(f"{server.url}/metrics", headers=server.headers, timeout=10).text
        assert re.search(r"^incident_copilot_run_workers_alive 1\.0$", intake_metrics, re.M), intake_metrics
    finally:
        worker.terminate()
        assert worker.wait(timeout=30) == 0
    assert rows(database_url, "SELECT count(*) FROM procrastinate_workers") == [(0,)]  # it unregistered


async def test_runs_of_dead_workers_are_queued_again_until_they_have_had_their_attempts(database_url, tmp_path):
    """The sweep: a job held by a worker whose heartbeat is old is queued again; one that already had its attempts
    (a run that kills its worker every time) fails, and so does its incident."""
    async with client(database_url, tmp_path) as c:
        ids = [(await c.post("/alerts", json=fixture(name), headers=AUTH)).json()["incident_id"]
               for name in ("alertmanager-0.25-firing.json", "generic-seed.json")]
    with psycopg.connect(database_url, autocommit=True) as conn:  # a worker that died holding both runs
        dead = conn.execute("INSERT INTO procrastinate_workers (last_heartbeat) VALUES (now() - interval '1 hour') "
                            "RETURNING id").fetchone()[0]
        conn.execute("UPDATE procrastinate_jobs SET status = 'doing', worker_id = %s", (dead,))
        conn.execute("UPDATE runs SET status = 'running'")
        conn.execute("UPDATE procrastinate_jobs SET attempts = 4 FROM runs WHERE runs.job_id = procrastinate_jobs.id "
                     "AND runs.incident_id = %s", (ids[1],))
    async with open_database(database_url) as db:
        workers = RunWorkers(db, Context(output_dir=str(tmp_path)), attempts=5)
        await workers.app.open_async()
        try:
            workers.connector.last_outage = time.monotonic()  # this process has just met the database away:
            assert await workers.sweep() == 0  # every heartbeat stopped with it, so nobody is judged dead yet
            workers.connector.last_outage = float("-inf")
            assert await workers.sweep() == 1
        finally:
            await workers.app.close_async()
    assert rows(database_url, "SELECT r.incident_id, r.status, j.status::text, j.attempts FROM runs r "
                              "JOIN procrastinate_jobs j ON j.id = r.job_id ORDER BY r.id") == [
        (ids[0], "queued", "todo", 1), (ids[1], "failed", "failed", 5)]  # its fifth attempt ended
    assert rows(database_url, "SELECT status, closed_reason FROM incidents WHERE id = %s", (ids[1],)) == [
        ("failed", "failed")]
