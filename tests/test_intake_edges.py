"""Issue 10, smaller defects and honest errors at the edge: odd values refused with a 422 that says what is
wrong, JSON only (415), incident ids checked on every route, a database outage answered 503 at once, a busy
database waited for, and a statement past its deadline answered 503 (tests/test_chaos.py: a partition)."""

from __future__ import annotations

import asyncio
import json
import random
import time
from contextlib import contextmanager

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


@contextmanager
def incidents_locked(database_url: str):
    """Every incident row locked by another transaction: a repeat of their alerts waits (a busy database)."""
    with psycopg.connect(database_url) as other:
        other.execute("SELECT id FROM incidents FOR UPDATE")
        yield
        other.rollback()


def backends_waiting_on_locks(database_url: str) -> list[int]:
    with psycopg.connect(database_url) as conn:
        return [pid for (pid,) in conn.execute("""SELECT pid FROM pg_stat_activity
                                                  WHERE datname = current_database() AND wait_event_type = 'Lock'""")]


def wait_until_gone(database_url: str, pids: list[int]) -> None:
    """Until these backends ended: the statements they waited to carry out are done, or rolled back."""
    deadline = time.monotonic() + 30
    with psycopg.connect(database_url, autocommit=True) as conn:
        while conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)).fetchone()[0]:
            assert time.monotonic() < deadline, f"backends {pids} still there"
            time.sleep(0.1)


async def test_a_statement_that_waits_on_a_busy_database_is_not_cut_short(database_url, tmp_path):
    async with client(database_url, tmp_path) as c:
        assert (await c.post("/alerts", json=alertmanager({}), headers=AUTH)).status_code == 202
        with incidents_locked(database_url):
            repeat = asyncio.create_task(c.post("/alerts", json=alertmanager({}), headers=AUTH))
            await asyncio.sleep(2.0)  # past db_acquire_timeout: the database answers a probe, the statement waits
            assert not repeat.done(), repeat.result().text
        r = await repeat
        assert r.status_code == 202 and r.json()["deduplicated"] is True, r.text
        assert c._transport.app.state.db.pool.get_stats().get("returns_bad", 0) == 0


async def test_a_statement_past_the_deadline_answers_503_and_its_retry_joins_the_group(database_url, tmp_path):
    """The deadline holds whatever the probes say (a connection gone silent while new ones work). The statement cut
    short was sent: it may be carried out (here it is, once the lock goes), so the 503 does not claim that nothing
    was stored, and the sender's retry is a second alert of the group, not a second incident."""
    async with client(database_url, tmp_path, db_deadline=1.5) as c:
        assert (await c.post("/alerts", json=alertmanager({}), headers=AUTH)).status_code == 202
        with incidents_locked(database_url):
            r = await asyncio.wait_for(c.post("/alerts", json=alertmanager({}), headers=AUTH), 20)
            cut = backends_waiting_on_locks(database_url)
        assert len(cut) == 1
        wait_until_gone(database_url, cut)
        assert r.status_code == 503, r.text
        assert int(r.headers["Retry-After"]) >= 1
        assert r.json()["error"] == {"code": "database_unavailable", "message": "the database did not answer; the "
                                     "request may have been stored, send it again"}
        assert c._transport.app.state.db.pool.get_stats()["returns_bad"] == 1  # the cut connection is not reused
        retry = await c.post("/alerts", json=alertmanager({}), headers=AUTH)
        assert retry.status_code == 202 and retry.json()["deduplicated"] is True, retry.text
        stored = count(database_url, "alerts")
        # the cut statement was carried out once the lock went (PostgreSQL looks for a gone client only when it
        # reads or writes to it, by default): its alert and the retry's
        assert stored == 3
        # a batch is one transaction: cut before its COMMIT (waiting in the pipeline of its later alerts), none of
        # it is stored, its new group's alert included
        batch = alertmanager({})
        batch["alerts"].insert(0, {**batch["alerts"][0], "fingerprint": "0-new-group"})
        with incidents_locked(database_url):
            r = await asyncio.wait_for(c.post("/alerts", json=batch, headers=AUTH), 20)
            cut = backends_waiting_on_locks(database_url)
        assert len(cut) == 1
        wait_until_gone(database_url, cut)
        assert r.status_code == 503, r.text
        assert c._transport.app.state.db.pool.get_stats()["returns_bad"] == 2
    assert count(database_url, "incidents") == 1
    assert count(database_url, "alerts") == stored


async def test_a_database_refusing_connections_for_too_many_clients_still_answers(database_url, monkeypatch):
    """At max_connections the database is busy, not gone: a slow statement waits for it instead of being cut short,
    and a request waiting for a pooled connection waits on."""
    from tools import database

    async def refused(error: psycopg.Error):
        async def connect(*args, **kwargs):
            raise error
        monkeypatch.setattr(database.AsyncConnection, "connect", connect)
        pool._probed_at = float("-inf")  # probe again now
        return await pool.database_answers()

    async with database.open_database(database_url, max_size=2) as db:
        pool = db.pool
        assert await refused(psycopg.errors.TooManyConnections("sorry, too many clients already"))
        assert not await refused(psycopg.OperationalError("connection refused"))
        assert not await refused(psycopg.errors.CannotConnectNow("the database system is shutting down"))
