"""Run a repository's own command (its tests: untrusted code) in a bubblewrap sandbox.

The command sees the whole filesystem read-only, except its worktree and a scratch directory; it has no network
(a network namespace of its own, with only a loopback nobody listens on), no capabilities, no credentials from our
environment, and CPU-time, memory, file-size and wall-clock limits. Nothing falls back to running on the host: when
bubblewrap cannot start, the run reports why and nothing runs.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

MAX_OUTPUT_CHARS = 8_000


@dataclass(frozen=True)
class Limits:
    """What one sandboxed command may use."""

    wall_seconds: float = 600.0
    cpu_seconds: int = 600
    memory_bytes: int = 4 << 30
    """Address space (RLIMIT_AS): test runners of Python, Node or Go fit in far less."""
    file_bytes: int = 512 << 20
    """Largest file the command may write."""


@dataclass
class SandboxRun:
    """What a sandboxed command did."""

    status: Literal["passed", "failed", "timed_out", "unavailable"]
    output: str
    exit_code: int | None = None
    stopped: list[str] = field(default_factory=list)
    """What the sandbox stopped, as far as the output and the exit status tell."""

    @property
    def reason(self) -> str:
        """One line on why the command did not pass (empty when it passed)."""
        if self.status == "passed":
            return ""
        if self.status == "unavailable":
            return self.output
        what = "timed out" if self.status == "timed_out" else f"exited with status {self.exit_code}"
        return what + (f"; the sandbox stopped it: {', '.join(self.stopped)}" if self.stopped else "")


# What the sandbox stops, recognised by the error the command then prints or the signal that ends it.
STOPPED_SIGNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("a network connection (there is no network in the sandbox)", re.compile(
        r"Network is unreachable|Temporary failure in name resolution|Name or service not known"
        r"|No address associated with hostname|getaddrinfo (?:EAI_AGAIN|ENOTFOUND)|Connection refused")),
    ("a write outside the worktree (read-only file system)", re.compile(r"Read-only file system|EROFS")),
    ("memory beyond its limit", re.compile(r"\bMemoryError\b|Cannot allocate memory|out of memory")),
)
STOPPED_BY_SIGNAL = {
    signal.SIGXCPU: "CPU time beyond its limit",
    signal.SIGXFSZ: "a file larger than its limit",
    signal.SIGKILL: "killed (its CPU time or memory ran out)",
}


@functools.cache
def sandbox_problem() -> str | None:
    """Why the sandbox cannot run commands on this machine, or None when it can (checked once per process)."""
    if shutil.which("bwrap") is None:
        return "bubblewrap (bwrap) is not installed: run scripts/install-system-deps.sh or apt-get install bubblewrap"
    if shutil.which("prlimit") is None:
        return "prlimit (util-linux) is not installed"
    try:
        probe = subprocess.run(
            _bwrap_argv(["true"], "/", [], DEFAULT_LIMITS), capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap could not start: {exc}"
    if probe.returncode != 0:
        return ("bubblewrap could not create its namespaces (are unprivileged user namespaces disabled? "
                f"kernel.unprivileged_userns_clone / user.max_user_namespaces): {probe.stderr.strip()[:300]}")
    return None


def _bwrap_argv(argv: Sequence[str], cwd: str, writable: Sequence[str], limits: Limits) -> list[str]:
    # prlimit sets the limits on bwrap, whose children inherit them; it needs no preexec_fn (unsafe with threads).
    command = [
        "prlimit", f"--cpu={limits.cpu_seconds}:{limits.cpu_seconds + 5}", f"--as={limits.memory_bytes}",
        f"--fsize={limits.file_bytes}", "--core=0", "--",
        "bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
    ]
    for path in writable:
        command += ["--bind", path, path]
    return command + [
        "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--chdir", cwd, "--", *argv,
    ]


def cap_output(text: str, limit: int = MAX_OUTPUT_CHARS) -> str:
    """Keep the head and the (more telling) tail of a long output."""
    if len(text) <= limit:
        return text
    head = limit // 3
    return f"{text[:head]}\n... [{len(text) - limit} characters cut] ...\n{text[-(limit - head):]}"


DEFAULT_LIMITS = Limits()


def run_sandboxed(
    argv: Sequence[str], cwd: str, writable: Sequence[str], env: dict[str, str], limits: Limits = DEFAULT_LIMITS
) -> SandboxRun:
    """Run `argv` in `cwd` in the sandbox; only the `writable` directories can be written."""
    problem = sandbox_problem()
    if problem is not None:
        return SandboxRun("unavailable", f"not run: {problem}")
    proc = subprocess.Popen(
        _bwrap_argv(argv, cwd, [os.path.realpath(p) for p in writable], limits),
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        errors="replace", start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=limits.wall_seconds)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # bwrap dies, and --die-with-parent takes its whole namespace along
        output, _ = proc.communicate()
        return SandboxRun("timed_out", cap_output(f"{output}\n[timed out after {limits.wall_seconds:.0f}s]"))
    code = proc.returncode
    if code == 0:
        return SandboxRun("passed", cap_output(output), 0)
    stopped = [what for what, sign in STOPPED_SIGNS if sign.search(output)]
    signum = code - 128 if code > 128 else -code  # bwrap reports a child killed by a signal as 128 + its number
    if signum in STOPPED_BY_SIGNAL:
        stopped.append(STOPPED_BY_SIGNAL[signum])
    return SandboxRun("failed", cap_output(output), code, stopped)
