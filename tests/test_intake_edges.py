"""Issue 10, smaller defects and honest errors at the edge: odd values refused with a 422 that says what is
wrong, JSON only (415), incident ids checked on every route, a database outage answered 503 at once."""

from __future__ import annotations

import json
import random
import time

import psycopg
import pytest

from tests.conftest import ADMIN_URL
from tests.test_server_api import AUTH, client, count

ALERTMANAGER = {"version": "4", "status": "firing", "receiver": "incident-copilot", "groupKey": "{}:{}"}


def alertmanager(labels: dict, **fields) -> dict:
    alert = {"status": "firing", "labels": {"alertname": "HighErrorRate", "service": "checkout", **labels}, **fields}
    return {**ALERTMANAGER, "alerts": [alert]}


async def test_a_seed_that_is_a_digit_but_not_a_number_is_refused(database_url, tmp_path):
    async with client(database_url, tmp_path, telemetry="sim") as c:
        for seed in ("²", "١٢", "9" * 40):  # superscript two, Arabic-Indic digits: isdigit() says yes, int() no
            r = await c.post("/alerts", json=alertmanager({"scenario": "memory_leak", "seed": seed}), headers=AUTH)
            assert r.status_code == 422, r.text
            assert r.json()["error"] == {"code": "invalid_field", "message": r.json()["error"]["message"]}
            assert "seed" in r.json()["error"]["message"]
        ok = await c.post("/alerts", json=alertmanager({"scenario": "memory_leak", "seed": "7"}), headers=AUTH)
        assert ok.status_code == 202
    assert count(database_url, "incidents") == 1


async def test_a_huge_random_fingerprint_is_refused_not_a_500(database_url, tmp_path):
    rng = random.Random(10)
    fingerprint = "".join(chr(rng.randrange(0xA1, 0x7FF)) for _ in range(2000))  # 4,000 bytes
    async with client(database_url, tmp_path) as c:
        r = await c.post("/alerts", json=alertmanager({}, fingerprint=fingerprint), headers=AUTH)
        assert r.status_code == 422, r.text
        assert r.json()["error"]["code"] == "invalid_field" and "fingerprint" in r.json()["error"]["message"]
        assert len(r.text) < 1000  # the value is not echoed back
        normal = await c.post("/alerts", json=alertmanager({}, fingerprint="3f1c2a9b8e7d6c5b"), headers=AUTH)
        assert normal.status_code == 202
    assert count(database_url, "alert_payloads") == 1


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
async def test_nan_and_infinity_are_named_as_such(database_url, tmp_path, literal):
    body = json.dumps(alertmanager({"ratio": 0.5})).replace("0.5", literal)
    async with client(database_url, tmp_path) as c:
        r = await c.post("/alerts", content=body, headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid_json"
    assert "NUL" not in error["message"] and ("NaN" in error["message"] or "range" in error["message"])
    assert count(database_url, "alert_payloads") == 0


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x"])
async def test_alerts_take_json_only(database_url, tmp_path, content_type):
    body = json.dumps(alertmanager({})).encode()
    headers = {**AUTH, **({"Content-Type": content_type} if content_type else {})}
    async with client(database_url, tmp_path) as c:
        r = await c.post("/alerts", content=body, headers=headers)
        assert r.status_code == 415, r.text
        assert r.json()["error"]["code"] == "unsupported_media_type"
        charset = await c.post("/alerts", content=body,
                               headers={**AUTH, "Content-Type": "application/json; charset=utf-8"})
        assert charset.status_code == 202
    assert count(database_url, "alert_payloads") == 1


@pytest.mark.parametrize("incident_id", ["...", "inc..x", "..%2F..%2Fx", ".hidden", "a" * 129, "inc x", "inc%00",
                                         "ïnc"])
async def test_incident_ids_are_checked_on_every_route(database_url, tmp_path, incident_id):
    async with client(database_url, tmp_path) as c:
        for method, path, body in (("GET", "", None), ("GET", "/history", None),
                                   ("POST", "/approval", {"decision": "approve"}),
                                   ("POST", "/replay", {"checkpoint_id": "x"})):
            r = await c.request(method, f"/incidents/{incident_id}{path}", json=body, headers=AUTH)
            assert r.status_code in (404, 422), (method, path, r.status_code, r.text)
            assert set(r.json()) == {"error"}
            if r.status_code == 422:
                assert "incident_id" in r.json()["error"]["message"]


async def test_database_outage_is_a_fast_503_with_retry_after(database_url, tmp_path):
    name = psycopg.conninfo.conninfo_to_dict(database_url)["dbname"]
    async with client(database_url, tmp_path) as c:
        assert (await c.post("/alerts", json=alertmanager({}), headers=AUTH)).status_code == 202
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
            try:
                for attempt in range(3):  # a broken pooled connection, then no connection at all
                    started = time.monotonic()
                    r = await c.post("/alerts", json=alertmanager({"attempt": str(attempt)}), headers=AUTH)
                    took = time.monotonic() - started
                    assert r.status_code == 503, r.text
                    assert r.json()["error"]["code"] == "database_unavailable"
                    assert int(r.headers["Retry-After"]) >= 1
                    assert took < 10, f"the 503 took {took:.1f} s (the pool's 30 s wait)"
                ready = await c.get("/readyz")
                assert ready.status_code == 503 and ready.json()["error"]["code"] == "not_ready"
            finally:
                admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        for _ in range(50):  # back: the pool reconnects by itself
            r = await c.post("/alerts", json=alertmanager({"after": "outage"}), headers=AUTH)
            if r.status_code == 202:
                break
            time.sleep(0.2)
        assert r.status_code == 202, r.text
    assert count(database_url, "alert_payloads") == 2


@pytest.mark.parametrize("encoded", [b'"\\ud800"', b'"\xed\xa0\x80"'], ids=["escape", "utf8-bytes"])
async def test_an_unpaired_surrogate_is_bad_json_however_it_is_written(database_url, tmp_path, encoded):
    """A lone UTF-16 surrogate, as a \\u escape or as its three UTF-8 bytes (which Python's decoder lets through),
    is text no database column can hold: a 400 that says so, nothing stored."""
    body = json.dumps(alertmanager({"note": "X"})).encode().replace(b'"X"', encoded)
    async with client(database_url, tmp_path) as c:
        r = await c.post("/alerts", content=body, headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "invalid_json" and "surrogate" in r.json()["error"]["message"]
    assert count(database_url, "alert_payloads") == 0
