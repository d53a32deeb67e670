"""analyze_code: read the suspect commit and the files its stack traces name."""

from __future__ import annotations

import asyncio
from typing import Any

from langgraph.runtime import Runtime
from pydantic import BaseModel, Field

from graph.context import Context
from nodes.common import error_record, llm_outcome
from prompts.views import code_view
from state import IncidentState
from tools.git_repo import commit_findings
from tools.llm import spent_tokens, structured_call


class CodeVerdict(BaseModel):
    """What the model is asked for."""

    summary: str = Field(description="one or two sentences: what the change broke and how")
    culprit_file: str | None = Field(default=None, description="the changed file that causes the failure")


async def analyze_code(state: IncidentState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Diff and excerpts of the suspect commit, matched against the stack frames of the alerted window."""
    detection = state["detection"]
    evidence = state["evidence"]
    frames = [
        (f.file, f.line)
        for f in (evidence.logs.stack_frames if evidence.logs else [])
        if f.service == detection.suspect_service
    ]
    try:
        findings = await asyncio.to_thread(commit_findings, detection.repo, detection.suspect_commit, frames)
    except Exception as exc:
        return {"code": None, "errors": [error_record("analyze_code", f"reading the commit failed: {exc}", "git")]}
    update: dict[str, Any] = {}
    verdict, usage, error = await structured_call(
        runtime.context, "reasoning", CodeVerdict, "analyze_code", spent=spent_tokens(state.get("tokens")),
        evidence=state["digest"], code=code_view(findings),
    )
    update |= llm_outcome("analyze_code", usage, error)
    if verdict is not None and (verdict.culprit_file is None or verdict.culprit_file in findings.files_changed):
        findings = findings.model_copy(update={"summary": verdict.summary})
    update["code"] = findings
    return update
