"""Investigation speed over the wire: `incident-copilot investigate --service S --at T --window W --json` as a fresh
process per incident, process start included, against real backends; medians.

Usage (from the repository root):
    python -m bench.investigate_speed [--scenarios memory_leak,disk_full] [--seeds 3] [--dataset .data/nezha-ob]
                                      [--cases 10] [--admin-url URL] [--python PATH] [--json]

Two sets, each served the way `incident-copilot eval` serves it:
- the simulated fleet (`eval --wire`, evals/wire.py): each (scenario, seed) case's 45 minutes backfilled into a real
  Prometheus with promtool, its logs on the Loki API and its traces on Tempo's API (sim/history.py); investigated
  with `--window 15m` at the case's alert time;
- an eval set of recorded telemetry (`eval --dataset`, evals/dataset.py), e.g. Nezha's OnlineBoutique days built by
  `python -m evals.nezha`: its first `--cases` cases, each with the set's own window, metrics step and
  telemetry.toml.

Every investigation is a new `python cli.py investigate ...` process (imports are never warm in the interpreter;
the OS file cache, Python's bytecode and Jinja's template cache are, as for anyone running the command twice) on
one throwaway database (admin URL from --admin-url, else $BENCH_POSTGRES_URL, else the local server), the offline
LLM, no notification routes. Untimed runs first create the database's tables and investigate each set's first case
once. Reported per set: the median and the slowest wall seconds, the median
CPU seconds of the investigate process (user + system: what the machine's other load inflates least), the median
of `python -c pass` and of `cli.py --version` on the same machine in the same run (what process start and the
command line's own imports cost), and the share of cases whose top candidate is the expected one (a check that the
runs did real work, not a score).

The processes run on this interpreter unless `--python` names another: say, a venv with only the runtime
dependencies, as users install them (the test extras add trio, which selenium needs and httpcore imports whenever it
is installed).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.intake import DEFAULT_ADMIN_URL

ROOT = Path(__file__).resolve().parent.parent
SOURCE_VARS = ("LOKI_URL", "PROMETHEUS_URL", "TEMPO_URL", "JAEGER_URL", "TELEMETRY_CONFIG", "LLM_PROVIDER",
               "GOOGLE_API_KEY", "OPENAI_API_KEY", "NOTIFY_CONFIG")


class Investigation:
    """One investigate command to time: its arguments, environment additions and expected answer."""

    def __init__(self, label: str, argv: list[str], env: dict[str, str], expected: tuple[str | None, str]):
        self.label, self.argv, self.env, self.expected = label, argv, env, expected


def environment(database_url: str, workdir: Path, extra: dict[str, str]) -> dict[str, str]:
    """The process environment of an investigation: the bench's backends only, the offline model, and Python's
    bytecode cache on, as an installed command has it (a sandbox's PYTHONDONTWRITEBYTECODE would make every
    process compile the project's modules from source)."""
    env = {k: v for k, v in os.environ.items() if k not in (*SOURCE_VARS, "PYTHONDONTWRITEBYTECODE")}
    return {**env, "DATABASE_URL": database_url, "OUTPUT_DIR": str(workdir / "out"), "LLM_PROVIDER": "offline",
            "LANGSMITH_TRACING": "false", "INCIDENT_COPILOT_HOME": str(workdir / "home"), **extra}


def is_right(report: dict, expected: tuple[str | None, str]) -> bool:
    """The answer's top cause is the expected one; for a false alarm (fault "none"), the alert was dismissed."""
    root = report["root_cause"]
    if expected[1] == "none":
        return report["is_incident"] is False
    return (root["service"], root["fault_type"]) == expected


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float, subprocess.CompletedProcess]:
    """Wall seconds and CPU seconds (user + system) of one fresh process, and what it printed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          timeout=600)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, done


def run_set(name: str, investigations: list[Investigation], database_url: str, workdir: Path,
            python: str) -> dict[str, Any]:
    """Time every investigation of a set: medians, the slowest, exit codes, top-1 right."""
    cli = [python, str(ROOT / "cli.py")]
    first = investigations[0]
    timed([*cli, *first.argv], environment(database_url, workdir, first.env))  # untimed: bytecode, template cache
    rows = []
    for item in investigations:
        env = environment(database_url, workdir, item.env)
        seconds, cpu, done = timed([*cli, *item.argv], env)
        if done.returncode not in (0, 3, 4):
            raise RuntimeError(f"{item.label}: exit {done.returncode}\n{done.stderr[-3000:]}")
        report = json.loads(done.stdout)
        root = report["root_cause"]
        rows.append({"case": item.label, "seconds": round(seconds, 3), "cpu_seconds": round(cpu, 3),
                     "exit": done.returncode,
                     "outcome": report.get("outcome"), "answer": [root["service"], root["fault_type"]],
                     "right": is_right(report, item.expected)})
        print(f"  {name} {item.label}: {seconds:.2f} s ({cpu:.2f} s CPU), exit {done.returncode}, "
              f"{root['fault_type']} in {root['service']}", file=sys.stderr)
    times = [r["seconds"] for r in rows]
    return {"set": name, "cases": len(rows), "median_s": round(statistics.median(times), 3),
            "max_s": round(max(times), 3),
            "median_cpu_s": round(statistics.median(r["cpu_seconds"] for r in rows), 3),
            "top1_right": round(sum(r["right"] for r in rows) / len(rows), 3), "rows": rows}


def startup(runs: int, database_url: str, workdir: Path, python: str) -> dict[str, float]:
    """Wall medians of a bare interpreter and of `cli.py --version` (click and the command line's own imports)."""
    env = environment(database_url, workdir, {})
    bare = [timed([python, "-c", "pass"], env)[0] for _ in range(runs)]
    version = [timed([python, str(ROOT / "cli.py"), "--version"], env)[0] for _ in range(runs)]
    return {"python_s": round(statistics.median(bare), 3), "cli_version_s": round(statistics.median(version), 3)}


@contextmanager
def simulated(scenarios: list[str], seeds: int, workdir: Path) -> Iterator[list[Investigation]]:
    """The simulated fleet's cases over the wire (as `eval --wire` serves them), as investigate commands."""
    from evals.wire import plan_cases, wire_backends
    from sim.scenarios import build_scenario

    cases = plan_cases(scenarios, seeds)
    with wire_backends(cases, workdir / "sim") as backends:
        env = {"LOKI_URL": backends.loki_url or "", "PROMETHEUS_URL": backends.prometheus_url or "",
               "TEMPO_URL": backends.tempo_url or ""}
        items = []
        for case in cases:
            sc = build_scenario(case.scenario, case.seed, case.end)
            argv = ["investigate", "--service", sc.alerted_service, "--at", case.end.isoformat(), "--window", "15m",
                    "--json"]
            items.append(Investigation(f"{case.scenario}/{case.seed}", argv, env, (sc.root_service, sc.fault_type)))
        yield items


@contextmanager
def recorded(path: Path, count: int, workdir: Path) -> Iterator[list[Investigation]]:
    """An eval set's first `count` cases over the wire (as `eval --dataset` serves them), as investigate commands."""
    from evals.dataset import load_eval_set, serve_eval_set

    eval_set = load_eval_set(path)
    (workdir / "dataset").mkdir()
    with serve_eval_set(eval_set, workdir / "dataset") as backends:
        env = {"LOKI_URL": backends.loki_url or "", "PROMETHEUS_URL": backends.prometheus_url or "",
               "TEMPO_URL": backends.tempo_url or "",
               "INCIDENT_METRICS_STEP_SECONDS": str(eval_set.metrics_step_seconds)}
        if "config" in eval_set.manifest["telemetry"]:
            env["TELEMETRY_CONFIG"] = str(eval_set.file("config"))
        env = {k: v for k, v in env.items() if v}
        items = []
        for case in eval_set.cases[:count]:
            argv = ["investigate", "--service", case.service, "--at", case.at.isoformat(), "--window",
                    f"{eval_set.window_seconds}s", "--json"]
            items.append(Investigation(case.id, argv, env, (case.expected_service, case.expected_fault)))
        yield items


def measure(scenarios: list[str], seeds: int, dataset: Path | None, cases: int, admin_url: str,
            startup_runs: int = 5, python: str = sys.executable) -> dict[str, Any]:
    """Both sets (the eval set when given) on one throwaway database, with the start-up medians."""
    from tools.database import throwaway_database

    with tempfile.TemporaryDirectory(prefix="bench-investigate-") as tmp, \
            throwaway_database(admin_url, prefix="bench_speed") as database_url:
        workdir = Path(tmp)
        warm = environment(database_url, workdir, {})
        timed([python, str(ROOT / "cli.py"), "db", "migrate"], warm)  # tables once, untimed
        result: dict[str, Any] = {"python": python, "startup": startup(startup_runs, database_url, workdir, python),
                                  "sets": []}
        with simulated(scenarios, seeds, workdir) as items:
            result["sets"].append(run_set("simulated fleet, 15 min windows", items, database_url, workdir, python))
        if dataset is not None:
            with recorded(dataset, cases, workdir) as items:
                result["sets"].append(run_set(f"{dataset.name}, its own windows", items, database_url, workdir,
                                              python))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default="memory_leak,deployment_regression,db_connection_exhaustion,disk_full,"
                                               "network_partition,false_alarm",
                        help="simulated scenarios, comma separated")
    parser.add_argument("--seeds", type=int, default=2, help="seeds per scenario (default 2)")
    parser.add_argument("--dataset", type=Path, help="an eval set directory, e.g. .data/nezha-ob")
    parser.add_argument("--cases", type=int, default=10, help="cases of the eval set (default 10)")
    parser.add_argument("--startup-runs", type=int, default=5, help="processes for the start-up medians")
    parser.add_argument("--admin-url", default=os.environ.get("BENCH_POSTGRES_URL", DEFAULT_ADMIN_URL))
    parser.add_argument("--python", default=sys.executable,
                        help="the interpreter that runs cli.py (default: this one), e.g. /tmp/run-venv/bin/python")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args(argv)
    result = measure(args.scenarios.split(","), args.seeds, args.dataset, args.cases, args.admin_url,
                     args.startup_runs, args.python)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    s = result["startup"]
    print(f"process start: python -c pass {s['python_s']:.3f} s, cli.py --version {s['cli_version_s']:.3f} s\n")
    print("| set | cases | median s | slowest s | median CPU s | top-1 right |\n|---|---|---|---|---|---|")
    for r in result["sets"]:
        print(f"| {r['set']} | {r['cases']} | {r['median_s']:.2f} | {r['max_s']:.2f} | {r['median_cpu_s']:.2f} | "
              f"{r['top1_right']:.0%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
