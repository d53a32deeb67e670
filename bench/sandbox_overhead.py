"""What the sandbox costs: the median wall time of a repository's test command run in bubblewrap (tools/sandbox.py)
against the same command run directly, on the same worktree, in the same run; and an empty command (`true`) both
ways, which is the sandbox's own start-up.

Usage (from the repository root): python -m bench.sandbox_overhead [--runs 10] [--json]

The repository is the simulator's sample repository of the checkout service, its tests as the simulator configures
them (python -m unittest discover); check_patch runs them twice per fix (without and with the patch).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

from sim.sample_repo import SAMPLE_TEST_COMMAND, ensure_sample_repo
from tools.sandbox import run_sandboxed, sandbox_problem


def median_seconds(run: Callable[[], object], runs: int) -> float:
    """Median wall seconds of `runs` calls."""
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        run()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def measure(runs: int) -> list[dict]:
    """One row per command: its median sandboxed, directly, and their ratio."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONDONTWRITEBYTECODE": "1"}
    with tempfile.TemporaryDirectory(prefix="bench-sandbox-") as tmp:
        repo = ensure_sample_repo("checkout", os.path.join(tmp, "repos"))
        tree = os.path.join(tmp, "tree")
        subprocess.run(["git", "-C", str(repo.path), "worktree", "add", "--detach", "-q", tree, "HEAD~1"], check=True)
        env |= {"HOME": tmp, "TMPDIR": tmp}
        rows = []
        for name, argv in (("true", ["true"]), ("sample tests", list(SAMPLE_TEST_COMMAND))):
            sandboxed = median_seconds(lambda a=argv: run_sandboxed(a, tree, [tree], env), runs)
            direct = median_seconds(lambda a=argv: subprocess.run(a, cwd=tree, env=env, capture_output=True), runs)
            rows.append({"command": name, "sandboxed_s": round(sandboxed, 3), "direct_s": round(direct, 3),
                         "ratio": round(sandboxed / direct, 2)})
        subprocess.run(["git", "-C", str(repo.path), "worktree", "remove", "--force", tree], check=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="runs of each command each way (default 10)")
    parser.add_argument("--json", action="store_true", help="print one JSON list instead of the table")
    args = parser.parse_args(argv)
    problem = sandbox_problem()
    if problem is not None:
        print(f"no sandbox on this machine: {problem}", file=sys.stderr)
        return 1
    rows = measure(args.runs)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print("| command | sandboxed s | direct s | ratio |\n|---|---|---|---|")
        for r in rows:
            print(f"| {r['command']} | {r['sandboxed_s']:.3f} | {r['direct_s']:.3f} | {r['ratio']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
