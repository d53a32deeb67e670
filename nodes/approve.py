"""approve: the human gate before anything is written to the code host."""

from __future__ import annotations

from typing import Any, Literal

from langgraph.runtime import Runtime
from langgraph.types import interrupt
from pydantic import BaseModel, ValidationError

from graph.context import Context
from nodes.common import error_record, utcnow
from state import Approval, ApprovalRequest, IncidentState, Patch


class ApprovalDecision(BaseModel):
    """The resume value of the approval interrupt."""

    model_config = {"extra": "forbid"}

    decision: Literal["approve", "reject", "edit"]
    by: str = "unknown"
    comment: str = ""
    patch: str | None = None


def gate_words(patch: Patch) -> tuple[str, str]:
    """The gate's question and its approve button, saying exactly what approving does."""
    target = patch.target
    # a patch without a target (checkpoints from older builds) goes to a local branch, as create_pr then does
    action = target.action() if target else "create a local branch; no pull request is opened and nothing is pushed"
    if target is not None and target.backend == "github":
        return f"Approve this fix? Approving will {action}.", "Approve: open the GitHub pull request"
    return f"Approve this fix? Approving will {action}.", "Approve: create the local branch (no pull request)"


async def approve(state: IncidentState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Interrupt with the diff, the root cause and the checks; no side effect happens in this node."""
    patch = state.get("patch")
    if patch is None or not patch.ready:
        return {"approval": None}
    if not runtime.context.require_approval:
        return {"approval": Approval(decision="auto", by="policy: approval gate off", at=utcnow())}
    question, label = gate_words(patch)
    request = ApprovalRequest(
        incident_id=state["incident_id"], root_cause=state.get("root_cause"), patch=patch, checks=patch.checks,
        question=question, approve_label=label, suspects=(state.get("code").suspects if state.get("code") else [])[:3],
    )
    answer = interrupt(request.model_dump(mode="json"))
    try:
        decision = ApprovalDecision.model_validate(answer)
    except ValidationError as exc:
        error = error_record("approve", f"invalid approval payload, treated as reject: {exc.errors()[:2]}")
        approval = Approval(decision="reject", by="invalid input", comment="invalid approval payload", at=utcnow())
        return {"approval": approval, "errors": [error]}
    approval = Approval(decision=decision.decision, by=decision.by, comment=decision.comment, at=utcnow())
    if decision.decision == "edit":
        if not decision.patch:
            error = error_record("approve", "edit without a patch, treated as reject")
            return {"approval": approval.model_copy(update={"decision": "reject"}), "errors": [error]}
        edited = patch.model_copy(update={"kind": "edit", "diff": decision.patch, "checks": []})
        return {"approval": approval, "patch": edited}
    return {"approval": approval}


def route_after_approve(state: IncidentState) -> Literal["create_pr", "check_patch", "brief"]:
    """Approved -> create_pr; edited -> check the new patch, then ask again; otherwise -> brief."""
    approval = state.get("approval")
    if approval is None:
        return "brief"
    if approval.decision == "edit":
        return "check_patch"
    return "create_pr" if approval.decision in ("approve", "auto") else "brief"
