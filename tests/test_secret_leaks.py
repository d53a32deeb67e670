"""100 planted secrets in logs, alerts, model answers, diffs and code: none reaches a prompt, a notification, a PR
body, a brief, a dashboard page or an API answer (asserted on what the fakes and the pages received)."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta

import httpx
from pydantic import SecretStr

from analysis.records import LogRecord
from graph.context import Context
from nodes.analyze_code import CodeVerdict
from nodes.approve import ApprovalDecision
from nodes.notify import gate_payload, opened_payload
from nodes.propose_fix import FixText
from prompts.views import code_view, fix_view
from server import create_app
from service.runs import IncidentRunner
from service.settings import ServerSettings
from sim.scenarios import build_scenario
from sim.source import sim_data
from state import (
    Brief,
    CodeFindings,
    Detection,
    FileExcerpt,
    Patch,
    PatchCheck,
    RootCause,
    TelemetrySpec,
    Window,
)
from tests.loopback import LoopbackServer, Reply
from tests.provider_fakes import FakeChatAPI, gemini_answer
from tests.secret_corpus import leaked, planted_secrets
from tools.database import open_database
from tools.llm import structured_call
from tools.notify.config import load_notify_config
from tools.notify.outbox import deliver_now
from web.render import render_brief_html, render_brief_markdown

END = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
SEED = 77  # a seed no other test uses: its cached telemetry gets the planted log lines
PLANTED = planted_secrets(100)
IN_LOGS, IN_ALERT, IN_ANSWERS, IN_CODE = PLANTED[:40], PLANTED[40:60], PLANTED[60:70], PLANTED[70:]
API_KEY = "alice-key-0123456789abcdef"
GOOGLE_KEY = "AIza" + "k" * 35  # the run's own key, given in its context


def plant_logs(service: str) -> None:
    data = sim_data("deployment_regression", SEED, END)
    start = (END - timedelta(minutes=4)).timestamp()
    data.logs.extend(LogRecord(start + i, service, f"2026-11-21T11:56:{i:02d}Z ERROR request failed: {p.text}")
                     for i, p in enumerate(IN_LOGS))
    data.logs.sort(key=lambda r: r.ts)


def script(root_service: str) -> dict:
    echo = [p.text for p in IN_ANSWERS]  # a model that repeats secrets (from its training, or a leak upstream)
    return {
        "detect": [gemini_answer({"is_incident": True, "severity": "P1", "code_regression": True,
                                  "reasons": [f"seen {echo[0]}"]})],
        "analyze_code": [gemini_answer({"summary": f"The change broke parsing ({echo[1]}).", "culprit_file": None})],
        "rca": [gemini_answer({"service": root_service, "fault_type": "deployment_regression",
                               "summary": f"Bad deploy; config had {echo[2]}", "confidence": 0.9,
                               "evidence": [echo[3]]})],
        "suggest": [gemini_answer({"suggestions": [{"kind": "rollback", "action": f"Roll back ({echo[4]})",
                                                    "risk": "low", "command": f"helm rollback shop 41 # {echo[5]}"}]})],
        "propose_fix": [gemini_answer({"title": "Revert the bad deploy",
                                       "description": f"Reverts it. Seen: {echo[6]} {echo[7]}"})],
        "brief": [gemini_answer({"summary": f"Checkout is failing. {echo[8]} {echo[9]}"})],
    }


async def test_no_planted_secret_leaves_through_any_output(database_url, tmp_path, monkeypatch):
    monkeypatch.setenv("GOOGLE_API_KEY", "test-google-key")
    monkeypatch.setenv("SLACK_URL", "placeholder")
    scenario = build_scenario("deployment_regression", SEED, END)
    plant_logs(scenario.root_service)
    alert = scenario.alert.model_copy(update={
        "alertname": f"{scenario.alert.alertname} {IN_ALERT[0].text}",
        "summary": " ".join(p.text for p in IN_ALERT[1:8]),
        "annotations": {f"note{i}": p.text for i, p in enumerate(IN_ALERT[8:16])},
        "labels": {**scenario.alert.labels, **{f"l{i}": p.text for i, p in enumerate(IN_ALERT[16:])}},
    })
    outputs: list[str] = []
    with FakeChatAPI("google", script(scenario.root_service)) as api, LoopbackServer() as sinks:
        sinks.handler = lambda r: Reply(200, "ok")
        monkeypatch.setenv("SLACK_URL", sinks.url + "/slack")
        config = tmp_path / "notify.toml"
        config.write_text(
            f'[channels.hook]\ntype = "webhook"\nurl = "{sinks.url}/hook"\n'
            '[channels.slack]\ntype = "slack"\nwebhook_url_env = "SLACK_URL"\n'
            '[[routes]]\nchannels = ["hook", "slack"]\n')
        context = Context(llm_provider="google", llm_api_key=SecretStr(GOOGLE_KEY), llm_base_url=api.url,
                          llm_backoff_seconds=0.01,
                          output_dir=str(tmp_path), notify_channels=("file",), notify_config=str(config))
        async with open_database(database_url) as db:
            runner = IncidentRunner(db, context)
            telemetry = TelemetrySpec(kind="sim", scenario="deployment_regression", seed=SEED, end=END)
            gated = await runner.start(alert, telemetry)
            assert gated.status == "awaiting_approval"
            done = await runner.resume(gated.incident_id, ApprovalDecision(decision="approve", by="sre"))
            assert done.status == "completed" and done.values["pr"].status == "created"
            assert await deliver_now(db.pool, load_notify_config(str(config))) == 4
            stored = await checkpoint_contents(db)
            app = create_app(ServerSettings(database_url=database_url, api_keys={API_KEY: "alice"},
                                            run_workers=False, output_dir=str(tmp_path)), context)
            async with app.router.lifespan_context(app), httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="http://test",
                    headers={"Authorization": f"Bearer {API_KEY}"}, cookies={"ic_session": API_KEY}) as web:
                for path in (f"/incidents/{done.incident_id}", "/incidents", f"/ui/incidents/{done.incident_id}",
                             "/", f"/incidents/{done.incident_id}/history"):
                    page = await web.get(path)
                    assert page.status_code == 200, path
                    outputs.append(page.text)
        outputs += [api.everything_received(), *(r.body.decode() for r in sinks.requests)]
    brief_dir = tmp_path / done.incident_id
    outputs += [(brief_dir / "brief.md").read_text(), (brief_dir / "brief.html").read_text()]
    branch = done.values["pr"].branch
    outputs.append(subprocess.run(["git", "-C", done.values["patch"].repo, "log", "-1", "--format=%B", branch],
                                  capture_output=True, text=True, check=True).stdout)
    assert all(api.calls(n) == 1 for n in ("detect", "analyze_code", "rca", "suggest", "propose_fix", "brief"))
    assert len(sinks.requests) == 4 and "Revert the bad deploy" in outputs[-1]
    assert "[REDACTED:" in api.everything_received()  # the planted lines did reach the model, redacted
    leaks = [(i, p.kind) for i, out in enumerate(outputs) for p in leaked(IN_LOGS + IN_ALERT + IN_ANSWERS, out)]
    assert leaks == []  # (which output, which format)
    # the LangGraph state in PostgreSQL: the alert's copy, the evidence, the model's answers and the errors are kept
    # redacted (the raw alert is the intake's record, in the incidents table); the run's API key is not kept at all
    assert len(stored) > 20 and any("[REDACTED:" in text for text in stored)
    assert [p.kind for p in leaked(IN_LOGS + IN_ALERT + IN_ANSWERS, *stored)] == []
    assert not any(GOOGLE_KEY in text for text in stored)


async def checkpoint_contents(db) -> list[str]:
    """Every checkpoint, channel value and pending write the checkpointer stored, as text (msgpack keeps strings
    as UTF-8)."""
    async with db.pool.connection() as conn:
        cur = await conn.execute("""SELECT checkpoint::text || metadata::text AS t FROM checkpoints""")
        texts = [row["t"] for row in await cur.fetchall()]
        cur = await conn.execute("""SELECT blob FROM checkpoint_blobs WHERE blob IS NOT NULL
                                    UNION ALL SELECT blob FROM checkpoint_writes""")
        return texts + [bytes(row["blob"]).decode("utf-8", "replace") for row in await cur.fetchall()]


async def test_secrets_in_diffs_and_code_reach_no_prompt_brief_or_message(tmp_path, monkeypatch):
    monkeypatch.setenv("GOOGLE_API_KEY", "test-google-key")
    added = "".join(f"+{line}\n" for p in IN_CODE[:15] for line in p.text.splitlines())
    removed = "".join(f"-{line}\n" for p in IN_CODE[15:] for line in p.text.splitlines())
    count_add, count_rm = added.count("\n"), removed.count("\n")
    diff = (f"diff --git a/app/settings.py b/app/settings.py\n--- a/app/settings.py\n+++ b/app/settings.py\n"
            f"@@ -1,{count_rm + 1} +1,{count_add + 1} @@\n import os\n{removed}{added}")
    code = CodeFindings(repo=str(tmp_path), commit="a" * 40, subject="tune settings", author="dev", diff=diff,
                        files_changed=["app/settings.py"],
                        excerpts=[FileExcerpt(path="app/settings.py", start_line=1,
                                              text="\n".join(p.text for p in IN_CODE[:10]))])
    patch = Patch(kind="revert", repo=str(tmp_path), base_commit="b" * 40, title="Revert tune settings",
                  description="\n".join(p.text for p in IN_CODE[25:]), diff=diff, files=["app/settings.py"],
                  checks=[PatchCheck(name="no_secrets", ok=False, detail="adds secrets")])
    scenario = build_scenario("deployment_regression", 1, END)
    root = RootCause(service=scenario.root_service, fault_type="deployment_regression", summary="bad deploy",
                     confidence=0.9)
    state = {"incident_id": "inc-code", "alert": scenario.alert, "detection": Detection(is_incident=True,
                                                                                         severity="P1"),
             "code": code, "patch": patch, "root_cause": root, "evidence": None, "suggestions": [],
             "window": Window(start=END - timedelta(minutes=15), end=END, baseline_start=END - timedelta(minutes=45))}
    answers = {"analyze_code": [gemini_answer({"summary": "ok", "culprit_file": None})],
               "propose_fix": [gemini_answer({"title": "Revert", "description": "ok"})]}
    with FakeChatAPI("google", answers) as api:
        context = Context(llm_provider="google", llm_base_url=api.url)
        verdict, _, error = await structured_call(context, "reasoning", CodeVerdict, "analyze_code",
                                                  evidence="{}", code=code_view(code))
        assert error is None and verdict.summary == "ok"
        text, _, error = await structured_call(context, "reasoning", FixText, "propose_fix",
                                               fix=fix_view(state, diff))
        assert error is None
        received = api.everything_received()
    from analysis.patch_checks import check_patch

    [secrets_check] = [c for c in check_patch(diff) if c.name == "no_secrets"]
    assert not secrets_check.ok
    state["brief"] = Brief(title="t", markdown=render_brief_markdown(state))
    outputs = [received, secrets_check.detail, state["brief"].markdown, render_brief_html(state),
               str(gate_payload(state)), str(opened_payload(state)), dashboard_page_at_the_gate(state)]
    assert leaked(IN_CODE, *outputs) == []


def dashboard_page_at_the_gate(state: dict) -> str:
    """The incident's dashboard page while its fix waits at the gate, built as web/dashboard.py builds it."""
    from nodes.approve import gate_words
    from state import ApprovalRequest
    from tools.redact import redact_value
    from web.dashboard import DashboardViews
    from web.render import redacted_view
    from web.view import incident_page

    question, label = gate_words(state["patch"])
    gate = ApprovalRequest(incident_id=state["incident_id"], root_cause=state["root_cause"], patch=state["patch"],
                           checks=state["patch"].checks, question=question,
                           approve_label=label).model_dump(mode="json")
    page = incident_page(redacted_view(state), status="awaiting_approval", gate=redact_value(gate))
    html = DashboardViews().env.get_template("dashboard/incident_main.html.j2").render(p=page, row=None, steps=[])
    assert "diff --git" in html and "app/settings.py" in html  # the diff is shown, its secrets are not
    return html
