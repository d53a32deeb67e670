"""check_patch and the gate on repositories built here: the configured test command run in the sandbox, no
"tests must fail first" precondition, the words of the gate, and a hostile patch suite where every patch is stopped
with a clear reason."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from analysis.patch_checks import check_patch as safety_checks
from analysis.secrets import find_secrets
from nodes.approve import gate_words
from nodes.check_patch import check_patch
from state import Patch, PrTarget
from tests.conftest import REPO_ROOT
from tests.secret_corpus import planted_secrets
from tools.git_repo import revert_patch, run_tests
from tools.sandbox import Limits

PY = sys.executable
CALC = "def add(a, b):\n    return a + b\n"
CHECKS = "from calc import add\n\nassert add(2, 2) == 4, 'add is broken'\nprint('checks passed')\n"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


def commit(repo: Path, files: dict[str, str | None], message: str) -> str:
    for path, text in files.items():
        target = repo / path
        if text is None:
            target.unlink()
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=T", "-c", "user.email=t@example.com", "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD").strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository whose tests run as `python run_checks.py` (no tests/ folder, no unittest)."""
    path = tmp_path / "calc"
    path.mkdir()
    git(path, "-c", "init.defaultBranch=main", "init", "-q")
    commit(path, {"calc.py": CALC, "run_checks.py": CHECKS, "README.md": "# calc\n",
                  ".github/workflows/ci.yml": "on: push\n", "tests/test_calc.py":
                  "from calc import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n"}, "calc")
    return path


def patch_for(repo: Path, diff: str, command: list[str] | None = None, **fields) -> Patch:
    base = git(repo, "rev-parse", "HEAD").strip()
    target = PrTarget(backend="local", repository=str(repo), branch="incident-copilot/inc-1", base_branch="main")
    return Patch(kind="edit", repo=str(repo), base_commit=base, title="fix", diff=diff, target=target,
                 test_command=[PY, "run_checks.py"] if command is None else command, **fields)


def diff_of(repo: Path, files: dict[str, str | None]) -> str:
    """The diff that `files` would make on HEAD, made with git on a scratch branch (HEAD is left as it was)."""
    head = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "checkout", "-q", "-b", "scratch")
    commit(repo, files, "scratch")
    diff = git(repo, "diff", "--binary", head, "HEAD")
    git(repo, "checkout", "-q", "main")
    git(repo, "branch", "-q", "-D", "scratch")
    return diff


async def checked(patch: Patch) -> Patch:
    return (await check_patch({"patch": patch}))["patch"]


def failed(patch: Patch) -> dict[str, str]:
    return {c.name: c.detail for c in patch.checks if not c.ok}


needs_sandbox = pytest.mark.usefixtures("sandbox")


# --- the defects of issue 8 ------------------------------------------------------------------------------------


@needs_sandbox
async def test_the_configured_test_command_runs_not_a_hard_coded_unittest(repo):
    bad = commit(repo, {"calc.py": CALC.replace("a + b", "a - b")}, "calc: faster add")
    patch = await checked(patch_for(repo, revert_patch(repo, bad)))
    assert patch.ready, patch.checks
    tests = {c.name: c for c in patch.checks}["tests_pass"]
    assert f"`{PY} run_checks.py` passed in the sandbox" in tests.detail
    assert (patch.tests_before, patch.tests_after) == ("fail", "pass")
    assert [f.path for f in patch.files_to_modify] == ["calc.py"]
    assert patch.files_to_modify[0].content == CALC


@needs_sandbox
async def test_tests_that_do_not_reproduce_the_failure_do_not_block_the_gate(repo):
    diff = diff_of(repo, {"calc.py": CALC + "\n\ndef sub(a, b):\n    return a - b\n"})
    patch = await checked(patch_for(repo, diff))
    assert patch.ready, patch.checks
    assert (patch.tests_before, patch.tests_after) == ("pass", "pass")  # recorded, not a precondition


@needs_sandbox
async def test_in_a_monorepo_the_tests_run_in_the_service_folder(repo):
    commit(repo, {"services/pay/check.py": "import os\nassert os.path.basename(os.getcwd()) == 'pay'\n"}, "pay")
    diff = diff_of(repo, {"services/pay/README.md": "# pay\n"})
    patch = await checked(patch_for(repo, diff, command=[PY, "check.py"], test_dir="services/pay"))
    assert patch.ready, patch.checks


async def test_without_a_sandbox_nothing_runs_on_the_host(repo, tmp_path, monkeypatch):
    import tools.sandbox

    monkeypatch.setattr(tools.sandbox, "sandbox_problem", lambda: "bubblewrap (bwrap) is not installed")
    marker = tmp_path / "ran-on-the-host"
    diff = diff_of(repo, {"calc.py": CALC + "# note\n"})
    patch = await checked(patch_for(repo, diff, command=[PY, "-c", f"open({str(marker)!r}, 'w')"]))
    assert not patch.ready and not marker.exists()
    assert "not run: bubblewrap (bwrap) is not installed" in failed(patch)["tests_pass"]
    assert (patch.tests_before, patch.tests_after) == ("not_run", "not_run")


async def test_no_configured_test_command_is_not_approvable_and_says_why(repo):
    diff = diff_of(repo, {"calc.py": CALC + "# note\n"})
    patch = await checked(patch_for(repo, diff, command=[]))
    assert not patch.ready
    assert "no test command is configured" in failed(patch)["tests_pass"]
    assert patch.tests_after == "not_run"


@needs_sandbox
def test_the_tests_cannot_write_outside_their_worktree(repo, tmp_path):
    outside = tmp_path / "outside.txt"
    command = [PY, "-c", f"open({str(outside)!r}, 'w').write('pwned')"]
    run = run_tests(repo, "HEAD", None, command)
    assert run.status == "failed"
    assert not outside.exists()
    assert "a write outside the worktree (read-only file system)" in run.reason
    inside = run_tests(repo, "HEAD", None, [PY, "-c", "import tempfile; open('out.txt', 'w').write('x');"
                                                      "tempfile.NamedTemporaryFile().write(b'x')"])
    assert inside.status == "passed", inside.output
    assert not (repo / "out.txt").exists()  # the user's checkout is never the worktree


@needs_sandbox
def test_the_tests_get_no_network_and_no_credentials(repo, monkeypatch):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.5)
    port = server.getsockname()[1]
    accepted = []
    threading.Thread(target=lambda: accepted.append(_accept(server)), daemon=True).start()
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_" + "x" * 36)
    probe = (f"import os, socket; print('token:', os.environ.get('GITHUB_TOKEN')); "
             f"socket.create_connection(('127.0.0.1', {port}), 2)")
    run = run_tests(repo, "HEAD", None, [PY, "-c", probe])
    assert run.status == "failed"
    assert "token: None" in run.output
    assert "a network connection (there is no network in the sandbox)" in run.reason
    server.close()
    assert accepted in ([], [None])


def _accept(server: socket.socket) -> object:
    try:
        return server.accept()
    except OSError:
        return None


@needs_sandbox
def test_cpu_memory_and_time_limits(repo):
    spin = run_tests(repo, "HEAD", None, [PY, "-c", "while True: pass"], limits=Limits(cpu_seconds=1))
    assert spin.status == "failed" and "CPU time beyond its limit" in spin.reason
    hog = run_tests(repo, "HEAD", None, [PY, "-c", "b = bytearray(3 << 30)"], limits=Limits(memory_bytes=1 << 30))
    assert hog.status == "failed" and "memory beyond its limit" in hog.reason
    sleep = run_tests(repo, "HEAD", None, ["sleep", "60"], limits=Limits(wall_seconds=1))
    assert sleep.status == "timed_out" and "timed out" in sleep.reason


def test_gate_words_say_what_approval_does(repo):
    local = patch_for(repo, "")
    question, label = gate_words(local)
    assert f"create the local branch incident-copilot/inc-1 in {repo}" in question
    assert "no pull request is opened" in question
    assert label == "Approve: create the local branch (no pull request)"
    github = local.model_copy(update={"target": PrTarget(backend="github", repository="acme/shop",
                                                         branch="incident-copilot/inc-1", base_branch="main")})
    question, label = gate_words(github)
    assert "open a GitHub pull request on acme/shop from a new branch incident-copilot/inc-1 into main" in question
    assert label == "Approve: open the GitHub pull request"


# --- the hostile patch suite: every one is stopped, and the check says why ------------------------------------


def hostile_diffs(repo: Path, tmp_path: Path) -> dict[str, tuple[str, str, str]]:
    """name -> (diff, the check that stops it, words its detail must contain)."""
    ten_thousand = "".join(f"x{i} = {i}\n" for i in range(10_000))
    return {
        "edits CI config": (diff_of(repo, {".github/workflows/ci.yml": "on: push\njobs: {}\n"}),
                            "no_denied_paths", ".github/workflows/ci.yml (.github/)"),
        "adds a secret": (diff_of(repo, {"calc.py": CALC + 'API_TOKEN = "ghp_' + "a1B2" * 9 + '"\n'}),
                          "no_secrets", "adds a secret at calc.py:3 (github-token)"),
        "escapes with ../": ("diff --git a/../evil.py b/../evil.py\nnew file mode 100644\n--- /dev/null\n"
                             "+++ b/../evil.py\n@@ -0,0 +1 @@\n+x = 1\n", "paths_inside_repo",
                             "../evil.py leaves the repository"),
        "adds a symlink out of the repo": ("diff --git a/data b/data\nnew file mode 120000\n--- /dev/null\n"
                                           "+++ b/data\n@@ -0,0 +1 @@\n+../../../etc\n\\ No newline at end of file\n",
                                           "paths_inside_repo", "data would become a symbolic link"),
        "deletes tests": (diff_of(repo, {"tests/test_calc.py": None}), "tests_kept",
                          "deletes the test file tests/test_calc.py"),
        "removes an assertion": (diff_of(repo, {"tests/test_calc.py": "from calc import add\n\n\ndef test_add():\n"
                                                "    pass\n"}), "tests_kept",
                                 "removes 1 test or assertion line(s) from tests/test_calc.py"),
        "a 10,000-line diff": (diff_of(repo, {"generated.py": ten_thousand}), "size",
                               "10000 changed line(s), limit 400"),
    }


@pytest.mark.parametrize("name", ["edits CI config", "adds a secret", "escapes with ../",
                                  "adds a symlink out of the repo", "deletes tests", "removes an assertion",
                                  "a 10,000-line diff"])
async def test_hostile_patches_are_stopped_before_any_test_runs(repo, tmp_path, name):
    diff, check, words = hostile_diffs(repo, tmp_path)[name]
    marker = tmp_path / "tests-ran"
    patch = await checked(patch_for(repo, diff, command=[PY, "-c", f"open({str(marker)!r}, 'w')"]))
    reasons = failed(patch)
    assert not patch.ready
    assert check in reasons and words in reasons[check], reasons
    assert reasons["tests_pass"].startswith("not run: the patch failed")
    assert not marker.exists()
    question, _ = gate_words(patch)  # the gate is never reached: approve only asks about a ready patch
    assert patch.ready is False and question


async def test_a_patch_through_a_committed_symlink_is_stopped(repo, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (repo / "data").symlink_to(tmp_path / "elsewhere")
    commit(repo, {}, "data link")
    diff = ("diff --git a/data/evil.txt b/data/evil.txt\nnew file mode 100644\n--- /dev/null\n+++ b/data/evil.txt\n"
            "@@ -0,0 +1 @@\n+pwned\n")
    patch = await checked(patch_for(repo, diff))
    reasons = failed(patch)
    assert "data/evil.txt goes through the symbolic link data" in reasons["paths_inside_repo"]
    assert not (tmp_path / "elsewhere" / "evil.txt").exists()


@needs_sandbox
async def test_patched_tests_that_try_the_network_or_write_outside_are_stopped(repo, tmp_path):
    outside = tmp_path / "stolen.txt"
    sneaky = CHECKS + (f"import socket\ntry:\n    open({str(outside)!r}, 'w').write('x')\n"
                       "finally:\n    socket.create_connection(('192.0.2.1', 443), 2)\n")
    patch = await checked(patch_for(repo, diff_of(repo, {"run_checks.py": sneaky})))
    reasons = failed(patch)
    assert set(reasons) == {"tests_pass"}
    assert "a write outside the worktree (read-only file system)" in reasons["tests_pass"]
    assert "a network connection (there is no network in the sandbox)" in reasons["tests_pass"]
    assert not outside.exists()
    assert patch.tests_after == "fail"


def test_the_patch_check_uses_the_one_secret_detector_of_the_project():
    source = (REPO_ROOT / "analysis" / "patch_checks.py").read_text()
    assert "from analysis.secrets import find_secrets" in source
    assert not any(token in source for token in ("AKIA", "ghp_", "PRIVATE KEY", "xox", "AIza"))
    refused = 0
    for planted in planted_secrets(60):
        diff = f"--- a/app.py\n+++ b/app.py\n@@ -1 +1,2 @@\n x = 1\n+{planted.text}\n"
        secrets = {c.name: c for c in safety_checks(diff)}["no_secrets"]
        assert secrets.ok == (not find_secrets(planted.text, code=True)), planted.kind
        assert planted.secret not in secrets.detail
        refused += not secrets.ok
    assert refused >= 30  # keys, tokens, URLs with passwords, .env assignments: secrets in code too


def test_a_checkout_without_the_base_branch_uses_its_own_and_says_so(tmp_path):
    from nodes.propose_fix import base_of

    path = tmp_path / "legacy"
    path.mkdir()
    git(path, "-c", "init.defaultBranch=master", "init", "-q")
    head = commit(path, {"calc.py": CALC}, "calc")
    assert base_of(str(path), "master") == (head, "master", None)
    base, branch, note = base_of(str(path), "main")
    assert (base, branch) == (head, "master")
    assert "has no branch 'main'" in note and "the fix is based on the checked-out branch master" in note
