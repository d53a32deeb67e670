"""suggest: mitigations for the leading hypothesis (the playbook and the team's runbooks), screened against the
command blocklist and ranked."""

from __future__ import annotations

import asyncio
from typing import Any

from langgraph.runtime import Runtime
from pydantic import BaseModel, Field

from analysis.mitigations import playbook, rank_suggestions
from analysis.patch_checks import check_command
from graph.context import Context
from nodes.common import error_record, llm_outcome
from state import ErrorRecord, Hypothesis, IncidentState, Risk, RunbookMatch, Suggestion
from tools.llm import structured_call
from tools.runbooks import Runbook, alert_runbook, as_match, load_runbooks, match_runbooks

MAX_SUGGESTIONS = 8


class SuggestedAction(BaseModel):
    """One mitigation proposed by the model."""

    action: str
    risk: Risk
    rationale: str = ""
    command: str | None = None


class SuggestVerdict(BaseModel):
    """What the model is asked for."""

    suggestions: list[SuggestedAction] = Field(default_factory=list)


def screen(suggestions: list[Suggestion]) -> list[Suggestion]:
    """Mark suggestions whose command is on the blocklist; they are shown, never offered to run."""
    screened = []
    for s in suggestions:
        reason = check_command(s.command) if s.command else None
        screened.append(s.model_copy(update={"blocked_reason": reason, "risk": "high" if reason else s.risk}))
    return screened


async def team_runbooks(context: Context) -> tuple[list[Runbook], list[ErrorRecord]]:
    """The configured runbooks, and an error record for each file that could not be used."""
    if not context.runbooks_dir:
        return [], []
    runbooks, problems = await asyncio.to_thread(load_runbooks, context.runbooks_dir, context.runbooks_base_url or "")
    return runbooks, [error_record("suggest", p, source="runbooks") for p in problems]


def plan_for(
    hypothesis: Hypothesis | None, state: IncidentState, runbooks: list[Runbook]
) -> tuple[list[Suggestion], list[RunbookMatch]]:
    """The playbook of a hypothesis and the steps of the runbooks that match it, screened and ranked; the
    runbooks to link (the alert's runbook_url first)."""
    linked = [m for m in [alert_runbook(state["alert"])] if m is not None]
    if hypothesis is None:
        return [], linked
    matches = match_runbooks(runbooks, state["alert"], hypothesis)
    linked += [as_match(runbook, met) for runbook, met in matches]
    steps = [step for runbook, _ in matches for step in runbook.steps_for(hypothesis.service)]
    suggestions = screen([*playbook(hypothesis, state["evidence"]), *steps])
    return rank_suggestions(suggestions, hypothesis, state["evidence"]), linked


async def suggest(state: IncidentState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Playbook and runbook steps for the engine's best candidate, plus the model's additions, all screened."""
    candidates = state["evidence"].candidates
    best = candidates[0] if candidates else None
    runbooks, errors = await team_runbooks(runtime.context)
    suggestions, linked = plan_for(best, state, runbooks)
    verdict, usage, error = await structured_call(
        runtime.context, "fast", SuggestVerdict, "suggest", evidence=state["digest"]
    )
    update = llm_outcome("suggest", usage, error)
    if verdict is not None and best is not None:
        extra = [Suggestion(**s.model_dump(), source="llm") for s in verdict.suggestions]
        suggestions = rank_suggestions([*suggestions, *screen(extra)], best, state["evidence"])
    if errors:
        update["errors"] = errors + update.get("errors", [])
    update["suggestions"] = suggestions[:MAX_SUGGESTIONS]
    update["runbooks"] = linked
    return update
