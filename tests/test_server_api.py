"""The HTTP API in-process against a real PostgreSQL: payload shapes, dedup, errors, auth, the approval gate."""

from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import psycopg
import pytest

from graph.context import Context
from server import create_app
from service.settings import ServerSettings, SettingsError

FIXTURES = Path(__file__).parent / "fixtures" / "alerts"
ALICE_KEY = "alice-key-0123456789abcdef"
HOOK_KEY = "hook-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {ALICE_KEY}"}


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


@asynccontextmanager
async def client(database_url: str, tmp_path: Path, **settings):
    values = {"database_url": database_url, "api_keys": {ALICE_KEY: "alice", HOOK_KEY: "webhook"},
              "run_workers": False, "output_dir": str(tmp_path), **settings}
    app = create_app(ServerSettings(**values), Context(output_dir=str(tmp_path)))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            yield c


def count(database_url: str, table: str) -> int:
    with psycopg.connect(database_url) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


async def test_alertmanager_firing_then_resolved(database_url, tmp_path):
    async with client(database_url, tmp_path) as c:
        first = await c.post("/alerts", json=fixture("alertmanager-0.25-firing.json"), headers=AUTH)
        assert first.status_code == 202, first.text
        body = first.json()
        assert body["status"] == "queued" and body["deduplicated"] is False
        repeat = await c.post("/webhook/trigger_agent", json=fixture("alertmanager-0.25-firing.json"),
                              headers={"X-Webhook-API-Key": HOOK_KEY})
        assert repeat.json()["incident_id"] == body["incident_id"] and repeat.json()["deduplicated"] is True
        resolved = await c.post("/alerts", json=fixture("alertmanager-0.25-resolved.json"), headers=AUTH)
        assert resolved.json() == {**resolved.json(), "incident_id": body["incident_id"], "status": "resolved"}
        one = (await c.get(f"/incidents/{body['incident_id']}", headers=AUTH)).json()
        assert one["resolved_by"] == "source:alertmanager" and one["alert_count"] == 2
        # a new firing alert of the resolved group opens a new incident
        again = await c.post("/alerts", json=fixture("alertmanager-0.25-firing.json"), headers=AUTH)
        assert again.json()["incident_id"] != body["incident_id"] and again.json()["deduplicated"] is False
    assert count(database_url, "alert_payloads") == 4 and count(database_url, "alerts") == 4
    with psycopg.connect(database_url) as conn:
        raw = conn.execute("SELECT body FROM alert_payloads ORDER BY id LIMIT 1").fetchone()[0]
        runs = conn.execute("SELECT count(*) FROM runs WHERE kind = 'start'").fetchone()[0]
    assert raw == fixture("alertmanager-0.25-firing.json")  # the raw payload is kept as it arrived
    assert runs == 2


async def test_several_alerts_per_request_and_grafana(database_url, tmp_path):
    async with client(database_url, tmp_path) as c:
        multi = await c.post("/alerts", json=fixture("alertmanager-multi-service.json"), headers=AUTH)
        assert multi.status_code == 202
        outcomes = multi.json()["alerts"]
        assert len(outcomes) == 3
        assert [o["status"] for o in outcomes].count("queued") == 2  # the third alert is resolved
        grafana = await c.post("/alerts", json=fixture("grafana-firing.json"), headers=AUTH)
        assert grafana.status_code == 202 and len(grafana.json()["alerts"]) == 2
        custom = await c.post("/alerts", json=fixture("grafana-custom.json"), headers=AUTH)
        generic = await c.post("/webhook/trigger_agent", json=fixture("generic-seed.json"), headers=AUTH)
        assert custom.status_code == generic.status_code == 202
        assert generic.json()["incident_id"] == custom.json()["incident_id"]  # same service, same group
        resolved = await c.post("/alerts", json=fixture("grafana-resolved.json"), headers=AUTH)
        assert resolved.status_code == 202
        listing = (await c.get("/incidents", params={"service": "checkout"}, headers=AUTH)).json()
        assert {i["service"] for i in listing["items"]} == {"checkout"}
        page = (await c.get("/incidents", params={"limit": 1}, headers=AUTH)).json()
        assert len(page["items"]) == 1 and page["next_offset"] == 1
    with psycopg.connect(database_url) as conn:
        sources = {r[0] for r in conn.execute("SELECT DISTINCT source FROM incidents")}
    assert sources == {"alertmanager", "grafana", "generic"}


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "invalid_json"),
        (b"[1, 2]", 422, "invalid_json"),
        (json.dumps({"hello": "world"}).encode(), 422, "unknown_format"),
        (json.dumps({"version": "4", "status": "firing", "alerts": "nope"}).encode(), 422, "invalid_field"),
        (json.dumps({"version": "4", "status": "firing", "alerts": [{"status": "firing", "labels": {}}]}).encode(),
         422, "missing_field"),
        (json.dumps({"service_name": "checkout", "lookup_window_seconds": 5}).encode(), 422, "invalid_field"),
        (b"x" * 2_000_000, 413, "body_too_large"),
    ],
)
async def test_bad_bodies_get_stable_errors_and_store_nothing(database_url, tmp_path, body, status, code):
    async with client(database_url, tmp_path) as c:
        r = await c.post("/alerts", content=body, headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == status
    assert r.json()["error"]["code"] == code and r.json()["error"]["message"]
    assert "Traceback" not in r.text
    assert count(database_url, "alert_payloads") == 0


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-key-0123456789"},
                                     {"X-Webhook-API-Key": ALICE_KEY[:-1]}, {"Authorization": ALICE_KEY}])
async def test_bad_auth_is_401_and_stores_nothing(database_url, tmp_path, headers):
    async with client(database_url, tmp_path) as c:
        r = await c.post("/alerts", json=fixture("generic-seed.json"), headers=headers)
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        assert (await c.get("/incidents", headers=headers)).status_code == 401
        assert (await c.get("/")).status_code == 303  # dashboard sends to the login page
        assert (await c.get("/healthz")).status_code == 200
    assert count(database_url, "alert_payloads") == 0 and count(database_url, "incidents") == 0


def test_settings_refuse_unsafe_configurations():
    with pytest.raises(SettingsError, match="placeholder"):
        ServerSettings(api_keys={"changeme": "webhook"}).validate()
    with pytest.raises(SettingsError, match="local mode"):
        ServerSettings(auth_disabled=True).validate()
    with pytest.raises(SettingsError, match="no API key"):
        ServerSettings().validate()
    ServerSettings(api_keys={"changeme": "webhook"}, local_mode=True).validate()
    ServerSettings(auth_disabled=True, local_mode=True).validate()
    parsed = ServerSettings.from_env({"INCIDENT_COPILOT_API_KEYS": f"alice={ALICE_KEY},bob=bob-key-0123456789abcd",
                                      "WEBHOOK_API_KEY": HOOK_KEY})
    assert parsed.api_keys == {ALICE_KEY: "alice", "bob-key-0123456789abcd": "bob", HOOK_KEY: "webhook"}


async def wait_for(c: httpx.AsyncClient, incident_id: str, predicate, timeout: float = 60) -> dict:
    for _ in range(int(timeout / 0.2)):
        body = (await c.get(f"/incidents/{incident_id}", headers=AUTH)).json()
        if predicate(body):
            return body
        await asyncio.sleep(0.2)
    raise AssertionError(f"incident {incident_id} never reached the expected state: {body}")


async def test_approval_gate_over_http(database_url, tmp_path):
    alert = fixture("alertmanager-0.25-firing.json")
    alert["alerts"][0]["labels"] |= {"service": "web-frontend", "scenario": "deployment_regression", "seed": "1"}
    alert["alerts"][0]["startsAt"] = "2026-11-21T12:00:00Z"
    async with client(database_url, tmp_path, run_workers=True, telemetry="sim") as c:
        incident_id = (await c.post("/alerts", json=alert, headers=AUTH)).json()["incident_id"]
        waiting = await wait_for(c, incident_id, lambda b: b["awaiting_approval"])
        assert waiting["run_status"] == "awaiting_approval"
        assert waiting["awaiting_approval"]["patch"]["kind"] == "revert"
        bad = await c.post(f"/incidents/{incident_id}/approval", json={"decision": "maybe"}, headers=AUTH)
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"
        ok = await c.post(f"/incidents/{incident_id}/approval", json={"decision": "approve", "comment": "go"},
                          headers=AUTH)
        assert ok.status_code == 202 and ok.json()["status"] == "resuming"
        second = await c.post(f"/incidents/{incident_id}/approval", json={"decision": "reject"}, headers=AUTH)
        assert second.status_code == 409
        done = await wait_for(c, incident_id, lambda b: b["run_status"] == "completed")
        assert done["report"]["pr"]["status"] == "created"
        assert "approve" in done["brief"] and "alice" in done["brief"]
        late = await c.post(f"/incidents/{incident_id}/approval", json={"decision": "reject"}, headers=AUTH)
        assert late.status_code == 409 and late.json()["error"]["code"] == "not_awaiting_approval"

        history = (await c.get(f"/incidents/{incident_id}/history", headers=AUTH)).json()["checkpoints"]
        assert any("create_pr" in e["ran"] for e in history)
        checkpoint = next(e for e in history if set(e["next"]) == {"rca", "suggest"})["checkpoint_id"]
        replay = await c.post(f"/incidents/{incident_id}/replay", json={"checkpoint_id": checkpoint}, headers=AUTH)
        assert replay.status_code == 202
        missing = await c.post(f"/incidents/{incident_id}/replay", json={"checkpoint_id": "nope"}, headers=AUTH)
        assert missing.status_code == 404
        assert (await c.get("/incidents/inc-nope", headers=AUTH)).status_code == 404
        metrics = (await c.get("/metrics")).text
        for name in ("alerts_received_total", "node_duration_seconds", "run_duration_seconds", "run_queue_depth"):
            assert f"incident_copilot_{name}" in metrics
        assert (await c.get("/readyz")).json() == {"status": "ready"}
    with psycopg.connect(database_url) as conn:
        approvals = conn.execute("SELECT decision, approver FROM approvals").fetchall()
    assert approvals == [("approve", "alice")]
