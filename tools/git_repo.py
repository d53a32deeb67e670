"""Local git adapter (the git CLI via subprocess): commit findings, revert patches, test runs, fix branches.

Nothing here touches the user's checkout: patches are applied to temporary index files, and tests run in a
temporary `git worktree` that is removed afterwards, inside the sandbox of tools/sandbox.py.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from state import FileChange, PatchCheck, PullRequest
from tools.sandbox import DEFAULT_LIMITS, Limits, SandboxRun, run_sandboxed

GIT_TIMEOUT = 60.0
_DIFF_FLAGS = ("--no-color", "--no-ext-diff", "--src-prefix=a/", "--dst-prefix=b/")
_AUTHOR = re.compile(r"^\s*([^<>]+?)\s*<([^<>\s]+@[^<>\s]+)>\s*$")


class GitError(RuntimeError):
    """A git command failed; the message names the command and what git said."""


def _git(repo: str | Path, *args: str, input: str | None = None, env: dict[str, str] | None = None) -> str:
    """Run `git -C repo args...` and return stdout; raise GitError on failure."""
    try:
        result = subprocess.run(
            ["git", "-C", str(repo), *args],
            input=input,
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
            timeout=GIT_TIMEOUT,
            check=False,
        )
    except FileNotFoundError as exc:
        raise GitError("git is not installed or not on PATH") from exc
    except subprocess.TimeoutExpired as exc:
        raise GitError(f"git {args[0]} timed out after {GIT_TIMEOUT:.0f}s in {repo}") from exc
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip() or f"exit status {result.returncode}"
        raise GitError(f"git {' '.join(args[:3])} failed in {repo}: {detail}")
    return result.stdout


def _commit_sha(repo: str | Path, rev: str) -> str:
    try:
        return _git(repo, "rev-parse", "--verify", "--end-of-options", f"{rev}^{{commit}}").strip()
    except GitError as exc:
        raise GitError(f"{rev!r} is not a commit in {repo}") from exc


@contextlib.contextmanager
def _temp_index(repo: str | Path, base: str):
    """Env for git commands that work on a throwaway index holding the tree of `base`."""
    with tempfile.TemporaryDirectory(prefix="incident-copilot-index-") as tmp:
        env = {"GIT_INDEX_FILE": os.path.join(tmp, "index")}
        _git(repo, "read-tree", base, env=env)
        yield env


def _tree_with_patch(repo: str | Path, base: str, diff: str) -> str:
    """Tree id of `base` with `diff` applied; GitError when it does not apply."""
    with _temp_index(repo, base) as env:
        _git(repo, "apply", "--cached", "--whitespace=nowarn", "-", input=diff, env=env)
        return _git(repo, "write-tree", env=env).strip()


def revert_patch(repo: str | Path, commit: str, onto: str = "HEAD") -> str:
    """The unified diff that reverts `commit` on top of `onto`; GitError when it does not apply."""
    sha = _commit_sha(repo, commit)
    parents = _git(repo, "show", "-s", "--format=%P", sha).split()
    if not parents:
        raise GitError(f"{sha[:12]} is the root commit of {repo}; there is nothing to revert to")
    # Of a merge, undo what it brought into its first parent (like `git revert -m 1`).
    undo = _git(repo, "diff", "--binary", *_DIFF_FLAGS, sha, parents[0])
    if not undo.strip():
        raise GitError(f"{sha[:12]} changes nothing; there is nothing to revert")
    head = _commit_sha(repo, onto)
    try:
        tree = _tree_with_patch(repo, head, undo)
    except GitError as exc:
        raise GitError(f"the revert of {sha[:12]} does not apply on {onto} {head[:12]}: {exc}") from exc
    diff = _git(repo, "diff", "--binary", *_DIFF_FLAGS, head, tree)
    if not diff.strip():
        raise GitError(f"{sha[:12]} is already reverted on {onto} {head[:12]}")
    return diff


def _blob_text(repo: str | Path, blob: str) -> str | None:
    """A blob's content as UTF-8 text; None when it is not text."""
    result = subprocess.run(["git", "-C", str(repo), "cat-file", "blob", blob], capture_output=True,
                            timeout=GIT_TIMEOUT, check=False)
    if result.returncode != 0:
        raise GitError(f"git cat-file blob {blob[:12]} failed in {repo}: {result.stderr.decode(errors='replace')}")
    try:
        return result.stdout.decode("utf-8")
    except UnicodeDecodeError:
        return None


def file_changes(repo: str | Path, base: str, diff: str) -> list[FileChange]:
    """The files `diff` changes on `base`, whole: path, the blob each replaces, its new content (for a code host)."""
    base_sha = _commit_sha(repo, base)
    tree = _tree_with_patch(repo, base_sha, diff)
    changes = []
    fields = _git(repo, "diff-tree", "-r", "-z", "--no-renames", base_sha, tree).split("\0")
    for meta, path in zip(fields[0:-1:2], fields[1::2], strict=False):  # ":old new oldblob newblob S", path
        _, new_mode, old_blob, new_blob, status = meta.split()
        content = None
        if status != "D":
            content = _blob_text(repo, new_blob)
            if content is None:
                raise GitError(f"{path} is not UTF-8 text after the patch; binary changes are not proposed")
        changes.append(FileChange(
            path=path, base_sha=None if status == "A" else old_blob, content=content,
            mode=new_mode if status != "D" else "100644",
        ))
    return changes


def diff_of_changes(repo: str | Path, base: str, changes: Sequence[FileChange]) -> str:
    """The unified diff that turns `base` into `base` with `changes`; GitError when a base blob does not match."""
    base_sha = _commit_sha(repo, base)
    with _temp_index(repo, base_sha) as env:
        for change in changes:
            current = _git(repo, "ls-files", "-s", "--", change.path, env=env).split()
            current_blob = current[1] if current else None
            if current_blob != change.base_sha:
                have = f"blob {current_blob}" if current_blob else "no such file"
                raise GitError(f"{change.path}: the base {base_sha[:12]} has {have}, the change is based on "
                               f"{change.base_sha or 'no file'}")
            if change.content is None:
                _git(repo, "update-index", "--force-remove", "--", change.path, env=env)
                continue
            blob = _git(repo, "hash-object", "-w", "--stdin", input=change.content).strip()
            _git(repo, "update-index", "--add", "--cacheinfo", f"{change.mode},{blob},{change.path}", env=env)
        tree = _git(repo, "write-tree", env=env).strip()
    return _git(repo, "diff", "--binary", *_DIFF_FLAGS, base_sha, tree)


def check_applies(repo: str | Path, base: str, diff: str) -> PatchCheck:
    """Whether `diff` applies cleanly on `base`."""
    try:
        base_sha = _commit_sha(repo, base)
        with _temp_index(repo, base_sha) as env:
            _git(repo, "apply", "--cached", "--check", "--whitespace=nowarn", "-", input=diff, env=env)
    except GitError as exc:
        return PatchCheck(name="applies", ok=False, detail=str(exc))
    return PatchCheck(name="applies", ok=True, detail=f"applies cleanly on {base_sha[:12]}")


def symlinks_at(repo: str | Path, base: str) -> frozenset[str]:
    """Paths of the symbolic links in the tree of `base` (a patch must not write through them)."""
    listing = _git(repo, "ls-tree", "-r", "-z", "--full-tree", _commit_sha(repo, base))
    return frozenset(entry.split("\t", 1)[1] for entry in listing.split("\0") if entry.startswith("120000 "))


def _test_env(scratch: str) -> dict[str, str]:
    # The repository's tests are untrusted code: they get no credentials from our environment.
    env = {k: os.environ[k] for k in ("PATH", "LANG", "LC_ALL", "TZ") if k in os.environ}
    env.update(HOME=scratch, TMPDIR=scratch, PYTHONDONTWRITEBYTECODE="1", PYTHONHASHSEED="0")
    return env


@contextlib.contextmanager
def _worktree(repo: str | Path, base: str):
    """A temporary detached worktree at `base` and a scratch directory beside it, removed on exit (also on error)."""
    tmp = tempfile.mkdtemp(prefix="incident-copilot-worktree-")
    path = os.path.join(tmp, "repo")
    try:
        _git(repo, "worktree", "add", "--detach", "--quiet", path, _commit_sha(repo, base))
        os.mkdir(os.path.join(tmp, "scratch"))
        yield path
    finally:
        if os.path.isdir(path):
            try:
                _git(repo, "worktree", "remove", "--force", path)
            except GitError:
                shutil.rmtree(path, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
        with contextlib.suppress(GitError):  # a stale worktree entry is harmless; git prunes it later
            _git(repo, "worktree", "prune")


def run_tests(
    repo: str | Path, base: str, diff: str | None, command: Sequence[str], *, subdir: str = "",
    limits: Limits = DEFAULT_LIMITS,
) -> SandboxRun:
    """Run the repository's test `command` on `base` (with `diff` applied) in a temporary worktree, sandboxed;
    in its folder `subdir` (a service's folder in a monorepo)."""
    if not command:
        raise ValueError("no test command given")
    if subdir.startswith("/") or ".." in subdir.split("/"):
        raise ValueError(f"the test folder {subdir!r} is not inside the repository")
    with _worktree(repo, base) as path:
        if diff:
            try:
                _git(path, "apply", "--whitespace=nowarn", "-", input=diff)
            except GitError as exc:
                raise GitError(f"the patch does not apply on {base}: {exc}") from exc
        scratch = os.path.join(os.path.dirname(path), "scratch")
        cwd = os.path.join(path, subdir) if subdir else path
        return run_sandboxed(list(command), cwd, [path, scratch], _test_env(scratch), limits)


def head_commit(repo: str | Path) -> str:
    """The commit HEAD points at."""
    return _commit_sha(repo, "HEAD")


def branch_commit(repo: str | Path, branch: str) -> str:
    """The tip of `branch` in a checkout: the local branch, else the one fetched from origin."""
    for ref in (f"refs/heads/{branch}", f"refs/remotes/origin/{branch}"):
        with contextlib.suppress(GitError):
            return _commit_sha(repo, ref)
    raise GitError(f"the checkout {repo} has no branch {branch!r} (neither local nor origin/{branch})")


def current_branch(repo: str | Path) -> str | None:
    """The branch the checkout has out, or None when its HEAD is detached."""
    try:
        return _git(repo, "symbolic-ref", "--quiet", "--short", "HEAD").strip() or None
    except GitError:
        return None


def file_at(repo: str | Path, commit: str, path: str) -> tuple[str, str] | None:
    """(blob id, text) of a UTF-8 file at `commit`, or None when it is absent, not a file, or not text."""
    listing = _git(repo, "ls-tree", "-z", "--full-tree", _commit_sha(repo, commit), "--", path).rstrip("\0")
    if not listing:
        return None
    meta = listing.split("\t", 1)[0].split()
    if meta[0] not in ("100644", "100755"):
        return None
    text = _blob_text(repo, meta[2])
    return (meta[2], text) if text is not None else None


def branch_exists(repo: str | Path, branch: str) -> bool:
    """True when the local branch exists."""
    result = subprocess.run(
        ["git", "-C", str(repo), "show-ref", "--verify", "--quiet", f"refs/heads/{branch}"],
        capture_output=True,
        timeout=GIT_TIMEOUT,
        check=False,
    )
    if result.returncode not in (0, 1):
        raise GitError(f"git show-ref failed in {repo}: {result.stderr.decode(errors='replace').strip()}")
    return result.returncode == 0


def _branch_has_tree(repo: str | Path, branch: str, base: str, tree: str) -> str | None:
    """The commit on `branch` (since `base`) whose tree is `tree`, if any: the change is already there."""
    for line in _git(repo, "log", "--format=%H %T", f"{base}..refs/heads/{branch}").splitlines():
        commit, commit_tree = line.split()
        if commit_tree == tree:
            return commit
    return None


def create_branch_with_patch(
    repo: str | Path, base: str, diff: str, branch: str, message: str, author: str
) -> PullRequest:
    """Create `branch` at `base` plus one commit with `diff`, without touching the checkout; idempotent."""
    match = _AUTHOR.match(author)
    if not match:
        raise ValueError(f"author must look like 'Name <email>', got {author!r}")
    _git(repo, "check-ref-format", "--branch", branch)
    base_sha = _commit_sha(repo, base)
    tree = _tree_with_patch(repo, base_sha, diff)
    if tree == _git(repo, "rev-parse", f"{base_sha}^{{tree}}").strip():
        raise GitError(f"the patch changes nothing on {base_sha[:12]}; no branch created")

    def existing() -> PullRequest:
        found = _branch_has_tree(repo, branch, base_sha, tree)
        if found:
            return PullRequest(
                backend="local",
                status="exists",
                branch=branch,
                commit=found,
                detail=f"branch {branch} already has this change at {found[:12]}; nothing done",
            )
        return PullRequest(
            backend="local",
            status="failed",
            branch=branch,
            detail=f"branch {branch} exists without this change; left untouched",
        )

    if branch_exists(repo, branch):
        return existing()
    name, email = match.groups()
    ident = {
        "GIT_AUTHOR_NAME": name,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_COMMITTER_NAME": name,
        "GIT_COMMITTER_EMAIL": email,
    }
    commit = _git(
        repo, "commit-tree", "--no-gpg-sign", tree, "-p", base_sha, "-F", "-", input=message, env=ident
    ).strip()
    try:
        # The empty old value makes the update fail if the branch appeared meanwhile (a concurrent run).
        _git(repo, "update-ref", "-m", "incident-copilot: fix branch", f"refs/heads/{branch}", commit, "")
    except GitError:
        if branch_exists(repo, branch):
            return existing()
        raise
    return PullRequest(
        backend="local",
        status="created",
        branch=branch,
        commit=commit,
        detail=f"created branch {branch} at {commit[:12]} on top of {base_sha[:12]} in {repo}",
    )
