"""Code reading over MCP with real servers over stdio (mcp-server-git and tools.mcp_repo_server) on a real git
repository built in the test, and the ranking of the deployed commits."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta

import langchain_mcp_adapters.client as mcp_client
import pytest
from langgraph.runtime import Runtime

from analysis.code_suspects import ChangedFile, CommitChange, FailingLine, rank_suspects, template_phrase
from graph.context import Context
from nodes.analyze_code import analyze_code
from state import (
    CodeRepository,
    DeployEvent,
    Detection,
    Evidence,
    LogEvidence,
    LogTemplate,
    StackFrame,
    Window,
)
from tests.shop_repo import HANDLERS, build_shop_repo, traceback_text
from tools.mcp_code import CodeReadError, open_code_reader

END = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    return build_shop_repo(tmp_path_factory.mktemp("mcp") / "shop")


def frames_of(shop) -> list[StackFrame]:
    import re

    return [StackFrame(service="checkout", file=m[1], line=int(m[2]), function=m[3], count=40)
            for m in re.finditer(r'File "([^"]+)", line (\d+), in (\w+)', traceback_text(shop))]


def regression_state(shop, repository: CodeRepository) -> dict:
    window = Window(start=END - timedelta(minutes=15), end=END, baseline_start=END - timedelta(minutes=45))
    deploy = DeployEvent(at=END - timedelta(minutes=10), service="checkout", version="1.5.0",
                         previous_version="1.4.0", commit=shop.docs, previous_commit=shop.base)
    template = LogTemplate(template_id="t1", service="checkout", level="error", baseline_count=0,
                           incident_count=40, kind="new",
                           template="[checkout] checkout total failed for order <*> KeyError: 'qty'")
    evidence = Evidence(alerted_service="checkout", window=window, services=["checkout"], dependencies=[],
                        deploys=[deploy], logs=LogEvidence(templates=[template], stack_frames=frames_of(shop)))
    detection = Detection(is_incident=True, severity="P1", code_regression=True, suspect_service="checkout",
                          suspect_commit=shop.docs, repository=repository, repo=repository.name)
    return {"incident_id": "inc-mcp", "evidence": evidence, "detection": detection, "digest": "", "tokens": {}}


async def test_project_server_speaks_githubs_tool_names_read_only(shop) -> None:
    repository = CodeRepository(service="checkout", checkout=str(shop.path))
    async with open_code_reader(repository) as reader:
        assert set(reader.tools) == {"search_code", "get_file_contents", "list_commits", "get_commit", "git_show"}
        assert all(tool.metadata["readOnlyHint"] is True for tool in reader.tools.values())
        # mcp-server-git's write tools are never loaded
        assert not {"git_commit", "git_add", "git_reset", "git_checkout", "git_create_branch"} & set(reader.tools)

        listed = await reader.list_commits(shop.docs)
        assert [c["sha"] for c in listed] == [shop.docs, shop.bad, shop.cart, shop.feature, shop.base]
        assert listed[1]["commit"]["message"] == "checkout: shorter item field names"
        since = await reader.list_commits(shop.docs, since=datetime(2026, 11, 20, tzinfo=UTC))
        assert [c["sha"] for c in since] == [shop.docs, shop.bad, shop.cart]

        found = await reader.search('"checkout total failed" path:services/checkout')
        assert found == [(HANDLERS, ['        log.exception("checkout total failed for order %s", order_id)'])]
        assert await reader.search("filename:handlers.py") and await reader.search("nowhere-to-be-found") == []

        text = await reader.file_text(HANDLERS, shop.base)
        assert 'item["quantity"]' in text and text.startswith('"""Checkout handlers."""')
        listing = json.loads((await reader._call("get_file_contents", {"owner": "o", "repo": "r",
                                                                        "path": "services"}))[0])
        assert {e["path"]: e["type"] for e in listing}["services/checkout"] == "dir"
        with pytest.raises(CodeReadError, match="outside the repository"):
            await reader.file_text("../etc/passwd", shop.base)
        with pytest.raises(CodeReadError, match="git_show failed: .* could not be resolved"):
            await reader.commit("0" * 40)

        # mcp-server-git's git_show and the project server's get_commit read the same change
        from_git = await reader.commit(shop.bad)
        from_github_shape = await reader.commit.__func__(_without_git_show(reader), shop.bad)
        assert from_git.sha == from_github_shape.sha == shop.bad
        assert [(f.path, f.hunks) for f in from_git.files] == [(f.path, f.hunks) for f in from_github_shape.files]
        assert from_git.subject == from_github_shape.subject == "checkout: shorter item field names"


def _without_git_show(reader):
    clone = type(reader)(reader.repository.model_copy(update={"checkout": None, "github": None}), {
        k: v for k, v in reader.tools.items() if k != "git_show"})
    return clone


async def test_one_session_per_server_for_the_whole_run(shop, monkeypatch) -> None:
    opened = []
    real = mcp_client.create_session

    def counting(connection, **kwargs):
        opened.append(connection["args"][1])
        return real(connection, **kwargs)

    monkeypatch.setattr(mcp_client, "create_session", counting)
    state = regression_state(shop, CodeRepository(service="checkout", checkout=str(shop.path)))
    update = await analyze_code(state, Runtime(context=Context()))
    assert update["code"] is not None
    assert sorted(opened) == ["mcp_server_git", "tools.mcp_repo_server"]  # many calls, two processes


async def test_the_bad_commit_is_ranked_first_among_the_deployed_ones(shop) -> None:
    repository = CodeRepository(service="checkout", checkout=str(shop.path), path="services/checkout")
    update = await analyze_code(regression_state(shop, repository), Runtime(context=Context()))
    code = update["code"]
    assert [s.commit for s in code.suspects][:1] == [shop.bad] and code.commit == shop.bad
    assert {s.commit for s in code.suspects} == {shop.docs, shop.bad, shop.cart, shop.feature}  # base ran before
    bad = code.suspects[0]
    qty = 'item["qty"]'
    deployed_line = shop.line_of(qty)
    assert shop.line_of(qty, shop.bad) == deployed_line - 3  # the docs commit moved it down three lines
    assert f"{HANDLERS}:{deployed_line}" in bad.failing_lines
    assert any("this commit wrote the line of the stack frame" in r for r in bad.reasons)
    assert any("deployed as" in r for r in code.suspects[[s.commit for s in code.suspects].index(shop.docs)].reasons)
    cart = next(s for s in code.suspects if s.commit == shop.cart)
    assert cart.score == 0 and cart.reasons == ["changes nothing under services/checkout"]
    assert code.matches_stack_trace and 'item["qty"]' in code.diff and code.diff.startswith("diff --git")
    assert any('item["qty"]' in e.text for e in code.excerpts)
    assert code.summary.startswith(f'{shop.bad[:12]} "checkout: shorter item field names"')
    assert not update["errors"]


async def test_github_repositories_are_read_by_the_same_analysis(shop) -> None:
    """A repository known only as owner/name is read through a GitHub MCP server (here the project's server,
    started as GITHUB_MCP's command), with the same tool names and the same ranking."""
    command = f"{sys.executable} -m tools.mcp_repo_server --repository {shop.path}"
    repository = CodeRepository(service="checkout", github="acme/shop", path="services/checkout")
    update = await analyze_code(regression_state(shop, repository),
                                Runtime(context=Context(github_mcp=command, github_token="ghp_test")))
    assert update["code"].commit == shop.bad and update["code"].repo == "acme/shop"


async def test_an_unreachable_repository_leaves_the_mitigations(tmp_path, shop) -> None:
    for repository, why in (
        (CodeRepository(service="checkout", checkout=str(tmp_path / "gone")), "is not a git checkout"),
        (CodeRepository(service="checkout", github="acme/shop"), "GitHub's MCP server is not configured"),
    ):
        update = await analyze_code(regression_state(shop, repository), Runtime(context=Context()))
        assert update["code"] is None
        (error,) = update["errors"]
        assert why in error.message and "the mitigations rest on the logs and metrics" in error.message


def test_ranking_follows_lines_back_through_newer_commits() -> None:
    newer = CommitChange("n" * 40, "add header", "a", None, (ChangedFile.from_patch(
        "app.py", "@@ -1,2 +1,4 @@\n+# one\n+# two\n a\n b\n"),))
    older = CommitChange("o" * 40, "break b", "a", None, (ChangedFile.from_patch(
        "app.py", "@@ -1,3 +1,3 @@\n a\n-b = 1\n+b = None\n c\n"),))
    failing = [FailingLine("app.py", 4, "stack frame", "f")]  # "b" is line 4 at the deployed revision
    ranked = rank_suspects([newer, older], failing)
    assert [s.commit for s in ranked] == ["o" * 40, "n" * 40]
    assert ranked[0].score == 3.0 and ranked[0].failing_lines == ["app.py:4"]
    # a line the newer commit wrote has no older counterpart
    ranked = rank_suspects([newer, older], [FailingLine("app.py", 1, "stack frame")])
    assert ranked[0].commit == "n" * 40 and ranked[1].score == 1.0  # older: same file, not that line


def test_template_phrases() -> None:
    assert template_phrase("[checkout] checkout total failed for order <*> KeyError: 'qty'") == (
        "checkout total failed for order")
    assert template_phrase("<*> <*>") is None


async def test_a_failed_search_and_a_failed_model_call_are_both_recorded(shop) -> None:
    from tests.fakes import ScriptedChatModel

    state = regression_state(shop, CodeRepository(service="checkout", checkout=str(shop.path)))
    template = state["evidence"].logs.templates[0].model_copy(
        update={"template": 'checkout total "failed for order <*>'})  # an odd quote: the search query is refused
    state["evidence"] = state["evidence"].model_copy(update={"logs": state["evidence"].logs.model_copy(
        update={"templates": [template]})})
    model = ScriptedChatModel(script={"analyze_code": RuntimeError("503 model overloaded")}, calls=[])
    context = Context(llm_provider="google", chat_models={"reasoning": model, "fast": model})
    update = await analyze_code(state, Runtime(context=context))
    assert update["code"].commit == shop.bad  # the stack frames still rank the commits
    sources = sorted(e.source for e in update["errors"])
    assert sources == ["code", "llm"] and "code search" in update["errors"][0].message
