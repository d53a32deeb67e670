"""check_patch: safety checks, a clean apply on the base, and the repository's own tests run in the sandbox.

A patch is approvable only when every check passes. The tests are run with and without the patch and both results
are recorded; that they fail without it is information for the reviewer, not a precondition: a real repository's
tests often do not reproduce a production failure.
"""

from __future__ import annotations

import asyncio
from typing import Any

from analysis.patch_checks import check_patch as safety_checks
from state import IncidentState, Patch, PatchCheck
from tools.git_repo import GitError, check_applies, file_changes, run_tests, symlinks_at
from tools.redact import redact
from tools.sandbox import SandboxRun

OUTPUT_TAIL = 800


def _tests(patch: Patch, diff: str | None) -> SandboxRun:
    """The repository's tests on the base, with `diff` applied; a run that could not start says why."""
    try:
        return run_tests(patch.repo, patch.base_commit, diff, patch.test_command, subdir=patch.test_dir)
    except (GitError, ValueError) as exc:
        return SandboxRun("unavailable", f"not run: {exc}")


def _tests_check(patch: Patch, failed: list[PatchCheck], after: SandboxRun | None) -> PatchCheck:
    """The check "tests pass with the patch", with why it did not when it did not."""
    name = "tests_pass"
    if failed:
        return PatchCheck(name=name, ok=False, detail="not run: the patch failed " + ", ".join(c.name for c in failed))
    if not patch.test_command:
        return PatchCheck(name=name, ok=False, detail="not run: no test command is configured for this repository "
                                                      "(test_command in its [repositories.<service>] table)")
    command = " ".join(patch.test_command)
    if after.status == "unavailable":
        return PatchCheck(name=name, ok=False, detail=f"`{command}` {after.output}")
    if after.status == "passed":
        return PatchCheck(name=name, ok=True, detail=f"`{command}` passed in the sandbox with the patch")
    return PatchCheck(name=name, ok=False, detail=redact(
        f"`{command}` {after.reason} (in the sandbox, with the patch)\n{after.output[-OUTPUT_TAIL:]}"))


async def check_patch(state: IncidentState) -> dict[str, Any]:
    """Every check of the patch; the tests run only when the patch is safe to apply."""
    patch = state.get("patch")
    if patch is None:
        return {}
    try:
        symlinks = await asyncio.to_thread(symlinks_at, patch.repo, patch.base_commit)
    except GitError as exc:
        symlinks, checks = frozenset(), [PatchCheck(name="applies", ok=False, detail=str(exc))]
    else:
        checks = [await asyncio.to_thread(check_applies, patch.repo, patch.base_commit, patch.diff)]
    checks = safety_checks(patch.diff, symlinks=symlinks) + checks
    failed = [c for c in checks if not c.ok]
    before = after = None
    if not failed and patch.test_command:
        before = await asyncio.to_thread(_tests, patch, None)
        after = await asyncio.to_thread(_tests, patch, patch.diff)
    checks.append(_tests_check(patch, failed, after))
    files = patch.files_to_modify
    if not failed:  # what a code host is sent: the whole new content of each file the diff changes
        try:
            files = await asyncio.to_thread(file_changes, patch.repo, patch.base_commit, patch.diff)
        except GitError as exc:
            checks.append(PatchCheck(name="text_files", ok=False, detail=str(exc)))
    outcome = {"passed": "pass", "failed": "fail", "timed_out": "fail"}
    return {"patch": patch.model_copy(update={
        "checks": checks,
        "files_to_modify": files,
        "files": [f.path for f in files] or patch.files,
        "tests_before": outcome.get(before.status, "not_run") if before else "not_run",
        "tests_after": outcome.get(after.status, "not_run") if after else "not_run",
    })}
