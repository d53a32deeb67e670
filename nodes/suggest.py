"""suggest: mitigations for the leading hypothesis, screened against the command blocklist."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime
from pydantic import BaseModel, Field

from analysis.guard import ALLOWED_ACTIONS, refused_action
from analysis.mitigations import playbook
from analysis.patch_checks import check_command
from graph.context import Context
from nodes.common import error_record, llm_outcome
from state import Hypothesis, IncidentState, Risk, Suggestion
from tools.llm import spent_tokens, structured_call

MAX_SUGGESTIONS = 6


class SuggestedAction(BaseModel):
    """One mitigation proposed by the model."""

    kind: str = Field(description="one of: " + "; ".join(f"{k} ({v})" for k, v in ALLOWED_ACTIONS.items()))
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


def plan_for(hypothesis: Hypothesis | None, state: IncidentState) -> list[Suggestion]:
    """The deterministic playbook of a hypothesis."""
    if hypothesis is None:
        return []
    return screen(playbook(hypothesis, state["evidence"]))


async def suggest(state: IncidentState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Playbook steps for the engine's best candidate, plus the model's additions when they pass the blocklist."""
    candidates = state["evidence"].candidates
    suggestions = plan_for(candidates[0] if candidates else None, state)
    update: dict[str, Any] = {}
    verdict, usage, error = await structured_call(
        runtime.context, "fast", SuggestVerdict, "suggest", spent=spent_tokens(state.get("tokens")),
        evidence=state["digest"],
    )
    update |= llm_outcome("suggest", usage, error)
    if verdict is not None:
        known = {s.action.lower() for s in suggestions}
        extra = []
        for s in verdict.suggestions:
            reason = refused_action(s.kind, s.action, s.rationale, s.command)
            if reason is not None:  # outside what a run may propose: dropped, and said so
                update.setdefault("errors", []).append(error_record("suggest", f"model suggestion refused: {reason}",
                                                                    source="llm"))
            elif s.action.lower() not in known:
                extra.append(Suggestion(**s.model_dump(exclude={"kind"})))
        suggestions = [*suggestions, *screen(extra)]
    update["suggestions"] = suggestions[:MAX_SUGGESTIONS]
    return update
