"""Every benchmark runs: a smoke run of each at a tiny size, as its README documents it (numbers are not checked)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ADMIN_URL, REPO_ROOT, SHARED_DATA, _require_postgres
from tests.live_server import alerting_binaries_missing


def bench(*argv: str, timeout: float = 300) -> str:
    """`python -m bench.NAME ...` from the repository root; its stdout."""
    env = {**os.environ, "BENCH_POSTGRES_URL": ADMIN_URL, "LANGSMITH_TRACING": "false"}
    done = subprocess.run([sys.executable, "-m", *argv], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    output = f"{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    assert done.returncode == 0, f"{' '.join(argv)} exited {done.returncode}\n{output}"
    return done.stdout


def test_loghub_ga_on_a_slice_of_one_system(tmp_path):
    source = SHARED_DATA / "loghub-2k" / "HDFS"
    if not source.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"Loghub-2k data is required under CI: {source} is missing")
        pytest.skip(f"Loghub-2k data not found at {source}")
    (tmp_path / "HDFS").mkdir()
    for path in source.glob("*_structured.csv"):
        lines = path.read_text().splitlines(keepends=True)[:201]
        (tmp_path / "HDFS" / path.name).write_text("".join(lines))
    result = json.loads(bench("bench.loghub_ga", "--data", str(tmp_path), "--json"))
    assert [row["system"] for row in result["systems"]] == ["HDFS"]
    assert 0 < result["average"]["ga_default"] <= 1


def test_evidence_scaling_at_2000_lines():
    result = json.loads(bench("bench.evidence_scaling", "--sizes", "2000", "--json"))
    (row,) = result["rows"]
    assert row["lines"] == 2000 and row["top_candidate_right"] is True


def test_intake_storm_of_200_alerts():
    _require_postgres()
    rows = json.loads(bench("bench.intake", "--alerts", "200", "--groups", "5", "--concurrency", "4", "--json"))
    assert [(r["incidents"], r["stored_alerts"], r["ok"]) for r in rows] == [(5, 200, True)]


def test_intake_storm_with_a_worker_process():
    _require_postgres()
    rows = json.loads(bench("bench.intake", "--alerts", "100", "--groups", "3", "--concurrency", "4",
                            "--worker-processes", "1", "--json"))
    [row] = rows  # a run that concluded during the storm closed its group: more incidents than groups then
    assert (row["workers"], row["stored_alerts"], row["ok"]) == ("1 proc", 100, True) and row["incidents"] >= 3


def test_intake_cpu_in_the_app():
    _require_postgres()
    result = json.loads(bench("bench.intake_cpu", "--requests", "50", "--rounds", "2", "--json"))
    assert len(result["rounds_us"]) == 2 and result["median_us"] > 0


def test_alert_to_brief_on_a_healthy_fleet():
    """The whole stack once, briefly: a false alarm must raise no alert (the alert path itself is covered by
    tests/test_e2e_alerting.py)."""
    _require_postgres()
    missing = alerting_binaries_missing()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Prometheus and Alertmanager are required under CI: {missing}")
        pytest.skip(f"missing {missing}")
    out = bench("bench.alert_to_brief", "--scenarios", "false_alarm", "--seeds", "1", "--inject-after", "10",
                "--timeout", "5", "--json")
    (row,) = [json.loads(line) for line in out.splitlines()]
    assert row["scenario"] == "false_alarm" and row["correct"] is True and row["incidents"] == 0, row


def test_prompt_size_of_one_incident():
    result = json.loads(bench("bench.prompt_size", "--scenarios", "disk_full", "--seeds", "1", "--json"))
    assert result["incidents"] == 1 and 0 < result["median_total"] == result["max_total"]
    assert set(result["nodes"]) == {"detect", "rca", "suggest", "brief"}

def test_cli_startup_with_two_runs():
    rows = json.loads(bench("bench.cli_startup", "--runs", "2", "--json"))
    assert [r["command"] for r in rows][0] == "incident-copilot --help" and all(r["median_s"] > 0 for r in rows)


def test_investigate_speed_over_the_wire_with_one_case(tmp_path):
    """One simulated case as a fresh `investigate` process against a backfilled Prometheus and the Loki and Tempo
    APIs (the Nezha set is not built in tests: its source is the mirrored repository), run by the interpreter that
    `--python` names: a wrapper that logs each process it starts."""
    _require_postgres()
    missing = [tool for tool in ("prometheus", "promtool") if shutil.which(tool) is None]
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Prometheus is required under CI: {missing}")
        pytest.skip(f"missing {missing}")
    started = tmp_path / "started.log"
    wrapper = tmp_path / "python"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {started}\nexec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    result = json.loads(bench("bench.investigate_speed", "--scenarios", "disk_full", "--seeds", "1",
                              "--startup-runs", "1", "--python", str(wrapper), "--json", timeout=600))
    (only,) = result["sets"]
    assert only["cases"] == 1 and only["median_s"] > 0 and only["median_cpu_s"] > 0
    assert only["rows"][0]["exit"] in (0, 3, 4) and result["startup"]["python_s"] > 0
    # db migrate, python -c pass, --version, the untimed first case and the timed one
    runs = started.read_text().splitlines()
    assert result["python"] == str(wrapper) and sum(" investigate " in f" {r} " for r in runs) == 2, runs


@pytest.mark.usefixtures("sandbox")
def test_sandbox_overhead_with_two_runs():
    rows = json.loads(bench("bench.sandbox_overhead", "--runs", "2", "--json"))
    assert [r["command"] for r in rows] == ["true", "sample tests"] and all(r["sandboxed_s"] > 0 for r in rows)


def test_code_reading_over_mcp():
    result = json.loads(bench("bench.code_reading", "--runs", "1", "--json"))
    assert result["top_is_the_bad_commit"] and result["tool_calls_per_run"] > 1


def test_investigate_speed_counts_a_dismissed_false_alarm_as_right() -> None:
    """A false alarm's expected answer is (None, "none"): right when the alert was dismissed, whatever service the
    report names (it names the alerted one)."""
    from bench.investigate_speed import is_right

    dismissed = {"is_incident": False, "root_cause": {"service": "web-frontend", "fault_type": "none"}}
    assert is_right(dismissed, (None, "none"))
    assert not is_right({**dismissed, "is_incident": True}, (None, "none"))
    found = {"is_incident": True, "root_cause": {"service": "catalog", "fault_type": "disk_full"}}
    assert is_right(found, ("catalog", "disk_full")) and not is_right(found, ("inventory", "disk_full"))
