"""create_pr: write the approved patch to the code host (a local branch, or GitHub in a later build)."""

from __future__ import annotations

import asyncio
from typing import Any

from langgraph.runtime import Runtime

from graph.context import Context
from nodes.common import error_record
from state import IncidentState, PullRequest
from tools.git_repo import create_branch_with_patch

AUTHOR = "Incident CoPilot <incident-copilot@localhost>"


def branch_name(incident_id: str) -> str:
    """One branch per incident, so a re-run finds the branch it already made."""
    return f"incident-copilot/{incident_id}"


async def create_pr(state: IncidentState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Create the branch and commit; idempotent, so a resumed run never makes a second one."""
    patch, approval = state["patch"], state["approval"]
    message = f"{patch.title}\n\n{patch.description}\n\nApproved-by: {approval.by}"
    if runtime.context.pr_backend != "local":
        detail = f"pr backend {runtime.context.pr_backend!r} is not available in this build"
        return {"pr": PullRequest(backend="github", status="failed", detail=detail),
                "errors": [error_record("create_pr", detail)]}
    try:
        pr = await asyncio.to_thread(
            create_branch_with_patch, patch.repo, patch.base_commit, patch.diff,
            branch_name(state["incident_id"]), message, AUTHOR,
        )
    except Exception as exc:
        detail = f"creating the branch failed: {exc}"
        return {"pr": PullRequest(backend="local", status="failed", detail=detail[:500]),
                "errors": [error_record("create_pr", detail, source="git")]}
    return {"pr": pr}
