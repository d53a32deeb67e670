"""Tempo and Jaeger connectors against loopback servers speaking their real JSON: parsing, bounded reads (slices,
caps, query budget), retries and errors; and LiveTelemetry choosing the trace backend."""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

import httpx
import pytest

from analysis.records import Span
from graph.context import Context
from sim.fleet import Fleet
from sim.tempo import SpanStore, TraceQLError, parse_traceql, search_json, trace_json
from sim.wire import FleetServer
from tests.loopback import LoopbackServer, Reply, Request
from tools import jaeger, tempo
from tools.http_client import BackendError, HttpConfig, QueryBudget
from tools.live import LiveTelemetry
from tools.spans import TraceReadStats, hex_id, peer_of
from tools.telemetry_config import TelemetryConfig, TracesConfig

START = datetime(2026, 11, 21, 11, 15, tzinfo=UTC)
END = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
FAST_HTTP = HttpConfig(connect_timeout_seconds=1.0, retries=2, backoff_seconds=0.01, backoff_max_seconds=2.0)
CONFIG = TracesConfig(max_traces=12, error_traces=4, slices=3, timeout_seconds=1.0)

# Tempo's /api/traces/<id> as it answers (jsonpb: ids as base64 bytes, enums by name), after Tempo's own docs.
TEMPO_TRACE = {
    "batches": [
        {
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "checkout"}},
                                        {"key": "k8s.pod.name", "value": {"stringValue": "checkout-7d9-x2"}}]},
            "scopeSpans": [{
                "scope": {"name": "opentelemetry.instrumentation.flask"},
                "spans": [
                    {"traceId": "AAAAAAAAAAABI0VniavN7w==", "spanId": "AAAAAAAAEjQ=", "name": "POST /checkout",
                     "kind": "SPAN_KIND_SERVER", "startTimeUnixNano": "1795260000000000000",
                     "endTimeUnixNano": "1795260000250000000",
                     "attributes": [{"key": "http.response.status_code", "value": {"intValue": "502"}}],
                     "status": {}},
                    {"traceId": "AAAAAAAAAAABI0VniavN7w==", "spanId": "AAAAAAAAVng=", "parentSpanId": "AAAAAAAAEjQ=",
                     "name": "POST", "kind": "SPAN_KIND_CLIENT", "startTimeUnixNano": "1795260000010000000",
                     "endTimeUnixNano": "1795260000240000000",
                     "attributes": [{"key": "server.address",
                                     "value": {"stringValue": "payments.shop.svc.cluster.local:8080"}}],
                     "status": {"code": "STATUS_CODE_ERROR"},
                     "events": [{"name": "exception", "timeUnixNano": "1795260000240000000",
                                 "attributes": [{"key": "exception.message",
                                                 "value": {"stringValue": "upstream connect error"}}]}]},
                ],
            }],
        },
        {
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "payments"}}]},
            "instrumentationLibrarySpans": [{"spans": [
                {"traceId": "AAAAAAAAAAABI0VniavN7w==", "spanId": "AAAAAAAAmrw=", "parentSpanId": "AAAAAAAAVng=",
                 "name": "charge", "kind": 2, "startTimeUnixNano": "1795260000020000000",
                 "endTimeUnixNano": "1795260000230000000", "status": {"code": 2, "message": "card processor down"}},
            ]}],
        },
    ]
}

# Jaeger's /api/traces answer (v1 query service), errors null, the process map per trace.
JAEGER_SEARCH = {
    "data": [{
        "traceID": "a1b2c3d4e5f60718",
        "spans": [
            {"traceID": "a1b2c3d4e5f60718", "spanID": "1111111111111111", "flags": 1, "operationName": "HTTP GET /",
             "references": [], "startTime": 1795260000000000, "duration": 310000,
             "tags": [{"key": "span.kind", "type": "string", "value": "server"},
                      {"key": "http.status_code", "type": "int64", "value": 200}],
             "logs": [], "processID": "p1", "warnings": None},
            {"traceID": "a1b2c3d4e5f60718", "spanID": "2222222222222222", "flags": 1, "operationName": "GET",
             "references": [{"refType": "CHILD_OF", "traceID": "a1b2c3d4e5f60718", "spanID": "1111111111111111"}],
             "startTime": 1795260000005000, "duration": 300000,
             "tags": [{"key": "span.kind", "type": "string", "value": "client"},
                      {"key": "peer.service", "type": "string", "value": "catalog"},
                      {"key": "error", "type": "bool", "value": True}],
             "logs": [{"timestamp": 1795260000305000, "fields": [{"key": "event", "type": "string", "value": "error"},
                                                                 {"key": "message", "type": "string",
                                                                  "value": "context deadline exceeded"}]}],
             "processID": "p1", "warnings": None},
        ],
        "processes": {"p1": {"serviceName": "web-frontend", "tags": [{"key": "hostname", "value": "web-1"}]}},
        "warnings": None,
    }],
    "total": 0, "limit": 0, "offset": 0, "errors": None,
}


def test_tempo_otlp_json_to_spans() -> None:
    spans = {s.name: s for s in tempo.otlp_spans(TEMPO_TRACE)}
    root, client, server = spans["POST /checkout"], spans["POST"], spans["charge"]
    assert root.trace_id == "00000000000000000123456789abcdef" and root.parent_id is None
    assert root.service == "checkout" and root.error and root.duration_ms == pytest.approx(250.0)  # HTTP 502
    assert client.parent_id == root.span_id and client.peer == "payments" and client.error
    assert client.message == "upstream connect error"
    assert server.service == "payments" and server.message == "card processor down" and server.peer is None
    v2 = tempo.otlp_spans({"trace": {"resourceSpans": TEMPO_TRACE["batches"]}})
    assert sorted(s.span_id for s in v2) == sorted(s.span_id for s in spans.values())


def test_jaeger_json_to_spans() -> None:
    root, call = jaeger.jaeger_spans(JAEGER_SEARCH["data"][0])
    assert root.trace_id == "0000000000000000a1b2c3d4e5f60718" and root.service == "web-frontend"
    assert not root.error and root.duration_ms == 310.0 and root.start == 1795260000.0
    assert call.parent_id == root.span_id and call.peer == "catalog" and call.error
    assert call.message == "context deadline exceeded"


def test_ids_and_peers() -> None:
    assert hex_id("AAAAAAAAEjQ=") == "0000000000001234"
    assert hex_id("7a1d2dd4deaf177e0acf55b3c49032") == "007a1d2dd4deaf177e0acf55b3c49032"  # Tempo drops zeros
    with pytest.raises(ValueError):
        hex_id("not an id!")
    assert peer_of({"server.address": "10.0.3.7:5432"}) is None
    assert peer_of({"server.address": "10.0.3.7", "net.peer.name": "redis-cache.prod"}) == "redis-cache"
    assert peer_of({"peer.service": "payment-provider", "server.address": "api.example.com"}) == "payment-provider"


# --- a loopback Tempo over stored spans (sim/tempo.py renders Tempo's JSON) --------------------------------------


def fleet_spans(traces: int, every: timedelta, error_every: int = 5) -> list[Span]:
    """`traces` two-span traces (web -> api), one every `every` from START; every error_every-th fails in api."""
    spans = []
    for k in range(traces):
        at = (START + every / 2 + k * every).timestamp()
        tid, root, child = f"{k + 1:032x}", f"{2 * k + 1:016x}", f"{2 * k + 2:016x}"
        failed = k % error_every == 0
        spans.append(Span(tid, root, None, "web", "GET /", at, 120.0, failed, None, "call failed" if failed else ""))
        spans.append(Span(tid, child, root, "web", "GET api", at + 0.001, 100.0, failed, "api",
                          "HTTP 500" if failed else ""))
    return spans


def tempo_handler(store: SpanStore):
    def handle(request: Request) -> Reply:
        if request.path == "/api/search":
            try:
                matches = parse_traceql(request.params.get("q", "{}"))
            except TraceQLError as exc:
                return Reply(400, f"invalid TraceQL query: {exc}")
            start, end = int(request.params["start"]) * 10**9, int(request.params["end"]) * 10**9
            hits = store.search(matches, start, end, int(request.params.get("limit", "20")))
            return Reply(body=search_json(hits, len(store)))
        if request.path.startswith("/api/traces/"):
            spans = store.trace(unquote(request.path.rsplit("/", 1)[1]))
            return Reply(body=trace_json(spans)) if spans else Reply(404, "trace not found")
        return Reply(404, "404 page not found")

    return handle


async def tempo_read(url: str, services: list[str], config: TracesConfig = CONFIG, budget: int = 200,
                     auth: str | None = None) -> tuple[list[Span], TraceReadStats]:
    stats = TraceReadStats()
    async with tempo.TempoClient(url, auth, config, FAST_HTTP, QueryBudget(budget)) as client:
        return await tempo.read_spans(client, services, START, END, config, stats), stats


async def test_tempo_read_searches_slices_then_fetches_each_trace() -> None:
    store = SpanStore(fleet_spans(45, timedelta(minutes=1)))
    with LoopbackServer(tempo_handler(store)) as server:
        spans, stats = await tempo_read(server.url, ["web", "api.v2"], auth="Bearer t0k")
    searches = server.requests_to("/api/search")  # sent concurrently: in any order
    errors = [r for r in searches if "status = error" in r.params["q"]]
    assert [r.params["q"] for r in errors] == ['{ resource.service.name=~"web|api\\\\.v2" && status = error }']
    assert int(errors[0].params["limit"]) == 4
    sliced = sorted((int(r.params["start"]), int(r.params["end"]), r.params["q"], int(r.params["limit"]))
                    for r in searches if r not in errors)
    assert [(q, limit) for _, _, q, limit in sliced] == [('{ resource.service.name=~"web|api\\\\.v2" }', 2)] * 3
    assert sliced[0][0] == START.timestamp() and sliced[-1][1] == END.timestamp() and sliced[0][1] == sliced[1][0]
    assert all(r.headers["authorization"] == "Bearer t0k" for r in server.requests)
    fetched = [r for r in server.requests if r.path.startswith("/api/traces/")]
    traces = {s.trace_id for s in spans}
    assert len(fetched) == len(traces) == stats.traces == 4 + 3 * 2  # the slices' newest traces hold no error
    assert sum(1 for s in spans if s.parent_id is None and s.error) == 4  # the error search found 4
    assert {(s.service, s.peer) for s in spans} == {("web", None), ("web", "api")}
    assert not stats.truncated and stats.searches == 4


async def test_tempo_cap_budget_and_gone_traces() -> None:
    store = SpanStore(fleet_spans(45, timedelta(minutes=1)))
    roomy = replace(CONFIG, max_traces=6, error_traces=10)
    with LoopbackServer(tempo_handler(store)) as server:
        spans, stats = await tempo_read(server.url, ["web"], roomy)
        assert len({s.trace_id for s in spans}) == 6 and stats.truncated
        assert "read the first 6" in stats.reasons[0]
        gone = store.search(parse_traceql("{ status = error }"), 0, 2**62, 1)[0].trace_id
        server.script(f"/api/traces/{gone}", Reply(404, "trace not found"))
        spans, stats = await tempo_read(server.url, ["web"], roomy)
        assert gone not in {s.trace_id for s in spans} and stats.failed == 1
        spans, stats = await tempo_read(server.url, ["web"], roomy, budget=7)  # 4 searches + 3 fetches
        assert len({s.trace_id for s in spans}) == 3 and stats.truncated
        assert any("query budget of 7 queries spent" in r for r in stats.reasons)


async def test_tempo_errors() -> None:
    store = SpanStore(fleet_spans(10, timedelta(minutes=4)))
    with LoopbackServer(tempo_handler(store)) as server:
        for _ in range(4):
            server.script("/api/search", Reply(400, "invalid TraceQL query: parse error at line 1, col 3: syntax"))
        with pytest.raises(BackendError, match="HTTP 400.*invalid TraceQL query"):
            await tempo_read(server.url, ["web"])
        assert len(server.requests) == 4  # a 400 is not retried
        server.script("/api/search", Reply(503, "ingesters unhealthy"), Reply(429, "", headers={"Retry-After": "0"}))
        spans, stats = await tempo_read(server.url, ["web"])
        assert spans and not stats.reasons  # retried until answered
        tid = next(iter({s.trace_id for s in spans}))
        server.script(f"/api/traces/{tid}", *[Reply(500, "internal error")] * 3)
        spans, stats = await tempo_read(server.url, ["web"])
        assert tid not in {s.trace_id for s in spans} and stats.failed == 1 and stats.truncated
        assert "after 3 attempts" in stats.reasons[0]
        server.script("/api/search", Reply(body=b'{"traces": [{"rootServiceName": "web"}]}'))
        spans, stats = await tempo_read(server.url, ["web"])
        assert "malformed answer" in stats.reasons[0]
        server.script(f"/api/traces/{tid}", Reply(body=b"{\"batches\": [{\"scopeSpans\": [{\"spans\": [{}]}]}]}"))
        spans, stats = await tempo_read(server.url, ["web"])
        assert any("malformed answer" in r for r in stats.reasons)


async def test_tempo_fetches_traces_concurrently_within_the_bound() -> None:
    """Traces found by the searches are fetched a few at a time (never more than the connector's limit), a failing
    fetch costs only its trace, and the spans come out in the searches' order however the answers interleave."""
    store = SpanStore(fleet_spans(45, timedelta(minutes=1)))
    served = tempo_handler(store)
    lock, in_flight, most = threading.Lock(), [0], [0]

    def slow_traces(request: Request) -> Reply:
        if not request.path.startswith("/api/traces/"):
            return served(request)
        with lock:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
        time.sleep(0.05)  # long enough for the other fetches to arrive meanwhile
        with lock:
            in_flight[0] -= 1
        return served(request)

    config = replace(CONFIG, max_concurrent_queries=3)
    with LoopbackServer(slow_traces) as server:
        ids = [h.trace_id for h in store.search(parse_traceql("{ status = error }"), 0, 2**62, 4)]
        failing = ids[1]
        server.script(f"/api/traces/{failing}", *[Reply(500, "internal error")] * 3)
        spans, stats = await tempo_read(server.url, ["web"], config)
    fetched = [r.path.rsplit("/", 1)[1] for r in server.requests if r.path.startswith("/api/traces/")]
    assert 1 < most[0] <= 3  # concurrent, within the bound
    assert len(set(fetched)) == 10 and fetched.count(failing) == 3  # every trace asked for, the failing one retried
    read = list(dict.fromkeys(s.trace_id for s in spans))
    assert failing not in read and len(read) == stats.traces == 9 and stats.failed == 1 and stats.truncated
    assert read[:3] == [ids[0], *ids[2:4]]  # the error search's traces first, in its order
    expected = [s for tid in read for s in sorted(store.trace(tid), key=lambda s: s.span_id)]
    assert sorted(spans, key=lambda s: (read.index(s.trace_id), s.span_id)) == expected
    assert [s.trace_id for s in spans] == [tid for tid in read for _ in store.trace(tid)]  # grouped, search order


def test_traceql_subset_served_by_the_simulator() -> None:
    spans = fleet_spans(3, timedelta(minutes=1), error_every=2)
    traces = [[s for s in spans if s.trace_id == f"{k + 1:032x}"] for k in range(3)]
    match = parse_traceql('{ resource.service.name =~ "w.b" && status = error && duration > 110ms }')
    assert [match(t) for t in traces] == [True, False, True]
    assert all(parse_traceql("{}")(t) for t in traces)
    assert parse_traceql('{ span.peer.service = "api" && kind = client }')(traces[1])
    for bad in ('{ resource.service.name = "web" || status = error }', "resource.service.name = web",
                "{ foo.bar = 1 }", '{ duration > "slow" }', "{ status = error && }"):
        with pytest.raises(TraceQLError):
            parse_traceql(bad)


# --- Jaeger ------------------------------------------------------------------------------------------------------


def jaeger_handler(spans: list[Span]):
    """A Jaeger query service over spans: /api/traces by service, µs time range, tags, limit; JSON errors."""

    def trace_json(group: list[Span]) -> dict:
        services = sorted({s.service for s in group})
        pids = {service: f"p{k + 1}" for k, service in enumerate(services)}
        out = []
        for s in group:
            tags: list[dict[str, Any]] = [{"key": "error", "type": "bool", "value": True}] if s.error else []
            if s.peer:
                tags += [{"key": "span.kind", "type": "string", "value": "client"},
                         {"key": "peer.service", "type": "string", "value": s.peer}]
            refs = [{"refType": "CHILD_OF", "traceID": s.trace_id, "spanID": s.parent_id}] if s.parent_id else []
            out.append({"traceID": s.trace_id, "spanID": s.span_id, "operationName": s.name, "references": refs,
                        "startTime": round(s.start * 1e6), "duration": round(s.duration_ms * 1e3), "tags": tags,
                        "logs": [], "processID": pids[s.service], "warnings": None})
        return {"traceID": group[0].trace_id, "spans": out, "warnings": None,
                "processes": {pid: {"serviceName": svc, "tags": []} for svc, pid in pids.items()}}

    def handle(request: Request) -> Reply:
        if request.path != "/api/traces":
            return Reply(404, "404 page not found")
        if "service" not in request.params:
            return Reply(400, {"data": None, "total": 0, "limit": 0, "offset": 0,
                               "errors": [{"code": 400, "msg": "parameter 'service' is required"}]})
        lo, hi = int(request.params["start"]) / 1e6, int(request.params["end"]) / 1e6
        tags = json.loads(request.params.get("tags", "{}"))
        groups: dict[str, list[Span]] = {}
        for s in spans:
            groups.setdefault(s.trace_id, []).append(s)
        hits = [g for g in groups.values()
                if any(s.service == request.params["service"] for s in g) and lo <= min(s.start for s in g) <= hi
                and (not tags or any(s.error for s in g))]
        hits = sorted(hits, key=lambda g: -min(s.start for s in g))[: int(request.params["limit"])]
        return Reply(body={"data": [trace_json(g) for g in hits], "total": 0, "limit": 0, "offset": 0,
                           "errors": None})

    return handle


async def jaeger_read(url: str, services: list[str], config: TracesConfig = CONFIG) -> tuple[list[Span], Any]:
    stats = TraceReadStats()
    async with jaeger.JaegerClient(url, None, config, FAST_HTTP, QueryBudget(200)) as client:
        return await jaeger.read_spans(client, services, START, END, config, stats), stats


async def test_jaeger_read_per_service_and_slice() -> None:
    spans = fleet_spans(45, timedelta(minutes=1))
    with LoopbackServer(jaeger_handler(spans)) as server:
        read, stats = await jaeger_read(server.url, ["web", "api", "db", "cache"])
    requests = server.requests_to("/api/traces")  # sent concurrently: in any order
    assert sorted(r.params["service"] for r in requests) == ["api"] * 4 + ["db"] * 4 + ["web"] * 4  # 3 services
    assert all(r.params["lookback"] == "custom" for r in requests)
    tagged = [r for r in requests if "tags" in r.params]
    assert len(tagged) == 3 and all(json.loads(r.params["tags"]) == {"error": "true"} for r in tagged)
    assert {int(r.params["limit"]) for r in tagged} == {2}  # ceil(4 error traces / 3 services)
    assert {int(r.params["limit"]) for r in requests if r not in tagged} == {1}  # (12 - 4) // (3 slices x 3)
    assert min(int(r.params["start"]) for r in requests) == START.timestamp() * 1e6
    assert stats.traces == len({s.trace_id for s in read}) and stats.searches == 12
    call = next(s for s in read if s.peer)
    assert call.service == "web" and call.peer == "api"


async def test_jaeger_errors() -> None:
    answer = jaeger_handler(fleet_spans(10, timedelta(minutes=4)))
    error = {"data": None, "total": 0, "limit": 0, "offset": 0,
             "errors": [{"code": 500, "msg": "elasticsearch: no such index [jaeger-span-2026-11-21]"}]}

    def tagged_searches_fail(request: Request) -> Reply:
        return Reply(500, error) if "tags" in request.params else answer(request)

    with LoopbackServer(tagged_searches_fail) as server:
        read, stats = await jaeger_read(server.url, ["web"])
        assert read and "1 of 4 searches failed" in stats.reasons[0]
        assert "no such index" in stats.reasons[0] and "after 3 attempts" in stats.reasons[0]
    with LoopbackServer(answer) as server:
        server.script("/api/traces", *[Reply(400, {**error, "errors": [{"code": 400, "msg": "bad tags"}]})] * 4)
        with pytest.raises(BackendError, match="HTTP 400.*400: bad tags"):
            await jaeger_read(server.url, ["web"])
        server.script("/api/traces", Reply(body={"data": [{"traceID": "ab"}], "errors": None}))
        read, stats = await jaeger_read(server.url, ["web"])
        assert "malformed answer" in stats.reasons[0]


# --- LiveTelemetry picks the configured backend ------------------------------------------------------------------


async def test_live_traces_from_tempo_or_jaeger_or_none(tmp_path) -> None:
    spans = fleet_spans(45, timedelta(minutes=1))
    config = replace(TelemetryConfig(), http=FAST_HTTP, traces=CONFIG)
    with LoopbackServer(tempo_handler(SpanStore(spans))) as t, LoopbackServer(jaeger_handler(spans)) as j:
        via_tempo = await LiveTelemetry(Context(tempo_url=t.url), config).traces(["web"], START, END)
        live = LiveTelemetry(Context(jaeger_url=j.url, jaeger_auth="u:p"), config)
        via_jaeger = await live.traces(["web"], START, END)
        assert j.requests[0].headers["authorization"] == "Basic " + base64.b64encode(b"u:p").decode()
    assert via_tempo and via_jaeger and {s.service for s in via_tempo} == {s.service for s in via_jaeger} == {"web"}
    none = LiveTelemetry(Context(), config)
    assert await none.traces(["web"], START, END) == []
    assert none.notes == ["traces: no trace backend configured (set TEMPO_URL or JAEGER_URL)"]


# --- the simulated fleet serves its traces on Tempo's API --------------------------------------------------------


async def test_the_fleet_serves_its_traces_on_tempos_api() -> None:
    now = [1_795_000_000.0]
    fleet = Fleet("network_partition", 2, inject_after=60, horizon=900, clock=lambda: now[0])
    with FleetServer(fleet) as server:
        now[0] += 600
        end = datetime.fromtimestamp(now[0], UTC)
        start = end - timedelta(minutes=15)
        traces = TracesConfig(max_traces=500, error_traces=400)
        config = replace(TelemetryConfig(), http=FAST_HTTP, traces=traces, query_budget=1000)
        live = LiveTelemetry(Context(tempo_url=server.tempo_url), config)
        spans = await live.traces(["gateway", "cart"], start, end)
        async with tempo.TempoClient(server.tempo_url, None, config.traces, FAST_HTTP, QueryBudget(5)) as client:
            assert await client.trace("f" * 32) is None  # 404: unknown trace
        ready = httpx.get(f"{server.tempo_url}/ready")
        bad = httpx.get(f"{server.tempo_url}/api/search", params={"q": "{ foo = 1 }"})
    assert ready.status_code == 200 and bad.status_code == 400 and "invalid TraceQL query" in bad.text
    generated: dict[str, list[Span]] = {}
    for span in fleet.timeline.data.spans:
        generated.setdefault(span.trace_id, []).append(span)
    read: dict[str, list[Span]] = {}
    for span in spans:
        read.setdefault(span.trace_id, []).append(span)
    assert read and not live.notes
    for tid, group in read.items():
        first = min(s.start for s in generated[tid])
        last = max(s.start + s.duration_ms / 1e3 for s in generated[tid])
        assert start.timestamp() <= first and last <= now[0]  # in the range, and finished by now
        key = lambda s: s.span_id  # noqa: E731
        for got, want in zip(sorted(group, key=key), sorted(generated[tid], key=key), strict=True):
            assert (got.parent_id, got.service, got.name, got.peer, got.error, got.message) == (
                want.parent_id, want.service, want.name, want.peer, want.error, want.message)
            assert got.start == pytest.approx(want.start, abs=1e-6)
            assert got.duration_ms == pytest.approx(want.duration_ms, abs=1e-3)
    failed = [tid for tid, group in generated.items() if any(s.error for s in group)
              and start.timestamp() <= min(s.start for s in group)
              and max(s.start + s.duration_ms / 1e3 for s in group) <= now[0]]
    assert failed and set(failed) <= set(read)  # every failed trace of the window (fewer than the error cap)
