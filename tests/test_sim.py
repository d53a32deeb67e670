"""The simulated fleet: determinism, fault signatures at the root, propagation, noise, and SimTelemetry."""

from __future__ import annotations

import functools
import json
import re
from datetime import UTC, datetime, timedelta
from statistics import median

import pytest

from analysis.records import SIGNALS, MetricSeries
from sim.generate import SIGNALS_BY_KIND, SimData, generate
from sim.sample_repo import ensure_sample_repo
from sim.scenarios import SCENARIOS, build_scenario
from sim.source import SimTelemetry
from sim.topology import EDGES, INTERNAL, SERVICES, TRACED, upstream_distances, upstream_path
from state import FAULT_TYPES, TelemetrySpec

END = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
SEEDS = (0, 1)


@pytest.fixture(autouse=True, scope="module")
def _sample_repo_home(tmp_path_factory: pytest.TempPathFactory):
    """Sample repositories of this module live in a private INCIDENT_COPILOT_HOME."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("INCIDENT_COPILOT_HOME", str(tmp_path_factory.mktemp("home")))
        yield


@functools.cache
def data(name: str, seed: int) -> SimData:
    return generate(build_scenario(name, seed, END))


def series(d: SimData, signal: str, service: str, peer: str | None = None) -> MetricSeries:
    return next(s for s in d.metrics if s.signal == signal and s.service == service and s.peer == peer)


def baseline(d: SimData, signal: str, service: str, peer: str | None = None) -> float:
    cut = d.scenario.incident_start.timestamp()
    return median(v for t, v in series(d, signal, service, peer).points if t < cut)


def after(d: SimData, signal: str, service: str, peer: str | None = None, delay: float = 60.0) -> list[float]:
    """Values from `delay` seconds after the onset to the end."""
    since = d.scenario.onset.timestamp() + delay
    return [v for t, v in series(d, signal, service, peer).points if t >= since]


def incident_logs(d: SimData, service: str | None = None) -> list[str]:
    onset = d.scenario.onset.timestamp()
    return [r.line for r in d.logs if r.ts >= onset and (service is None or r.service == service)]


def is_error(line: str) -> bool:
    head = line.split("\n", 1)[0]
    return bool(re.search(r'level=error|"level": "error"|^\S+ ERROR ', head))


def signature(d: SimData) -> None:
    """Assert the fault signature of SIM_SPEC.md at the root (and its callers)."""
    sc, root = d.scenario, d.scenario.root_service
    onset = sc.onset.timestamp()
    callers = [c for c, p in EDGES if p == root]
    if sc.name == "memory_leak":
        assert max(after(d, "memory_bytes", root, delay=0)) > 2.5 * baseline(d, "memory_bytes", root)
        assert min(after(d, "up", root, delay=0)) == 0.0
        assert max(after(d, "latency_p99", root, delay=0)) > 2 * baseline(d, "latency_p99", root)
        assert any("OutOfMemoryError" in line or "MemoryError" in line for line in incident_logs(d, root))
        assert any("OOMKilled" in line for line in incident_logs(d, root))
    elif sc.name == "deployment_regression":
        repo = ensure_sample_repo(root)
        bad = [x for x in d.deploys if x.commit == repo.bad_commit]
        assert len(bad) == 1 and bad[0].service == root and bad[0].at == sc.onset and bad[0].kind == "code"
        assert bad[0].version == repo.bad_version and bad[0].previous_version == repo.previous_version
        assert all(x.service != root for x in d.deploys if x is not bad[0])
        assert min(after(d, "error_ratio", root)) > max(0.1, 5 * baseline(d, "error_ratio", root))
        assert any(repo.traceback in line for line in incident_logs(d, root))
        assert not any(repo.exception in r.line for r in d.logs if r.ts < onset)
    elif sc.name == "db_connection_exhaustion":
        pool_max = series(d, "db_pool_max", root).points[-1][1]
        assert pool_max in (50.0, 100.0)
        assert [v for _, v in series(d, "db_pool_in_use", root).points[-6:]] == [pool_max] * 6
        assert baseline(d, "db_pool_in_use", root) < 0.5 * pool_max
        assert max(after(d, "latency_p99", root)) > 20 * baseline(d, "latency_p99", root)
        assert any("max_client_conn" in line for line in incident_logs(d, root))
        assert any("connection pool exhausted" in line for c in callers for line in incident_logs(d, c))
    elif sc.name == "network_partition":
        assert after(d, "up", root, delay=0) == [0.0] * len(after(d, "up", root, delay=0))
        assert max(after(d, "request_rate", root)) < 0.2 * baseline(d, "request_rate", root)
        assert not any(is_error(line) and "dial tcp" in line for line in incident_logs(d, root))
        for caller in callers:
            assert min(after(d, "client_error_ratio", caller, root)) > 0.5
            assert any(f"dial tcp {root}:8080" in line for line in incident_logs(d, caller))
        assert_client_errors_without_server_span(d, root)
    elif sc.name == "cpu_saturation":
        assert min(after(d, "cpu_usage", root)) > 1.8 and baseline(d, "cpu_usage", root) < 0.6
        assert min(after(d, "latency_p99", root)) > 4 * baseline(d, "latency_p99", root)
        assert any("worker pool saturated" in line for line in incident_logs(d, root))
    elif sc.name == "config_error":
        config = [x for x in d.deploys if x.kind == "config"]
        assert len(config) == 1 and config[0].service == root and config[0].commit is None
        assert config[0].at == sc.onset
        assert min(after(d, "error_ratio", root)) > 0.3
        assert any("invalid configuration" in line for line in incident_logs(d, root))
    elif sc.name == "dependency_outage":
        if root == "payment-provider":
            assert not any(s.service == root for s in d.metrics) and not any(r.service == root for r in d.logs)
            assert min(after(d, "client_error_ratio", "payments", root)) > 0.5
            assert any("503 Service Unavailable" in line for line in incident_logs(d, "payments"))
        else:
            assert min(after(d, "up", root, delay=0)) == 0.0
            for caller in callers:
                assert min(after(d, "client_error_ratio", caller, root)) > 0.9
                assert any("redis: connection refused" in line for line in incident_logs(d, caller))
        assert_client_errors_without_server_span(d, root)
    elif sc.name == "disk_full":
        assert max(after(d, "disk_free_bytes", root, delay=0)) < 200 * 1024**2
        assert baseline(d, "disk_free_bytes", root) > 10 * 1024**3
        assert min(after(d, "error_ratio", root)) > 0.15
        assert any("No space left on device" in line for line in incident_logs(d, root))
    elif sc.name == "certificate_expired":
        points = series(d, "cert_expiry_timestamp", root).points
        assert all(v > t for t, v in points if t < onset) and all(v <= t for t, v in points if t >= onset)
        assert max(after(d, "error_ratio", root)) < 0.05
        assert max(after(d, "request_rate", root)) < 0.2 * baseline(d, "request_rate", root)
        for caller in callers:
            assert min(after(d, "client_error_ratio", caller, root)) > 0.9
        caller_lines = [line for c in callers for line in incident_logs(d, c)]
        assert any("certificate has expired" in line for line in caller_lines)
        assert_client_errors_without_server_span(d, root)
    elif sc.name == "traffic_surge":
        assert min(after(d, "request_rate", root)) > 3.5 * baseline(d, "request_rate", root)
        assert min(after(d, "request_rate", "catalog")) > 3 * baseline(d, "request_rate", "catalog")
        assert max(after(d, "latency_p99", root)) > 1.5 * baseline(d, "latency_p99", root)
        assert not any(x.service == root for x in d.deploys)
        assert any("rate limit exceeded" in line for line in incident_logs(d, root))


def assert_client_errors_without_server_span(d: SimData, peer: str) -> None:
    onset = d.scenario.onset.timestamp()
    children = {s.parent_id for s in d.spans}
    failed = [s for s in d.spans if s.peer == peer and s.error and s.start > onset + 30]
    assert failed and all(s.span_id not in children for s in failed)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", SCENARIOS)
def test_every_scenario_has_all_sources_and_its_signature(name: str, seed: int) -> None:
    d = data(name, seed)
    sc = d.scenario
    assert sc.fault_type in FAULT_TYPES
    assert (sc.root_service is None) == (name == "false_alarm")
    assert 10_000 <= len(d.logs) <= 22_000
    assert [r.ts for r in d.logs] == sorted(r.ts for r in d.logs)
    assert all(sc.start.timestamp() <= r.ts <= sc.end.timestamp() for r in d.logs)
    for service in INTERNAL:
        expected = set(SIGNALS_BY_KIND[SERVICES[service]])
        got = {s.signal for s in d.metrics if s.service == service and s.peer is None}
        assert got == expected and expected <= set(SIGNALS)
    for caller, peer in EDGES:
        for signal in ("client_request_rate", "client_error_ratio"):
            points = series(d, signal, caller, peer).points
            assert len(points) == 181 and points[1][0] - points[0][0] == 15.0
            assert points[0][0] == sc.start.timestamp() and points[-1][0] == sc.end.timestamp()
    assert 150 <= len({s.trace_id for s in d.spans}) <= 600
    assert {s.service for s in d.spans} <= TRACED
    assert all(d.deploys[i].at <= d.deploys[i + 1].at for i in range(len(d.deploys) - 1))
    assert all(x.source == "sim" for x in d.deploys)
    signature(d)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", SCENARIOS)
def test_the_alerted_signal_fires_on_the_alerted_service(name: str, seed: int) -> None:
    d = data(name, seed)
    sc = d.scenario
    service, signal = sc.alerted_service, sc.alert_signal
    base = baseline(d, signal, service)
    last = [v for t, v in series(d, signal, service).points if t >= sc.end.timestamp() - 600]
    if signal in ("disk_free_bytes", "up"):
        assert min(last) < 0.01 * base
    elif signal == "error_ratio":
        assert max(last) > 2 * base + 0.02
    else:
        assert max(last) > 1.5 * base


def test_false_alarm_has_no_sustained_anomaly() -> None:
    for seed in SEEDS:
        d = data("false_alarm", seed)
        assert d.scenario.blip_steps in (1, 2)
        for service in INTERNAL:
            for signal in ("error_ratio", "latency_p99", "cpu_usage", "request_rate"):
                base = baseline(d, signal, service)
                outliers = [v for v in after(d, signal, service, delay=-600) if v > 1.6 * base + 0.01]
                assert len(outliers) <= d.scenario.blip_steps, (service, signal)
            assert sum(1 for v in after(d, "up", service, delay=-600) if v == 0) <= 1
        assert all(x.kind == "code" for x in d.deploys)


def test_build_scenario_is_deterministic_and_seeds_vary() -> None:
    first, again = build_scenario("memory_leak", 7, END), build_scenario("memory_leak", 7, END)
    assert first == again and first.alert.fingerprint == again.alert.fingerprint
    seen = {(s.root_service, s.onset) for s in (build_scenario("memory_leak", seed, END) for seed in range(8))}
    assert len(seen) >= 5
    with pytest.raises(ValueError, match="valid: memory_leak, deployment_regression"):
        build_scenario("meteor_strike", 0, END)


def test_generate_is_deterministic() -> None:
    a, b = data("db_connection_exhaustion", 0), generate(build_scenario("db_connection_exhaustion", 0, END))
    assert a.logs == b.logs and a.metrics == b.metrics and a.spans == b.spans and a.deploys == b.deploys
    other = generate(build_scenario("db_connection_exhaustion", 5, END))
    assert other.logs != a.logs


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario_shape_over_many_seeds(name: str) -> None:
    for seed in range(40):
        sc = build_scenario(name, seed, END)
        assert timedelta(minutes=4) <= sc.end - sc.onset <= timedelta(minutes=12)
        assert sc.end - sc.start == timedelta(minutes=45)
        assert sc.alerted_service in INTERNAL
        if sc.root_service is not None:
            assert sc.alerted_service in upstream_distances(sc.root_service)
        alert = sc.alert
        assert alert.source == "sim" and alert.service == sc.alerted_service and alert.starts_at == END
        assert alert.labels == {"service": sc.alerted_service, "severity": alert.severity}
        assert re.fullmatch(r"[0-9a-f]{16}", alert.fingerprint)
        for bystander in (sc.innocent_deploy_service, sc.noisy_service):
            assert bystander is None or bystander not in (sc.root_service, sc.alerted_service)


def test_noise_innocent_deploys_and_unrelated_errors_appear_in_some_seeds() -> None:
    scenarios = [build_scenario("cpu_saturation", seed, END) for seed in range(20)]
    assert 4 <= sum(s.innocent_deploy_at is not None for s in scenarios) <= 16
    assert 2 <= sum(s.noisy_service is not None for s in scenarios) <= 16
    seed = next(i for i, s in enumerate(scenarios) if s.noisy_service and s.innocent_deploy_at)
    d = generate(scenarios[seed])
    sc = d.scenario
    innocent = [x for x in d.deploys if x.service == sc.innocent_deploy_service]
    assert len(innocent) == 1 and innocent[0].at < sc.onset
    noisy = [
        r for r in d.logs if r.service == sc.noisy_service and is_error(r.line) and r.ts >= sc.noisy_start.timestamp()
    ]
    assert noisy


def test_logs_mix_formats_and_multiline_stack_traces() -> None:
    lines = [r.line for r in data("deployment_regression", 0).logs]
    json_lines = [line for line in lines if line.startswith("{")]
    assert json_lines and all(json.loads(line.split("\n", 1)[0])["level"] for line in json_lines[:50])
    assert any(line.startswith("ts=") and " level=" in line for line in lines)
    assert any(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (INFO|WARN|ERROR|DEBUG) \[", line) for line in lines)
    traces = [line for line in lines if "\nTraceback (most recent call last):\n" in line]
    assert traces and all('File "/app/' in line for line in traces)


def test_topology_matches_the_spec() -> None:
    assert len(EDGES) == 17 and len(set(EDGES)) == 17
    assert SERVICES["payment-provider"] == "external" and "payment-provider" not in INTERNAL
    assert upstream_path("gateway", "payments-db-proxy") == [
        "gateway",
        "web-frontend",
        "checkout",
        "payments-db-proxy",
    ]
    assert upstream_path("catalog", "payments") is None
    assert upstream_distances("redis-cache")["gateway"] == 3


async def test_sim_telemetry_filters_by_service_and_window() -> None:
    source = SimTelemetry(TelemetrySpec(kind="sim", scenario="network_partition", seed=0, end=END))
    assert source.scenario.name == "network_partition"
    assert source.data is SimTelemetry(TelemetrySpec(kind="sim", scenario="network_partition", seed=0, end=END)).data
    start, end = END - timedelta(minutes=15), END - timedelta(minutes=5)
    logs = [r async for r in source.logs(["cart", "checkout"], start, end)]
    assert logs and {r.service for r in logs} == {"cart", "checkout"}
    assert all(start.timestamp() <= r.ts <= end.timestamp() for r in logs)
    metrics = await source.metrics(["checkout"], start, end, 15)
    assert {m.service for m in metrics} == {"checkout"}
    assert {m.peer for m in metrics if m.peer} == {"cart", "payments", "inventory", "payments-db-proxy"}
    assert all(len(m.points) == 41 for m in metrics)
    coarse = await source.metrics(["checkout"], start, end, 60)
    assert all(len(m.points) == 11 for m in coarse)
    spans = await source.traces(["payments"], start, end)
    traces = {s.trace_id for s in spans}
    assert traces and all(
        any(s.service == "payments" or s.peer == "payments" for s in spans if s.trace_id == t) for t in traces
    )
    assert await source.deploys(["gateway"], start, end) == []
    edges = await source.dependencies(END - timedelta(minutes=45), END)
    assert set(edges) == set(EDGES)
    assert await source.code_repository(source.scenario.root_service) is None


async def test_sim_telemetry_names_the_sample_repo_for_the_regression_root() -> None:
    source = SimTelemetry(TelemetrySpec(kind="sim", scenario="deployment_regression", seed=1, end=END))
    root = source.scenario.root_service
    repository = await source.code_repository(root)
    assert repository.checkout == str(ensure_sample_repo(root).path) and repository.base_branch == "main"
    assert repository.test_command[1:4] == ["-m", "unittest", "discover"]
    assert await source.code_repository("gateway") is None
    deploys = await source.deploys([root], END - timedelta(minutes=15), END)
    assert [x.commit for x in deploys] == [ensure_sample_repo(root).bad_commit]
    with pytest.raises(ValueError):
        SimTelemetry(TelemetrySpec(kind="live"))
