"""Alert intake under a storm: sustained alerts/s and acknowledgement latency of POST /alerts on loopback.

Usage (from the repository root):
    python -m bench.intake [--alerts 10000] [--groups 50] [--concurrency 16,32,64] [--batch 1] [--workers-on]
                           [--processes N] [--worker-processes N [--worker-nice 10]] [--admin-url URL] [--json]

For every configuration (batch size x concurrency, run workers off, and on with --workers-on) the bench creates a
fresh database on the local PostgreSQL (admin URL from --admin-url, else $BENCH_POSTGRES_URL, else
postgresql://postgres@127.0.0.1:5432/postgres), starts the real service as a subprocess on it, sends the storm as
Alertmanager v4 webhooks over `concurrency` keep-alive connections, then checks that it holds exactly `groups`
incidents (more when runs concluded during the storm: a concluded incident closes its group, and the group's next
alert opens a new one; never two open at once) and `alerts` stored alerts, stops the server and drops the database.
With --worker-processes N the server is intake-only and N `incident-copilot worker` processes (at `nice`
--worker-nice) execute the new incidents' graph runs during the storm, as a deployment that keeps intake and graphs
apart would.

Latency is per request, from writing it to reading the whole 202 (the acknowledgement the sender waits for).
The load generator is a minimal HTTP/1.1 client on asyncio streams, so that the client is not what is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

from sim.scenarios import SCENARIOS
from tests.live_server import API_KEY, LiveServer, start_server, start_worker
from tools.database import throwaway_database

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
STARTS_AT = "2026-11-21T12:00:00Z"


@dataclass(frozen=True)
class Result:
    """One configuration's figures."""

    workers: str
    batch: int
    concurrency: int
    requests: int
    alerts: int
    seconds: float
    alerts_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    server_cpu: float  # CPU seconds of the server process per wall second during the storm
    server_ms_per_alert: float  # server CPU milliseconds per alert
    machine_cpu: float  # busy cores of the whole machine (all processes) during the storm, of os.cpu_count()
    incidents: int
    stored_alerts: int
    runs_done: int  # graph runs finished by the end of the storm (the workers were busy meanwhile)
    workers_cpu: float  # CPU seconds of the worker processes per wall second during the storm
    ok: bool


def storm(alerts: int, groups: int, batch: int) -> list[bytes]:
    """The request bodies: alert k belongs to group k % groups; each Alertmanager webhook carries up to `batch`
    alerts of one group (Alertmanager sends one per alert group), and the groups take turns."""
    per_group: list[list[dict]] = [[] for _ in range(groups)]
    for k in range(alerts):
        g = k % groups
        per_group[g].append({
            "status": "firing",
            "labels": {
                "alertname": f"BenchAlert{g}", "service": f"svc-{g}", "severity": "critical",
                "scenario": SCENARIOS[g % len(SCENARIOS)], "seed": str(g),
            },
            "annotations": {"summary": f"storm alert {k}"},
            "startsAt": STARTS_AT,
        })
    chunks = [[items[i:i + batch] for i in range(0, len(items), batch)] for items in per_group]
    turns = [chunk for turn in itertools.zip_longest(*chunks) for chunk in turn if chunk]
    return [
        json.dumps({"version": "4", "status": "firing", "receiver": "bench", "alerts": chunk}).encode()
        for chunk in turns
    ]


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    """Send one request on a keep-alive connection and read its whole response; the status code."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(int(line[15:]) for line in lines if line[:15].lower() == "content-length:")
    await reader.readexactly(length)
    return int(lines[0].split(" ", 2)[1])


async def send_storm(url: str, bodies: list[bytes], concurrency: int) -> tuple[list[float], list[int], float]:
    """POST every body to /alerts over `concurrency` connections: (latencies in s, status codes, wall seconds)."""
    parts = urlsplit(url)
    head = (
        f"POST /alerts HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer {API_KEY}\r\n"
        "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n"
    )
    requests = [head.format(len(body)).encode() + body for body in bodies]
    pending = iter(range(len(requests)))
    latencies, statuses = [0.0] * len(requests), [0] * len(requests)

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        try:
            for i in pending:  # the one shared iterator hands each request to exactly one connection
                started = time.perf_counter()
                statuses[i] = await _exchange(reader, writer, requests[i])
                latencies[i] = time.perf_counter() - started
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(concurrency)))
    return latencies, statuses, time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by the nearest-rank method."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its live children so far (Linux /proc)."""
    def own(p: int) -> float:
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return own(pid) + sum(own(int(c)) for c in children)


def busy_seconds() -> float:
    """CPU seconds all cores of the machine spent busy so far (Linux /proc): shows other load on the machine."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # less idle and iowait


def stored(database_url: str) -> tuple[int, int, int, int]:
    """(incidents, alerts, finished runs, alert groups with more than one open incident) in the database."""
    with psycopg.connect(database_url) as conn:
        incidents = conn.execute("SELECT count(*) FROM incidents").fetchone()[0]
        alerts = conn.execute("SELECT count(*) FROM alerts").fetchone()[0]
        done = conn.execute("SELECT count(*) FROM runs WHERE status = 'done'").fetchone()[0]
        doubled = conn.execute("""SELECT count(*) FROM (SELECT dedup_key FROM incidents WHERE closed_at IS NULL
                                  GROUP BY dedup_key HAVING count(*) > 1) AS d""").fetchone()[0]
    return incidents, alerts, done, doubled


def start_workers(database_url: str, workdir: Path, count: int, nice: int) -> list[subprocess.Popen]:
    """`count` worker processes, returned once each has registered with the queue."""
    workers = [start_worker(database_url, workdir / f"worker-{i}", nice=nice) for i in range(count)]
    deadline = time.monotonic() + 60
    while True:
        with psycopg.connect(database_url) as conn:
            if conn.execute("SELECT count(*) FROM procrastinate_workers").fetchone()[0] >= count:
                return workers
        if time.monotonic() > deadline or any(w.poll() is not None for w in workers):
            raise RuntimeError("the worker processes did not start")
        time.sleep(0.2)


def run_one(
    admin_url: str, workdir: Path, *, alerts: int, groups: int, batch: int, concurrency: int, workers_on: bool,
    processes: int = 1, worker_processes: int = 0, worker_nice: int = 0,
) -> Result:
    """One storm against a fresh server and database."""
    bodies = storm(alerts, groups, batch)
    workers: list[subprocess.Popen] = []
    with throwaway_database(admin_url, prefix="bench_intake") as database_url:
        server: LiveServer = start_server(
            database_url, workdir, run_workers=workers_on and not worker_processes, telemetry="sim",
            processes=processes,
        )
        try:
            workers = start_workers(database_url, workdir, worker_processes, worker_nice)
            pids = [server.process.pid, *(w.pid for w in workers)]
            cpu_before, busy_before = [cpu_seconds(p) for p in pids], busy_seconds()
            latencies, statuses, seconds = asyncio.run(send_storm(server.url, bodies, concurrency))
            cpu = [cpu_seconds(p) - before for p, before in zip(pids, cpu_before, strict=True)]
            machine_cpu = (busy_seconds() - busy_before) / seconds
            incidents, stored_alerts, runs_done, doubled = stored(database_url)
        finally:
            for worker in workers:
                worker.terminate()
                worker.wait(timeout=60)
            server.stop()
    server_cpu = cpu[0]
    # A run that concludes during the storm closes its group: the group's later alerts open its next incident.
    expected = incidents >= groups if runs_done else incidents == groups
    ok = all(s == 202 for s in statuses) and expected and not doubled and stored_alerts == alerts
    if not ok:
        print(f"FAILED: statuses {sorted(set(statuses))}, {incidents} incidents, {stored_alerts} alerts\n"
              f"{server.log()[-2000:]}", file=sys.stderr)
    return Result(
        workers=f"{worker_processes} proc" if worker_processes else "on" if workers_on else "off", batch=batch,
        concurrency=concurrency, requests=len(bodies),
        alerts=alerts, seconds=round(seconds, 3), alerts_per_s=round(alerts / seconds, 1),
        p50_ms=round(percentile(latencies, 0.50) * 1000, 2), p99_ms=round(percentile(latencies, 0.99) * 1000, 2),
        max_ms=round(max(latencies) * 1000, 2), server_cpu=round(server_cpu / seconds, 2),
        server_ms_per_alert=round(server_cpu / alerts * 1000, 3), machine_cpu=round(machine_cpu, 2),
        incidents=incidents, stored_alerts=stored_alerts, runs_done=runs_done,
        workers_cpu=round(sum(cpu[1:]) / seconds, 2), ok=ok,
    )


def format_table(results: list[Result]) -> str:
    """A fixed-width table of the results."""
    header = (f"{'workers':>7} {'batch':>5} {'conc':>4} {'requests':>8} {'alerts/s':>9} {'p50 ms':>7} {'p99 ms':>7} "
              f"{'max ms':>7} {'srv cores':>9} {'srv ms/alert':>12} {'wrk cores':>9} {'busy cores':>10} "
              f"{'incidents':>9} {'alerts':>6} {'runs':>4}  ok")
    rows = [
        f"{r.workers:>7} {r.batch:>5} {r.concurrency:>4} {r.requests:>8} {r.alerts_per_s:>9.0f} {r.p50_ms:>7.2f} "
        f"{r.p99_ms:>7.2f} {r.max_ms:>7.1f} {r.server_cpu:>9.2f} {r.server_ms_per_alert:>12.3f} {r.workers_cpu:>9.2f} "
        f"{r.machine_cpu:>10.2f} {r.incidents:>9} {r.stored_alerts:>6} {r.runs_done:>4}  {'yes' if r.ok else 'NO'}"
        for r in results
    ]
    return "\n".join([header, *rows])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=10_000)
    parser.add_argument("--groups", type=int, default=50)
    parser.add_argument("--concurrency", default="16,32,64", help="comma-separated connection counts")
    parser.add_argument("--batch", default="1", help="comma-separated alerts per request")
    parser.add_argument("--workers-on", action="store_true", help="also run each storm with run workers on")
    parser.add_argument("--processes", type=int, default=1, help="server processes (serve --processes)")
    parser.add_argument("--worker-processes", type=int, default=0,
                        help="intake-only server, and this many `incident-copilot worker` processes running graphs")
    parser.add_argument("--worker-nice", type=int, default=0, help="nice value of the worker processes")
    parser.add_argument("--admin-url", default=os.environ.get("BENCH_POSTGRES_URL", DEFAULT_ADMIN_URL))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    results = []
    with tempfile.TemporaryDirectory(prefix="bench-intake-") as tmp:
        os.environ["INCIDENT_COPILOT_HOME"] = tmp  # the server's sample repos and outputs stay in here
        for workers_on in (False, True) if args.workers_on else (False,):
            for batch in (int(b) for b in args.batch.split(",")):
                for concurrency in (int(c) for c in args.concurrency.split(",")):
                    results.append(run_one(
                        args.admin_url, Path(tmp) / f"run-{len(results)}", alerts=args.alerts, groups=args.groups,
                        batch=batch, concurrency=concurrency, workers_on=workers_on, processes=args.processes,
                        worker_processes=args.worker_processes, worker_nice=args.worker_nice,
                    ))
                    if not args.json:
                        print(format_table(results[-1:]).splitlines()[-1] if len(results) > 1
                              else format_table(results), flush=True)
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
