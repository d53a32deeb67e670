"""The simulated fleet over the wire: /metrics per service, the Loki API, /inject and /state, the OpenMetrics
export through a real promtool and Prometheus."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sim.cli_commands import sim
from sim.fleet import LE_BOUNDS, Fleet, latency_distribution
from sim.generate import STEP, _iso
from sim.source import sim_data
from sim.topology import INTERNAL
from sim.wire import FleetServer, parse_logql, parse_time_ns
from tools.net import free_port

T0 = 1_795_000_000.0  # the fake wall clock's start, on the 15 s grid


@pytest.fixture(autouse=True, scope="module")
def _sample_repo_home(tmp_path_factory: pytest.TempPathFactory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("INCIDENT_COPILOT_HOME", str(tmp_path_factory.mktemp("home")))
        yield


class Clock:
    """A wall clock the test moves."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def serve(name: str, seed: int = 1, **kwargs) -> tuple[Fleet, FleetServer, Clock]:
    clock = Clock()
    fleet = Fleet(name, seed, horizon=900, clock=clock, **kwargs)
    return fleet, FleetServer(fleet), clock


@pytest.fixture(scope="module")
def partition() -> Iterator[tuple[Fleet, FleetServer, Clock]]:
    fleet, server, clock = serve("network_partition", 2, inject_after=60)
    with server:
        yield fleet, server, clock


def scrape(server: FleetServer, service: str) -> dict[tuple[str, tuple], float]:
    """(sample name, sorted labels) -> value, parsed by prometheus_client."""
    response = httpx.get(f"http://{server.targets[service]}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return sum(
        v for (n, ls), v in samples.items() if n == name and all(dict(ls).get(k) == x for k, x in labels.items())
    )


def generated(fleet: Fleet, signal: str, service: str, at: float, peer: str | None = None) -> float:
    """The generated value of a signal at a simulated time (the step it falls in)."""
    timeline = fleet.timeline
    return timeline.values[(signal, service, peer)][timeline.locate(at)[0]]


def histogram_quantile(q: float, buckets: dict[float, float]) -> float:
    """Prometheus' bucketQuantile over cumulative counts by upper bound."""
    bounds = sorted(buckets)
    rank = q * buckets[math.inf]
    b = next(i for i, bound in enumerate(bounds) if buckets[bound] >= rank)
    if bounds[b] == math.inf:
        return bounds[-2]
    start, below = (bounds[b - 1], buckets[bounds[b - 1]]) if b else (0.0, 0.0)
    return start + (bounds[b] - start) * (rank - below) / (buckets[bounds[b]] - below)


def test_metrics_parse_and_counters_integrate_the_generated_rates(partition) -> None:
    fleet, server, clock = partition
    assert set(server.targets) == set(INTERNAL) and "payment-provider" not in server.targets
    text = httpx.get(f"http://{server.targets['payments-db-proxy']}/metrics").text
    families = {f.name: f.type for f in text_string_to_metric_families(text)}
    assert families == {
        "http_requests": "counter",
        "http_request_duration_seconds": "histogram",
        "process_cpu_seconds": "counter",
        "process_resident_memory_bytes": "gauge",
        "db_pool_connections_in_use": "gauge",
        "db_pool_connections_max": "gauge",
        "disk_free_bytes": "gauge",
        "tls_cert_expiry_timestamp_seconds": "gauge",
        "app_build_info": "gauge",
    }
    clock.now = T0 + 2.0
    first = scrape(server, "checkout")
    clock.now = T0 + 32.0
    second = scrape(server, "checkout")
    for key, before in first.items():
        if key[0].endswith(("_total", "_bucket", "_count", "_sum")):
            assert second[key] >= before, key
    # Two steps of 15 s after the first scrape's 13 s: the increase integrates the generated rates.
    expected = sum(
        generated(fleet, "request_rate", "checkout", T0 + t) * seconds for t, seconds in ((2, 13), (15, 15), (30, 2))
    )
    assert value(second, "http_requests_total") - value(first, "http_requests_total") == pytest.approx(expected)
    cpu = value(second, "process_cpu_seconds_total") - value(first, "process_cpu_seconds_total")
    assert cpu / 30 == pytest.approx(generated(fleet, "cpu_usage", "checkout", T0 + 15), rel=0.1)
    calls = value(second, "http_client_requests_total", peer="payments")
    calls -= value(first, "http_client_requests_total", peer="payments")
    assert calls / 30 == pytest.approx(
        generated(fleet, "client_request_rate", "checkout", T0 + 15, "payments"), rel=0.1
    )
    assert value(second, "process_resident_memory_bytes") == generated(fleet, "memory_bytes", "checkout", T0 + 32)
    assert value(second, "app_build_info") == 1.0


def test_histogram_quantile_reads_back_the_generated_p99(partition) -> None:
    fleet, server, clock = partition
    checked = 0
    for service in ("gateway", "catalog", "payments-db-proxy"):
        clock.now = T0 + 16.0
        first = scrape(server, service)
        clock.now = T0 + 29.0  # the same step: one distribution
        second = scrape(server, service)
        buckets = {
            float(dict(labels)["le"]): v - first[(n, labels)]
            for (n, labels), v in second.items()
            if n == "http_request_duration_seconds_bucket"
        }
        assert sorted(buckets) == [*LE_BOUNDS, math.inf]
        count = value(second, "http_request_duration_seconds_count") - value(
            first, "http_request_duration_seconds_count"
        )
        assert count == pytest.approx(buckets[math.inf])
        p99 = generated(fleet, "latency_p99", service, T0 + 16)
        if p99 >= LE_BOUNDS[0]:
            assert histogram_quantile(0.99, buckets) == pytest.approx(p99, rel=1e-6)
            checked += 1
    assert checked >= 2
    for p99 in (0.07, 0.3, 2.2, 7.0):
        cdf, mean = latency_distribution(p99)
        assert cdf == sorted(cdf) and cdf[-1] <= 1.0 and 0 < mean < p99


def test_partitioned_root_stops_answering_and_callers_time_out(partition) -> None:
    fleet, server, clock = partition
    root = fleet.scenario.root_service
    clock.now = T0 + 50.0
    assert root == "inventory" and fleet.state()["injected_at"] is None
    before = scrape(server, "checkout")
    assert scrape(server, root)
    clock.now = T0 + 120.0
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://{server.targets[root]}/metrics")
    after = scrape(server, "checkout")
    timeouts = value(after, "http_client_requests_total", peer=root, code="timeout")
    timeouts -= value(before, "http_client_requests_total", peer=root, code="timeout")
    assert timeouts > 30 * generated(fleet, "client_request_rate", "checkout", T0 + 100, root)  # failing from T0+75
    state = httpx.get(f"{server.loki_url}/state").json()
    assert state["root_service"] == root and state["injected_at"] == datetime.fromtimestamp(T0 + 60, UTC).isoformat()
    assert state["targets"] == server.targets


def test_inject_on_demand_ramps_the_leaking_root_and_keeps_counters_monotonic() -> None:
    fleet, server, clock = serve("memory_leak", 1, inject_after=None)
    with server:
        root = fleet.scenario.root_service
        assert httpx.get(f"{server.loki_url}/state").json()["inject_at"] is None
        clock.now = T0 + 300.0
        before = scrape(server, root)
        memory = value(before, "process_resident_memory_bytes")
        response = httpx.post(f"{server.loki_url}/inject")
        assert response.status_code == 200 and response.json()["injected"] is True
        assert response.json()["injected_at"] == datetime.fromtimestamp(T0 + 300, UTC).isoformat()
        assert httpx.post(f"{server.loki_url}/inject").status_code == 409
        ramped = []
        for seconds in range(15, 150, 15):
            clock.now = T0 + 300.0 + seconds
            try:
                samples = scrape(server, root)
            except httpx.TransportError:  # the OOM kill
                break
            for key, old in before.items():
                if key[0].endswith("_total"):
                    assert samples.get(key, math.inf) >= old, key
            ramped.append(value(samples, "process_resident_memory_bytes"))
        assert max(ramped) > 1.8 * memory
        assert ramped == sorted(ramped)


def loki(server: FleetServer, query: str, **params) -> tuple[int, dict | str]:
    response = httpx.get(f"{server.loki_url}/loki/api/v1/query_range", params={"query": query, **params})
    return response.status_code, response.json() if response.status_code == 200 else response.text


def entries(answer: dict) -> list[tuple[int, str, str]]:
    return [
        (int(ns), stream["stream"]["service_name"], line)
        for stream in answer["data"]["result"]
        for ns, line in stream["values"]
    ]


def test_loki_selectors_line_filters_and_no_future_lines(partition) -> None:
    fleet, server, clock = partition
    clock.now = T0 + 240.0
    now_ns = int(clock.now * 1e9)
    window = {"start": str(int((T0 - 2700) * 1e9)), "end": str(now_ns + 10**12), "limit": "5000"}
    assert httpx.get(f"{server.loki_url}/ready").text == "ready\n"
    labels = httpx.get(f"{server.loki_url}/loki/api/v1/labels").json()
    assert labels == {"status": "success", "data": ["service_name"]}

    status, answer = loki(server, '{service_name="checkout"}', **window, direction="forward")
    assert status == 200 and answer["data"]["resultType"] == "streams"
    found = entries(answer)
    assert {s for _, s, _ in found} == {"checkout"} and len(found) > 500
    assert [ns for ns, _, _ in found] == sorted(ns for ns, _, _ in found)
    assert max(ns for ns, _, _ in found) <= now_ns  # nothing from the future
    data_lines = [r for r in fleet.timeline.data.logs if r.service == "checkout" and r.ts <= clock.now]
    assert len(found) == len(data_lines)

    status, answer = loki(server, '{service_name=~"check.*|web-frontend"}', **window)  # backward: newest first
    assert status == 200 and {s for _, s, _ in entries(answer)} == {"checkout", "web-frontend"}
    for stream in answer["data"]["result"]:
        stamps = [int(ns) for ns, _ in stream["values"]]
        assert stamps == sorted(stamps, reverse=True)

    query = '{service_name=~".+", service_name!~"gateway|.*proxy", service_name!="cart"} |= "dial tcp"'
    status, answer = loki(server, query, **window)
    hits = entries(answer)
    assert status == 200 and hits and all("dial tcp inventory:8080" in line for _, _, line in hits)
    assert {s for _, s, _ in hits} <= {"checkout"} and min(ns for ns, _, _ in hits) >= (T0 + 60) * 1e9

    status, answer = loki(
        server, '{service_name="checkout"} |~ `dial tcp \\S+: (i/o|no route)` != "no route"', **window
    )
    hits = entries(answer)
    assert status == 200 and hits and all("i/o timeout" in line for _, _, line in hits)

    status, answer = loki(server, '{service_name="checkout"} !~ "level\\": \\"(info|debug)"', **window)
    assert status == 200 and all('"level": "info"' not in line for _, _, line in entries(answer))
    assert {'"level": "error"' in line for _, _, line in entries(answer)} == {True, False}  # warn lines remain

    assert loki(server, '{service_name=~".*"}', **window)[0] == 400
    assert loki(server, 'service_name="checkout"', **window)[0] == 400
    assert loki(server, '{service_name="checkout"} | json', **window)[0] == 400
    assert loki(server, '{service_name="checkout"}', limit="5001")[0] == 400


def test_loki_pages_forward_by_time(partition) -> None:
    fleet, server, clock = partition
    clock.now = T0 + 120.0
    query = '{service_name=~"catalog|cart"}'
    start, end = int((T0 - 1200) * 1e9), int(clock.now * 1e9)
    _, whole = loki(server, query, start=str(start), end=str(end), limit="5000", direction="forward")
    expected = sorted(entries(whole))
    paged, cursor, pages = [], start, 0
    while True:
        _, page = loki(server, query, start=str(cursor), end=str(end), limit="300", direction="forward")
        got = sorted(entries(page))
        if not got:
            break
        paged += got
        cursor, pages = got[-1][0] + 1, pages + 1
    assert pages > 3 and paged == expected and len(expected) > 900
    # Seconds with a fraction, RFC 3339 and short integers (seconds) are times too, as in Loki.
    assert parse_time_ns("1795000000.5") == 1_795_000_000_500_000_000
    assert parse_time_ns("1795000000") == 1_795_000_000_000_000_000
    assert parse_time_ns("2026-11-21T12:00:00Z") == int(datetime(2026, 11, 21, 12, tzinfo=UTC).timestamp()) * 10**9


def test_logql_parser() -> None:
    streams, lines = parse_logql('{service_name=~"a|b", service_name!="b"} |= "x" != "y" |~ "z+" !~ `\\d`')
    assert streams({"service_name": "a"}) and not streams({"service_name": "b"}) and not streams({"service_name": "ab"})
    assert lines("x zz") and not lines("x zz y") and not lines("x") and not lines("x z 1")
    text = 'café "quoted"\tx\x01\\'
    _, lines = parse_logql('{service_name="a"} |= ' + json.dumps(text) + " |= " + json.dumps(text, ensure_ascii=True))
    assert lines(f"<{text}>") and not lines(text[1:])
    with pytest.raises(ValueError):
        parse_logql('{service_name="a"} |~ "("')


def test_speed_compresses_time_but_not_rates() -> None:
    fleet, server, clock = serve("cpu_saturation", 3, inject_after=10, speed=4.0)
    with server:
        root = fleet.scenario.root_service
        step_start = fleet.timeline.start + STEP * math.ceil((T0 - fleet.timeline.start) / STEP)
        clock.now = fleet.wall_time(step_start)
        first = scrape(server, root)
        clock.now = fleet.wall_time(step_start + STEP)  # one simulated step, a quarter of it in wall time
        second = scrape(server, root)
        rate = (value(second, "http_requests_total") - value(first, "http_requests_total")) / (STEP / 4)
        assert rate == pytest.approx(generated(fleet, "request_rate", root, step_start))
        since = clock.now
        clock.now = T0 + 10 + 240 / 4  # four simulated minutes after the onset
        cpu = value(scrape(server, root), "process_cpu_seconds_total") - value(second, "process_cpu_seconds_total")
        assert cpu / (clock.now - since) <= 2.1  # cores, not cores x speed
        assert generated(fleet, "cpu_usage", root, fleet.sim_time(clock.now)) > 1.9
        _, answer = loki(server, f'{{service_name="{root}"}}', limit="50")
        for ns, _, line in entries(answer):
            assert _iso(ns / 1e9)[:19] in line  # lines carry their wall time
            assert ns <= clock.now * 1e9


def test_prometheus_config_lists_every_target() -> None:
    fleet, server, _ = serve("disk_full", 1, inject_after=60, speed=15.0)
    with server:
        config = server.prometheus_config()
    assert "scrape_interval: 1000ms" in config and "honor_labels: true" in config
    for service, target in server.targets.items():
        assert f'- targets: ["{target}"]\n        labels:\n          service: {service}\n' in config
    assert "payment-provider" not in config


def test_cli_export_writes_openmetrics(tmp_path) -> None:
    from cli import main

    serve_args = sim.commands["serve"].make_context("serve", ["--scenario", "memory_leak", "--manual", "--speed", "10"])
    assert serve_args.params["manual"] and serve_args.params["speed"] == 10.0 and serve_args.params["base_port"] is None
    out = tmp_path / "history.om"
    end = "2026-11-21T12:00:00Z"
    assert main(["sim", "export", "--scenario", "disk_full", "--seed", "2", "--end", end, "--out", str(out)]) == 0
    text = out.read_text()
    assert text.endswith("# EOF\n") and "# TYPE http_requests counter\n" in text and "# TYPE app_build info\n" in text
    assert 'up{service="gateway"} 1 ' in text


def test_export_backfills_a_real_prometheus(tmp_path) -> None:
    if not (shutil.which("promtool") and shutil.which("prometheus")):
        if os.environ.get("CI") == "true":
            pytest.fail("promtool and prometheus are required under CI (Debian package prometheus)")
        pytest.skip("promtool/prometheus not installed")
    from sim.export import export_openmetrics

    end = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    name, seed = "network_partition", 1
    export_openmetrics(name, seed, end, tmp_path / "history.om")
    data = tmp_path / "data"
    subprocess.run(
        ["promtool", "tsdb", "create-blocks-from", "openmetrics", str(tmp_path / "history.om"), str(data)],
        check=True,
        capture_output=True,
    )
    (tmp_path / "prometheus.yml").write_text("global:\n  scrape_interval: 1m\n")
    port = free_port()
    process = subprocess.Popen(
        [
            "prometheus",
            f"--storage.tsdb.path={data}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--config.file={tmp_path / 'prometheus.yml'}",
            "--storage.tsdb.retention.time=100y",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/-/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        sim = sim_data(name, seed, end)
        root = sim.scenario.root_service
        at = end.timestamp() - 1500  # in the baseline window
        query = f'sum by (service) (rate(http_requests_total{{service="{root}"}}[1m]))'
        params = {"query": query, "start": at - 300, "end": at, "step": 15}
        answer = httpx.get(f"{base}/api/v1/query_range", params=params).json()
        assert answer["status"] == "success"
        [series] = answer["data"]["result"]
        assert series["metric"] == {"service": root} and len(series["values"]) == 21
        points = dict(next(s for s in sim.metrics if s.signal == "request_rate" and s.service == root).points)
        window = [points[at - 60 + k * 15] for k in range(4)]  # the four steps rate()[1m] covers
        assert float(series["values"][-1][1]) == pytest.approx(sum(window) / 4, rel=0.05)
        onset = sim.scenario.onset.timestamp()
        answer = httpx.get(
            f"{base}/api/v1/query", params={"query": f'up{{service="{root}"}}', "time": onset + 120}
        ).json()
        assert answer["data"]["result"][0]["value"][1] == "0"
    finally:
        process.terminate()
        process.wait(timeout=10)
