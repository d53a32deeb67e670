"""Alert groups with a life cycle, values refused at the door, and decisions that stick (issue 10, points 2 and 3).

A group absorbs repeats only while its incident is open: it closes when the incident concludes or fails, when the
source or a person resolves it, or when no alert came for the group's time to live.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg
import pytest

from graph.context import Context
from nodes.approve import ApprovalDecision
from nodes.create_pr import branch_name
from server import create_app
from service import incidents
from service.alert_payloads import parse_payload
from service.runs import IncidentRunner, RunError
from service.settings import ServerSettings
from tests.test_incident_runs import branches, case
from tests.test_server_api import ALICE_KEY, AUTH, client, fixture
from tools.database import open_database

FIRING = fixture("alertmanager-0.25-firing.json")


def rows(database_url: str, sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(sql, params).fetchall()


async def wait_for_status(c, incident_id: str, statuses: set[str], timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = (await c.get(f"/incidents/{incident_id}", headers=AUTH)).json()
        if body["status"] in statuses and body["run_status"] in statuses:
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"{incident_id} not in {statuses} within {timeout}s: {body['status']}/{body['run_status']}")


async def test_a_concluded_incident_closes_its_group(database_url, tmp_path):
    # Live telemetry without backends: the run concludes (nothing to read is not an incident to pursue).
    async with client(database_url, tmp_path, run_workers=True, telemetry="live") as c:
        first = (await c.post("/alerts", json=FIRING, headers=AUTH)).json()
        done = await wait_for_status(c, first["incident_id"], {"completed", "not_an_incident"})
        assert done["closed_reason"] == "concluded" and done["closed_at"] is not None
        again = (await c.post("/alerts", json=FIRING, headers=AUTH)).json()
        assert again["deduplicated"] is False and again["incident_id"] != first["incident_id"]


@asynccontextmanager
async def failing_client(database_url: str, tmp_path: Path, attempts: int):
    """The service with run workers whose every run fails: the output folder sits under a regular file."""
    (tmp_path / "not-a-folder").write_text("")
    output = str(tmp_path / "not-a-folder" / "output")
    settings = ServerSettings(database_url=database_url, api_keys={ALICE_KEY: "alice"}, run_workers=True,
                              telemetry="live", output_dir=output, run_attempts=attempts)
    app = create_app(settings, Context(output_dir=output))
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


async def test_a_poison_run_stops_after_its_attempts_and_its_incident_never_absorbs_new_alerts(database_url,
                                                                                             tmp_path):
    async with failing_client(database_url, tmp_path, attempts=2) as c:
        first = (await c.post("/alerts", json=FIRING, headers=AUTH)).json()
        failed = await wait_for_status(c, first["incident_id"], {"failed"})
        assert failed["closed_reason"] == "failed"
        assert rows(database_url, "SELECT status, attempts FROM runs") == [("failed", 2)]

        again = (await c.post("/alerts", json=FIRING, headers=AUTH)).json()
        assert again["deduplicated"] is False and again["incident_id"] != first["incident_id"]
        retried = await c.post(f"/incidents/{first['incident_id']}/retry", headers=AUTH)
        assert retried.status_code == 202, retried.text
        assert retried.json()["status"] == "queued"
        # the retried incident stays out of its group: the group's open incident is the new one
        third = (await c.post("/alerts", json=FIRING, headers=AUTH)).json()
        assert third["incident_id"] == again["incident_id"] and third["deduplicated"] is True
        not_failed = await c.post(f"/incidents/{again['incident_id']}/retry", headers=AUTH)
        assert not_failed.status_code == 409 and not_failed.json()["error"]["code"] == "not_failed"
        assert (await c.post("/incidents/inc-nope/retry", headers=AUTH)).status_code == 404
        await wait_for_status(c, first["incident_id"], {"failed"})
    runs = rows(database_url, "SELECT incident_id, kind, status, attempts FROM runs ORDER BY id")
    assert [r[:2] for r in runs] == [(first["incident_id"], "start"), (again["incident_id"], "start"),
                                     (first["incident_id"], "start")]
    assert (runs[0][2:], runs[2][2:]) == (("failed", 2), ("failed", 2))


async def test_resolve_by_api_and_by_a_generic_alert(database_url, tmp_path):
    generic = fixture("generic-seed.json")
    async with client(database_url, tmp_path) as c:
        opened = (await c.post("/alerts", json=generic, headers=AUTH)).json()
        resolved = await c.post("/alerts", json={**generic, "status": "resolved"}, headers=AUTH)
        assert resolved.status_code == 202, resolved.text
        assert (resolved.json()["incident_id"], resolved.json()["status"]) == (opened["incident_id"], "resolved")
        one = (await c.get(f"/incidents/{opened['incident_id']}", headers=AUTH)).json()
        assert one["resolved_by"] == "source:generic" and one["closed_reason"] == "resolved"

        second = (await c.post("/alerts", json=generic, headers=AUTH)).json()
        assert second["deduplicated"] is False and second["incident_id"] != opened["incident_id"]
        by_api = await c.post(f"/incidents/{second['incident_id']}/resolve", headers=AUTH)
        assert by_api.status_code == 200, by_api.text
        assert by_api.json()["resolved_by"] == "api:alice" and by_api.json()["closed_reason"] == "resolved"
        third = (await c.post("/alerts", json=generic, headers=AUTH)).json()
        assert third["deduplicated"] is False and third["incident_id"] not in (opened["incident_id"],
                                                                              second["incident_id"])
        assert (await c.post("/incidents/inc-nope/resolve", headers=AUTH)).status_code == 404
        bad = await c.post("/alerts", json={**generic, "status": "ended"}, headers=AUTH)
        assert bad.status_code == 422 and bad.json()["error"]["message"].startswith("status:")


async def test_a_group_closes_after_its_time_to_live(database_url, tmp_path):
    async with client(database_url, tmp_path) as c:
        first = (await c.post("/alerts", json=FIRING, headers=AUTH)).json()
        async with open_database(database_url) as db:
            assert await incidents.close_expired_groups(db.pool, 600) == 0
            with psycopg.connect(database_url, autocommit=True) as conn:
                conn.execute("UPDATE incidents SET last_alert_at = now() - interval '11 minutes'")
            assert await incidents.close_expired_groups(db.pool, 600) == 1
        again = (await c.post("/alerts", json=FIRING, headers=AUTH)).json()
        assert again["deduplicated"] is False and again["incident_id"] != first["incident_id"]
    assert rows(database_url, "SELECT closed_reason FROM incidents ORDER BY created_at, id") == [("expired",), (None,)]


def grafana_with_value(value: str) -> bytes:
    body = fixture("grafana-firing.json")
    text = json.dumps(body)
    marker = json.dumps(body["alerts"][0]["values"])
    return text.replace(marker, '{"B": ' + value + "}", 1).encode()


@pytest.mark.parametrize("value", ["20000000000000000000", "-9223372036854775809"])
async def test_numbers_no_store_can_keep_are_refused_at_intake(database_url, tmp_path, value):
    async with client(database_url, tmp_path) as c:
        answer = await c.post("/alerts", content=grafana_with_value(value),
                              headers={**AUTH, "Content-Type": "application/json"})
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"]["code"] == "invalid_field"
        assert "alerts[0].values.B" in answer.json()["error"]["message"]
        fine = await c.post("/alerts", content=grafana_with_value("9223372036854775807"),
                            headers={**AUTH, "Content-Type": "application/json"})
        assert fine.status_code == 202, fine.text
    assert rows(database_url, "SELECT count(*) FROM alert_payloads") == [(1,)]


@pytest.mark.parametrize("starts_at", ["0001-01-01T00:00:00-01:00", "0001-01-01T12:00:00Z", "1969-12-31T23:59:59Z",
                                       "9999-12-31T23:59:59Z"])
async def test_start_times_no_window_can_hold_are_refused_at_intake(database_url, tmp_path, starts_at):
    body = copy.deepcopy(FIRING)
    body["alerts"][0]["startsAt"] = starts_at
    async with client(database_url, tmp_path) as c:
        answer = await c.post("/alerts", json=body, headers=AUTH)
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"]["message"].startswith("alerts[0].startsAt:")
        body["alerts"][0]["startsAt"] = "0001-01-01T00:00:00Z"  # Go's zero time: no start given, still accepted
        assert (await c.post("/alerts", json=body, headers=AUTH)).status_code == 202


async def test_a_rejection_sticks_through_a_replay(database_url, tmp_path):
    scenario, telemetry = case("deployment_regression", 1)
    async with open_database(database_url) as db:
        runner = IncidentRunner(db, Context(output_dir=str(tmp_path)))
        waiting = await runner.start(scenario.alert, telemetry)
        incident_id, repo = waiting.incident_id, waiting.values["patch"].repo
        await runner.resume(incident_id, ApprovalDecision(decision="reject", by="alice", comment="not this"))
        before_gate = next(e for e in await runner.history(incident_id) if set(e.next) == {"rca", "suggest"})
        replayed = await runner.replay(incident_id, before_gate.checkpoint_id)
        assert replayed.status == "completed", "the replay met the same patch: the rejection stands"
        assert replayed.values["approval"].decision == "reject" and replayed.values["approval"].by == "alice"
        with pytest.raises(RunError, match="not waiting for approval"):
            await runner.resume(incident_id, ApprovalDecision(decision="approve", by="bob"))
        assert branch_name(incident_id) not in branches(repo)
        async with db.pool.connection() as conn:
            decided = await (await conn.execute("SELECT decision, approver FROM approvals ORDER BY id")).fetchall()
        assert decided == [{"decision": "reject", "approver": "alice"}] * 2  # the second, at the replay's gate


def test_the_generic_payload_may_carry_a_status():
    parsed = parse_payload({"service_name": "checkout", "status": "resolved"}, received_at=datetime.now(UTC))
    assert parsed.alerts[0].status == "resolved"
