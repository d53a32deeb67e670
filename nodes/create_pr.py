"""create_pr: write the approved fix where the gate said: a GitHub pull request, or a branch in the local checkout.

Both are idempotent: a resumed or replayed run finds the branch (and pull request) it made before.
"""

from __future__ import annotations

import asyncio
from typing import Any

from langgraph.runtime import Runtime

from graph.context import Context
from nodes.common import error_record
from state import IncidentState, Patch, PullRequest
from tools.git_repo import create_branch_with_patch
from tools.notify.config import load_notify_config
from tools.redact import redact

AUTHOR_NAME, AUTHOR_EMAIL = "Incident CoPilot", "incident-copilot@localhost"
AUTHOR = f"{AUTHOR_NAME} <{AUTHOR_EMAIL}>"


def branch_name(incident_id: str) -> str:
    """One branch per incident, so a re-run finds the branch (and pull request) it already made."""
    return f"incident-copilot/{incident_id}"


def incident_link(context: Context, incident_id: str) -> str | None:
    """The incident's dashboard page, when the notification configuration names the public URL."""
    try:
        return load_notify_config(context.notify_config).link(incident_id)
    except Exception:  # an unreadable notification file is reported by notify; the PR just has no link
        return None


def pr_body(state: IncidentState, patch: Patch, link: str | None) -> str:
    """The pull request's body: the fix's description, the root cause and its evidence, the checks, the approval,
    and the way back to the incident; redacted as a whole."""
    root, approval = state.get("root_cause"), state["approval"]
    lines = [patch.description, ""]
    if root is not None:
        lines += [f"## Root cause: {root.fault_type.replace('_', ' ')} in {root.service} ({root.confidence:.0%})",
                  "", root.summary, "", "Evidence:", *(f"- {e}" for e in root.evidence[:6]), ""]
    lines += ["## Checks", "", *(f"- [{'x' if c.ok else ' '}] {c.name}: {c.detail.splitlines()[0] if c.detail else ''}"
                                  for c in patch.checks),
              f"- tests without the fix: {patch.tests_before}, with it: {patch.tests_after}", "",
              f"Approved by {approval.by} at {approval.at:%Y-%m-%d %H:%M} UTC"
              + (f": {approval.comment}" if approval.comment else "") + ".", ""]
    where = f"[{state['incident_id']}]({link})" if link else f"`{state['incident_id']}`"
    lines.append(f"Incident {where}: `incident-copilot incidents show {state['incident_id']}`. "
                 "Opened by Incident CoPilot; review before merging.")
    return redact("\n".join(lines))


async def create_pr(state: IncidentState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Open the pull request or create the branch; a failure is reported, never raised."""
    patch, approval = state["patch"], state["approval"]
    target = patch.target
    message = f"{patch.title}\n\n{patch.description}\n\nApproved-by: {approval.by}"
    if target is not None and target.backend == "github":
        context = runtime.context
        if not context.github_token:
            detail = "GITHUB_TOKEN is not set: the approved pull request cannot be opened"
            return {"pr": PullRequest(backend="github", status="failed", branch=target.branch, detail=detail),
                    "errors": [error_record("create_pr", detail, source="github")]}
        # imported here, not with this module: PyGithub costs ~0.1 s to import, and only an approved fix bound for
        # GitHub needs it (an investigation stops at the gate)
        from tools.github import PullRequestDraft, github_client, open_pull_request

        draft = PullRequestDraft(
            repository=target.repository, base_branch=target.base_branch, branch=target.branch,
            files=patch.files_to_modify, title=patch.title, body=pr_body(state, patch,
                                                                         incident_link(context, state["incident_id"])),
            commit_message=redact(message), author_name=AUTHOR_NAME, author_email=AUTHOR_EMAIL, at=approval.at,
        )
        pr = await asyncio.to_thread(open_pull_request, github_client(context.github_token, context.github_api_url),
                                     draft)
        errors = [error_record("create_pr", pr.detail, source="github")] if pr.status == "failed" else []
        return {"pr": pr, "errors": errors} if errors else {"pr": pr}
    branch = target.branch if target else branch_name(state["incident_id"])
    try:
        pr = await asyncio.to_thread(
            create_branch_with_patch, patch.repo, patch.base_commit, patch.diff, branch, message, AUTHOR,
        )
    except Exception as exc:
        detail = f"creating the branch failed: {exc}"
        return {"pr": PullRequest(backend="local", status="failed", detail=detail[:500]),
                "errors": [error_record("create_pr", detail, source="git")]}
    return {"pr": pr}
