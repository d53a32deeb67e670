"""The Nezha converter on a slice of real rows (tests/fixtures/nezha), the eval set format, and `eval --dataset`
end to end over a real Prometheus and the Loki API."""

from __future__ import annotations

import gzip
import json
import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from evals import nezha
from evals.dataset import DatasetError, EvalCase, load_eval_set, read_rows, write_manifest
from tests.conftest import REPO_ROOT
from tests.test_cli import cli

FIXTURE = REPO_ROOT / "tests" / "fixtures" / "nezha"


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("nezha") / "set"
    nezha.convert(FIXTURE, out, trace_sample=1.0, days=["2022-08-22"])
    return out


def test_pod_names_and_times() -> None:
    assert nezha.pod_service("frontend-579b9bff58-t2dbm") == "frontend"
    assert nezha.pod_service("productcatalogservice-668d5f85fb-jhwx9") == "productcatalogservice"
    assert nezha.pod_service("redis-cart") == "redis-cart"
    at = nezha.parse_time("2022-08-22 04:14:19.625640376 +0000 UTC m=+1380.131594368")
    assert at == datetime(2022, 8, 22, 4, 14, 19, 626000, tzinfo=UTC).timestamp()
    with pytest.raises(ValueError):
        nezha.parse_time("1861141869")


def test_every_nezha_fault_type_maps_into_our_vocabulary() -> None:
    vocabulary = {"deployment_regression", "config_error", "memory_leak", "cpu_saturation", "db_connection_exhaustion",
                  "dependency_outage", "network_partition", "disk_full", "certificate_expired", "traffic_surge"}
    labels = json.loads((FIXTURE / "construct_data" / "root_cause_hipster.json").read_text())
    used = {kind for faults in labels.values() for kind in faults}
    assert used == set(nezha.FAULT_TYPES)
    assert {ours for ours, _ in nezha.FAULT_TYPES.values()} <= vocabulary


def test_only_online_boutique_days_are_converted(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="only the OnlineBoutique days"):
        nezha.convert(FIXTURE, tmp_path / "out", days=["2023-01-29"])
    assert not (tmp_path / "out").exists()


def test_cases_alert_the_storefront_after_each_injection(converted: Path) -> None:
    eval_set = load_eval_set(converted)
    first, second = eval_set.cases
    assert (first.id, second.id) == ("2022-08-22T04:27:03-cartservice-network_delay",
                                     "2022-08-22T04:36:03-cartservice-cpu_contention")
    assert first.service == second.service == "frontend"
    assert second.at == datetime(2022, 8, 22, 4, 39, 3, tzinfo=UTC)
    assert (first.expected_service, first.expected_fault) == ("cartservice", "network_partition")
    assert (second.expected_service, second.expected_fault, second.source_fault) == (
        "cartservice", "cpu_saturation", "cpu_contention")
    assert second.notes["earlier_faults_in_window"] == [first.id]  # injected 9 min before its alert
    assert first.notes["trace_minutes"] == {"present": 1, "listed": 2}  # 04_27 lacked, 04_28 present
    manifest = eval_set.manifest
    assert manifest["source"]["absent"] == {"2022-08-22/log": ["04_27_log.csv"],
                                            "2022-08-22/trace": ["04_27_trace.csv"]}
    assert manifest["run"] == {"window_seconds": 900, "metrics_step_seconds": 60}


def test_metrics_keep_nezha_names_and_the_time_column(converted: Path) -> None:
    with gzip.open(converted / "metrics.om.gz", "rt") as handle:
        lines = handle.read().splitlines()
    assert lines[-1] == "# EOF"
    assert "# TYPE cpu_usage_millicores gauge" in lines
    cart = [x for x in lines if x.startswith('cpu_usage_millicores{service="cartservice"')]
    assert cart[0].startswith('cpu_usage_millicores{service="cartservice",pod="cartservice-579f59597d-wc2lz"} ')
    # adservice's TimeStamp column says 2028 and is out of order; its Time column is right
    ads = [float(x.rsplit(" ", 1)[1]) for x in lines if x.startswith('pod_workload_ops{service="adservice"')]
    assert ads == sorted(ads) and len(ads) == 33
    assert datetime.fromtimestamp(ads[0], UTC) == datetime(2022, 8, 22, 4, 10, 19, 763000, tzinfo=UTC)
    edges = [x for x in lines if x.startswith("edge_latency_p50_seconds{")]
    assert any('service="frontend",peer="cartservice",reporter="source"' in x for x in edges)
    assert any('reporter="destination"' in x for x in edges)
    front = [x for x in lines if x.startswith("front_service_success_rate_percent{")]
    assert front and all('{service="frontend"}' in x for x in front)


def test_logs_are_unwrapped_and_spans_keep_their_tree(converted: Path) -> None:
    logs = list(read_rows(converted / "logs.jsonl.gz"))
    assert [row[0] for row in logs] == sorted(row[0] for row in logs)
    by_service = {service: line for _, service, line in logs}
    assert by_service["adservice"].startswith("05:18:42.")  # logback's plain line, not Docker's JSON envelope
    assert json.loads(by_service["currencyservice"])["severity"] == "info"
    spans = list(read_rows(converted / "spans.jsonl.gz"))
    assert len({s[0] for s in spans}) == 6
    roots = [s for s in spans if s[2] is None]
    assert roots and all(s[3] == "frontend" and s[6] < s[7] for s in roots)


def test_trace_sampling_is_by_trace_id(tmp_path: Path) -> None:
    kept = [f"{i:032x}" for i in range(2000) if nezha.sampled(f"{i:032x}", 0.1)]
    assert 150 < len(kept) < 250
    assert kept == [f"{i:032x}" for i in range(2000) if nezha.sampled(f"{i:032x}", 0.1)]


def test_quiet_cases_fire_on_the_worst_blip_of_the_quiet_hours() -> None:
    family = nezha.FRONT_COLUMNS["LatencyP99(s)"][0]
    last = datetime(2022, 8, 22, 8, 0, tzinfo=UTC)
    samples = [nezha.Gauge(family, (("service", "frontend"),), last.timestamp() + 60 * m, 1.0 + (m == 200) +
                           2 * (m == 300) + 5 * (m == 310) + 9 * (m == 30))
               for m in range(0, 400)]
    cases = nezha.quiet_cases(samples, "2022-08-22", last)
    # minute 30 is too close to the last fault, minute 300 is within an hour of the worse 310
    assert [c.at for c in cases] == [last + timedelta(minutes=201), last + timedelta(minutes=311)]
    assert all(c.expected_fault == "none" and c.expected_service is None for c in cases)


def test_eval_sets_are_checked(tmp_path: Path, converted: Path) -> None:
    with pytest.raises(DatasetError, match="cannot read"):
        load_eval_set(tmp_path)
    copy = tmp_path / "copy"
    shutil.copytree(converted, copy)
    body = json.loads((copy / "dataset.json").read_text())
    (copy / "dataset.json").write_text(json.dumps({**body, "format": "other/2"}))
    with pytest.raises(DatasetError, match="format"):
        load_eval_set(copy)
    case = EvalCase.from_json(body["cases"][0])
    write_manifest(copy, {k: v for k, v in body.items() if k != "cases"}, [case, case])
    with pytest.raises(DatasetError, match="duplicate"):
        load_eval_set(copy)
    write_manifest(copy, {k: v for k, v in body.items() if k != "cases"}, [case])
    (copy / "spans.jsonl.gz").unlink()
    with pytest.raises(DatasetError, match="spans.jsonl.gz: missing"):
        load_eval_set(copy)
    with pytest.raises(DatasetError, match="false alarm"):
        EvalCase.from_json({**body["cases"][0], "expected_fault": "none"})


def test_eval_dataset_end_to_end(converted: Path, database_url: str) -> None:
    """`eval --dataset` serves the converted slice (promtool backfill into a real Prometheus, the Loki API) and
    investigates each case over the wire; every source it reads answers."""
    if not (shutil.which("promtool") and shutil.which("prometheus")):
        if os.environ.get("CI") == "true":
            pytest.fail("promtool and prometheus are required under CI (Debian package prometheus)")
        pytest.skip("promtool/prometheus not installed")
    env = {k: v for k, v in os.environ.items() if k not in ("LOKI_URL", "PROMETHEUS_URL", "TELEMETRY_CONFIG")}
    out = cli("eval", "--dataset", str(converted), "--json", env={**env, "DATABASE_URL": database_url})
    assert out.returncode == 0, out.stderr
    scores = json.loads(out.stdout)
    assert scores["cases"] == 2 and scores["dataset"] == "nezha-online-boutique"
    assert set(scores) >= {"as1", "as3", "fault_accuracy", "missed", "calibration", "per_source_fault"}
    assert scores["calibration"]["cases"] == 2 and 0 <= scores["calibration"]["brier"] <= 1
    for row in scores["cases_detail"]:
        # metrics, and traces of the one recorded minute (04:28), came over the wire; the slice has no log in
        # these windows
        assert row["errors"] == [] and row["traces_read"] == 6, row
        assert row["sources"] == {"deploys": "ok", "logs": "no_data", "metrics": "ok", "traces": "ok"}, row
    table = cli("eval", "--dataset", str(converted), "--case", "2022-08-22T04:36:03-cartservice-cpu_contention",
                env={**env, "DATABASE_URL": database_url})
    assert table.returncode == 0, table.stderr
    assert "cpu_contention" in table.stdout and "calibration" in table.stdout
    missing = cli("eval", "--dataset", str(converted), "--case", "nope", env={**env, "DATABASE_URL": database_url})
    assert missing.returncode == 2 and "no such case(s): nope" in missing.stderr
