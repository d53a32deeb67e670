"""The command line in separate processes: stop at the gate in one, approve in another, inspect in a third."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

CONTRACT_KEYS = {"incident_id", "service", "window", "outcome", "is_incident", "severity", "root_cause", "hypotheses",
                 "code_regression", "suggestions", "patch", "pr", "tokens", "errors"}


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO_ROOT / "cli.py"), *args], capture_output=True, text=True,
                          env=env, stdin=subprocess.DEVNULL, timeout=300, cwd=REPO_ROOT)


def test_gate_in_one_process_approve_in_another(database_url, tmp_path):
    env = {**os.environ, "DATABASE_URL": database_url, "OUTPUT_DIR": str(tmp_path / "out"), "PYTHONWARNINGS": "default"}
    started = cli("demo", "--scenario", "deployment_regression", "--seed", "4", env=env)
    assert started.returncode == 4, started.stderr  # waiting for approval
    assert "✓ check_patch" in started.stdout
    match = re.search(r"To approve: incident-copilot incidents approve (\S+)", started.stdout)
    assert match, started.stdout
    incident_id = match.group(1)

    unconfirmed = cli("incidents", "approve", incident_id, "--by", "carol", env=env)
    assert unconfirmed.returncode == 2 and "--yes" in unconfirmed.stderr, unconfirmed.stderr  # no terminal to ask on
    assert "diff --git" in unconfirmed.stdout and "✔ applies" in unconfirmed.stdout  # it showed what it asks about
    approved = cli("incidents", "approve", incident_id, "--by", "carol", "--yes", env=env)
    assert approved.returncode == 0, approved.stderr
    assert "✓ create_pr" in approved.stdout and "created: branch incident-copilot/" in approved.stdout
    assert (tmp_path / "out" / incident_id / "brief.html").exists()

    shown = cli("incidents", "show", incident_id, "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    assert report["pr"]["status"] == "created" and report["root_cause"]["fault_type"] == "deployment_regression"
    # checkpoints revive in a fresh process without any deserialization warning
    assert "warn" not in (started.stderr + approved.stderr + shown.stderr).lower()

    history = cli("incidents", "history", incident_id, env=env)
    assert history.returncode == 0, history.stderr
    for node in ("ingest", "correlate", "approve", "create_pr", "notify"):
        assert node in history.stdout

    again = cli("incidents", "approve", incident_id, "--yes", env=env)
    assert again.returncode == 1 and "not waiting for approval" in again.stderr

    listed = cli("incidents", "list", env=env)
    assert incident_id in listed.stdout and "completed" in listed.stdout


def test_investigate_prints_the_json_contract(database_url):
    env = {**os.environ, "DATABASE_URL": database_url}
    out = cli("investigate", "--scenario", "db_connection_exhaustion", "--seed", "5",
              "--at", "2026-11-21T12:00:00+00:00", "--json", env=env)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert set(report) == CONTRACT_KEYS
    assert report["root_cause"]["fault_type"] == "db_connection_exhaustion"
    assert report["hypotheses"][0]["service"] == report["root_cause"]["service"]
    assert report["window"]["end"].startswith("2026-11-21T12:00:00")
    assert report["tokens"] == {"input": 0, "output": 0}


def test_bad_arguments_are_clear_errors(database_url):
    env = {**os.environ, "DATABASE_URL": database_url}
    out = cli("investigate", "--scenario", "no_such_thing", "--json", env=env)
    assert out.returncode == 2 and "Invalid value for '--scenario'" in out.stderr
    out = cli("incidents", "show", "inc-unknown", env=env)
    assert out.returncode == 1 and "unknown incident" in out.stderr


def test_eval_prints_the_accuracy_contract(database_url):
    env = {**os.environ, "DATABASE_URL": database_url}
    out = cli("eval", "--seeds", "1", "--scenario", "false_alarm", "--scenario", "disk_full", "--json", env=env)
    assert out.returncode == 0, out.stderr
    scores = json.loads(out.stdout)
    assert {"cases", "top1_service", "top3_service", "top1_fault", "false_alarms_ok", "median_seconds",
            "per_scenario"} <= set(scores)
    assert scores["cases"] == 2 and set(scores["per_scenario"]) == {"false_alarm", "disk_full"}
    assert scores["false_alarms_ok"] == 1.0 and scores["top1_service"] == 1.0
    assert scores["median_seconds"] > 0
    table = cli("eval", "--seeds", "1", "--scenario", "false_alarm", env=env)
    assert "false alarms classified as no incident: 100%" in table.stdout


def test_investigate_a_service_over_live_backends(database_url, tmp_path):
    """`investigate --service S --json` reads a real (backfilled) Prometheus and a Loki API, nothing simulated
    in process."""
    if not (shutil.which("promtool") and shutil.which("prometheus")):
        if os.environ.get("CI") == "true":
            pytest.fail("promtool and prometheus are required under CI (Debian package prometheus)")
        pytest.skip("promtool/prometheus not installed")
    from evals.wire import plan_cases, wire_backends
    from sim.scenarios import build_scenario

    case = plan_cases(["db_connection_exhaustion"], 1)[0]
    scenario = build_scenario(case.scenario, case.seed, case.end)
    with wire_backends([case], tmp_path) as backends:
        env = {**os.environ, "DATABASE_URL": database_url, "PROMETHEUS_URL": backends.prometheus_url,
               "LOKI_URL": backends.loki_url, "TEMPO_URL": backends.tempo_url}
        out = cli("investigate", "--service", scenario.alerted_service, "--at", case.end.isoformat(),
                  "--window", "15m", "--json", env=env)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert set(report) == CONTRACT_KEYS
    assert report["service"] == scenario.alerted_service and report["is_incident"] is True
    assert (report["root_cause"]["service"], report["root_cause"]["fault_type"]) == (
        scenario.root_service, "db_connection_exhaustion")
    assert report["errors"] == []
    no_backend = cli("investigate", "--service", "checkout", "--json",
                     env={k: v for k, v in env.items() if k not in ("PROMETHEUS_URL", "LOKI_URL")})
    assert no_backend.returncode == 2 and "LOKI_URL" in no_backend.stderr
