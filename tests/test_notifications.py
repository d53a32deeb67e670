"""Notifications through the Postgres outbox: every sink on its real wire, retries, replays and crashes."""

from __future__ import annotations

import base64
import datetime as dt
import email
import hashlib
import hmac
import ipaddress
import json
import re
import ssl
from collections.abc import AsyncIterator
from email import policy

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from graph.context import ConfigError
from tests.loopback import LoopbackServer, Reply
from tools.database import open_database
from tools.net import free_port
from tools.notify.config import parse_notify_config
from tools.notify.outbox import OutboxDispatcher, record_event

END = dt.datetime(2026, 11, 21, 12, 0, tzinfo=dt.UTC)
SMTP_USER, SMTP_PASSWORD = "copilot", "smtp-secret-pw-1"


def opened(service: str = "checkout", severity: str = "P1", incident: str = "inc-1") -> dict:
    return {"service": service, "severity": severity, "subject": f"[{severity}] {service} is down ({incident})",
            "text": "Root cause: db connection exhaustion in payments-db-proxy.",
            "html": "<h1>checkout is down</h1>", "incident": {"incident_id": incident, "service": service}}


@pytest.fixture
async def db(database_url) -> AsyncIterator:
    async with open_database(database_url) as database:
        yield database


async def queue(db, incident: str, kind: str = "opened", **payload) -> bool:
    async with db.pool.connection() as conn:
        return await record_event(conn, incident, kind, {**opened(incident=incident), **payload})


def dispatcher(db, channels: dict, routes: list | None = None, **kwargs) -> OutboxDispatcher:
    config = parse_notify_config({"public_url": "https://copilot.example", "channels": channels,
                                  "routes": routes or [{"channels": list(channels)}]})
    return OutboxDispatcher(db.pool, config, base_delay=0.0, **kwargs)


async def outbox(db) -> list[dict]:
    async with db.pool.connection() as conn:
        cur = await conn.execute("SELECT * FROM notification_outbox ORDER BY id")
        return await cur.fetchall()


# --- SMTP: a real server in the test, with STARTTLS and AUTH ----------------------------------------------------


def self_signed(tmp_path) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "smtp.pem", tmp_path / "smtp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


class Mailbox:
    """aiosmtpd handler keeping every message and the login used."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.logins: list[str] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's naming)
        self.messages.append(email.message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"


def smtp_server(tmp_path, mailbox: Mailbox, port: int) -> Controller:
    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = auth_data.login == SMTP_USER.encode() and auth_data.password == SMTP_PASSWORD.encode()
        if ok:
            mailbox.logins.append(auth_data.login.decode())
        return AuthResult(success=ok, handled=False)

    return Controller(mailbox, hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True,
                      auth_required=True, authenticator=authenticate)


def smtp_channel(tmp_path, port: int) -> dict:
    return {"type": "smtp", "host": "127.0.0.1", "port": port, "security": "starttls", "username": SMTP_USER,
            "password_env": "TEST_SMTP_PASSWORD", "from": "Incident CoPilot <copilot@example.com>",
            "to": ["oncall@example.com"], "ca_file": str(tmp_path / "smtp.pem"), "timeout": 5}


async def test_email_over_smtp_with_starttls_and_auth_after_the_server_comes_up(db, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_SMTP_PASSWORD", SMTP_PASSWORD)
    port, mailbox = free_port(), Mailbox()
    d = dispatcher(db, {"mail": smtp_channel(tmp_path, port)})
    await queue(db, "inc-mail")
    for _ in range(3):  # nothing listens yet: the message waits, nothing is lost
        assert await d.run_once() == 0
    [row] = await outbox(db)
    assert (row["status"], row["attempts"]) == ("pending", 3) and "unreachable" in row["last_error"]
    server = smtp_server(tmp_path, mailbox, port)
    server.start()
    try:
        assert await d.run_once() == 1
        assert await d.run_once() == 0
    finally:
        server.stop()
    [msg] = mailbox.messages
    assert mailbox.logins == [SMTP_USER]
    assert msg["Subject"] == "[P1] checkout is down (inc-mail)" and msg["To"] == "oncall@example.com"
    assert msg["Message-ID"] == "<" + hashlib.sha256(b"inc-mail/mail/opened").hexdigest()[:32] + "@incident-copilot>"
    assert msg.get_body("plain").get_content().startswith("Root cause: db connection exhaustion")
    assert "<h1>checkout is down</h1>" in msg.get_body("html").get_content()
    assert "https://copilot.example/ui/incidents/inc-mail" not in str(msg)  # email carries the brief, not a button
    [row] = await outbox(db)
    assert (row["status"], row["attempts"]) == ("sent", 4)


async def test_smtp_refuses_bad_credentials_without_retrying(db, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "wrong")
    port, mailbox = free_port(), Mailbox()
    server = smtp_server(tmp_path, mailbox, port)
    server.start()
    try:
        d = dispatcher(db, {"mail": smtp_channel(tmp_path, port)})
        await queue(db, "inc-badauth")
        assert await d.run_once() == 0
    finally:
        server.stop()
    [row] = await outbox(db)
    assert row["status"] == "failed" and "authentication refused (535)" in row["last_error"]
    assert mailbox.messages == []


# --- HTTP sinks against loopback servers with their real shapes ---------------------------------------------------


async def test_gmail_refreshes_its_token_and_sends_the_raw_email(db, monkeypatch):
    for name, value in (("G_ID", "client-id"), ("G_SECRET", "client-secret"), ("G_REFRESH", "1//refresh")):
        monkeypatch.setenv(name, value)
    with LoopbackServer() as google:
        google.script("/token", Reply(200, {"access_token": "ya29.first", "expires_in": 3599, "token_type": "Bearer",
                                            "scope": "https://www.googleapis.com/auth/gmail.send"}),
                      Reply(200, {"access_token": "ya29.second", "expires_in": 3599, "token_type": "Bearer"}))
        send = "/gmail/v1/users/me/messages/send"
        google.script(send, Reply(401, {"error": {"code": 401, "status": "UNAUTHENTICATED",
                                                  "message": "Request had invalid authentication credentials."}}),
                      Reply(200, {"id": "18c1f0a", "threadId": "18c1f0a", "labelIds": ["SENT"]}))
        d = dispatcher(db, {"gmail": {"type": "gmail", "from": "copilot@example.com", "to": ["oncall@example.com"],
                                      "client_id_env": "G_ID", "client_secret_env": "G_SECRET",
                                      "refresh_token_env": "G_REFRESH", "token_url": google.url + "/token",
                                      "api_url": google.url}})
        await queue(db, "inc-gmail")
        assert await d.run_once() == 0  # the token was revoked meanwhile: 401, dropped, retried
        assert await d.run_once() == 1
        token_requests = google.requests_to("/token")
        sends = google.requests_to(send)
    assert [r.headers["authorization"] for r in sends] == ["Bearer ya29.first", "Bearer ya29.second"]
    form = dict(pair.split("=") for pair in token_requests[0].body.decode().split("&"))
    assert form["grant_type"] == "refresh_token" and form["client_id"] == "client-id"
    raw = email.message_from_bytes(base64.urlsafe_b64decode(sends[1].json()["raw"]), policy=policy.default)
    assert raw["To"] == "oncall@example.com" and raw["Message-ID"].endswith("@incident-copilot>")
    assert raw.get_body("html") is not None and raw.get_body("plain") is not None


async def test_gmail_invalid_grant_is_a_configuration_error(db, monkeypatch):
    for name in ("G_ID2", "G_SECRET2", "G_REFRESH2"):
        monkeypatch.setenv(name, "x")
    with LoopbackServer() as google:
        google.script("/token", Reply(400, {"error": "invalid_grant",
                                            "error_description": "Token has been expired or revoked."}))
        d = dispatcher(db, {"gmail2": {"type": "gmail", "from": "a@example.com", "to": ["b@example.com"],
                                       "client_id_env": "G_ID2", "client_secret_env": "G_SECRET2",
                                       "refresh_token_env": "G_REFRESH2", "token_url": google.url + "/token",
                                       "api_url": google.url}})
        await queue(db, "inc-grant")
        await d.run_once()
    [row] = await outbox(db)
    assert row["status"] == "failed" and "invalid_grant" in row["last_error"]


async def test_slack_block_kit_with_rate_limit_and_a_link_to_the_gate(db, monkeypatch):
    with LoopbackServer() as slack:
        monkeypatch.setenv("SLACK_URL", slack.url + "/services/T000/B000/XXXX")
        path = "/services/T000/B000/XXXX"
        slack.script(path, Reply(429, "rate_limited", {"Retry-After": "0"}), Reply(200, "ok"))
        d = dispatcher(db, {"slack": {"type": "slack", "webhook_url_env": "SLACK_URL"}})
        await queue(db, "inc-slack", "awaiting_approval", anchor="#gate",
                    subject="[P1] Approval needed: Revert <!channel> & co (inc-slack)")
        assert await d.run_once() == 0 and await d.run_once() == 1
        body = slack.requests_to(path)[1].json()
    assert body["text"].startswith("[P1] Approval needed")
    types = [b["type"] for b in body["blocks"]]
    assert types[0] == "header" and "actions" in types
    button = body["blocks"][-1]["elements"][0]
    assert button["url"] == "https://copilot.example/ui/incidents/inc-slack#gate"
    assert button["text"]["text"] == "Review and approve"


async def test_slack_no_service_is_not_retried(db, monkeypatch):
    with LoopbackServer() as slack:
        monkeypatch.setenv("SLACK_URL2", slack.url + "/services/gone")
        slack.script("/services/gone", Reply(404, "no_service"))
        d = dispatcher(db, {"slack": {"type": "slack", "webhook_url_env": "SLACK_URL2"}})
        await queue(db, "inc-slack2")
        await d.run_once()
        await d.run_once()
        assert len(slack.requests) == 1
    [row] = await outbox(db)
    assert row["status"] == "failed" and "404: no_service" in row["last_error"]


async def test_pagerduty_triggers_then_resolves_the_same_alert(db, monkeypatch):
    from service.incidents import create_incident
    from sim.scenarios import build_scenario
    from state import TelemetrySpec

    monkeypatch.setenv("PD_KEY", "R0123456789abcdef0123456789abcd")
    alert = build_scenario("disk_full", 1, dt.datetime(2026, 11, 21, 12, tzinfo=dt.UTC)).alert
    await create_incident(db.pool, "inc-pd", alert, TelemetrySpec(kind="live"))
    with LoopbackServer() as pd:
        pd.handler = lambda r: Reply(202, {"status": "success", "message": "Event processed",
                                           "dedup_key": r.json()["dedup_key"]})
        d = dispatcher(db, {"pd": {"type": "pagerduty", "routing_key_env": "PD_KEY", "url": pd.url + "/v2/enqueue"}})
        await queue(db, "inc-pd", service=alert.service)
        assert await d.run_once() == 1
        async with db.pool.connection() as conn:  # the intake marks it resolved: the trigger writes the event
            await conn.execute("UPDATE incidents SET resolved_at = now(), resolved_by = 'source:alertmanager' "
                               "WHERE id = 'inc-pd'")
        assert await d.run_once() == 1
        trigger, resolve = (r.json() for r in pd.requests_to("/v2/enqueue"))
    assert trigger["event_action"] == "trigger" and resolve["event_action"] == "resolve"
    assert trigger["dedup_key"] == resolve["dedup_key"] == "incident-copilot/inc-pd"
    assert trigger["payload"]["severity"] == "critical" and trigger["payload"]["source"] == alert.service
    assert trigger["links"][0]["href"] == "https://copilot.example/ui/incidents/inc-pd"


async def test_pagerduty_invalid_event_is_not_retried(db, monkeypatch):
    monkeypatch.setenv("PD_KEY2", "short")
    with LoopbackServer() as pd:
        pd.handler = lambda r: Reply(400, {"status": "invalid event", "message": "Event object is invalid",
                                           "errors": ["Length of 'routing_key' is incorrect (should be 32)"]})
        d = dispatcher(db, {"pd": {"type": "pagerduty", "routing_key_env": "PD_KEY2", "url": pd.url + "/v2/enqueue"}})
        await queue(db, "inc-pd2")
        await d.run_once()
    [row] = await outbox(db)
    assert row["status"] == "failed" and "invalid event" in row["last_error"]


async def test_webhook_down_for_three_attempts_then_up_delivers_once(db, monkeypatch):
    monkeypatch.setenv("HOOK_SECRET", "hook-signing-secret")
    with LoopbackServer() as hook:
        hook.script("/hook", *[Reply(503, {"error": "unavailable"})] * 3, Reply(200, {"ok": True}))
        d = dispatcher(db, {"hook": {"type": "webhook", "url": hook.url + "/hook", "secret_env": "HOOK_SECRET"}})
        await queue(db, "inc-hook")
        sent = [await d.run_once() for _ in range(6)]
        requests = hook.requests_to("/hook")
    assert sent == [0, 0, 0, 1, 0, 0] and len(requests) == 4
    assert {r.headers["idempotency-key"] for r in requests} == {"inc-hook/hook/opened"}
    signature = hmac.new(b"hook-signing-secret", requests[-1].body, hashlib.sha256).hexdigest()
    assert requests[-1].headers["x-incident-copilot-signature"] == f"sha256={signature}"
    assert requests[-1].json()["incident"] == {"incident_id": "inc-hook", "service": "checkout"}
    [row] = await outbox(db)
    assert (row["status"], row["attempts"]) == ("sent", 4)


async def test_a_crash_between_send_and_commit_resends_once_with_the_same_key(db):
    class Crash(BaseException):
        """The process dies."""

    with LoopbackServer() as hook:
        hook.handler = lambda r: Reply(200, {"ok": True})
        channels = {"hook": {"type": "webhook", "url": hook.url + "/hook"}}
        first = dispatcher(db, channels, lease_seconds=60)

        async def die(message_id: int) -> None:
            raise Crash

        first._mark_sent = die
        await queue(db, "inc-crash")
        with pytest.raises(Crash):
            await first.run_once()
        second = dispatcher(db, channels, lease_seconds=60)
        assert await second.run_once() == 0  # the lease still holds: nobody sends it twice at once
        async with db.pool.connection() as conn:  # a minute later: the dead process's lease has run out
            await conn.execute("UPDATE notification_outbox SET locked_until = now() - interval '1 second'")
        assert await second.run_once() == 1
        assert await second.run_once() == 0
        keys = [r.headers["idempotency-key"] for r in hook.requests_to("/hook")]
    assert keys == ["inc-crash/hook/opened", "inc-crash/hook/opened"]


async def test_one_message_per_incident_channel_and_kind(db, monkeypatch):
    with LoopbackServer() as hook:
        hook.handler = lambda r: Reply(204, b"")
        channels = {"a": {"type": "webhook", "url": hook.url + "/a"}, "b": {"type": "webhook", "url": hook.url + "/b"}}
        routes = [{"channels": ["a"]}, {"channels": ["a", "b"], "severities": ["P1"]},
                  {"channels": ["b"], "services": ["payments*"], "kinds": ["resolved"]}]
        d = dispatcher(db, channels, routes)
        assert await queue(db, "inc-p1") is True
        assert await queue(db, "inc-p1") is False  # a re-run or a replay of the node: nothing new
        await queue(db, "inc-p3", severity="P3")
        assert await d.run_once() == 3
        assert await d.run_once() == 0
    rows = await outbox(db)
    assert sorted((r["incident_id"], r["channel"]) for r in rows) == [("inc-p1", "a"), ("inc-p1", "b"),
                                                                       ("inc-p3", "a")]


def test_notification_settings_refuse_what_cannot_work():
    for data, message in [
        ({"channels": {"x": {"type": "fax"}}}, "type must be one of"),
        ({"channels": {"x": {"type": "slack"}}}, "missing \\['webhook_url_env'\\]"),
        ({"channels": {"x": {"type": "slack", "webhook_url": "https://h/x"}}}, "unknown \\[.webhook_url."),
        ({"channels": {}, "routes": [{"channels": ["nope"]}]}, "naming configured channels"),
        ({"channels": {"x": {"type": "webhook", "url": "http://h"}}, "routes": [{"channels": ["x"], "kinds": ["x"]}]},
         "kinds must be among"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse_notify_config(data)


async def test_metrics_show_tokens_per_node_and_the_outbox(db):
    from service.metrics import ServerMetrics
    from state import TokenUsage

    with LoopbackServer() as hook:
        hook.handler = lambda r: Reply(500, {"error": "down"})
        await queue(db, "inc-metrics")
        await dispatcher(db, {"hook": {"type": "webhook", "url": hook.url + "/hook"}}).run_once()
    metrics = ServerMetrics()
    metrics.node_finished("rca", {"tokens": {"rca": TokenUsage(input=812, output=64, calls=1)}}, 0.5)
    text = (await metrics.render(db.pool))[0].decode()
    assert 'incident_copilot_llm_tokens_total{direction="input",node="rca"} 812.0' in text
    assert 'incident_copilot_notifications{status="pending"} 1.0' in text


# --- the brief by email: its charts as inline PNG images a mail client shows ------------------------------------


def assert_brief_mail_with_charts(msg: email.message.EmailMessage) -> list[str]:
    """multipart/alternative: plain text, then multipart/related (the HTML and its PNG charts by Content-ID);
    returns the Content-IDs."""
    assert msg.get_content_type() == "multipart/alternative"
    plain, related = msg.get_payload()
    assert plain.get_content_type() == "text/plain" and "Root cause" in plain.get_content()
    assert related.get_content_type() == "multipart/related"
    html_part, *images = related.get_payload()
    assert html_part.get_content_type() == "text/html" and related.get_param("type") == "text/html"
    html = html_part.get_content()
    cids = re.findall(r'<img src="cid:([^"]+)"', html)
    assert cids and "<svg" not in html
    assert sorted(cids) == sorted(part["Content-ID"].strip("<>") for part in images)
    for part in images:
        assert part.get_content_type() == "image/png" and part.get_content_disposition() == "inline"
        assert part.get_content().startswith(b"\x89PNG\r\n\x1a\n")
    return cids


async def test_the_brief_by_email_shows_its_charts_as_inline_images(database_url, tmp_path, monkeypatch):
    from graph.context import Context
    from service.runs import IncidentRunner
    from sim.scenarios import build_scenario
    from state import TelemetrySpec
    from tools.notify.config import load_notify_config
    from tools.notify.outbox import deliver_now

    monkeypatch.setenv("TEST_SMTP_PASSWORD", SMTP_PASSWORD)
    for name, value in (("G_ID3", "client-id"), ("G_SECRET3", "client-secret"), ("G_REFRESH3", "1//refresh")):
        monkeypatch.setenv(name, value)
    port, mailbox = free_port(), Mailbox()
    server = smtp_server(tmp_path, mailbox, port)
    channel = smtp_channel(tmp_path, port)
    with LoopbackServer() as google:
        google.handler = lambda r: (Reply(200, {"access_token": "ya29.t", "expires_in": 3599}) if r.path == "/token"
                                    else Reply(200, {"id": "1", "threadId": "1", "labelIds": ["SENT"]}))
        config = tmp_path / "notify.toml"
        config.write_text(
            "[channels.mail]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in channel.items())
            + f'[channels.gmail]\ntype = "gmail"\nfrom = "copilot@example.com"\nto = ["oncall@example.com"]\n'
            f'client_id_env = "G_ID3"\nclient_secret_env = "G_SECRET3"\nrefresh_token_env = "G_REFRESH3"\n'
            f'token_url = "{google.url}/token"\napi_url = "{google.url}"\n'
            '[[routes]]\nchannels = ["mail", "gmail"]\n')
        scenario = build_scenario("memory_leak", 1, END)
        context = Context(output_dir=str(tmp_path), notify_channels=(), notify_config=str(config))
        server.start()
        try:
            async with open_database(database_url) as database:
                result = await IncidentRunner(database, context).start(
                    scenario.alert, TelemetrySpec(kind="sim", scenario="memory_leak", seed=1, end=END))
                assert result.status == "completed"
                assert await deliver_now(database.pool, load_notify_config(str(config))) == 2
        finally:
            server.stop()
        [send] = google.requests_to("/gmail/v1/users/me/messages/send")
    [msg] = mailbox.messages
    cids = assert_brief_mail_with_charts(msg)
    assert len(cids) >= 2  # a memory leak shows its memory chart and more
    raw = email.message_from_bytes(base64.urlsafe_b64decode(send.json()["raw"]), policy=policy.default)
    assert assert_brief_mail_with_charts(raw) == cids


async def test_channel_secrets_come_from_the_configuration_and_a_missing_one_refuses_to_start(db, tmp_path,
                                                                                             monkeypatch):
    from service.settings import load_settings

    monkeypatch.delenv("TEST_SMTP_PASSWORD", raising=False)  # only .env has it: the sink must be given it
    port, mailbox = free_port(), Mailbox()
    channel = smtp_channel(tmp_path, port)
    config = tmp_path / "notify.toml"
    config.write_text("[channels.mail]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in channel.items())
                      + '[[routes]]\nchannels = ["mail"]\n')
    dotenv = tmp_path / ".env"
    dotenv.write_text(f"NOTIFY_CONFIG={config}\n")
    with pytest.raises(ConfigError, match="channel mail: TEST_SMTP_PASSWORD is not set"):
        load_settings(None, {}, dotenv=dotenv).run_context()
    dotenv.write_text(f"NOTIFY_CONFIG={config}\nTEST_SMTP_PASSWORD={SMTP_PASSWORD}\n")
    context = load_settings(None, {}, dotenv=dotenv).run_context()
    assert SMTP_PASSWORD not in repr(context)
    server = smtp_server(tmp_path, mailbox, port)
    server.start()
    try:
        await queue(db, "inc-dotenv")
        assert await OutboxDispatcher(db.pool, context.notifications, base_delay=0.0).run_once() == 1
    finally:
        server.stop()
    assert mailbox.logins == [SMTP_USER] and len(mailbox.messages) == 1
