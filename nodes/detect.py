"""detect: is this an incident, how severe, and does it look like a code regression."""

from __future__ import annotations

from typing import Any, Literal

from langgraph.runtime import Runtime
from pydantic import BaseModel, Field

from analysis.detection import detect as detect_rules
from graph.context import Context
from nodes.common import error_record, llm_outcome
from state import CodeRepository, Detection, IncidentState, Severity
from tools.llm import spent_tokens, structured_call
from tools.telemetry import open_source

SEVERITIES = ("P1", "P2", "P3", "P4")


class DetectVerdict(BaseModel):
    """What the model is asked for."""

    is_incident: bool = Field(description="true when users are or will be affected")
    severity: Severity = Field(description="P1 outage .. P4 minor")
    code_regression: bool = Field(description="true when a recent code change most likely caused it")
    reasons: list[str] = Field(default_factory=list, description="short facts from the evidence")


def merge_verdict(rules: Detection, verdict: DetectVerdict, top_confidence: float) -> Detection:
    """Take the model's answer where the evidence leaves room for it, the rules' answer where it does not; a run that
    could not look stays inconclusive whatever the model thinks."""
    if rules.is_incident is None:
        return rules
    is_incident = rules.is_incident
    if 0.3 <= top_confidence < 0.6:  # only an ambiguous engine result can be overruled
        is_incident = verdict.is_incident
    rank = SEVERITIES.index(rules.severity)
    wanted = SEVERITIES.index(verdict.severity)
    severity = SEVERITIES[max(rank - 1, min(rank + 1, wanted))]  # at most one level away from the rules
    # a code regression needs a code deploy of the suspect service: the model cannot invent one
    code_regression = verdict.code_regression and rules.suspect_commit is not None and is_incident
    return rules.model_copy(
        update={
            "is_incident": is_incident,
            "severity": severity,
            "code_regression": code_regression,
            "reasons": [*rules.reasons, *(f"model: {r}" for r in verdict.reasons[:3])],
            "decided_by": "llm",
        }
    )


async def detect(state: IncidentState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Rules first; then the reasoning model, validated against the evidence; then find the code repository."""
    evidence = state["evidence"]
    candidates = evidence.candidates
    update: dict[str, Any] = {}
    alert = state.get("alert")
    detection = detect_rules(evidence, candidates, alert_severity=alert.severity if alert else None)
    verdict, usage, error = await structured_call(
        runtime.context, "reasoning", DetectVerdict, "detect", spent=spent_tokens(state.get("tokens")),
        evidence=state["digest"],
    )
    update |= llm_outcome("detect", usage, error)
    if verdict is not None:
        detection = merge_verdict(detection, verdict, candidates[0].confidence if candidates else 0.0)
    if detection.code_regression and detection.suspect_service:
        repository, note = await find_repository(state, runtime.context, detection.suspect_service)
        if note:
            update.setdefault("errors", []).append(error_record("detect", note, source="code"))
        detection = detection.model_copy(update={
            "repository": repository, "repo": repository.checkout if repository else None,
            "reasons": [*detection.reasons, note] if note else detection.reasons,
        })
    update["detection"] = detection
    return update


async def find_repository(
    state: IncidentState, context: Context, service: str
) -> tuple[CodeRepository | None, str | None]:
    """The suspect service's repository from the telemetry's map (its checkout replaced by the run's --repo, when
    given), and why there is none."""
    try:
        repository = await open_source(state["telemetry"], context).code_repository(service)
    except Exception as exc:
        return None, f"code repository lookup for {service} failed: {exc}; the run goes on without reading code"
    if context.repo:
        base = repository or CodeRepository(service=service)
        return base.model_copy(update={"checkout": context.repo}), None
    if repository is None:
        return None, (
            f"no code repository is configured for {service} ([repositories.{service}] in the telemetry "
            "configuration): the suspect commit is not read and the mitigations come from the logs and metrics"
        )
    return repository, None


def route_after_detect(state: IncidentState) -> Literal["brief", "analyze_code", "fan_out"]:
    """The code-regression guard: no incident -> brief; regression with a repo -> analyze_code; else fan_out
    (inconclusive with a candidate too: the best guess gets its root cause and mitigations)."""
    detection = state["detection"]
    if detection.is_incident is False or detection.is_incident is None and not state["evidence"].candidates:
        return "brief"
    if detection.code_regression and detection.repository and detection.suspect_commit:
        return "analyze_code"
    return "fan_out"
