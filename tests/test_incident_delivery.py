"""Incidents run on the durable runner reach people through the outbox: once, after replays, with memory."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

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
            assert await events(db, gated.incident_id) == ["awaiting_approval", "opened"]  # one each, still
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


async def events(db, incident_id: str) -> list[str]:
    async with db.pool.connection() as conn:
        cur = await conn.execute("SELECT kind FROM notification_events WHERE incident_id = %s ORDER BY id",
                                 (incident_id,))
        return [row["kind"] for row in await cur.fetchall()]


@pytest.mark.parametrize(("name", "status", "kind"), [("memory_leak", "completed", "opened"),
                                                      ("deployment_regression", "awaiting_approval",
                                                       "awaiting_approval")])
async def test_a_status_change_and_its_notice_commit_together(database_url, tmp_path, name, status, kind):
    """The notice is written in the transaction that changes the incident's status: when that change fails, no
    notice exists; when the run goes on, the change and its one notice are written."""
    with LoopbackServer() as hook:
        hook.handler = lambda r: Reply(200, {"ok": True})
        config = notify_config(tmp_path, hook.url + "/hook")
        scenario = build_scenario(name, 1, END)
        async with open_database(database_url) as db:
            async with db.pool.connection() as conn:  # the database refuses this one status change, once
                await conn.execute(
                    """CREATE FUNCTION refuse_status() RETURNS trigger AS $$ BEGIN
                         IF NEW.status = TG_ARGV[0] THEN RAISE EXCEPTION 'no space left on device'; END IF;
                         RETURN NEW; END $$ LANGUAGE plpgsql""")
                await conn.execute(f"CREATE TRIGGER refuse BEFORE UPDATE ON incidents FOR EACH ROW "
                                   f"EXECUTE FUNCTION refuse_status('{status}')")
            runner = IncidentRunner(db, context(tmp_path, config))
            telemetry = TelemetrySpec(kind="sim", scenario=name, seed=1, end=END)
            incident_id = "inc-refused-" + name
            with pytest.raises(Exception, match="no space left"):
                await runner.start(scenario.alert, telemetry, incident_id)
            assert await events(db, incident_id) == []  # not announced: the status did not change
            async with db.pool.connection() as conn:
                await conn.execute("DROP TRIGGER refuse ON incidents")
            assert (await runner.continue_run(incident_id)).status == status
            assert (await runner.continue_run(incident_id)).status == status  # run again: nothing more
            assert await events(db, incident_id) == [kind]
            assert await deliver_now(db.pool, load_notify_config(config)) == 1
        assert [r.json()["kind"] for r in hook.requests_to("/hook")] == [kind]


CRASH_IN_THE_STATUS_TRANSACTION = """
import asyncio, os, sys
from datetime import UTC, datetime

import pytest
import tools.notify.outbox as outbox
from graph.context import Context
from service.runs import IncidentRunner
from sim.scenarios import build_scenario
from state import TelemetrySpec
from tools.database import open_database
import service.incidents, nodes.notify

async def crash(conn, *args, **kwargs):  # the process dies after the status UPDATE, before the commit
    os._exit(17)

original = outbox.record_event
for module in list(sys.modules.values()):  # wherever the outbox write was imported
    if getattr(module, "record_event", None) is original:
        module.record_event = crash

async def main():
    end = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    scenario = build_scenario("memory_leak", 1, end)
    async with open_database(sys.argv[1]) as db:
        runner = IncidentRunner(db, Context(output_dir=sys.argv[2], notify_channels=(), notify_config=sys.argv[3]))
        await runner.start(scenario.alert, TelemetrySpec(kind="sim", scenario="memory_leak", seed=1, end=end),
                           "inc-crash")

asyncio.run(main())
"""


async def test_a_crash_inside_the_status_change_loses_and_repeats_no_notice(database_url, tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    with LoopbackServer() as hook:
        hook.handler = lambda r: Reply(200, {"ok": True})
        config = notify_config(tmp_path, hook.url + "/hook")
        child = subprocess.run([sys.executable, "-c", CRASH_IN_THE_STATUS_TRANSACTION, database_url, str(tmp_path),
                                config], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
        assert child.returncode == 17, child.stderr[-2000:]
        async with open_database(database_url) as db:
            async with db.pool.connection() as conn:
                row = await (await conn.execute("SELECT status FROM incidents WHERE id = 'inc-crash'")).fetchone()
            assert row["status"] == "investigating" and await events(db, "inc-crash") == []
            runner = IncidentRunner(db, context(tmp_path, config))
            assert (await runner.continue_run("inc-crash")).status == "completed"  # the recovered run
            assert await events(db, "inc-crash") == ["opened"]
            assert await deliver_now(db.pool, load_notify_config(config)) == 1
            assert (await runner.continue_run("inc-crash")).status == "completed"
            assert await deliver_now(db.pool, load_notify_config(config)) == 0
        assert [r.json()["kind"] for r in hook.requests_to("/hook")] == ["opened"]


async def test_a_resolved_alert_and_its_notice_commit_together(database_url):
    """The intake's statement that resolves an incident writes its "resolved" event (a trigger, same transaction):
    when the statement fails, neither exists; a repeat of the resolved alert adds nothing."""
    from service.intake import accept_alerts

    firing = build_scenario("memory_leak", 1, END).alert
    resolved = firing.model_copy(update={"status": "resolved"})
    telemetry = TelemetrySpec(kind="sim", scenario="memory_leak", seed=1, end=END)

    async def send(alert):
        async with db.pool.connection() as conn:
            [accepted] = await accept_alerts(conn, "/alerts", "generic", {}, [(alert, telemetry)], lambda: "inc-r")
        return accepted.status

    async with open_database(database_url) as db:
        assert await send(firing) == "queued"
        async with db.pool.connection() as conn:  # storing the resolved alert fails, after the incident's UPDATE
            await conn.execute("""CREATE FUNCTION refuse_alert() RETURNS trigger AS $$ BEGIN
                                    RAISE EXCEPTION 'no space left on device'; END $$ LANGUAGE plpgsql""")
            await conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON alerts FOR EACH ROW "
                               "EXECUTE FUNCTION refuse_alert()")
        with pytest.raises(Exception, match="no space left"):
            await send(resolved)
        assert await events(db, "inc-r") == []
        async with db.pool.connection() as conn:
            await conn.execute("DROP TRIGGER refuse ON alerts")
            assert (await (await conn.execute("SELECT resolved_at FROM incidents")).fetchone())["resolved_at"] is None
        assert await send(resolved) == "resolved"
        assert await send(resolved) == "no_open_incident"
        assert await events(db, "inc-r") == ["resolved"]
