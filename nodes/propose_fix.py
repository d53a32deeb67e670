"""propose_fix: the revert of the suspect commit on the base branch; with a model, possibly a targeted patch instead.

The revert is the deterministic fix. A configured model writes the pull request's words and may propose a targeted
patch as whole new contents of files it was shown (`files_to_modify`: path, the blob id it was shown, new content);
such a patch is used only when every file was shown to it, its blob id matches the base, and the change is real.
Otherwise the revert stands and the reason is recorded. Either way check_patch decides whether it can be approved.
"""

from __future__ import annotations

import asyncio
from typing import Any

from langgraph.runtime import Runtime
from pydantic import BaseModel, Field

from graph.context import Context
from nodes.common import error_record, llm_outcome
from nodes.create_pr import branch_name
from prompts.views import fix_view
from state import CodeRepository, FileChange, IncidentState, Patch, PrTarget
from tools.git_repo import GitError, branch_commit, current_branch, diff_of_changes, file_at, revert_patch
from tools.llm import spent_tokens, structured_call
from tools.redact import find_secrets, redact

MAX_SHOWN_FILES = 3
MAX_SHOWN_CHARS = 12_000


class FileEdit(BaseModel):
    """One file of a targeted patch, whole."""

    path: str = Field(max_length=300, description="a file shown under files, exactly as shown")
    base_sha: str = Field(pattern=r"^[0-9a-f]{40}$", description="the blob id shown with that file")
    new_content: str = Field(max_length=MAX_SHOWN_CHARS * 2, description="the whole new content of the file")


class FixText(BaseModel):
    """What the model is asked for: the pull request's words, and optionally a targeted patch."""

    title: str = Field(max_length=120)
    description: str = Field(max_length=4000)
    files_to_modify: list[FileEdit] = Field(
        default_factory=list, max_length=MAX_SHOWN_FILES,
        description="a smaller fix than the revert, as whole files; empty = the revert stands",
    )


def repository_of(state: IncidentState) -> CodeRepository:
    """The suspect service's repository as the configuration describes it (else just the checkout read)."""
    detection, code = state["detection"], state["code"]
    return detection.repository or CodeRepository(service=detection.suspect_service or "", checkout=code.repo)


def pr_target(repository: CodeRepository, context: Context, incident_id: str, checkout: str) -> PrTarget:
    """A GitHub pull request when the backend is GitHub and the repository is on GitHub; else a local branch."""
    branch = branch_name(incident_id)
    if context.pr_backend == "github" and repository.github:
        return PrTarget(backend="github", repository=repository.github, branch=branch,
                        base_branch=repository.base_branch)
    return PrTarget(backend="local", repository=checkout, branch=branch, base_branch=repository.base_branch)


def base_of(checkout: str, branch: str) -> tuple[str, str, str | None]:
    """The fix's base: the configured branch's tip, else (a --repo checkout on master, say) the checked-out branch's,
    with a note saying so: (commit, branch, note)."""
    try:
        return branch_commit(checkout, branch), branch, None
    except GitError as exc:
        current = current_branch(checkout)
        if current is None:
            raise
        return branch_commit(checkout, current), current, f"{exc}; the fix is based on the checked-out branch {current}"


def describe(state: IncidentState) -> tuple[str, str]:
    """Deterministic pull-request title and body."""
    code, root = state["code"], state["root_cause"]
    title = f"Revert \"{code.subject}\" ({code.commit[:10]}): {root.fault_type} in {root.service}"
    lines = [
        f"Incident `{state['incident_id']}`: {root.summary}",
        "",
        f"This reverts commit {code.commit} by {code.author}.",
        "",
        "Evidence:",
        *(f"- {e}" for e in root.evidence[:6]),
    ]
    if code.summary:
        lines += ["", f"Code analysis: {code.summary}"]
    return title[:120], "\n".join(lines)


def shown_files(repo: str, base: str, paths: list[str]) -> dict[str, tuple[str, str]]:
    """The files the model may rewrite, {path: (blob id, text)}: text files the suspect commit changed, whole,
    small enough to show, and holding no secret (a redacted file could not be written back)."""
    shown: dict[str, tuple[str, str]] = {}
    for path in paths:
        found = file_at(repo, base, path)
        if found and len(found[1]) <= MAX_SHOWN_CHARS and not find_secrets(found[1]):
            shown[path] = found
        if len(shown) == MAX_SHOWN_FILES:
            break
    return shown


def targeted_changes(edits: list[FileEdit], shown: dict[str, tuple[str, str]]) -> list[FileChange]:
    """The model's edits as file changes; ValueError naming the first edit that is not allowed."""
    changes = []
    for edit in edits:
        if edit.path not in shown:
            raise ValueError(f"{edit.path!r} was not shown to the model")
        blob, text = shown[edit.path]
        if edit.base_sha != blob:
            raise ValueError(f"{edit.path}: blob {edit.base_sha[:12]} is not the one shown ({blob[:12]})")
        if "[REDACTED" in edit.new_content:
            raise ValueError(f"{edit.path}: the new content carries a redaction marker")
        if edit.new_content != text:
            changes.append(FileChange(path=edit.path, base_sha=blob, content=edit.new_content))
    if not changes:
        raise ValueError("it changes nothing")
    return changes


async def propose_fix(state: IncidentState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Revert the suspect commit on the base branch; let a model write the words and maybe a targeted patch."""
    code, repository = state["code"], repository_of(state)
    checkout = repository.checkout or code.repo
    try:
        base, base_branch, note = await asyncio.to_thread(base_of, checkout, repository.base_branch)
        diff = await asyncio.to_thread(revert_patch, checkout, code.commit, base)
        shown = await asyncio.to_thread(shown_files, checkout, base, code.files_changed)
    except GitError as exc:
        return {"patch": None, "errors": [error_record("propose_fix", f"revert failed: {exc}", source="git")]}
    title, description = describe(state)
    text, usage, error = await structured_call(
        runtime.context, "reasoning", FixText, "propose_fix", spent=spent_tokens(state.get("tokens")),
        fix=fix_view(state, diff, shown), verbatim=("files_to_modify",),
    )
    update = llm_outcome("propose_fix", usage, error)
    if note:
        update["errors"] = [error_record("propose_fix", note, source="git"), *update.get("errors", [])]
    kind = "revert"
    if text is not None and text.files_to_modify:
        try:
            targeted = targeted_changes(text.files_to_modify, shown)
            diff = await asyncio.to_thread(diff_of_changes, checkout, base, targeted)
            kind = "targeted"
        except (ValueError, GitError) as exc:
            update["errors"] = [*update.get("errors", []), error_record(
                "propose_fix", f"the model's targeted patch was not used: {exc}; the revert stands", source="llm")]
    if text is not None and text.title.strip():
        title, description = text.title.strip(), f"{text.description.strip()}\n\n---\n{description}"
    update["patch"] = Patch(
        kind=kind, repo=checkout, base_commit=base, reverts=code.commit if kind == "revert" else None,
        title=redact(title), description=redact(description), diff=diff, files=code.files_changed,
        target=pr_target(repository.model_copy(update={"base_branch": base_branch}), runtime.context,
                         state["incident_id"], checkout),
        test_command=repository.test_command, test_dir=repository.path.strip("/"),
    )
    return update
