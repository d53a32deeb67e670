"""The code path end to end on live telemetry: a real Prometheus (promtool backfill) whose app_build_info carries
the revision, the Loki API, a real git repository with the bad commit, its tests run in the sandbox, and the
pull request on the loopback GitHub.

The telemetry is the simulated deployment regression recorded as the wire eval records it; the service exports
app_build_info{service, version, revision} as services following the build-info convention do (the revision of a
version is its release tag's commit in the repository).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from evals.wire import Backends, create_blocks, serve_prometheus
from graph.context import Context
from nodes.approve import ApprovalDecision
from service.runs import IncidentRunner
from sim.export import openmetrics
from sim.history import HistoryServer, LogHistory
from sim.sample_repo import SAMPLE_TEST_COMMAND, ensure_sample_repo
from sim.scenarios import build_scenario
from sim.source import sim_data
from state import TelemetrySpec
from tests.github_loopback import GitHubLoopback
from tools.database import open_database
from tools.sandbox import sandbox_problem
from web.render import render_brief_markdown
from web.view import incident_page

END = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
SEED = 1
TOKEN = "ghp_loopback_e2e"
BUILD_INFO = re.compile(r'^app_build_info\{service="([^"]+)",version="([^"]+)"\}')


def _require_backends() -> None:
    missing = [tool for tool in ("promtool", "prometheus") if not shutil.which(tool)]
    problem = sandbox_problem()
    if missing or problem:
        why = f"missing {', '.join(missing)}" if missing else f"no sandbox: {problem}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{why} (scripts/install-system-deps.sh installs them)")
        pytest.skip(why)


def tag_commits(repo: Path) -> dict[str, str]:
    """service-vX.Y.Z tag -> commit sha."""
    out = subprocess.run(["git", "-C", str(repo), "show-ref", "--tags", "-d"], capture_output=True, text=True,
                         check=True).stdout
    tags = {}
    for line in out.splitlines():
        sha, ref = line.split()
        name = ref.removeprefix("refs/tags/")
        if name.endswith("^{}") or name not in tags:
            tags[name.removesuffix("^{}")] = sha
    return tags


def with_revisions(lines, commits: dict[str, str]):
    """OpenMetrics lines with a revision label on app_build_info wherever the version's commit is known."""
    for line in lines:
        m = BUILD_INFO.match(line)
        sha = commits.get(f"{m.group(1)}-v{m.group(2)}") if m else None
        yield line.replace(f'version="{m.group(2)}"}}', f'version="{m.group(2)}",revision="{sha}"}}') if sha else line


@pytest.fixture(scope="module")
def live_stack(tmp_path_factory):
    """Prometheus and the Loki API serving the regression, the repository, and the loopback GitHub."""
    _require_backends()
    work = tmp_path_factory.mktemp("live-code")
    scenario = build_scenario("deployment_regression", SEED, END)
    root = scenario.root_service
    repo = ensure_sample_repo(root, work / "repos")
    data = sim_data("deployment_regression", SEED, END)
    history = work / "history.om"
    history.write_text("\n".join(with_revisions(openmetrics(data), tag_commits(repo.path))) + "\n")
    assert 'revision="' in history.read_text()
    create_blocks(history, work / "tsdb", timedelta(hours=2))
    logs = LogHistory()
    logs.add(data.logs)
    with (
        serve_prometheus(work / "tsdb", work) as prometheus_url,
        HistoryServer(logs) as loki,
        GitHubLoopback(token=TOKEN) as github,
    ):
        github.add_repository("acme/shop", repo.path)
        yield {"scenario": scenario, "repo": repo, "github": github, "work": work,
               "backends": Backends(prometheus_url, loki.loki_url, None)}


def live_context(stack, output: Path) -> Context:
    service = stack["scenario"].root_service
    repositories = {service: {
        "github": "acme/shop", "checkout": str(stack["repo"].path), "path": f"services/{service}",
        # the command runs in the service's folder: the repository's tests are two levels up
        "base_branch": "main", "test_command": [SAMPLE_TEST_COMMAND[0], "-m", "unittest", "discover", "-s",
                                                "../../tests", "-t", "../.."],
    }}
    base = Context(notify_channels=(), output_dir=str(output), pr_backend="github", github_token=TOKEN,
                   github_api_url=stack["github"].url)
    return stack["backends"].context(base, telemetry_config=None, telemetry_tables={"repositories": repositories})


async def test_live_regression_to_one_pull_request(live_stack, database_url, tmp_path) -> None:
    scenario, repo, github = live_stack["scenario"], live_stack["repo"], live_stack["github"]
    pulls = github.repositories["acme/shop"].pulls
    async with open_database(database_url) as db:
        runner = IncidentRunner(db, live_context(live_stack, tmp_path))
        waiting = await runner.start(scenario.alert, TelemetrySpec(kind="live", end=END))
        values = waiting.values

        # the guard routed the live incident to analyze_code: app_build_info named the deployed commit
        detection = values["detection"]
        assert detection.code_regression and detection.suspect_commit == repo.bad_commit, values["errors"]
        assert detection.repository.github == "acme/shop"
        code = values["code"]
        assert code is not None and code.commit == repo.bad_commit
        assert [s.commit for s in code.suspects][0] == repo.bad_commit and len(code.suspects) >= 3  # several
        assert code.suspects[0].failing_lines and code.suspects[0].score > code.suspects[1].score
        assert any("changes nothing under services/" in r for s in code.suspects[1:] for r in s.reasons)

        # the revert passes the repository's configured tests in the sandbox, and the gate waits
        patch = values["patch"]
        assert patch.ready and patch.reverts == repo.bad_commit
        tests = next(c for c in patch.checks if c.name == "tests_pass")
        assert tests.ok and "in the sandbox" in tests.detail
        assert waiting.status == "awaiting_approval" and waiting.interrupt is not None
        assert not [r for r in github.requests if r.method == "POST"]  # nothing written before approval

        # the gate shows the ranking with its reasons (payload, dashboard and brief)
        gate = waiting.interrupt
        assert [s["commit"] for s in gate["suspects"]][0] == repo.bad_commit and gate["suspects"][0]["reasons"]
        page = incident_page(values, gate=gate)
        assert page.gate.suspects[0][0] == repo.bad_commit[:10] and "stack frame" in page.gate.suspects[0][2]
        assert f"1. `{repo.bad_commit[:10]}` " in render_brief_markdown(values)

        # approve: exactly one pull request
        done = await runner.resume(waiting.incident_id, ApprovalDecision(decision="approve", by="alice"))
        pr = done.values["pr"]
        assert (pr.backend, pr.status) == ("github", "created") and len(pulls) == 1

        # a replay from before create_pr finds it and opens no second one
        history = await runner.history(waiting.incident_id)
        before_pr = next(h for h in history if h.next == ["create_pr"])
        replayed = await runner.replay(waiting.incident_id, before_pr.checkpoint_id)
        assert replayed.values["pr"].status == "exists" and replayed.values["pr"].url == pr.url
        assert len(pulls) == 1 and len(github.posts_to("/pulls")) == 1

        # reject, on another incident of the same regression: none
        other = await runner.start(scenario.alert, TelemetrySpec(kind="live", end=END))
        assert other.values["patch"].ready
        rejected = await runner.resume(other.incident_id, ApprovalDecision(decision="reject", by="bob"))
        assert rejected.values.get("pr") is None and len(pulls) == 1
