"""propose_fix: the revert of the offending commit as a patch, with a reviewable title and description."""

from __future__ import annotations

import asyncio
from typing import Any

from langgraph.runtime import Runtime
from pydantic import BaseModel, Field

from graph.context import Context
from nodes.common import error_record, llm_outcome
from prompts.views import fix_view
from state import IncidentState, Patch
from tools.git_repo import head_commit, revert_patch
from tools.llm import spent_tokens, structured_call
from tools.redact import redact


class FixText(BaseModel):
    """What the model is asked for: the words of the pull request, not the code."""

    title: str = Field(max_length=120)
    description: str = Field(max_length=4000)


def describe(state: IncidentState) -> tuple[str, str]:
    """Deterministic pull-request title and body."""
    code, root = state["code"], state["root_cause"]
    title = f"Revert \"{code.subject}\" ({code.commit[:10]}): {root.fault_type} in {root.service}"
    lines = [
        f"Incident `{state['incident_id']}`: {root.summary}",
        "",
        f"This reverts commit {code.commit} by {code.author}.",
        "",
        "Evidence:",
        *(f"- {e}" for e in root.evidence[:6]),
    ]
    if code.summary:
        lines += ["", f"Code analysis: {code.summary}"]
    return title[:120], "\n".join(lines)


async def propose_fix(state: IncidentState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Revert the suspect commit on top of the repository's current head."""
    code = state["code"]
    try:
        base = await asyncio.to_thread(head_commit, code.repo)
        diff = await asyncio.to_thread(revert_patch, code.repo, code.commit)
    except Exception as exc:
        return {"patch": None, "errors": [error_record("propose_fix", f"revert failed: {exc}", source="git")]}
    title, description = describe(state)
    update: dict[str, Any] = {}
    text, usage, error = await structured_call(
        runtime.context, "reasoning", FixText, "propose_fix", spent=spent_tokens(state.get("tokens")),
        fix=fix_view(state, diff),
    )
    update |= llm_outcome("propose_fix", usage, error)
    if text is not None and text.title.strip():
        title, description = text.title.strip(), f"{text.description.strip()}\n\n---\n{description}"
    update["patch"] = Patch(
        kind="revert", repo=code.repo, base_commit=base, reverts=code.commit,
        title=redact(title), description=redact(description), diff=diff, files=code.files_changed,
    )
    return update
