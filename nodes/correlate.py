"""correlate: join the collectors' evidence and rank candidate root causes."""

from __future__ import annotations

from typing import Any

from analysis.ranking import estimate_onset, rank_candidates
from nodes.common import error_record, evidence_digest
from state import SOURCES, Evidence, IncidentState


async def correlate(state: IncidentState) -> dict[str, Any]:
    """Build the compact Evidence with its ranked candidates."""
    parts = state.get("evidence_parts") or {}
    missing = [s for s in SOURCES if s not in parts or parts[s].status == "error"]
    missing += [f"{s} (no data)" for s in SOURCES if s in parts and parts[s].status == "no_data"]
    evidence = Evidence(
        alerted_service=state["alert"].service,
        window=state["window"],
        services=state.get("services") or [state["alert"].service],
        dependencies=state.get("dependencies") or [],
        logs=parts["logs"].logs if "logs" in parts else None,
        metrics=parts["metrics"].metrics if "metrics" in parts else None,
        traces=parts["traces"].traces if "traces" in parts else None,
        deploys=parts["deploys"].deploys.deploys if "deploys" in parts and parts["deploys"].deploys else [],
        missing=missing,
    )
    update: dict[str, Any] = {}
    try:
        evidence.onset = estimate_onset(evidence)
        evidence.candidates = rank_candidates(evidence)
    except Exception as exc:  # a ranking bug must not lose the collected evidence
        update["errors"] = [error_record("correlate", f"ranking failed: {type(exc).__name__}: {exc}")]
    update["evidence"] = evidence
    update["digest"] = evidence_digest(evidence, alert=state["alert"])
    return update
