"""End to end with Debian's Prometheus and Alertmanager and the example configs of deploy/: the simulated fleet
runs, a fault is injected, Prometheus fires a rule of deploy/alert_rules.yml, Alertmanager posts it to the
service, the investigation reads the real Prometheus and the fleet's Loki, and the brief names the injected root
cause. Time runs 15x (tests/live_server.py run_alert_to_brief: rules, rate window and run windows compressed)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.live_server import DEPLOY, alerting_binaries_missing, compress_durations, run_alert_to_brief


@pytest.fixture
def alerting_binaries() -> None:
    """Skip without Debian's prometheus / prometheus-alertmanager; fail under CI."""
    missing = alerting_binaries_missing()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{missing} required under CI (scripts/install-system-deps.sh)")
        pytest.skip(f"{missing} not installed (scripts/install-system-deps.sh)")


def test_example_configs_are_valid(alerting_binaries: None) -> None:
    for argv in (
        ["promtool", "check", "config", str(DEPLOY / "prometheus.yml")],  # and the rule file it names
        ["amtool", "check-config", str(DEPLOY / "alertmanager.yml")],
    ):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stdout + done.stderr


# Each rule's signal on service "shop" and a healthy value on "calm", in promtool's series notation (15 s steps).
RULES_UNIT_TEST = """
rule_files: [RULES]
evaluation_interval: 15s
tests:
  - interval: 15s
    input_series:
      - {series: 'http_requests_total{service="shop",code="200"}', values: '0+540x60'}
      - {series: 'http_requests_total{service="shop",code="503"}', values: '0+60x60'}
      - {series: 'http_requests_total{service="calm",code="200"}', values: '0+600x60'}
      - {series: 'http_requests_total{service="calm",code="500"}', values: '0+3x60'}
      - {series: 'http_request_duration_seconds_bucket{service="shop",le="1"}', values: '0+0x60'}
      - {series: 'http_request_duration_seconds_bucket{service="shop",le="2.5"}', values: '0+100x60'}
      - {series: 'http_request_duration_seconds_bucket{service="shop",le="+Inf"}', values: '0+100x60'}
      - {series: 'http_request_duration_seconds_bucket{service="calm",le="0.5"}', values: '0+100x60'}
      - {series: 'http_request_duration_seconds_bucket{service="calm",le="+Inf"}', values: '0+100x60'}
      - {series: 'up{service="shop",job="fleet",instance="127.0.0.1:1"}', values: '1 1 0x60'}
      - {series: 'up{service="calm",job="fleet",instance="127.0.0.1:2"}', values: '1x60'}
      - {series: 'process_cpu_seconds_total{service="shop"}', values: '0+28.5x60'}
      - {series: 'process_cpu_seconds_total{service="calm"}', values: '0+6x60'}
      - {series: 'db_pool_connections_in_use{service="shop"}', values: '95x60'}
      - {series: 'db_pool_connections_max{service="shop"}', values: '100x60'}
      - {series: 'db_pool_connections_in_use{service="calm"}', values: '40x60'}
      - {series: 'db_pool_connections_max{service="calm"}', values: '100x60'}
      - {series: 'disk_free_bytes{service="shop"}', values: '500000000x60'}
      - {series: 'disk_free_bytes{service="calm"}', values: '50000000000x60'}
      - {series: 'process_resident_memory_bytes{service="shop"}', values: '100000000+10000000x60'}
      - {series: 'process_resident_memory_bytes{service="calm"}', values: '300000000x60'}
    alert_rule_test:
      - {eval_time: 1m, alertname: HighErrorRate, exp_alerts: []}
      - eval_time: 10m
        alertname: HighErrorRate
        exp_alerts:
          - exp_labels: {service: shop, severity: critical}
            exp_annotations: {summary: "shop: 10% of requests fail with 5xx"}
      - eval_time: 10m
        alertname: HighLatency
        exp_alerts:
          - exp_labels: {service: shop, severity: warning}
            exp_annotations: {summary: "shop: p99 latency 2.485s"}
      - eval_time: 10m
        alertname: TargetDown
        exp_alerts:
          - exp_labels: {service: shop, severity: critical}
            exp_annotations: {summary: "shop: /metrics does not answer"}
      - eval_time: 10m
        alertname: CPUNearLimit
        exp_alerts:
          - exp_labels: {service: shop, severity: warning}
            exp_annotations: {summary: "shop: CPU 1.90 cores, near its limit"}
      - eval_time: 10m
        alertname: DBPoolNearMax
        exp_alerts:
          - exp_labels: {service: shop, severity: warning}
            exp_annotations: {summary: "shop: 95% of the DB pool in use"}
      - eval_time: 10m
        alertname: DiskFreeLow
        exp_alerts:
          - exp_labels: {service: shop, severity: warning}
            exp_annotations: {summary: "shop: 476.8MiB disk free"}
      - eval_time: 10m
        alertname: MemoryGrowth
        exp_alerts:
          - exp_labels: {service: shop, severity: warning}
            exp_annotations: {summary: "shop: resident memory 476.8MiB and growing"}
"""


def test_every_rule_fires_on_its_signal_with_service_and_severity(alerting_binaries: None, tmp_path: Path) -> None:
    tests = tmp_path / "rules_test.yml"
    tests.write_text(RULES_UNIT_TEST.replace("RULES", str(DEPLOY / "alert_rules.yml")))
    done = subprocess.run(["promtool", "test", "rules", str(tests)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_rule_durations_compress_with_the_fleet_speed() -> None:
    rules = "rate(x[2m]) > 0.05 and y offset 30m\n        for: 1m\n  summary: 5m [5x]"
    assert compress_durations(rules, 15) == "rate(x[8s]) > 0.05 and y offset 120s\n        for: 4s\n  summary: 5m [5x]"
    assert compress_durations("deriv(m[10s])", 60) == "deriv(m[1s])"


def test_alert_to_brief_names_the_injected_root_cause(
    alerting_binaries: None, tmp_path: Path, database_url: str
) -> None:
    # The provider is external (no /metrics of its own): the alerts fire on its callers, never on the root.
    run = run_alert_to_brief(tmp_path, database_url, "dependency_outage", 7)
    state, incident = run.state, run.incident
    assert state["injected_at"] and state["root_service"] == "payment-provider", run.logs
    assert incident["run_status"] == "completed", f"{incident}\n{run.logs}"
    assert incident["source"] == "alertmanager" and incident["service"] != state["root_service"]
    report = incident["report"]
    root = report["root_cause"]
    assert (root["service"], root["fault_type"]) == (state["root_service"], state["fault_type"]), (
        f"{report['hypotheses']}\n{report['errors']}\n{run.logs}"
    )
    assert report["errors"] == [] and "payment-provider" in incident["brief"]
    timings = run.timings()
    print(
        f"\nalert to brief: {timings['alert_to_brief']:.2f} s (startsAt -> 202 {timings['alert_to_202']:.2f} s,"
        f" 202 -> brief {timings['202_to_brief']:.2f} s); fault -> startsAt {timings['fault_to_alert']:.2f} s;"
        f" {len(run.incidents)} incidents; whole run {run.elapsed:.0f} s"
    )
    assert 0 < timings["202_to_brief"] < 30
