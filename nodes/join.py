"""join: reconcile the parallel branches and decide whether a fix can be proposed."""

from __future__ import annotations

from typing import Any, Literal

from langgraph.runtime import Runtime

from graph.context import Context
from nodes.suggest import MAX_SUGGESTIONS, plan_for, team_runbooks
from state import IncidentState


async def join(state: IncidentState, runtime: Runtime[Context]) -> dict[str, Any]:
    """When rca settled on another cause than the one suggest planned for, re-plan for the chosen cause."""
    root, hypotheses = state["root_cause"], state.get("hypotheses") or []
    candidates = state["evidence"].candidates
    planned_for = candidates[0] if candidates else None
    if planned_for and (planned_for.service, planned_for.fault_type) == (root.service, root.fault_type):
        return {}
    chosen = next((h for h in hypotheses if (h.service, h.fault_type) == (root.service, root.fault_type)), None)
    runbooks, _ = await team_runbooks(runtime.context)  # suggest has reported any unreadable runbook already
    suggestions, linked = plan_for(chosen, state, runbooks)
    return {"suggestions": suggestions[:MAX_SUGGESTIONS], "runbooks": linked}


def route_after_join(state: IncidentState) -> Literal["propose_fix", "brief"]:
    """A fix is proposed for a code regression whose commit was read and matches the chosen root cause."""
    detection, code, root = state["detection"], state.get("code"), state["root_cause"]
    if (
        detection.code_regression
        and code is not None
        and root.fault_type == "deployment_regression"
        and root.service == detection.suspect_service
    ):
        return "propose_fix"
    return "brief"
