"""The fix through the whole graph on the simulated regression: the revert or a model's targeted patch (scripted
fake chat models), checked in the sandbox, the gate's words, and the pull request on the loopback GitHub: approve
opens exactly one, reject opens none, a replay opens no second one, a refused token is reported."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from graph.builder import build_graph
from graph.context import Context
from sim.sample_repo import SAMPLE_TEST_COMMAND, ensure_sample_repo
from sim.scenarios import build_scenario
from sim.source import SimTelemetry
from state import CodeRepository, TelemetrySpec
from tests.fakes import ScriptedChatModel, tool_reply
from tests.github_loopback import GitHubLoopback
from tools.git_repo import file_at

END = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
SEED = 1
TOKEN = "ghp_loopback"
pytestmark = pytest.mark.usefixtures("sandbox")


def start(name: str = "deployment_regression") -> tuple[dict, dict]:
    scenario = build_scenario(name, SEED, END)
    thread = f"fix-{name}-{id(scenario)}"
    inputs = {"incident_id": thread, "alert": scenario.alert,
              "telemetry": TelemetrySpec(kind="sim", scenario=name, seed=SEED, end=END)}
    return inputs, {"configurable": {"thread_id": thread}}


def not_scripted(node: str) -> RuntimeError:
    return RuntimeError(f"{node}: no model answer in this test")


def script_with(propose_fix) -> dict:
    return {node: not_scripted(node) for node in ("detect", "analyze_code", "rca", "suggest", "brief")} | {
        "propose_fix": propose_fix}


def model_context(tmp_path, script: dict, **fields) -> Context:
    model = ScriptedChatModel(script=script, calls=[])
    return Context(llm_provider="google", chat_models={"reasoning": model, "fast": model},
                   output_dir=str(tmp_path), **fields)


def bad_file() -> tuple[str, str, str]:
    """(path, blob id, text) of the file the simulated bad commit broke, as the model is shown it."""
    scenario = build_scenario("deployment_regression", SEED, END)
    repo = ensure_sample_repo(scenario.root_service)
    blob, text = file_at(repo.path, "main", repo.bad_file)
    return repo.bad_file, blob, text


def parent_text() -> str:
    scenario = build_scenario("deployment_regression", SEED, END)
    repo = ensure_sample_repo(scenario.root_service)
    return file_at(repo.path, f"{repo.bad_commit}~", repo.bad_file)[1]


def fix_answer(files: list[dict]) -> object:
    return tool_reply("FixText", {"title": "Handle a missing discount in line totals",
                                  "description": "Restores the old computation.", "files_to_modify": files})


# --- propose_fix: the revert, or the model's targeted patch -----------------------------------------------------


async def test_a_valid_targeted_patch_replaces_the_revert_and_is_checked_in_the_sandbox(tmp_path):
    path, blob, _ = bad_file()
    fixed = parent_text() + "\n# targeted fix: a missing discount counts as none\n"
    context = model_context(tmp_path, script_with(fix_answer([{"path": path, "base_sha": blob,
                                                                 "new_content": fixed}])))
    inputs, config = start()
    values = await build_graph(checkpointer=InMemorySaver()).ainvoke(inputs, config, context=context)
    patch = values["patch"]
    assert (patch.kind, patch.reverts) == ("targeted", None)
    assert "+# targeted fix: a missing discount counts as none" in patch.diff
    assert patch.title == "Handle a missing discount in line totals"
    assert patch.ready, patch.checks
    assert [f.path for f in patch.files_to_modify] == [path] and patch.files_to_modify[0].content == fixed
    assert not [e for e in values["errors"] if e.node == "propose_fix"]
    [gate] = values["__interrupt__"]
    assert gate.value["question"].startswith("Approve this fix? Approving will create the local branch")


@pytest.mark.parametrize(("edit", "reason"), [
    ({"path": "services/common/http.py"}, "'services/common/http.py' was not shown to the model"),
    ({"base_sha": "0" * 40}, "is not the one shown"),
    ({"new_content": None}, "it changes nothing"),
    ({"new_content": "x = '[REDACTED:credential]'\n"}, "carries a redaction marker"),
])
async def test_a_targeted_patch_that_does_not_validate_leaves_the_revert(tmp_path, edit, reason):
    path, blob, text = bad_file()
    answer = {"path": path, "base_sha": blob, "new_content": text} | {k: v for k, v in edit.items() if v}
    context = model_context(tmp_path, script_with(fix_answer([answer])))
    inputs, config = start()
    values = await build_graph(checkpointer=InMemorySaver()).ainvoke(inputs, config, context=context)
    assert values["patch"].kind == "revert" and values["patch"].ready
    [error] = [e for e in values["errors"] if e.node == "propose_fix"]
    assert reason in error.message and "the revert stands" in error.message


async def test_a_targeted_patch_that_adds_a_secret_never_reaches_the_gate(tmp_path):
    path, blob, _ = bad_file()
    leaky = parent_text() + '\nPAYMENTS_TOKEN = "ghp_' + "Zx9" * 12 + '"\n'
    context = model_context(tmp_path, script_with(fix_answer([{"path": path, "base_sha": blob,
                                                                 "new_content": leaky}])))
    inputs, config = start()
    values = await build_graph(checkpointer=InMemorySaver()).ainvoke(inputs, config, context=context)
    patch = values["patch"]
    assert patch.kind == "targeted" and not patch.ready
    failed = {c.name: c.detail for c in patch.checks if not c.ok}
    assert failed["no_secrets"] == f"adds a secret at {path}:{len(leaky.splitlines())} (github-token)"
    assert failed["tests_pass"].startswith("not run: the patch failed no_secrets")
    assert "__interrupt__" not in values and values.get("pr") is None
    assert values["approval"] is None
    # the brief says why there is no gate and no pull request, without the secret
    brief = values["brief"].markdown.replace("\\", "")  # markdown escapes
    assert (f"Not offered for approval: the patch failed its checks (no_secrets — adds a secret at {path}:"
            in brief), brief
    assert "Zx9Zx9" not in brief


# --- create_pr on GitHub through the graph ----------------------------------------------------------------------


@pytest.fixture
def on_github(monkeypatch):
    """The simulated service's repository is acme/shop on the loopback GitHub (a mirror of the sample repo)."""
    scenario = build_scenario("deployment_regression", SEED, END)
    sample = ensure_sample_repo(scenario.root_service)

    async def code_repository(self, service: str) -> CodeRepository | None:
        if service != scenario.root_service:
            return None
        return CodeRepository(service=service, checkout=str(sample.path), github="acme/shop",
                              test_command=list(SAMPLE_TEST_COMMAND))

    monkeypatch.setattr(SimTelemetry, "code_repository", code_repository)
    with GitHubLoopback(token=TOKEN) as github:
        github.add_repository("acme/shop", sample.path)
        yield github


def github_context(tmp_path, github: GitHubLoopback) -> Context:
    notify = tmp_path / "notify.toml"
    notify.write_text('public_url = "https://copilot.example"\n')
    return Context(pr_backend="github", github_token=TOKEN, github_api_url=github.url, output_dir=str(tmp_path),
                   notify_config=str(notify))


async def test_approve_opens_exactly_one_pull_request_and_a_replay_none_more(tmp_path, on_github):
    graph = build_graph(checkpointer=InMemorySaver())
    inputs, config = start()
    context = github_context(tmp_path, on_github)
    waiting = await graph.ainvoke(inputs, config, context=context)
    [gate] = waiting["__interrupt__"]
    branch = f"incident-copilot/{inputs['incident_id']}"
    assert gate.value["question"] == (f"Approve this fix? Approving will open a GitHub pull request on acme/shop "
                                      f"from a new branch {branch} into main.")
    assert gate.value["approve_label"] == "Approve: open the GitHub pull request"
    assert not [r for r in on_github.requests if r.method == "POST"]  # nothing written before the approval

    done = await graph.ainvoke(Command(resume={"decision": "approve", "by": "carol", "comment": "go"}), config,
                               context=context)
    pr = done["pr"]
    assert (pr.backend, pr.status, pr.branch) == ("github", "created", branch)
    [pull] = on_github.repositories["acme/shop"].pulls
    assert pr.url.endswith(f"/pull/{pull['number']}") and pull["labels"] == ["incident-copilot"]
    incident = inputs["incident_id"]
    assert f"Incident [{incident}](https://copilot.example/ui/incidents/{incident})" in pull["body"]
    assert "## Root cause: deployment regression in" in pull["body"] and "## Checks" in pull["body"]
    assert "- [x] tests_pass" in pull["body"] and "Approved by carol" in pull["body"]

    history = [s async for s in graph.aget_state_history(config)]
    before_pr = next(s for s in history if s.next == ("create_pr",))
    replayed = await graph.ainvoke(None, before_pr.config, context=context)
    assert replayed["pr"].status == "exists" and replayed["pr"].url == pr.url
    assert len(on_github.repositories["acme/shop"].pulls) == 1
    assert len(on_github.posts_to("/pulls")) == 1 and len(on_github.posts_to("/git/refs")) == 1


async def test_a_github_failure_is_reported_and_the_run_goes_on(tmp_path, on_github):
    graph = build_graph(checkpointer=InMemorySaver())
    inputs, config = start()
    context = github_context(tmp_path, on_github)
    await graph.ainvoke(inputs, config, context=context)
    on_github.token = "another-token"  # the configured one was revoked meanwhile
    done = await graph.ainvoke(Command(resume={"decision": "approve", "by": "carol"}), config, context=context)
    assert done["pr"].status == "failed" and "401 Bad credentials" in done["pr"].detail
    assert any(e.node == "create_pr" and "GITHUB_TOKEN" in e.message for e in done["errors"])
    assert done["brief"] is not None


async def test_reject_opens_no_pull_request(tmp_path, on_github):
    graph = build_graph(checkpointer=InMemorySaver())
    inputs, config = start()
    context = github_context(tmp_path, on_github)
    waiting = await graph.ainvoke(inputs, config, context=context)
    assert waiting["__interrupt__"][0].value["approve_label"] == "Approve: open the GitHub pull request"
    done = await graph.ainvoke(Command(resume={"decision": "reject", "by": "carol"}), config, context=context)
    assert done.get("pr") is None
    assert not [r for r in on_github.requests if r.method == "POST"]
    assert on_github.repositories["acme/shop"].pulls == []
