"""rca: choose the root cause among the ranked candidates."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime
from pydantic import BaseModel, Field

from graph.context import Context
from nodes.common import llm_outcome
from state import FaultType, Hypothesis, IncidentState, RootCause
from tools.llm import spent_tokens, structured_call

MODEL_CHOICES = 3  # the model may pick among the engine's top candidates, never a service without evidence


class RcaVerdict(BaseModel):
    """What the model is asked for."""

    service: str = Field(description="the service where the fault is")
    fault_type: FaultType
    summary: str = Field(description="one or two sentences for the on-call engineer")
    confidence: float = Field(ge=0, le=1)
    evidence: list[str] = Field(default_factory=list, description="facts from the evidence that support it")


def root_cause_from(hypothesis: Hypothesis, decided_by: str = "rules") -> RootCause:
    """A RootCause carrying the hypothesis' facts."""
    return RootCause(
        service=hypothesis.service,
        fault_type=hypothesis.fault_type,
        summary=hypothesis.summary or f"{hypothesis.fault_type} in {hypothesis.service}",
        confidence=round(hypothesis.confidence, 3),
        evidence=hypothesis.evidence,
        decided_by=decided_by,  # type: ignore[arg-type]
    )


def accept_verdict(verdict: RcaVerdict, candidates: list[Hypothesis]) -> list[Hypothesis] | None:
    """The candidates re-ranked with the model's pick first, or None when the pick lacks evidence."""
    for i, candidate in enumerate(candidates[:MODEL_CHOICES]):
        if candidate.service == verdict.service and candidate.fault_type == verdict.fault_type:
            chosen = candidate.model_copy(
                update={
                    "summary": verdict.summary,
                    "confidence": min(verdict.confidence, max(candidate.confidence + 0.2, 0.5)),
                    "evidence": [
                        *candidate.evidence,
                        *(e for e in verdict.evidence[:3] if e not in candidate.evidence),
                    ],
                }
            )
            return [chosen, *candidates[:i], *candidates[i + 1 :]]
    return None


async def rca(state: IncidentState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Engine's best candidate, or the model's pick when it is one of the engine's top candidates."""
    evidence = state["evidence"]
    candidates = list(evidence.candidates)
    if not candidates:
        unknown = Hypothesis(
            service=evidence.alerted_service,
            fault_type="none",
            confidence=0.0,
            summary=f"No fault signature found around {evidence.alerted_service}; see the evidence.",
        )
        candidates = [unknown]
    update: dict[str, Any] = {}
    verdict, usage, error = await structured_call(
        runtime.context, "fast", RcaVerdict, "rca", spent=spent_tokens(state.get("tokens")), evidence=state["digest"]
    )
    update |= llm_outcome("rca", usage, error)
    decided_by = "rules"
    if verdict is not None:
        reranked = accept_verdict(verdict, candidates)
        if reranked is not None:
            candidates, decided_by = reranked, "llm"
    update["root_cause"] = root_cause_from(candidates[0], decided_by)
    update["hypotheses"] = candidates
    return update
