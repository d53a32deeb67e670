"""Chaos (issue 10): a storm of alerts while runs execute, the server's PostgreSQL connections terminated again and
again (pg_terminate_backend), and PostgreSQL unreachable for seconds (a TCP proxy between the server and the
database that the test cuts). Every alert acknowledged with 202 is stored, every run finishes once the database is
back without restarting the server, no side effect happens twice, and /readyz says not ready while it lasts.

And a partition that drops packets instead of resetting connections (the same proxy, blackholed): intake answers
503 with Retry-After while it lasts, instead of waiting for the network to come back.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from sim.sample_repo import ensure_sample_repo
from sim.scenarios import build_scenario
from tests.live_server import start_server
from tests.test_run_queue import terminate_backends
from tests.test_server_durability import REFERENCE_HOOK, STARTS_AT, alertmanager, git
from tools.net import free_port

GROUPS = [(name, seed) for name in ("deployment_regression", "memory_leak", "db_connection_exhaustion")
          for seed in (1, 2, 3, 4)]
PER_GROUP = 25
CUT_SECONDS = 4.0


class TcpProxy:
    """A loopback TCP proxy to PostgreSQL that can be cut: then every open connection is dropped and new ones are
    closed as soon as they are accepted, as when the network to the database is gone. Or blackholed: then no byte
    goes either way and no connection is closed, as when a partition drops packets; what was sent meanwhile
    arrives once it resumes, as TCP's retransmissions deliver it when the network comes back."""

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.port = free_port()
        self.is_cut = False
        self.is_blackholed = False
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._open: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> TcpProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def cut(self) -> None:
        self._loop.call_soon_threadsafe(self._drop_all)

    def heal(self) -> None:
        self.is_cut = False

    def blackhole(self) -> None:
        self.is_blackholed = True
        self._loop.call_soon_threadsafe(self._flowing.clear)

    def resume(self) -> None:
        self._loop.call_soon_threadsafe(self._flowing.set)
        self.is_blackholed = False

    def _drop_all(self) -> None:
        self.is_cut = True
        for writer in list(self._open):
            writer.transport.abort()

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", self.port))
        self._ready.set()
        self._loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._flowing.wait()
        if self.is_cut:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._open.update((writer, up_writer))

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while await self._flowing.wait() and (data := await source.read(65536)):
                    await self._flowing.wait()  # bytes read just before a blackhole wait for its end too
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._open.difference_update((writer, up_writer))


def group_alert(name: str, seed: int, n: int) -> dict[str, Any]:
    alert = build_scenario(name, seed, datetime(2026, 11, 21, 12, tzinfo=UTC)).alert
    return {"status": "firing", "fingerprint": f"chaos-{name}-{seed}", "startsAt": STARTS_AT,
            "labels": {"alertname": alert.alertname, "service": alert.service, "scenario": name, "seed": str(seed)},
            "annotations": {"summary": f"chaos {name} {seed} #{n}"}}


async def storm(url: str, headers: dict[str, str], seconds: float) -> tuple[set[str], Counter[int]]:
    """Send every alert of every group, spread over `seconds`, each until it is acknowledged with 202; returns the
    summaries acknowledged and the statuses met on the way."""
    alerts = [group_alert(name, seed, n) for n in range(PER_GROUP) for name, seed in GROUPS]
    random.Random(10).shuffle(alerts)
    acknowledged: set[str] = set()
    statuses: Counter[int] = Counter()
    gate = asyncio.Semaphore(8)
    async with httpx.AsyncClient(timeout=60) as client:

        async def send(i: int, alert: dict[str, Any]) -> None:
            await asyncio.sleep(seconds * i / len(alerts))
            async with gate:
                while True:
                    try:
                        answer = await client.post(f"{url}/alerts", json=alertmanager([alert]), headers=headers)
                        statuses[answer.status_code] += 1
                        if answer.status_code == 202:
                            acknowledged.add(alert["annotations"]["summary"])
                            return
                    except httpx.HTTPError:
                        statuses[0] += 1
                    await asyncio.sleep(0.2)

        await asyncio.gather(*(send(i, alert) for i, alert in enumerate(alerts)))
    return acknowledged, statuses


def chaos(database_url: str, proxy: TcpProxy, ready_url: str, log: list[str]) -> list[int]:
    """Terminate the server's connections, cut the database away for CUT_SECONDS, terminate again; returns the
    /readyz statuses seen while the database was cut away."""
    time.sleep(1.0)
    for _ in range(6):
        log.append(f"terminated {terminate_backends(database_url)}")
        time.sleep(0.4)
    proxy.cut()
    log.append("cut")
    seen, until = [], time.monotonic() + CUT_SECONDS
    while time.monotonic() < until:
        try:
            seen.append(httpx.get(ready_url, timeout=3).status_code)
        except httpx.HTTPError:
            seen.append(0)
        time.sleep(0.2)
    proxy.heal()
    log.append("healed")
    for _ in range(4):
        time.sleep(0.5)
        log.append(f"terminated {terminate_backends(database_url)}")
    return seen


def rows(database_url: str, sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(sql, params).fetchall()


def test_alert_storm_through_terminated_connections_and_a_database_cut(database_url, tmp_path: Path):
    home, hooks = tmp_path / "home", tmp_path / "hooks"
    hooks.mkdir()
    repos = {ensure_sample_repo(build_scenario(name, seed, datetime(2026, 11, 21, 12, tzinfo=UTC)).root_service,
                                home / "sample-repos").path
             for name, seed in GROUPS if name == "deployment_regression"}
    for repo in repos:  # log every ref update: a branch written twice would show twice
        hook = Path(git(repo, "rev-parse", "--absolute-git-dir").strip()) / "hooks" / "reference-transaction"
        hook.parent.mkdir(exist_ok=True)
        hook.write_text(REFERENCE_HOOK.format(dir=hooks))
        hook.chmod(0o755)
    target = conninfo_to_dict(database_url)
    with TcpProxy(target.get("host", "127.0.0.1"), int(target.get("port", 5432))) as proxy:
        through_proxy = make_conninfo(database_url, host="127.0.0.1", port=str(proxy.port))
        server = start_server(through_proxy, tmp_path / "work", workers=2, extra_env={
            "INCIDENT_COPILOT_HOME": str(home), "REQUIRE_APPROVAL": "false"})
        try:
            pid, log, seen = server.process.pid, [], []
            thread = threading.Thread(target=lambda: seen.extend(
                chaos(database_url, proxy, f"{server.url}/readyz", log)))
            thread.start()
            acknowledged, statuses = asyncio.run(storm(server.url, server.headers, seconds=8.0))
            thread.join()
            print("chaos:", log, "readyz during the cut:", seen, "intake answers:", dict(statuses))

            deadline = time.monotonic() + 240
            while rows(database_url, "SELECT count(*) FROM runs WHERE status <> 'done'") != [(0,)]:
                assert time.monotonic() < deadline, rows(database_url, "SELECT id, status, attempts, error FROM runs")
                time.sleep(0.5)
            assert server.process.poll() is None and server.process.pid == pid, "the server was restarted"
            assert httpx.get(f"{server.url}/readyz", timeout=5).status_code == 200
        finally:
            server.stop()
            print(server.log()[-4000:])

    assert 503 in seen, f"/readyz said ready while the database was cut away: {seen}"
    assert len(acknowledged) == len(GROUPS) * PER_GROUP
    stored = {summary for (summary,) in rows(database_url, "SELECT alert->'annotations'->>'summary' FROM alerts")}
    assert acknowledged <= stored, f"acknowledged but not stored: {sorted(acknowledged - stored)[:5]}"

    incidents = rows(database_url, "SELECT id, dedup_key, status, closed_reason FROM incidents")
    assert {key for _, key, _, _ in incidents} == {f"chaos-{name}-{seed}" for name, seed in GROUPS}
    assert all(status == "completed" and reason == "concluded" for _, _, status, reason in incidents), incidents
    # each incident's graph was started once: recovered runs went on from their checkpoints
    starts = rows(database_url, """SELECT thread_id, count(*) FROM checkpoints WHERE checkpoint_ns = ''
                                   AND metadata->>'source' = 'input' GROUP BY 1""")
    assert sorted(starts) == sorted((incident_id, 1) for incident_id, *_ in incidents)
    # side effects once: one fix branch (written once) per regression, one brief per incident
    regressions = [incident_id for incident_id, key, *_ in incidents if "deployment_regression" in key]
    updates = (hooks / "updates.log").read_text().splitlines()
    for incident_id in regressions:
        branch = f"refs/heads/incident-copilot/{incident_id}"
        assert sum(line.endswith(f" {branch}") for line in updates) == 1, (branch, updates)
    branches = [b for repo in repos for b in git(repo, "branch", "--list", "incident-copilot/*").split()]
    assert sorted(branches) == sorted(f"incident-copilot/{i}" for i in regressions)
    output = tmp_path / "work" / "output"
    assert sorted(p.parent.name for p in output.rglob("brief.md")) == sorted(i for i, *_ in incidents)


BLACKHOLE_LIMIT = 30.0  # the network comes back by itself after this long, should the test's own resume not come


def partition_alert(group: int, n: int) -> dict[str, Any]:
    return {"status": "firing", "fingerprint": f"partition-{group}", "startsAt": STARTS_AT,
            "labels": {"alertname": "HighErrorRate", "service": f"svc-{group}"},
            "annotations": {"summary": f"partition {group} #{n}"}}


def test_intake_answers_503_while_a_partition_drops_packets(database_url, tmp_path: Path):
    """A partition that drops packets leaves the server's pooled connections open and silent: a statement on one
    would wait for the network to come back. Intake answers 503 with Retry-After while the blackhole lasts, /readyz
    says not ready, the run workers and the notification outbox wait without a traceback, and once the network is
    back every alert acknowledged is stored. A 503 given after a statement
    was sent does not say that nothing was stored: the statement may still reach the database (here: when the proxy
    resumes, as TCP retransmits); the sender's retry then stores the alert twice, and the alert group keeps it to
    one incident."""
    target = conninfo_to_dict(database_url)
    with TcpProxy(target.get("host", "127.0.0.1"), int(target.get("port", 5432))) as proxy:
        through_proxy = make_conninfo(database_url, host="127.0.0.1", port=str(proxy.port))
        server = start_server(through_proxy, tmp_path / "work", telemetry="live")
        backstop = threading.Timer(BLACKHOLE_LIMIT, proxy.resume)
        try:
            with httpx.Client(base_url=server.url, headers=server.headers, timeout=BLACKHOLE_LIMIT + 30) as api:
                acknowledged = set()
                first = api.post("/alerts", json=alertmanager([partition_alert(0, 0)]))
                assert first.status_code == 202, first.text
                acknowledged.add("partition 0 #0")

                proxy.blackhole()
                backstop.start()
                refused, took = [], []

                def send(alerts: list[dict[str, Any]]) -> None:
                    started = time.monotonic()
                    answer = api.post("/alerts", json=alertmanager(alerts))
                    took.append(round(time.monotonic() - started, 2))
                    assert proxy.is_blackholed, f"answered only once the network was back ({took[-1]} s)"
                    assert answer.status_code == 503, answer.text
                    assert answer.json()["error"]["code"] == "database_unavailable"
                    assert int(answer.headers["Retry-After"]) >= 1
                    refused.append(alerts)

                # one after another (a batch among them): the pool's silent connections, then no connection
                send([partition_alert(1, 1), partition_alert(0, 1)])
                for n in range(2, 4):
                    send([partition_alert(n % 2, n)])
                threads = [threading.Thread(target=send, args=([partition_alert(2 + n % 3, n)],)) for n in range(4, 10)]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                started = time.monotonic()
                ready = httpx.get(f"{server.url}/readyz", timeout=BLACKHOLE_LIMIT + 30)
                took_ready = round(time.monotonic() - started, 2)
                assert proxy.is_blackholed, f"/readyz answered only once the network was back ({took_ready} s)"
                assert ready.status_code == 503 and ready.json()["error"]["code"] == "not_ready", ready.text
                assert len(refused) == 9, took
                print("503 after (s):", sorted(took), "/readyz 503 after (s):", took_ready)

                proxy.resume()
                backstop.cancel()
                for alerts in refused:  # the sender tries again, as Retry-After asks
                    deadline = time.monotonic() + 60
                    while (answer := api.post("/alerts", json=alertmanager(alerts))).status_code != 202:
                        assert answer.status_code == 503 and time.monotonic() < deadline, answer.text
                        time.sleep(float(answer.headers["Retry-After"]))
                    acknowledged.update(alert["annotations"]["summary"] for alert in alerts)
                assert httpx.get(f"{server.url}/readyz", timeout=10).status_code == 200
        finally:
            backstop.cancel()
            proxy.resume()
            server.stop()
            print(server.log()[-4000:])

    stored = [summary for (summary,) in rows(database_url, "SELECT alert->'annotations'->>'summary' FROM alerts")]
    assert acknowledged <= set(stored), f"acknowledged but not stored: {sorted(acknowledged - set(stored))}"
    # A statement sent before its 503 may have been stored as well: the retry is then a second alert of its group,
    # not a second incident. A group has a new incident only after the one before concluded (a run ended, which
    # closes the group; tests/test_intake_edges.py shows the retry deduplicated without runs).
    groups = rows(database_url, "SELECT DISTINCT dedup_key FROM incidents")
    assert sorted(groups) == [(f"partition-{group}",) for group in range(5)], groups
    overlapping = rows(database_url, """SELECT a.id, b.id FROM incidents a JOIN incidents b
                                        ON a.dedup_key = b.dedup_key AND a.created_at < b.created_at
                                        WHERE a.closed_at IS NULL OR a.closed_at > b.created_at""")
    assert overlapping == [], overlapping
    assert "Traceback" not in server.log(), server.log()[-4000:]
