"""Issue 10 part 6, honest health: /readyz says no when the run workers stopped (or the database is gone:
tests/test_intake_edges.py); /metrics counts every process of `serve --processes N` and reads the database at most
once per few seconds, however many scrapers there are."""

from __future__ import annotations

import asyncio
import os
import re

import httpx
import pytest

from service.metrics import DATABASE_GAUGE_SECONDS, RENDER_SECONDS
from tests.live_server import start_server
from tests.test_server_api import AUTH, client, fixture


async def test_readyz_is_false_when_the_run_workers_stopped(database_url, tmp_path):
    async with client(database_url, tmp_path, run_workers=True) as c:
        assert (await c.get("/readyz")).json() == {"status": "ready"}
        await c._transport.app.state.workers.stop()  # what a database blip did to them: they are gone
        ready = await c.get("/readyz")
        assert ready.status_code == 503, ready.text
        assert ready.json()["error"] == {"code": "not_ready", "message": "the run workers are not running"}
    async with client(database_url, tmp_path, run_workers=False) as c:  # an intake-only replica runs none
        assert (await c.get("/readyz")).status_code == 200


async def test_scrapes_share_one_reading_of_the_database(database_url, tmp_path):
    async with client(database_url, tmp_path) as c:
        gauges = c._transport.app.state.metrics.database
        answers = await asyncio.gather(*(c.get("/metrics") for _ in range(32)))
        assert all(a.status_code == 200 for a in answers)
        assert gauges.reads == 1, f"{gauges.reads} readings for 32 scrapes"
        assert (await c.post("/alerts", json=fixture("generic-seed.json"), headers=AUTH)).status_code == 202
        gauges.read_at -= DATABASE_GAUGE_SECONDS  # as if the cache periods had passed
        metrics = c._transport.app.state.metrics
        metrics._rendered = (metrics._rendered[0] - RENDER_SECONDS, b"")
        text = (await c.get("/metrics")).text
        assert 'incident_copilot_incidents{status="queued"} 1.0' in text, text
        assert 'incident_copilot_run_queue_depth{state="queued"} 1.0' in text
        assert gauges.reads == 2


def received(text: str) -> float:
    return sum(float(v) for v in re.findall(r'^incident_copilot_alerts_received_total\{[^}]*\} (\S+)$', text, re.M))


def test_metrics_count_every_process(database_url, tmp_path):
    server = start_server(database_url, tmp_path / "server", run_workers=False, processes=2, telemetry="live")
    try:
        body = fixture("alertmanager-0.25-firing.json")
        for i in range(24):  # a new connection each time: the processes take turns accepting them
            body["alerts"][0]["labels"]["n"] = str(i)
            r = httpx.post(f"{server.url}/alerts", json=body, headers=server.headers, timeout=10)
            assert r.status_code == 202, r.text
        for _ in range(8):
            with httpx.Client() as fresh:
                metrics = fresh.get(f"{server.url}/metrics", timeout=10)
            assert received(metrics.text) == 24, metrics.text[:2000]
    finally:
        server.stop()
    assert "Traceback" not in server.log(), server.log()[-3000:]


async def test_processes_starting_together_on_a_fresh_database_do_not_wait_for_each_other(database_url):
    """serve --processes N: each process sets the database up under one lock; the checkpointer's CREATE INDEX
    CONCURRENTLY in the first must not wait for the others' wait for the lock (that was a silent deadlock)."""
    from contextlib import AsyncExitStack

    from tools.database import open_database

    async def opened(stack: AsyncExitStack) -> None:
        await stack.enter_async_context(open_database(database_url, max_size=2))

    async with AsyncExitStack() as first, AsyncExitStack() as second, AsyncExitStack() as third:
        await asyncio.wait_for(asyncio.gather(opened(first), opened(second), opened(third)), timeout=60)


async def test_pooled_connections_carry_tcp_keepalives_and_unix_sockets_still_work(database_url):
    """A connection to a peer gone silent is closed by the OS (keepalives, tcp_user_timeout), not trusted for
    hours; libpq ignores those settings on a Unix socket, as the embedded PostgreSQL uses, and the URL's own
    values win."""
    import socket

    import psycopg
    from psycopg.conninfo import make_conninfo

    from tests.conftest import ADMIN_URL
    from tools.database import TCP_PARAMETERS, connection_parameters, open_database

    assert "keepalives_idle" not in connection_parameters(make_conninfo(database_url, keepalives_idle="60"))
    async with open_database(database_url, max_size=2) as db, db.pool.connection() as conn:
        with socket.socket(fileno=os.dup(conn.pgconn.socket)) as sock:
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == int(TCP_PARAMETERS["keepalives_idle"])
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == int(
                TCP_PARAMETERS["tcp_user_timeout"])

    with psycopg.connect(ADMIN_URL) as admin:
        directory = admin.execute("SHOW unix_socket_directories").fetchone()[0].split(",")[0].strip()
        port = admin.info.port
    if not os.path.exists(os.path.join(directory, f".s.PGSQL.{port}")):
        pytest.skip(f"no Unix socket of the test server in {directory}")
    over_socket = make_conninfo(database_url, host=directory)
    async with open_database(over_socket, max_size=2) as db, db.pool.connection() as conn:
        assert (await (await conn.execute("SELECT 1 AS one")).fetchone())["one"] == 1
