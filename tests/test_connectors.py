"""Loki and Prometheus connectors and LiveTelemetry against loopback servers speaking the real APIs."""

from __future__ import annotations

import base64
import math
import re
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from analysis.records import PEER_SIGNALS, SIGNALS
from graph.context import Context
from tests.loopback import (
    FakeLoki,
    FakePrometheus,
    GeneratedLogs,
    ListLogs,
    LoopbackServer,
    Reply,
    generated_loki_process,
    prom_error,
    prom_matrix,
)
from tools.http_client import BackendError, QueryBudget, QueryBudgetExceeded, auth_headers
from tools.live import LiveTelemetry, NotConfiguredError, version_changes
from tools.loki import LogReadStats, LokiClient, logql_query, to_ns
from tools.prometheus import PrometheusClient, render_query
from tools.telemetry_config import (
    HttpConfig,
    LokiConfig,
    PrometheusConfig,
    TelemetryConfig,
    load_config,
)

REPO = Path(__file__).resolve().parent.parent
START = datetime(2026, 11, 21, 11, 15, tzinfo=UTC)
END = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
FAST_HTTP = HttpConfig(connect_timeout_seconds=1.0, retries=2, backoff_seconds=0.01, backoff_max_seconds=2.0)
QR = "/api/v1/query_range"
LOKI_QR = "/loki/api/v1/query_range"


def fast_config(**loki: object) -> TelemetryConfig:
    """Defaults with short timeouts and backoff, and Loki overrides."""
    return TelemetryConfig(
        http=FAST_HTTP,
        prometheus=PrometheusConfig(timeout_seconds=0.5),
        loki=replace(LokiConfig(timeout_seconds=0.5), **loki),
    )


def ns(at: datetime, plus: int = 0) -> int:
    return to_ns(at) + plus


# ---- config ------------------------------------------------------------------------------------------------


def test_default_queries_are_the_wire_contract() -> None:
    prom = PrometheusConfig()
    assert render_query(prom, "request_rate", ["checkout", "payments-db-proxy"]) == (
        'sum by (service) (rate(http_requests_total{service=~"checkout|payments-db-proxy"}[1m]))'
    )
    assert render_query(prom, "error_ratio", ["a"]) == (
        'sum by (service) (rate(http_requests_total{service=~"a", code=~"5.."}[1m])) / '
        'sum by (service) (rate(http_requests_total{service=~"a"}[1m]))'
    )
    assert render_query(prom, "client_error_ratio", ["a"]) == (
        'sum by (service, peer) (rate(http_client_requests_total{service=~"a", code!~"2..|3..|4.."}[1m])) / '
        'sum by (service, peer) (rate(http_client_requests_total{service=~"a"}[1m]))'
    )
    assert render_query(prom, "dependencies", window_seconds=2700) == (
        "sum by (service, peer) (increase(http_client_requests_total[2700s])) > 0"
    )
    # service names are regex-escaped, then quoted
    assert render_query(prom, "up", ['we"ird.svc']) == r'min by (service) (up{service=~"we\"ird\\.svc"})'
    assert set(SIGNALS) <= set(prom.queries)


def test_example_file_lists_exactly_the_defaults() -> None:
    assert load_config(str(REPO / "deploy" / "telemetry.example.toml")) == TelemetryConfig()
    assert load_config(None) == TelemetryConfig()


def test_config_file_overrides_and_rejects(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text(
        'query_budget = 7\n[prometheus]\nservice_label = "app"\nstep_seconds = 30\n'
        '[prometheus.queries]\nup = "min by ($service_label) (up{$selector, job=\\"x\\"})"\n'
        '[loki]\nmax_lines = 10\nline_filters = [["!=", "healthz"]]\n'
    )
    config = load_config(str(good))
    assert config.query_budget == 7 and config.prometheus.step_seconds == 30.0
    assert config.loki.line_filters == (("!=", "healthz"),) and config.loki.page_size == 5000
    assert render_query(config.prometheus, "up", ["a"]) == 'min by (app) (up{app=~"a", job="x"})'
    assert config.prometheus.queries["request_rate"].startswith("sum by ($service_label)")

    cases = {
        "[loki]\nlable = 'x'\n": "unknown key 'loki.lable'",
        "budget = 3\n": "unknown key 'budget'",
        "[prometheus.queries]\nlatency_p50 = 'x'\n": "unknown key prometheus.queries.'latency_p50'",
        "[loki]\npage_size = '10'\n": "'loki.page_size' must be a int",
        "[loki]\nmax_lines = 0\n": "'loki.max_lines' must be positive",
        "[loki]\nline_filters = [['==', 'x']]\n": "operator '=='",
        "[prometheus.queries]\nup = 'up{$selectr}'\n": "'prometheus.queries.up': bad placeholder",
        "[http\n": "invalid TOML",
    }
    for text, message in cases.items():
        bad = tmp_path / "bad.toml"
        bad.write_text(text)
        with pytest.raises(ValueError, match=re.escape(message)):
            load_config(str(bad))
    with pytest.raises(ValueError, match="cannot read"):
        load_config(str(tmp_path / "missing.toml"))


# ---- shared HTTP behaviour, for both connectors ------------------------------------------------------------


def prom_ok() -> dict:
    return prom_matrix([({"service": "a"}, [(1.0, 1.5)])])


def loki_ok() -> dict:
    values = [[str(ns(START, 5)), "hello"]]
    return {
        "status": "success",
        "data": {"resultType": "streams", "result": [{"stream": {"service_name": "a"}, "values": values}]},
    }


BACKENDS = {"prometheus": (QR, prom_ok), "loki": (LOKI_QR, loki_ok)}


async def call(backend: str, url: str, auth: str | None = None, config: TelemetryConfig | None = None) -> int:
    """One read through the connector; the number of series or lines it returned."""
    config = config or fast_config()
    budget = QueryBudget(config.query_budget)
    if backend == "prometheus":
        async with PrometheusClient(url, auth, config.prometheus, config.http, budget) as prom:
            return len((await prom.query_range("up", START, END, 15)).series)
    async with LokiClient(url, auth, config.loki, config.http, budget) as loki:
        return len([r async for r in loki.entries(["a"], START, END)])


@contextmanager
def serving(backend: str) -> Iterator[LoopbackServer]:
    path, ok = BACKENDS[backend]
    with LoopbackServer(lambda request: Reply(body=ok()) if request.path == path else Reply(404)) as server:
        yield server


@pytest.mark.parametrize("backend", BACKENDS)
async def test_auth_headers_are_sent(backend: str) -> None:
    with serving(backend) as server:
        assert await call(backend, server.url, "Bearer tok-123") == 1
        assert await call(backend, server.url, "alice:pa:ss") == 1
        assert await call(backend, server.url) == 1
    sent = [r.headers.get("authorization") for r in server.requests]
    assert sent == ["Bearer tok-123", "Basic " + base64.b64encode(b"alice:pa:ss").decode(), None]
    with pytest.raises(ValueError, match="'user:password' or 'Bearer <token>'"):
        auth_headers("just-a-token")


@pytest.mark.parametrize("backend", BACKENDS)
async def test_server_errors_are_retried_until_success(backend: str) -> None:
    path, _ = BACKENDS[backend]
    with serving(backend) as server:
        server.script(path, Reply(503, "overloaded"), Reply(502, "bad gateway"))
        assert await call(backend, server.url) == 1
    assert len(server.requests) == 3


@pytest.mark.parametrize("backend", BACKENDS)
async def test_retries_give_up_with_a_clear_error(backend: str) -> None:
    path, _ = BACKENDS[backend]
    with serving(backend) as server:
        server.script(path, *[Reply(503, body=prom_error("unavailable", "query queue full"))] * 3)
        with pytest.raises(BackendError) as failure:
            await call(backend, server.url)
    assert len(server.requests) == 3  # 1 + 2 retries
    message = str(failure.value)
    assert failure.value.status == 503 and backend in message and "after 3 attempts" in message
    assert "query queue full" in message and "query:" in message


@pytest.mark.parametrize("backend", BACKENDS)
async def test_client_errors_are_not_retried(backend: str) -> None:
    path, _ = BACKENDS[backend]
    body = (
        prom_error("bad_data", "1:5: parse error: unexpected }")
        if backend == "prometheus"
        else ("parse error at line 1, col 5: syntax error: unexpected }\n")
    )
    with serving(backend) as server:
        server.script(path, Reply(400, body))
        with pytest.raises(BackendError) as failure:
            await call(backend, server.url)
    assert len(server.requests) == 1
    assert failure.value.status == 400 and "parse error" in str(failure.value)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_429_waits_for_retry_after(backend: str) -> None:
    path, _ = BACKENDS[backend]
    with serving(backend) as server:
        server.script(path, Reply(429, "slow down", headers={"Retry-After": "1"}))
        began = time.monotonic()
        assert await call(backend, server.url) == 1
        waited = time.monotonic() - began
        assert len(server.requests) == 2 and waited >= 0.95
        # a wait beyond the retry limit fails now rather than hammering or hanging
        server.script(path, Reply(429, "slow down", headers={"Retry-After": "600"}))
        with pytest.raises(BackendError, match="Retry-After 600s is longer than the retry limit"):
            await call(backend, server.url)
    assert len(server.requests) == 3


@pytest.mark.parametrize("backend", BACKENDS)
async def test_timeouts_are_retried_then_reported(backend: str) -> None:
    path, _ = BACKENDS[backend]
    with serving(backend) as server:
        server.script(path, Reply(body=BACKENDS[backend][1](), delay=1.0))
        assert await call(backend, server.url) == 1  # the second attempt answers at once
        server.script(path, *[Reply(body={}, delay=1.0)] * 3)
        with pytest.raises(BackendError, match=r"no response\): timed out \(ReadTimeout\)"):
            await call(backend, server.url)
    assert len(server.requests) == 5


@pytest.mark.parametrize("backend", BACKENDS)
async def test_malformed_and_error_bodies(backend: str) -> None:
    path, _ = BACKENDS[backend]
    with serving(backend) as server:
        server.script(path, Reply(body=b'{"status": "success", "data": {"resultType'))
        with pytest.raises(BackendError, match="malformed JSON"):
            await call(backend, server.url)
        server.script(
            path,
            Reply(
                body={
                    "status": "success",
                    "data": {"resultType": "streams" if backend == "prometheus" else "matrix", "result": []},
                }
            ),
        )
        with pytest.raises(BackendError, match="malformed answer"):
            await call(backend, server.url)
        server.script(path, Reply(body=prom_error("execution", "many-to-many matching not allowed")))
        with pytest.raises(BackendError, match="execution: many-to-many matching not allowed"):
            await call(backend, server.url)
    assert len(server.requests) == 3  # none of these is retried


async def test_unreachable_backend_is_reported() -> None:
    with LoopbackServer() as server:
        url = server.url
    with pytest.raises(BackendError, match=r"prometheus query failed \(no response\): ConnectError"):
        await call("prometheus", url)


# ---- Prometheus --------------------------------------------------------------------------------------------


async def test_prometheus_values_warnings_and_instant_queries() -> None:
    matrix = prom_matrix(
        [({"service": "a"}, [(10.0, "1.5"), (25.0, "NaN"), (40.0, "+Inf"), (55.0, "-Inf")])],
        warnings=["PromQL info: metric might not be a counter"],
    )
    vector = {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [{"metric": {"service": "a", "peer": "b"}, "value": [1700000000.5, "12"]}],
        },
    }
    with LoopbackServer(lambda r: Reply(body=matrix if r.path == QR else vector)) as server:
        config = fast_config()
        async with PrometheusClient(server.url, None, config.prometheus, config.http, QueryBudget(5)) as prom:
            ranged = await prom.query_range("up", START, END, 15)
            instant = await prom.query("up", END)
    (series,) = ranged.series
    assert series.labels == {"service": "a"}
    assert series.points[0] == (10.0, 1.5) and math.isnan(series.points[1][1])
    assert series.points[2][1] == math.inf and series.points[3][1] == -math.inf
    assert ranged.warnings == ["PromQL info: metric might not be a counter"]
    assert instant.series[0].points == [(1700000000.5, 12.0)]
    range_request, instant_request = server.requests
    assert range_request.params["step"] == "15" and float(range_request.params["end"]) == END.timestamp()
    assert float(instant_request.params["time"]) == END.timestamp()


# ---- Loki --------------------------------------------------------------------------------------------------


def loki_read(
    url: str,
    config: TelemetryConfig,
    services: list[str],
    stats: LogReadStats | None = None,
    budget: QueryBudget | None = None,
):
    client = LokiClient(url, None, config.loki, config.http, budget or QueryBudget(config.query_budget))
    return client, client.entries(services, START, END, stats)


async def read_all(
    url: str,
    config: TelemetryConfig,
    services: list[str],
    stats: LogReadStats | None = None,
    budget: QueryBudget | None = None,
) -> list[tuple[float, str, str]]:
    client, entries = loki_read(url, config, services, stats, budget)
    async with client:
        return [(r.ts, r.service, r.line) async for r in entries]


def boundary_heavy_logs() -> list[tuple[int, str, str]]:
    """Three services; groups of entries share a nanosecond so that pages of 4 end inside groups."""
    entries = []
    for i in range(30):
        ts = ns(START, 1_000_000 * (i // 3))
        entries.append((ts, ["gateway", "checkout", "payments"][i % 3], f'level=info msg="step {i}"'))
    entries.append((ns(START, 10**9), "checkout", "same line"))
    entries.append((ns(START, 10**9), "gateway", "same line"))  # identical text, another stream: both kept
    entries.append((ns(END, 1), "gateway", "after the window"))
    entries.append((ns(START, -1), "gateway", "before the window"))
    entries.append((ns(START, 20), "unrelated", "not selected"))
    return entries


async def test_loki_pages_forward_without_losing_or_repeating_entries() -> None:
    logs = boundary_heavy_logs()
    with LoopbackServer(FakeLoki(ListLogs(logs))) as server:
        stats = LogReadStats()
        got = await read_all(server.url, fast_config(page_size=4), ["gateway", "checkout", "payments"], stats)
    expected = sorted(
        (ts / 1e9, s, line) for ts, s, line in logs if s != "unrelated" and "window" not in line
    )
    assert sorted(got) == expected and len(got) == 32
    assert [ts for ts, _, _ in got] == sorted(ts for ts, _, _ in got)
    assert stats == LogReadStats(lines=32, bytes=sum(len(line) for _, _, line in expected), pages=stats.pages)
    requests = server.requests_to(LOKI_QR)
    assert len(requests) == stats.pages >= 9
    first = requests[0].params
    assert first["query"] == '{service_name=~"gateway|checkout|payments"}' and first["direction"] == "forward"
    assert first["limit"] == "4" and int(first["start"]) == ns(START) and int(first["end"]) == ns(END, 1)
    # each next page starts at the last timestamp of the one before (entries there are deduplicated)
    assert int(requests[1].params["start"]) == ns(START, 1_000_000)


async def test_loki_line_filters_are_quoted_safely() -> None:
    logs = [
        (ns(START, i), "api", line)
        for i, line in enumerate(
            ['say "hi" to bob', "say hi", 'say "hi" err42', 'path C:\\tmp "x"', "nothing"]
        )
    ]
    filters = (("|=", 'say "hi"'), ("!~", r"err\d+"))
    assert logql_query("service_name", ["api"], filters) == (
        r'{service_name=~"api"} |= "say \"hi\"" !~ "err\\d+"'
    )
    with LoopbackServer(FakeLoki(ListLogs(logs))) as server:
        got = await read_all(server.url, fast_config(line_filters=filters), ["api"])
    assert [line for _, _, line in got] == ['say "hi" to bob']
    with pytest.raises(ValueError, match="line filter operator"):
        logql_query("service_name", ["api"], [("|>", "x")])


async def test_loki_line_and_byte_caps_stop_and_mark_truncated() -> None:
    logs = [(ns(START, i), "api", f"line {i:03d}") for i in range(50)]  # 8 bytes each
    with LoopbackServer(FakeLoki(ListLogs(logs))) as server:
        stats = LogReadStats()
        got = await read_all(server.url, fast_config(page_size=7, max_lines=20), ["api"], stats)
        assert len(got) == 20 and stats.truncated and stats.reason == "stopped at the cap of 20 lines per run"
        assert [line for _, _, line in got] == [f"line {i:03d}" for i in range(20)]
        stats = LogReadStats()
        got = await read_all(server.url, fast_config(page_size=7, max_bytes=100), ["api"], stats)
        assert len(got) == 12 and stats.bytes == 96 and stats.truncated and "100 bytes" in stats.reason
        stats = LogReadStats()
        got = await read_all(server.url, fast_config(page_size=10, max_lines=50), ["api"], stats)
        assert len(got) == 50 and not stats.truncated  # exactly at the cap with nothing left: complete
        pages_before = len(server.requests)
        stats = LogReadStats()
        client, entries = loki_read(server.url, fast_config(page_size=5), ["api"], stats)
        async with client:
            async for _ in entries:
                break  # a consumer that stops early: the prefetched page is dropped, nothing leaks
            await entries.aclose()
        assert len(server.requests) - pages_before <= 2


async def test_loki_failure_after_the_first_page_keeps_what_was_read() -> None:
    logs = [(ns(START, i), "api", f"line {i}") for i in range(30)]
    failing_after_two = iter([None, None])

    def handler(request):
        if next(failing_after_two, "fail") == "fail":
            return Reply(400, "max entries limit per query exceeded")
        return loki(request)

    loki = FakeLoki(ListLogs(logs))
    with LoopbackServer(handler) as server:
        stats = LogReadStats()
        got = await read_all(server.url, fast_config(page_size=10), ["api"], stats)
    # page 2 starts at page 1's last timestamp, so it brings 9 new entries
    assert len(got) == 19 and stats.truncated and "HTTP 400" in stats.reason and "max entries" in stats.reason


async def test_loki_more_entries_on_one_nanosecond_than_a_page() -> None:
    logs = [(ns(START, 1), "api", f"burst {i}") for i in range(6)] + [(ns(START, 2), "api", "after")]
    with LoopbackServer(FakeLoki(ListLogs(logs))) as server:
        stats = LogReadStats()
        got = await read_all(server.url, fast_config(page_size=4), ["api"], stats)
    assert [line for _, _, line in got] == ["burst 0", "burst 1", "burst 2", "burst 3", "after"]
    assert stats.truncated and "more than 4 entries" in stats.reason


async def test_loki_query_budget() -> None:
    logs = [(ns(START, i), "api", f"line {i}") for i in range(30)]
    with LoopbackServer(FakeLoki(ListLogs(logs))) as server:
        stats = LogReadStats()
        got = await read_all(server.url, fast_config(page_size=5), ["api"], stats, QueryBudget(3))
        assert (
            len(got) == 13 and stats.truncated and "query budget of 3 queries spent" in stats.reason
        )  # 5 + 4 + 4
        with pytest.raises(QueryBudgetExceeded):
            await read_all(server.url, fast_config(page_size=5), ["api"], None, QueryBudget(0))


async def test_generated_window_read_exactly_once() -> None:
    """30,000 generated entries, 3 per nanosecond, pages of 1,000: every boundary cuts a group."""
    total = 30_000
    source = GeneratedLogs(total, ns(START), 1_000_000, 3, ["gateway", "checkout", "payments"])
    with LoopbackServer(FakeLoki(source)) as server:
        live = LiveTelemetry(Context(loki_url=server.url), fast_config(page_size=1000))
        seqs = [
            int(r.line.rsplit("=", 1)[1])
            async for r in live.logs(["gateway", "checkout", "payments"], START, END)
        ]
    assert len(seqs) == total and sorted(seqs) == list(range(total))
    assert live.log_stats.pages == 31 and not live.log_stats.truncated


@contextmanager
def peak_rss_growth() -> Iterator[list[float]]:
    """Peak resident memory above the starting point, in bytes (Linux: resets VmHWM via clear_refs)."""

    def kb(field: str) -> int:
        return int(re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))

    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pytest.skip("peak RSS needs Linux /proc/self/clear_refs")
    base, out = kb("VmRSS"), []
    yield out
    out.append((kb("VmHWM") - base) * 1024.0)


async def test_a_million_lines_stream_in_bounded_memory(capsys: pytest.CaptureFixture[str]) -> None:
    """1,000,000 lines generated page by page in another process; the consumer only counts.

    tracemalloc slows every allocation several times over, so it watches the first 50,000 lines; the whole
    1,000,000 run untraced and are watched by the process' peak resident memory.
    """
    services = ["gateway", "checkout", "payments"]
    total, spacing = 1_000_000, 2_000_000  # 3-entry groups 2 ms apart: 667 s, inside START..END
    config = replace(fast_config(max_lines=2_000_000, max_bytes=2**31), query_budget=1000)
    with generated_loki_process(total, ns(START), spacing, 3, services) as url:
        traced = LiveTelemetry(
            Context(loki_url=url), replace(config, loki=replace(config.loki, max_lines=50_000))
        )
        tracemalloc.start()
        try:
            counted = 0
            async for _ in traced.logs(services, START, END):
                counted += 1
            traced_peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert counted == 50_000 and traced.log_stats.truncated

        live = LiveTelemetry(Context(loki_url=url), config)
        with peak_rss_growth() as rss:
            began, counted = time.perf_counter(), 0
            async for _ in live.logs(services, START, END):
                counted += 1
            elapsed = time.perf_counter() - began
    assert counted == total and live.log_stats.lines == total and not live.log_stats.truncated
    assert traced_peak < 50e6 and rss[0] < 50e6
    with capsys.disabled():
        print(
            f"\n1M-line read: {total / elapsed:,.0f} lines/s ({elapsed:.1f} s, {live.log_stats.pages} pages, "
            f"{live.log_stats.bytes / 1e6:.0f} MB of text); tracemalloc peak {traced_peak / 1e6:.1f} MB "
            f"over 50k lines; peak RSS growth {rss[0] / 1e6:.1f} MB over 1M lines"
        )


# ---- LiveTelemetry over a loopback Prometheus --------------------------------------------------------------

FLEET = ["gateway", "checkout", "payments", "payments-db-proxy"]
EDGES = {
    ("gateway", "checkout"),
    ("checkout", "payments"),
    ("payments", "payments-db-proxy"),
    ("payments", "payment-provider"),
}


def fleet_answers(services: list[str], batch: int = 25, fail: str | None = None, warnings: bool = False):
    """A realistic fleet: the answer to each default query, by the exact text LiveTelemetry should send."""
    prom = PrometheusConfig(services_per_query=batch)
    batches = [services[i : i + batch] for i in range(0, len(services), batch)]
    signal_of = {render_query(prom, name, b): (name, b) for name in SIGNALS for b in batches}
    signal_of.update({render_query(prom, "deploys", b): ("deploys", b) for b in batches})
    onset = (START + timedelta(minutes=30)).timestamp()

    def answer(query: str, times: list[float]):
        if query.startswith("sum by (service, peer) (increase(http_client_requests_total[2700s])) > 0"):
            return [({"service": a, "peer": b}, [120.0]) for a, b in sorted(EDGES)]
        name, batch_services = signal_of[query]  # KeyError -> 500: an unexpected query text
        if name == fail:
            return Reply(422, prom_error("execution", "vector cannot contain metrics with the same labelset"))
        out = []
        for service in batch_services:
            labels = {"service": service}
            if name == "deploys":
                out.append(({**labels, "version": "1.4.0"}, [1 if t < onset + 60 else None for t in times]))
                if service == "payments":
                    out.append(({**labels, "version": "1.5.0"}, [1 if t >= onset else None for t in times]))
            elif name in PEER_SIGNALS:
                for caller, peer in sorted(EDGES):
                    if caller != service:
                        continue
                    if name == "client_request_rate":
                        out.append(
                            (
                                {**labels, "peer": peer},
                                [0.0 if t < START.timestamp() + 60 else 20.0 for t in times],
                            )
                        )
                    elif name == "client_error_ratio" and peer == "payment-provider":  # the only failing edge
                        out.append(
                            (
                                {**labels, "peer": peer},
                                [
                                    "NaN" if t < START.timestamp() + 60 else (0.4 if t >= onset else 0.0)
                                    for t in times
                                ],
                            )
                        )
            elif name == "db_pool_in_use" or name == "db_pool_max":
                if service.endswith("-db-proxy"):
                    out.append((labels, [20.0 for _ in times]))
            elif name == "cpu_usage" and service == "checkout":
                continue  # partial data: one series missing
            elif name == "latency_p99":
                out.append((labels, ["NaN" if i == 0 else 0.25 for i, _ in enumerate(times)]))
            elif name == "error_ratio":
                out.append((labels, ["NaN" if i == 0 else 0.01 for i, _ in enumerate(times)]))
            else:
                out.append((labels, [1.0 for _ in times]))
        if warnings and name == "up":
            return Reply(body={**prom_matrix([]), "warnings": ["some series were dropped"]})
        return out

    return answer


async def test_live_metrics_from_a_loopback_prometheus() -> None:
    with LoopbackServer(FakePrometheus(fleet_answers(FLEET))) as server:
        live = LiveTelemetry(Context(prometheus_url=server.url, prometheus_auth="Bearer t"), fast_config())
        series = await live.metrics(FLEET, START, END, 15.0)
    assert len(server.requests) == len(SIGNALS)  # one query per signal for all four services
    assert all(r.headers["authorization"] == "Bearer t" for r in server.requests)
    assert all(r.params["step"] == "15" for r in server.requests)
    keys = {(s.signal, s.service, s.peer) for s in series}
    plain = {
        "request_rate",
        "error_ratio",
        "latency_p99",
        "cpu_usage",
        "memory_bytes",
        "disk_free_bytes",
        "cert_expiry_timestamp",
        "up",
    }
    expected = {(signal, s, None) for signal in plain for s in FLEET} - {("cpu_usage", "checkout", None)}
    expected |= {("db_pool_in_use", "payments-db-proxy", None), ("db_pool_max", "payments-db-proxy", None)}
    # the simulated fleet records no client latency histograms: that edge signal has no series here
    expected |= {(signal, a, b) for a, b in EDGES for signal in PEER_SIGNALS - {"client_latency_p99"}}
    assert keys == expected
    by_key = {(s.signal, s.service, s.peer): s.points for s in series}
    points = 181  # 45 minutes at 15 s, both ends included
    assert len(by_key[("request_rate", "gateway", None)]) == points
    # NaN latency is no sample; a NaN ratio (0/0) and an absent one (no failures) are 0 along the rate series
    assert len(by_key[("latency_p99", "gateway", None)]) == points - 1
    assert by_key[("error_ratio", "gateway", None)][0][1] == 0.0
    healthy_edge = by_key[("client_error_ratio", "gateway", "checkout")]
    assert len(healthy_edge) == points and {v for _, v in healthy_edge} == {0.0}
    failing_edge = dict(by_key[("client_error_ratio", "payments", "payment-provider")])
    assert max(failing_edge.values()) == 0.4 and all(math.isfinite(v) for v in failing_edge.values())
    assert [s.signal for s in series] == sorted((s.signal for s in series), key=list(SIGNALS).index)
    assert live.notes == []


async def test_live_metrics_batches_partial_failures_warnings_and_budget() -> None:
    with LoopbackServer(
        FakePrometheus(fleet_answers(FLEET, batch=3, fail="latency_p99", warnings=True))
    ) as server:
        config = replace(fast_config(), prometheus=replace(fast_config().prometheus, services_per_query=3))
        live = LiveTelemetry(Context(prometheus_url=server.url), config)
        series = await live.metrics(FLEET, START, END, 15.0)
        assert len(server.requests) == 2 * len(SIGNALS)
        assert {s.service for s in series} == set(FLEET)
        assert not any(s.signal == "latency_p99" for s in series)
        assert any("2 of 26 queries failed" in note and "HTTP 422" in note for note in live.notes)
        assert "prometheus warning: some series were dropped" in live.notes

        budgeted = LiveTelemetry(Context(prometheus_url=server.url), replace(config, query_budget=5))
        series = await budgeted.metrics(FLEET, START, END, 15.0)
        assert budgeted.budget.spent == 5 and series
        assert any("22 of 26 queries failed or were not sent" in note for note in budgeted.notes)
        with pytest.raises(QueryBudgetExceeded):
            await LiveTelemetry(Context(prometheus_url=server.url), replace(config, query_budget=1)).deploys(
                FLEET, START, END
            )


async def test_live_dependencies_and_deploys() -> None:
    with LoopbackServer(FakePrometheus(fleet_answers(FLEET))) as server:
        live = LiveTelemetry(Context(prometheus_url=server.url), fast_config())
        edges = await live.dependencies(START, END)
        deploys = await live.deploys(FLEET, START, END)
    assert edges == sorted(EDGES)
    instant = server.requests[0]
    assert instant.path == "/api/v1/query" and float(instant.params["time"]) == END.timestamp()
    (deploy,) = deploys  # the overlap while 1.4.0 goes stale is not a second change
    assert (deploy.service, deploy.version, deploy.previous_version) == ("payments", "1.5.0", "1.4.0")
    assert deploy.at == START + timedelta(minutes=30) and deploy.kind == "code" and deploy.source == "metrics"
    assert server.requests[1].params["step"] == "15"


def test_version_changes_rollback_and_gaps() -> None:
    t = [float(i * 15) for i in range(10)]
    versions = {"1.0": set(t[:3]) | set(t[7:]), "2.0": set(t[3:7])}  # deploy, then roll back
    events = version_changes("api", versions)
    assert [(e.previous_version, e.version, e.at.timestamp()) for e in events] == [
        ("1.0", "2.0", 45.0),
        ("2.0", "1.0", 105.0),
    ]
    assert version_changes("api", {"1.0": {0.0, 15.0, 90.0}}) == []  # a scrape gap is no deploy


async def test_live_without_backends_and_traces(tmp_path: Path) -> None:
    live = LiveTelemetry(Context(), fast_config())
    with pytest.raises(NotConfiguredError, match="Prometheus is not configured: set PROMETHEUS_URL"):
        await live.metrics(FLEET, START, END, 15.0)
    with pytest.raises(NotConfiguredError, match="Loki is not configured: set LOKI_URL"):
        async for _ in live.logs(FLEET, START, END):
            pass
    assert await live.traces(FLEET, START, END) == []
    assert "no trace backend" in live.notes[-1]
    assert await live.code_repository("payments") is None
    config_path = tmp_path / "telemetry.toml"
    config_path.write_text(
        (REPO / "deploy" / "telemetry.example.toml").read_text().replace("[loki]", "[loki]\nlable = 1")
    )
    with pytest.raises(ValueError, match="unknown key 'loki.lable'"):
        LiveTelemetry(Context(telemetry_config=str(config_path)))


def test_backend_clients_share_one_tls_context(monkeypatch) -> None:
    """Loading the CA bundle costs tens of milliseconds a time: a run opens several backend clients, and the whole
    process loads it once (an investigation is one process)."""
    import ssl

    import tools.http_client as http_client
    from tools.telemetry_config import HttpConfig

    loads = []
    real = ssl.SSLContext.load_verify_locations
    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", lambda self, *a, **k: loads.append(1) or real(
        self, *a, **k))
    http_client.tls_context.cache_clear()
    clients = [http_client.BackendClient(f"https://backend-{i}.example", None, 5.0, HttpConfig(), QueryBudget(10))
               for i in range(4)]
    assert len(loads) == 1, loads
    assert len({id(c._client._transport._pool._ssl_context) for c in clients}) == 1


def test_plain_http_backend_clients_load_no_ca_bundle(monkeypatch) -> None:
    """A backend on plain http (Prometheus, Loki or Tempo inside the cluster) never makes a TLS handshake: its
    client loads no CA bundle, and the context it holds verifies certificates against none (it fails closed)."""
    import ssl

    import tools.http_client as http_client
    from tools.telemetry_config import HttpConfig

    loads = []
    real = ssl.SSLContext.load_verify_locations
    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", lambda self, *a, **k: loads.append(1) or real(
        self, *a, **k))
    http_client.tls_context.cache_clear()
    client = http_client.BackendClient("http://prometheus.monitoring:9090", None, 5.0, HttpConfig(), QueryBudget(10))
    assert loads == []
    context = client._client._transport._pool._ssl_context
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.cert_store_stats()["x509_ca"] == 0
