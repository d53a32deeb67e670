"""Alert to brief through the example stack of deploy/: the simulated fleet, Debian's Prometheus and Alertmanager
and the service with live telemetry, per scenario and seed.

Usage (from the repository root):
    python -m bench.alert_to_brief [--scenarios dependency_outage,db_connection_exhaustion] [--seeds 1,2]
                                   [--speed 15] [--inject-after 45] [--admin-url URL] [--json]

For each scenario and seed, on a fresh database (admin URL from --admin-url, else $BENCH_POSTGRES_URL, else
postgresql://postgres@127.0.0.1:5432/postgres): `sim serve` injects the fault after 45 s (--inject-after),
Prometheus evaluates deploy/alert_rules.yml compressed to the fleet's speed, Alertmanager (group_wait 1s) posts
the first alert group to the service, and the first incident's brief is awaited (tests/live_server.py
run_alert_to_brief). Reported: the alert that opened it, whether its root cause is the injected one, and the
seconds from the fault to the alert's startsAt, from startsAt to our 202 (the incident row) and from there to the
brief's checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from bench.intake import DEFAULT_ADMIN_URL
from sim.scenarios import SCENARIOS
from tests.live_server import alerting_binaries_missing, run_alert_to_brief
from tools.database import throwaway_database

INJECT_AFTER = 45.0  # wall seconds of baseline before the fault


def measure(admin_url: str, workdir: Path, scenario: str, seed: int, speed: float, timeout: float,
            inject_after: float = INJECT_AFTER) -> dict:
    """One scenario and seed: the opening alert, the verdict against the fleet's truth, the timings; no alert
    within `timeout` seconds of the fault is a row of its own (right for false_alarm, a miss otherwise)."""
    with throwaway_database(admin_url, prefix="bench_a2b") as database_url:
        try:
            run = run_alert_to_brief(
                workdir, database_url, scenario, seed, speed=speed, inject_after=inject_after,
                timeout=inject_after + timeout,
            )
        except AssertionError as exc:
            if "an incident opened by Alertmanager" not in str(exc):
                raise
            return {"scenario": scenario, "seed": seed, "alert": f"none in {timeout:g} s after the fault", "truth": "",
                    "found": "", "correct": scenario == "false_alarm", "incidents": 0}
    incident, state = run.incident, run.state
    root = incident["report"]["root_cause"]
    truth = (state["root_service"], state["fault_type"]) if state["root_service"] else (incident["service"], "none")
    return {
        "scenario": scenario,
        "seed": seed,
        "alert": f"{incident['alertname']} on {incident['service']}",
        "truth": f"{truth[1]} at {truth[0]}",
        "found": f"{root['fault_type']} at {root['service']}",
        "correct": (root["service"], root["fault_type"]) == truth,
        "incidents": len(run.incidents),
        **{name: round(seconds, 2) for name, seconds in run.timings().items()},
    }


def format_table(rows: list[dict]) -> str:
    """Markdown: one row per run."""
    head = ("| scenario | seed | first alert | injected | found | fault -> startsAt s | startsAt -> 202 s "
            "| 202 -> brief s | alert -> brief s |\n|---|---|---|---|---|---|---|---|---|")
    lines = [
        f"| {r['scenario']} | {r['seed']} | {r['alert']} | {r['truth']} | {'✓' if r['correct'] else '✗'} "
        f"{r['found']} | {_seconds(r, 'fault_to_alert', 1)} | {_seconds(r, 'alert_to_202')} "
        f"| {_seconds(r, '202_to_brief')} | {_seconds(r, 'alert_to_brief')} |"
        for r in rows
    ]
    return "\n".join([head, *lines])


def _seconds(row: dict, key: str, digits: int = 2) -> str:
    return f"{row[key]:.{digits}f}" if key in row else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default="dependency_outage,db_connection_exhaustion")
    parser.add_argument("--seeds", default="1")
    parser.add_argument("--speed", type=float, default=15.0, help="simulated seconds per wall second")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for an alert after the fault")
    parser.add_argument("--inject-after", type=float, default=INJECT_AFTER,
                        help="wall seconds of healthy baseline before the fault (default 45)")
    parser.add_argument("--admin-url", default=os.environ.get("BENCH_POSTGRES_URL", DEFAULT_ADMIN_URL))
    parser.add_argument("--json", action="store_true", help="one JSON object per run instead of the table")
    args = parser.parse_args(argv)
    missing = alerting_binaries_missing()
    if missing:
        print(f"missing {missing}: run scripts/install-system-deps.sh", file=sys.stderr)
        return 2
    scenarios = args.scenarios.split(",")
    unknown = sorted(set(scenarios) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenarios {unknown}; valid: {', '.join(SCENARIOS)}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("INCIDENT_COPILOT_HOME", str(Path(tmp) / "home"))
        for scenario in scenarios:
            for seed in (int(s) for s in args.seeds.split(",")):
                workdir = Path(tmp) / f"{scenario}-{seed}"
                row = measure(args.admin_url, workdir, scenario, seed, args.speed, args.timeout, args.inject_after)
                rows.append(row)
                print(json.dumps(row) if args.json else f"{scenario} seed {seed}: {row}", file=sys.stderr)
    print("\n".join(json.dumps(r) for r in rows) if args.json else format_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
