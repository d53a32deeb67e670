"""Incidents run on the durable runner reach people through the outbox: once, after replays, with memory."""

from __future__ import annotations

from datetime import UTC, datetime

from service.runs import IncidentRunner
from sim.scenarios import build_scenario
from state import TelemetrySpec
from tests.loopback import LoopbackServer, Reply
from tools.database import open_database
from tools.notify.config import load_notify_config
from tools.notify.outbox import deliver_now

END = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def notify_config(tmp_path, hook_url: str) -> str:
    path = tmp_path / "notify.toml"
    path.write_text(f'public_url = "https://copilot.example"\n[channels.hook]\ntype = "webhook"\nurl = "{hook_url}"\n'
                    '[[routes]]\nchannels = ["hook"]\n')
    return str(path)


def context(tmp_path, config: str, **overrides):
    from graph.context import Context

    return Context(output_dir=str(tmp_path), notify_channels=(), notify_config=config, **overrides)


async def test_gate_then_brief_each_notified_once_and_a_replay_sends_nothing(database_url, tmp_path):
    with LoopbackServer() as hook:
        hook.handler = lambda r: Reply(200, {"ok": True})
        config = notify_config(tmp_path, hook.url + "/hook")
        scenario = build_scenario("deployment_regression", 1, END)
        async with open_database(database_url) as db:
            runner = IncidentRunner(db, context(tmp_path, config))
            telemetry = TelemetrySpec(kind="sim", scenario="deployment_regression", seed=1, end=END)
            gated = await runner.start(scenario.alert, telemetry)
            assert gated.status == "awaiting_approval"
            assert await deliver_now(db.pool, load_notify_config(config)) == 1
            from nodes.approve import ApprovalDecision

            done = await runner.resume(gated.incident_id, ApprovalDecision(decision="approve", by="sre"))
            assert done.status == "completed"
            assert await deliver_now(db.pool, load_notify_config(config)) == 1
            history = await runner.history(gated.incident_id)
            before_brief = next(e for e in history if e.next == ["brief"])
            replayed = await runner.replay(gated.incident_id, before_brief.checkpoint_id)
            assert replayed.status == "completed"
            assert any(n.channel == "outbox" and n.detail == "already queued" for n in replayed.values["notifications"])
            assert await deliver_now(db.pool, load_notify_config(config)) == 0
        bodies = [r.json() for r in hook.requests_to("/hook")]
    assert [b["kind"] for b in bodies] == ["awaiting_approval", "opened"]
    assert bodies[0]["link"] == f"https://copilot.example/ui/incidents/{gated.incident_id}#gate"
    assert bodies[1]["incident"]["root_cause"]["service"] == scenario.root_service
    assert bodies[1]["incident"]["pr"]["status"] == "created"


async def test_a_false_alarm_notifies_nobody(database_url, tmp_path):
    with LoopbackServer() as hook:
        config = notify_config(tmp_path, hook.url + "/hook")
        scenario = build_scenario("false_alarm", 1, END)
        async with open_database(database_url) as db:
            result = await IncidentRunner(db, context(tmp_path, config)).start(
                scenario.alert, TelemetrySpec(kind="sim", scenario="false_alarm", seed=1, end=END))
            assert result.status == "not_an_incident"
            assert await deliver_now(db.pool, load_notify_config(config)) == 0
        assert hook.requests == []


async def test_the_brief_links_similar_past_incidents_with_what_fixed_them(database_url, tmp_path):
    async with open_database(database_url) as db:
        runner = IncidentRunner(db, context(tmp_path, None, require_approval=False))
        results = []
        for seed in (1, 2):
            scenario = build_scenario("deployment_regression", seed, END)
            results.append(await runner.start(
                scenario.alert, TelemetrySpec(kind="sim", scenario="deployment_regression", seed=seed, end=END)))
        other = build_scenario("disk_full", 1, END)
        unrelated = await runner.start(other.alert, TelemetrySpec(kind="sim", scenario="disk_full", seed=1, end=END))
    first, second = results
    [past] = second.values["similar_incidents"]
    assert past.incident_id == first.incident_id and past.fault_type == "deployment_regression"
    assert past.fix.startswith("pull request incident-copilot/") or past.fix.startswith("proposed fix")
    markdown = second.values["brief"].markdown
    assert "## Similar past incidents" in markdown and first.incident_id in markdown
    assert first.values.get("similar_incidents") == []
    assert unrelated.values.get("similar_incidents") == []
