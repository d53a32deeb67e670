"""Issue 10 part 4, who may do what: named keys with roles (intake, viewer, approver, admin), the approver recorded by
name; the dashboard's server-side session (no key in the cookie), its CSRF token and Origin check on every form,
sign-out, Secure cookies over HTTPS, sign-in throttling; the JSON API takes bearer credentials only."""

from __future__ import annotations

import asyncio
import re

import httpx
import psycopg
import pytest

from graph.context import Context
from server import create_app
from service.settings import ServerSettings, SettingsError, load_settings
from tests.test_server_api import fixture

ADMIN, APPROVER, VIEWER, INTAKE = (f"{name}-key-0123456789abcdef" for name in ("admin", "approver", "viewer", "hook"))
KEYS = {ADMIN: "root", APPROVER: "alice", VIEWER: "victor", INTAKE: "webhook"}
ROLES = {"root": "admin", "alice": "approver", "victor": "viewer"}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


class App:
    """The service in-process on a fresh database; clients over ASGI."""

    def __init__(self, database_url: str, tmp_path, **settings):
        values = {"database_url": database_url, "api_keys": KEYS, "roles": ROLES, "run_workers": False,
                  "output_dir": str(tmp_path), **settings}
        self.app = create_app(ServerSettings(**values), Context(output_dir=str(tmp_path)))

    async def __aenter__(self) -> App:
        self.lifespan = self.app.router.lifespan_context(self.app)
        await self.lifespan.__aenter__()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.lifespan.__aexit__(*exc)

    def client(self, base_url: str = "http://test") -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app, client=("10.0.0.7", 5555)),
                                 base_url=base_url)


async def sign_in(c: httpx.AsyncClient, key: str, origin: str | None = None) -> httpx.Response:
    form = await c.get("/ui/login")
    token = re.search(r'name="login_token" value="([^"]+)"', form.text).group(1)
    return await c.post("/ui/login", data={"api_key": key, "login_token": token},
                        headers={"Origin": origin or str(c.base_url).rstrip("/")})


async def until(c: httpx.AsyncClient, incident_id: str, predicate, timeout: float = 90) -> dict:
    for _ in range(int(timeout / 0.2)):
        body = (await c.get(f"/incidents/{incident_id}", headers=bearer(VIEWER))).json()
        if predicate(body):
            return body
        await asyncio.sleep(0.2)
    raise AssertionError(f"incident {incident_id} never reached the expected state: {body}")


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


async def test_each_role_does_only_its_part(database_url, tmp_path):
    alert = fixture("alertmanager-0.25-firing.json")
    async with App(database_url, tmp_path) as app, app.client() as c:
        posted = await c.post("/alerts", json=alert, headers={"X-Webhook-API-Key": INTAKE})
        assert posted.status_code == 202
        incident = posted.json()["incident_id"]
        # the intake key (what Alertmanager and Grafana hold) posts alerts and does nothing else
        for method, path, body in (("GET", "/incidents", None), ("GET", f"/incidents/{incident}", None),
                                   ("GET", f"/incidents/{incident}/history", None),
                                   ("POST", f"/incidents/{incident}/approval", {"decision": "approve"}),
                                   ("POST", f"/incidents/{incident}/replay", {"checkpoint_id": "x"})):
            r = await c.request(method, path, json=body, headers=bearer(INTAKE))
            assert r.status_code == 403, (path, r.text)
            assert r.json()["error"]["code"] == "forbidden" and "intake" in r.json()["error"]["message"]
        # a viewer reads, and can neither post alerts nor decide nor replay
        assert (await c.get(f"/incidents/{incident}", headers=bearer(VIEWER))).status_code == 200
        assert (await c.post("/alerts", json=alert, headers=bearer(VIEWER))).status_code == 403
        viewer_decides = await c.post(f"/incidents/{incident}/approval", json={"decision": "approve"},
                                      headers=bearer(VIEWER))
        assert viewer_decides.status_code == 403
        # an approver decides (here: nothing waits at a gate yet, so 404/409, never 403) but cannot replay
        approver = await c.post(f"/incidents/{incident}/approval", json={"decision": "approve"},
                                headers=bearer(APPROVER))
        assert approver.status_code in (404, 409), approver.text
        replay = await c.post(f"/incidents/{incident}/replay", json={"checkpoint_id": "x"}, headers=bearer(APPROVER))
        assert replay.status_code == 403
        assert (await c.post(f"/incidents/{incident}/replay", json={"checkpoint_id": "x"},
                             headers=bearer(ADMIN))).status_code == 404  # allowed; no such checkpoint


async def test_the_approver_is_recorded_by_name_everywhere(database_url, tmp_path):
    alert = fixture("alertmanager-0.25-firing.json")
    alert["alerts"][0]["labels"] |= {"service": "web-frontend", "scenario": "deployment_regression", "seed": "1"}
    alert["alerts"][0]["startsAt"] = "2026-11-21T12:00:00Z"
    async with App(database_url, tmp_path, run_workers=True, telemetry="sim") as app, app.client() as c:
        incident = (await c.post("/alerts", json=alert, headers=bearer(INTAKE))).json()["incident_id"]
        await until(c, incident, lambda b: b["awaiting_approval"])
        hook = await c.post(f"/incidents/{incident}/approval", json={"decision": "approve"},
                            headers={"X-Webhook-API-Key": INTAKE})
        assert hook.status_code == 403  # the key in Alertmanager's configuration cannot approve a fix
        ok = await c.post(f"/incidents/{incident}/approval", json={"decision": "approve", "comment": "lgtm"},
                          headers=bearer(APPROVER))
        assert ok.status_code == 202, ok.text
        done = await until(c, incident, lambda b: b["run_status"] == "completed")
        assert done["report"]["pr"]["status"] == "created", done
        assert "alice" in done["brief"] and "webhook" not in done["brief"]
        values = (await app.app.state.graph.aget_state({"configurable": {"thread_id": incident}})).values
        assert values["approval"].by == "alice"  # what create_pr writes as Approved-by and the page shows
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT approver FROM approvals").fetchall() == [("alice",)]


@pytest.mark.parametrize("path", ["/incidents", "/incidents/inc-1/history"])
async def test_the_session_cookie_does_not_authenticate_the_json_api(database_url, tmp_path, path):
    async with App(database_url, tmp_path) as app, app.client() as c:
        signed = await sign_in(c, ADMIN)
        assert signed.status_code == 303 and signed.headers["location"] == "/"
        cookie = c.cookies.get("ic_session")
        assert cookie and ADMIN not in cookie and cookie not in KEYS  # a session id, not the key
        assert (await c.get("/")).status_code == 200  # the dashboard takes the session
        api = await c.get(path)
        assert api.status_code == 401 and api.json()["error"]["code"] == "unauthorized"
        posted = await c.post("/alerts", json=fixture("generic-seed.json"))
        assert posted.status_code == 401


async def test_every_form_needs_the_session_token_and_our_origin(database_url, tmp_path):
    async with App(database_url, tmp_path) as app, app.client() as c:
        await sign_in(c, APPROVER)
        page = await c.get("/")
        token = csrf_of(page.text)
        form = {"decision": "approve", "comment": "", "csrf_token": token}
        url = "/ui/incidents/inc-20261121-120000-abcdef/approval"
        other_port = await c.post(url, data=form, headers={"Origin": "http://test:8081"})
        assert other_port.status_code == 403 and "not sent from this dashboard" in other_port.text
        no_origin = await c.post(url, data=form)
        assert no_origin.status_code == 403
        no_token = await c.post(url, data={**form, "csrf_token": ""}, headers={"Origin": "http://test"})
        assert no_token.status_code == 403 and "token" in no_token.text
        referer_only = await c.post(url, data={**form, "csrf_token": "x" * 43},
                                    headers={"Referer": "http://test/ui/incidents/x"})
        assert referer_only.status_code == 403
        # a login form posted from elsewhere is refused too, and so is one without its token
        elsewhere = await c.post("/ui/login", data={"api_key": ADMIN, "login_token": "x"},
                                 headers={"Origin": "http://evil.test"})
        assert elsewhere.status_code == 403


async def test_sign_out_ends_the_session_for_whoever_holds_the_cookie(database_url, tmp_path):
    async with App(database_url, tmp_path) as app, app.client() as c:
        await sign_in(c, VIEWER)
        page = await c.get("/")
        assert 'id="logout"' in page.text and "victor" in page.text
        stolen = c.cookies.get("ic_session")
        forged = await c.post("/ui/logout", data={"csrf_token": "wrong"}, headers={"Origin": "http://test"})
        assert forged.status_code == 403
        out = await c.post("/ui/logout", data={"csrf_token": csrf_of(page.text)}, headers={"Origin": "http://test"})
        assert out.status_code == 303 and out.headers["location"] == "/ui/login"
        async with app.client() as thief:
            thief.cookies.set("ic_session", stolen)
            again = await thief.get("/")
            assert again.status_code == 303 and again.headers["location"] == "/ui/login"
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM dashboard_sessions").fetchone()[0] == 0


async def test_cookies_are_secure_over_https(database_url, tmp_path):
    async with App(database_url, tmp_path) as app:
        async with app.client("https://copilot.test") as c:
            signed = await sign_in(c, ADMIN)
            cookie = signed.headers["set-cookie"]
            assert "ic_session=" in cookie and "Secure" in cookie and "HttpOnly" in cookie, cookie
            assert "samesite=strict" in cookie.lower()
        async with app.client("http://test") as c:
            assert "Secure" not in (await sign_in(c, ADMIN)).headers["set-cookie"]
    public = App(database_url, tmp_path, public_url="https://copilot.example.com")
    async with public as app, app.client("http://10.0.0.1:8080") as c:  # behind a TLS proxy: the public URL decides
        form = await c.get("/ui/login")
        assert "Secure" in form.headers["set-cookie"]
        token = re.search(r'name="login_token" value="([^"]+)"', form.text).group(1)
        c.cookies.clear()  # what the browser, on https, sends back:
        signed = await c.post("/ui/login", data={"api_key": ADMIN, "login_token": token},
                              headers={"Origin": "https://copilot.example.com", "Cookie": f"ic_login={token}"})
        assert signed.status_code == 303 and "Secure" in signed.headers["set-cookie"]


async def test_failed_sign_ins_are_throttled(database_url, tmp_path):
    async with App(database_url, tmp_path, login_attempts=3) as app, app.client() as c:
        for _ in range(3):
            assert (await sign_in(c, "wrong-key-0123456789abcdef")).status_code == 401
        throttled = await sign_in(c, ADMIN)  # even the right key waits
        assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) > 0
        assert "too many failed sign-ins" in throttled.text
        assert c.cookies.get("ic_session") is None


async def test_an_intake_key_cannot_sign_in(database_url, tmp_path):
    async with App(database_url, tmp_path) as app, app.client() as c:
        r = await sign_in(c, INTAKE)
        assert r.status_code == 403 and "may only post alerts" in r.text
        assert c.cookies.get("ic_session") is None


def test_roles_come_from_the_configuration():
    settings = load_settings(env={"INCIDENT_COPILOT_API_KEYS": f"alice:approver={APPROVER},root:admin={ADMIN},"
                                  f"victor:viewer={VIEWER}", "WEBHOOK_API_KEY": INTAKE}).server_settings()
    assert settings.api_keys == {APPROVER: "alice", ADMIN: "root", VIEWER: "victor", INTAKE: "webhook"}
    assert [settings.role_of(n) for n in ("alice", "root", "victor", "webhook")] == [
        "approver", "admin", "viewer", "intake"]
    with pytest.raises(SettingsError, match="unknown role 'boss'"):
        load_settings(env={"INCIDENT_COPILOT_API_KEYS": f"alice:boss={APPROVER}"})
    with pytest.raises(SettingsError, match="webhook"):
        load_settings(env={"INCIDENT_COPILOT_API_KEYS": f"webhook:admin={APPROVER}"})


async def test_a_malformed_body_without_credentials_is_401_not_422(database_url, tmp_path):
    async with App(database_url, tmp_path) as app, app.client() as c:
        for path in ("/incidents/inc-1/approval", "/incidents/inc-1/replay"):
            r = await c.post(path, content=b"{not json", headers={"Content-Type": "application/json"})
            assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized", r.text
            authenticated = await c.post(path, content=b"{not json",
                                         headers={"Content-Type": "application/json", **bearer(ADMIN)})
            assert authenticated.status_code == 422
