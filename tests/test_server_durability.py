"""The HTTP service under load and crashes, as real processes on one PostgreSQL (issue 3).

1. Two replicas take 2,000 alerts of 20 groups at once: exactly one incident and one start run per group, every
   raw payload and alert stored; resolution by the source, and a new incident after it.
2. `kill -9` of the server mid-graph, twice (in check_patch before the gate, and in create_pr after the approval):
   each time a new process resumes the run from its checkpoint, re-runs only the node in flight, and no side
   effect is repeated.
"""

from __future__ import annotations

import asyncio
import random
import re
import shutil
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from sim.sample_repo import ensure_sample_repo
from sim.scenarios import build_scenario
from tests.live_server import LiveServer, start_server
from tools.database import open_database

GROUPS = 20
PER_GROUP = 100
SINGLES_PER_GROUP = 10  # the rest arrive in multi-alert requests of these sizes:
MULTI_SIZES = (5, 10, 20, 25)
CONCURRENCY = 32
STARTS_AT = "2026-11-21T12:00:00Z"


# --- helpers ---------------------------------------------------------------------------------------------


class Fleet:
    """The server processes of one test; stopped at teardown, their log tails printed (shown on failure)."""

    def __init__(self, database_url: str, workdir: Path):
        self.database_url, self.workdir = database_url, workdir
        self.servers: list[LiveServer] = []

    def start(self, count: int = 1, **kwargs: Any) -> list[LiveServer]:
        """Start `count` servers at once (start-up is mostly imports: in parallel it takes half the time)."""
        with ThreadPoolExecutor(count) as pool:
            futures = [pool.submit(start_server, self.database_url, self.workdir, **kwargs) for _ in range(count)]
        self.servers.extend(f.result() for f in futures if f.exception() is None)  # all are stopped at teardown
        return [f.result() for f in futures]

    def logs(self) -> str:
        return "\n".join(f"--- {s.url} (exit {s.process.poll()}) ---\n{s.log()[-3000:]}" for s in self.servers)


@pytest.fixture
def fleet(database_url: str, tmp_path: Path) -> Iterator[Fleet]:
    fleet = Fleet(database_url, tmp_path / "work")
    yield fleet
    for server in fleet.servers:
        server.stop()
    print(fleet.logs())


def query(database_url: str, sql: str, params: tuple = ()) -> list[dict[str, Any]]:
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        return conn.execute(sql, params).fetchall()


def scalar(database_url: str, sql: str, params: tuple = ()) -> Any:
    return next(iter(query(database_url, sql, params)[0].values()))


def wait_until(check: Callable[[], Any], timeout: float, what: str, fleet: Fleet, interval: float = 0.05) -> Any:
    """Poll until check() is truthy; fail with the server logs after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{fleet.logs()}")


def alertmanager(alerts: list[dict[str, Any]]) -> dict[str, Any]:
    return {"version": "4", "receiver": "incident-copilot", "status": alerts[0]["status"], "alerts": alerts}


def group_alert(group: int, n: int, status: str = "firing") -> dict[str, Any]:
    """Alert `n` of a group: every alert of a group shares its fingerprint (Alertmanager repeats)."""
    return {
        "status": status,
        "fingerprint": f"{group:016x}",
        "labels": {"alertname": f"DurabilityGroup{group:02d}", "service": f"svc-{group:02d}", "severity": "page"},
        "annotations": {"summary": f"sample {n} of group {group}"},
        "startsAt": STARTS_AT,
        "endsAt": "0001-01-01T00:00:00Z",
    }


def intake_requests() -> list[list[dict[str, Any]]]:
    """The 2,000 alerts as the alert lists of request bodies, in a fixed shuffled order: 200 single-alert requests,
    and 120 of 5 to 25 alerts of consecutive groups (some carry a group twice; concurrent ones take the same
    incident rows in different combinations)."""
    singles = [[group_alert(g, n)] for g in range(GROUPS) for n in range(SINGLES_PER_GROUP)]
    rest = [group_alert(g, n) for n in range(SINGLES_PER_GROUP, PER_GROUP) for g in range(GROUPS)]
    multis, at = [], 0
    while at < len(rest):
        size = MULTI_SIZES[len(multis) % len(MULTI_SIZES)]
        multis.append(rest[at : at + size])
        at += size
    requests = singles + multis
    random.Random(3).shuffle(requests)
    return requests


async def post_all(servers: list[LiveServer], bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    """POST /alerts with at most CONCURRENCY requests in flight, alternating between the servers."""
    gate = asyncio.Semaphore(CONCURRENCY)
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:

        async def post(i: int, body: dict[str, Any]) -> httpx.Response:
            server = servers[i % len(servers)]
            async with gate:
                return await client.post(f"{server.url}/alerts", json=body, headers=server.headers)

        return await asyncio.gather(*(post(i, body) for i, body in enumerate(bodies)))


# --- 1. concurrent intake on two replicas -----------------------------------------------------------------


@pytest.mark.parametrize("run_workers", [False, True], ids=["intake-only", "with-workers"])
async def test_two_replicas_dedup_2000_concurrent_alerts(fleet, database_url, run_workers):
    # The schema first, as a deploy's init step would (`incident-copilot db`): replicas that start together on an
    # empty database race in the checkpointer's setup. Live telemetry has no backend in this build: with workers
    # on, every run ends quickly as not an incident.
    async with open_database(database_url):
        pass
    servers = fleet.start(2, run_workers=run_workers, telemetry="live")
    requests = intake_requests()
    started = time.perf_counter()
    responses = await post_all(servers, [alertmanager(alerts) for alerts in requests])
    seconds = time.perf_counter() - started
    print(f"intake ({'workers on' if run_workers else 'intake only'}): {len(requests)} requests, "
          f"{GROUPS * PER_GROUP} alerts in {seconds:.2f}s = {GROUPS * PER_GROUP / seconds:.0f} alerts/s, "
          f"{len(requests) / seconds:.0f} requests/s")

    bad = [(r.status_code, r.text[:200]) for r in responses if r.status_code != 202]
    assert not bad, f"{len(bad)} requests not accepted, e.g. {bad[:3]}\n{fleet.logs()}"
    incident_of: dict[str, set[str]] = defaultdict(set)
    opened: Counter[str] = Counter()
    outcomes = 0
    for response in responses:
        for outcome in response.json()["alerts"]:
            outcomes += 1
            assert outcome["status"] == "queued" or outcome["deduplicated"], outcome
            incident_of[outcome["fingerprint"]].add(outcome["incident_id"])
            opened[outcome["fingerprint"]] += not outcome["deduplicated"]
    assert outcomes == GROUPS * PER_GROUP
    if run_workers:
        await check_groups_while_runs_conclude(servers, database_url, incident_of, opened, fleet)
        return
    assert len(incident_of) == GROUPS and all(len(ids) == 1 for ids in incident_of.values()), incident_of
    assert opened == {f"{g:016x}": 1 for g in range(GROUPS)}, "each group: exactly one alert opened its incident"

    incidents = query(database_url, "SELECT id, dedup_key, resolved_at, alert_count FROM incidents")
    assert len(incidents) == GROUPS
    assert all(i["dedup_key"] and i["resolved_at"] is None and i["alert_count"] == PER_GROUP for i in incidents)
    assert {i["dedup_key"]: i["id"] for i in incidents} == {fp: next(iter(ids)) for fp, ids in incident_of.items()}
    assert scalar(database_url, "SELECT count(*) FROM alert_payloads") == len(requests)
    assert scalar(database_url, "SELECT sum(jsonb_array_length(body->'alerts')) FROM alert_payloads") == 2000
    assert scalar(database_url, "SELECT count(DISTINCT alert->'annotations'->>'summary') FROM alerts") == 2000
    stored = query(database_url, """SELECT fingerprint, count(*) AS n, count(DISTINCT incident_id) AS incidents,
                                           count(*) FILTER (WHERE NOT deduplicated) AS opened
                                    FROM alerts GROUP BY fingerprint""")
    assert len(stored) == GROUPS
    assert all((s["n"], s["incidents"], s["opened"]) == (PER_GROUP, 1, 1) for s in stored), stored
    runs = query(database_url, "SELECT incident_id, kind FROM runs")
    assert sorted((r["incident_id"], r["kind"]) for r in runs) == sorted((i["id"], "start") for i in incidents)

    # The source resolves 5 groups; a resolved alert for a closed group finds nothing; a group fires again.
    before = {i["dedup_key"]: i["id"] for i in incidents}
    resolved_groups = range(5)
    answers = await post_all(servers, [alertmanager([group_alert(g, PER_GROUP, "resolved")]) for g in resolved_groups])
    for g, answer in zip(resolved_groups, answers, strict=True):
        assert answer.status_code == 202, answer.text
        assert (answer.json()["incident_id"], answer.json()["status"]) == (before[f"{g:016x}"], "resolved")
    again = (await post_all(servers, [alertmanager([group_alert(0, PER_GROUP + 1)])]))[0].json()
    assert again["deduplicated"] is False and again["incident_id"] not in before.values()
    nothing = (await post_all(servers, [alertmanager([group_alert(1, PER_GROUP + 1, "resolved")])]))[0].json()
    assert (nothing["incident_id"], nothing["status"], nothing["deduplicated"]) == (None, "no_open_incident", False)

    rows = query(database_url, "SELECT id, dedup_key, resolved_at, resolved_by FROM incidents")
    assert len(rows) == GROUPS + 1
    resolved = {r["dedup_key"]: r for r in rows if r["resolved_at"] is not None}
    assert set(resolved) == {f"{g:016x}" for g in resolved_groups}
    assert all(r["resolved_by"] == "source:alertmanager" and r["id"] == before[r["dedup_key"]]
               for r in resolved.values())
    open_rows = [r for r in rows if r["resolved_at"] is None]
    assert len(open_rows) == GROUPS - len(resolved_groups) + 1
    assert again["incident_id"] in {r["id"] for r in open_rows}
    assert scalar(database_url, "SELECT count(*) FROM alerts") == GROUPS * PER_GROUP + len(resolved_groups) + 2
    assert scalar(database_url, "SELECT count(*) FROM alert_payloads") == len(requests) + len(resolved_groups) + 2
    assert scalar(database_url, "SELECT count(*) FROM runs WHERE kind = 'start'") == GROUPS + 1



async def check_groups_while_runs_conclude(
    servers: list[LiveServer], database_url: str, incident_of: dict[str, set[str]], opened: Counter[str],
    fleet: Fleet,
) -> None:
    """With workers on, runs conclude during the storm (live telemetry without backends) and a concluded incident
    closes its group, so a group's later alerts open its next incident. Each incident is opened by exactly one
    alert, a group has one open incident at a time, every alert is stored, every run is done exactly once."""
    assert set(incident_of) == {f"{g:016x}" for g in range(GROUPS)}
    assert all(len(incident_of[fp]) == opened[fp] for fp in incident_of), (incident_of, opened)
    wait_until(lambda: scalar(database_url, "SELECT count(*) FROM runs WHERE status IN ('queued', 'running')")
               == 0, 60, "all runs to finish", fleet, interval=0.2)
    incidents = query(database_url, "SELECT id, dedup_key, closed_reason, alert_count, created_at FROM incidents")
    assert {fp: {i["id"] for i in incidents if i["dedup_key"] == fp} for fp in incident_of} == incident_of
    assert all(i["closed_reason"] == "concluded" for i in incidents), incidents
    by_group = Counter()
    for i in incidents:
        by_group[i["dedup_key"]] += i["alert_count"]
    assert by_group == {fp: PER_GROUP for fp in incident_of}
    assert scalar(database_url, "SELECT count(DISTINCT alert->'annotations'->>'summary') FROM alerts") == 2000
    # Four workers in two processes: every run is claimed once and its graph started once.
    runs = query(database_url, "SELECT incident_id, kind, status, attempts, claimed_by FROM runs")
    assert sorted(r["incident_id"] for r in runs) == sorted(i["id"] for i in incidents)
    assert all((r["kind"], r["status"], r["attempts"]) == ("start", "done", 1) for r in runs), runs
    starts = query(database_url, """SELECT thread_id, count(*) AS n FROM checkpoints
                                    WHERE checkpoint_ns = '' AND metadata->>'source' = 'input' GROUP BY 1""")
    assert len(starts) == len(incidents) and all(s["n"] == 1 for s in starts), starts
    print("runs per worker:", dict(Counter(r["claimed_by"] for r in runs)))

    # The source resolves a group: every incident of it is resolved, the answer names the newest.
    newest = max((i for i in incidents if i["dedup_key"] == f"{0:016x}"), key=lambda i: (i["created_at"], i["id"]))
    answer = (await post_all(servers, [alertmanager([group_alert(0, PER_GROUP, "resolved")])]))[0].json()
    assert (answer["incident_id"], answer["status"]) == (newest["id"], "resolved")
    assert scalar(database_url, "SELECT count(*) FROM incidents WHERE dedup_key = %s AND resolved_at IS NULL",
                  (f"{0:016x}",)) == 0
    again = (await post_all(servers, [alertmanager([group_alert(0, PER_GROUP + 1)])]))[0].json()
    assert again["deduplicated"] is False and again["incident_id"] not in incident_of[f"{0:016x}"]


# --- 2. kill -9 mid-graph, restart, resume from the checkpoint ----------------------------------------------

# A git hook in the sample repository gives the crashes exact places: it logs every committed ref update, and
# stalls once (while the server waits on git in a thread) on the first update matching the pattern in `stall`.
REFERENCE_HOOK = """#!/bin/sh
refs=$(cat)
[ "$1" = committed ] || exit 0
echo "$refs" >> "{dir}/updates.log"
if [ -f "{dir}/stall" ] && echo "$refs" | grep -qE "$(cat "{dir}/stall")" && rm "{dir}/stall" 2>/dev/null; then
  touch "{dir}/stalled"
  sleep 4
fi
exit 0
"""


def checkpoints(database_url: str, incident_id: str) -> list[dict[str, Any]]:
    return query(database_url, """SELECT checkpoint_id, (metadata->>'step')::int AS step FROM checkpoints
                                  WHERE thread_id = %s AND checkpoint_ns = '' ORDER BY checkpoint_id""",
                 (incident_id,))


def node_counts(server: LiveServer) -> dict[str, int]:
    """How many times each graph node finished in this server process (from /metrics)."""
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    pattern = r'^incident_copilot_node_duration_seconds_count\{node="([a-z_]+)"\} ([0-9.]+)$'
    return {node: int(float(n)) for node, n in re.findall(pattern, text, re.M)}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


def history(server: LiveServer, incident_id: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{server.url}/incidents/{incident_id}/history", headers=server.headers, timeout=10)
    return answer.json()["checkpoints"]


def kill_when_stalled(server: LiveServer, control: Path, pattern: str, action: Callable[[], Any], fleet: Fleet) -> None:
    """Arm the hook's stall for `pattern`, do `action`, and SIGKILL the server once git sits in the hook."""
    (control / "stall").write_text(pattern)
    action()
    wait_until((control / "stalled").exists, 60, f"a ref update matching {pattern!r}", fleet, interval=0.01)
    server.stop(kill=True)
    assert server.process.returncode == -9
    (control / "stalled").unlink()


def remove_stray_worktrees(repo: Path) -> None:
    """Worktrees whose check_patch was killed stay registered (and on disk); remove them."""
    for line in git(repo, "worktree", "list", "--porcelain").splitlines():
        path = line.removeprefix("worktree ")
        if line.startswith("worktree ") and "incident-copilot-worktree-" in path:
            subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", path], capture_output=True)
            shutil.rmtree(Path(path).parent, ignore_errors=True)


def test_kill_9_mid_graph_resumes_from_checkpoint(fleet, database_url, tmp_path):
    # Own sample repos (the hook must not touch other tests), built before the server starts so that the only
    # ref updates are the run's own: check_patch's test worktrees, and create_pr's fix branch.
    home, control = tmp_path / "home", tmp_path / "hook"
    control.mkdir()
    root_service = build_scenario("deployment_regression", 1, datetime(2026, 11, 21, 12, tzinfo=UTC)).root_service
    repo = ensure_sample_repo(root_service, home / "sample-repos").path
    hook = Path(git(repo, "rev-parse", "--absolute-git-dir").strip()) / "hooks" / "reference-transaction"
    hook.parent.mkdir(exist_ok=True)
    hook.write_text(REFERENCE_HOOK.format(dir=control))
    hook.chmod(0o755)
    env = {"INCIDENT_COPILOT_HOME": str(home)}
    alert = {"status": "firing", "startsAt": STARTS_AT, "labels": {
        "alertname": "HighErrorRate", "service": "web-frontend", "scenario": "deployment_regression", "seed": "1"}}
    incident: dict[str, str] = {}

    def post_alert() -> None:
        answer = httpx.post(f"{first.url}/alerts", json=alertmanager([alert]), headers=first.headers, timeout=30)
        assert answer.status_code == 202, answer.text
        incident["id"] = answer.json()["incident_id"]

    try:
        # Crash 1, after correlate and before the gate: check_patch is creating its test worktree.
        [first] = fleet.start(extra_env=env)
        kill_when_stalled(first, control, " HEAD$", post_alert, fleet)
        incident_id = incident["id"]
        at_kill = checkpoints(database_url, incident_id)
        assert query(database_url, "SELECT status, attempts FROM runs") == [{"status": "running", "attempts": 1}]

        [second] = fleet.start(extra_env=env)
        wait_until(lambda: scalar(database_url, "SELECT status FROM incidents") == "awaiting_approval"
                   and scalar(database_url, "SELECT status FROM runs") == "done", 60,
                   "the recovered run to reach the gate", fleet)
        assert query(database_url, "SELECT status, attempts FROM runs") == [{"status": "done", "attempts": 2}]
        entries = history(second, incident_id)
        assert [e["checkpoint_id"] for e in entries[: len(at_kill)]] == [c["checkpoint_id"] for c in at_kill]
        in_flight = entries[len(at_kill) - 1]["next"]
        assert in_flight == ["check_patch"], f"killed elsewhere than in check_patch: {entries[len(at_kill) - 1]}"
        ran = Counter(node for e in entries for node in e["ran"])
        assert {"ingest", "collect", "correlate", "check_patch"} <= set(ran) and set(ran.values()) == {1}, ran
        assert node_counts(second) == {"check_patch": 1}, "the new process re-ran more than the in-flight node"
        waiting = httpx.get(f"{second.url}/incidents/{incident_id}", headers=second.headers, timeout=10).json()
        assert waiting["run_status"] == "awaiting_approval"
        assert waiting["awaiting_approval"]["patch"]["kind"] == "revert"

        # Crash 2, after the approval: create_pr has written the fix branch, its checkpoint is not written yet.
        def approve() -> None:
            answer = httpx.post(f"{second.url}/incidents/{incident_id}/approval", json={"decision": "approve"},
                                headers=second.headers, timeout=10)
            assert answer.status_code == 202, answer.text

        branch = f"incident-copilot/{incident_id}"
        kill_when_stalled(second, control, f" refs/heads/{branch}$", approve, fleet)
        assert git(repo, "branch", "--list", branch).split() == [branch]
        resume = query(database_url, "SELECT status, attempts FROM runs WHERE kind = 'resume'")
        assert resume == [{"status": "running", "attempts": 1}]

        [third] = fleet.start(extra_env=env)
        wait_until(lambda: scalar(database_url, "SELECT count(*) FROM runs WHERE status <> 'done'") == 0
                   and scalar(database_url, "SELECT status FROM incidents") == "completed", 60,
                   "the recovered resume to finish", fleet)
        assert query(database_url, "SELECT kind, status, attempts FROM runs ORDER BY id") == [
            {"kind": "start", "status": "done", "attempts": 2}, {"kind": "resume", "status": "done", "attempts": 2}]
        assert node_counts(third) == {"create_pr": 1, "brief": 1, "notify": 1}

        done = httpx.get(f"{third.url}/incidents/{incident_id}", headers=third.headers, timeout=10).json()
        assert done["run_status"] == "completed"
        pr = done["report"]["pr"]
        assert pr["status"] == "exists" and pr["branch"] == branch, pr  # the re-run found the branch, left it
        base = done["report"]["patch"]["base_commit"]
        assert git(repo, "branch", "--list", "incident-copilot/*").split() == [branch]
        assert git(repo, "rev-list", f"{base}..{branch}").split() == [pr["commit"]]
        assert git(repo, "rev-parse", f"{branch}^").strip() == base
        updates = (control / "updates.log").read_text().splitlines()
        assert sum(line.endswith(f" refs/heads/{branch}") for line in updates) == 1, updates
        output = fleet.workdir / "output"
        assert sorted(p.relative_to(output).as_posix() for p in output.rglob("brief.*")) == [
            f"{incident_id}/brief.html", f"{incident_id}/brief.md"]
        assert scalar(database_url, "SELECT count(*) FROM approvals") == 1
        ran = Counter(node for e in history(third, incident_id) for node in e["ran"])
        assert {"approve", "create_pr", "brief", "notify"} <= set(ran) and set(ran.values()) == {1}, ran
    finally:
        remove_stray_worktrees(repo)
