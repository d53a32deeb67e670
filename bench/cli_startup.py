"""How long `incident-copilot --help` (and each command's --help) takes: the median wall time of fresh processes,
against a bare Python start on the same machine, in the same run.

Usage (from the repository root): python -m bench.cli_startup [--runs 20] [--json]

The aim is help under 1 s; it took 3.5 s when the command line imported the graph at start. Each sample is a new
process (`python cli.py ... --help`), so imports are never warm in the interpreter; the OS file cache is, as it is
for anyone typing the command twice.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = ([], ["demo"], ["investigate"], ["incidents", "approve"], ["eval"], ["config", "check"])


def seconds(argv: list[str], runs: int) -> float:
    """Median wall seconds of `runs` fresh processes of argv."""
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def measure(runs: int) -> list[dict]:
    """One row per command: its median, the bare interpreter's, and their ratio."""
    bare = seconds([sys.executable, "-c", "pass"], runs)
    rows = []
    for command in COMMANDS:
        help_seconds = seconds([sys.executable, str(ROOT / "cli.py"), *command, "--help"], runs)
        rows.append({"command": " ".join(["incident-copilot", *command, "--help"]), "median_s": round(help_seconds, 3),
                     "python_s": round(bare, 3), "ratio": round(help_seconds / bare, 1)})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="processes per command (default 20)")
    parser.add_argument("--json", action="store_true", help="print one JSON list instead of the table")
    args = parser.parse_args(argv)
    rows = measure(args.runs)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print("| command | median s | bare python s | ratio |\n|---|---|---|---|")
        for r in rows:
            print(f"| `{r['command']}` | {r['median_s']:.3f} | {r['python_s']:.3f} | {r['ratio']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
