"""check_patch: safety checks, a clean apply, and the repository's tests before and after the patch."""

from __future__ import annotations

import asyncio
from typing import Any

from analysis.patch_checks import check_patch as safety_checks
from state import IncidentState, PatchCheck
from tools.git_repo import check_applies, run_tests


async def check_patch(state: IncidentState) -> dict[str, Any]:
    """The patch is ready for the gate only when every check passes."""
    patch = state.get("patch")
    if patch is None:
        return {}
    checks = list(safety_checks(patch.diff))
    applies = await asyncio.to_thread(check_applies, patch.repo, patch.base_commit, patch.diff)
    checks.append(applies)
    before = after = "not_run"
    if applies.ok:
        failed_before = not (await asyncio.to_thread(run_tests, patch.repo, patch.base_commit, None))[0]
        passed_after, output = await asyncio.to_thread(run_tests, patch.repo, patch.base_commit, patch.diff)
        before, after = ("fail" if failed_before else "pass"), ("pass" if passed_after else "fail")
        checks.append(PatchCheck(
            name="tests reproduce the failure", ok=failed_before,
            detail="the repository's tests fail without the patch" if failed_before
            else "the tests pass without the patch: they do not cover this regression",
        ))
        checks.append(PatchCheck(
            name="tests pass with the patch", ok=passed_after, detail="" if passed_after else output[-800:]
        ))
    return {"patch": patch.model_copy(update={"checks": checks, "tests_before": before, "tests_after": after})}
