"""Whole incidents through the graph on a real PostgreSQL: every scenario, the gate, history and replay."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime

import pytest

from graph.context import Context
from graph.summary import incident_report
from nodes.approve import ApprovalDecision
from nodes.create_pr import branch_name
from service.runs import IncidentRunner, RunError
from sim.scenarios import SCENARIOS, build_scenario
from state import TelemetrySpec
from tools.database import open_database

END = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def case(name: str, seed: int):
    scenario = build_scenario(name, seed, END)
    return scenario, TelemetrySpec(kind="sim", scenario=name, seed=seed, end=END)


def branches(repo: str) -> list[str]:
    out = subprocess.run(["git", "-C", repo, "branch", "--list", "--format=%(refname:short)"],
                         capture_output=True, text=True, check=True)
    return out.stdout.split()


@pytest.mark.parametrize("name", SCENARIOS)
@pytest.mark.parametrize("seed", [3, 7])
async def test_every_scenario_names_its_root_cause(module_database_url, tmp_path, name, seed):
    scenario, telemetry = case(name, seed)
    context = Context(output_dir=str(tmp_path), notify_channels=("file",))
    async with open_database(module_database_url) as db:
        result = await IncidentRunner(db, context).start(scenario.alert, telemetry)
    report = incident_report(result.values)
    if scenario.fault_type == "none":
        assert report["is_incident"] is False
        assert result.status == "not_an_incident"
        assert report["root_cause"]["fault_type"] == "none"
    else:
        assert report["is_incident"] is True
        assert (report["root_cause"]["service"], report["root_cause"]["fault_type"]) == (
            scenario.root_service, scenario.fault_type)
        assert report["hypotheses"][0]["service"] == report["root_cause"]["service"]
    if name == "deployment_regression":
        assert result.status == "awaiting_approval"
        assert report["code_regression"] is True
        assert report["patch"]["tests_before"] == "fail" and report["patch"]["tests_after"] == "pass"
        assert report["pr"] is None
    else:
        assert result.status in ("completed", "not_an_incident")
        assert (tmp_path / result.incident_id / "brief.html").exists()
    assert report["errors"] == []


async def test_rejected_approval_opens_no_branch(database_url, tmp_path):
    scenario, telemetry = case("deployment_regression", 1)
    context = Context(output_dir=str(tmp_path))
    async with open_database(database_url) as db:
        runner = IncidentRunner(db, context)
        waiting = await runner.start(scenario.alert, telemetry)
        assert waiting.status == "awaiting_approval"
        assert waiting.interrupt["patch"]["reverts"] == waiting.values["detection"].suspect_commit
        repo = waiting.values["patch"].repo
        done = await runner.resume(waiting.incident_id, ApprovalDecision(decision="reject", by="alice", comment="no"))
        assert done.status == "completed"
        assert done.values["approval"].decision == "reject"
        assert done.values.get("pr") is None
        assert branch_name(waiting.incident_id) not in branches(repo)
        assert "Not opened: rejected by alice" in done.values["brief"].markdown
        with pytest.raises(RunError, match="not waiting for approval"):
            await runner.resume(waiting.incident_id, ApprovalDecision(decision="approve", by="bob"))
        async with db.pool.connection() as conn:
            rows = await (await conn.execute("SELECT decision, approver FROM approvals")).fetchall()
        assert rows == [{"decision": "reject", "approver": "alice"}]


async def test_approved_fix_creates_one_branch_and_history_and_replay(database_url, tmp_path):
    scenario, telemetry = case("deployment_regression", 2)
    context = Context(output_dir=str(tmp_path))
    async with open_database(database_url) as db:
        runner = IncidentRunner(db, context)
        waiting = await runner.start(scenario.alert, telemetry)
        done = await runner.resume(waiting.incident_id, ApprovalDecision(decision="approve", by="alice"))
        assert done.status == "completed"
        pr = done.values["pr"]
        assert pr.status == "created" and pr.branch == branch_name(waiting.incident_id)
        repo = done.values["patch"].repo
        assert pr.branch in branches(repo)

        history = await runner.history(waiting.incident_id)
        ran = [name for entry in history for name in entry.ran]
        for node in ("ingest", "collect", "logs", "metrics", "traces", "deploys", "correlate", "detect",
                     "analyze_code", "fan_out", "rca", "suggest", "join", "propose_fix", "check_patch", "approve",
                     "create_pr", "brief", "notify"):
            assert node in ran, node
        steps = [e.step for e in history]
        assert steps == sorted(steps)

        # replay from the checkpoint taken before rca/suggest: the rest of the graph runs again
        before_branches = next(e for e in history if set(e.next) == {"rca", "suggest"})
        replayed = await runner.replay(waiting.incident_id, before_branches.checkpoint_id)
        assert replayed.values["root_cause"] == done.values["root_cause"]
        after = await runner.history(waiting.incident_id)
        assert len(after) > len(history)
        # the forked run proposes the same patch: the approval already given stands (the gate is not asked
        # again), and create_pr finds the branch it already made: no second branch or commit
        assert replayed.status == "completed" and replayed.values["approval"].by == "alice"
        assert replayed.values["pr"].status == "exists"
        assert branches(repo).count(pr.branch) == 1
        with pytest.raises(RunError):
            await runner.replay(waiting.incident_id, "1f0-no-such-checkpoint")
