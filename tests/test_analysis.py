"""The evidence engine on synthetic inputs, and its accuracy on a few simulator seeds."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from analysis.deploys import summarize_deploys
from analysis.detection import detect
from analysis.logparse import parse_line
from analysis.logs import summarize_logs
from analysis.metrics import summarize_metrics
from analysis.ranking import estimate_onset, rank_candidates
from analysis.records import LogRecord, MetricSeries, Span
from analysis.traces import summarize_traces
from state import DeployEvent, Evidence, TraceEvidence, Window

END = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
WINDOW = Window(start=END - timedelta(minutes=15), end=END, baseline_start=END - timedelta(minutes=45))
T0 = WINDOW.baseline_start.timestamp()
ONSET = END.timestamp() - 8 * 60
STEPS = range(0, 45 * 60 + 1, 15)


def series(signal, service, value, peer=None, seed=0):
    """A 45-minute series at 15 s steps; `value(t)` plus small deterministic noise."""
    rng = random.Random(f"{signal}/{service}/{peer}/{seed}")
    return MetricSeries(signal, service, [(T0 + s, value(T0 + s) * (1 + rng.gauss(0, 0.02))) for s in STEPS], peer)


def after(onset, before_value, after_value):
    return lambda t: after_value if t >= onset else before_value


# --- parsing ---------------------------------------------------------------------------------------------


def test_parse_logfmt_json_and_plain():
    logfmt = parse_line('ts=2026-11-21T12:00:00Z level=WARNING msg="cache miss for key" key=user:1 n=3')
    assert (logfmt.level, logfmt.message, logfmt.fields) == (
        "warn",
        "cache miss for key",
        {"key": "user:1", "n": "3"},
    )
    js = parse_line('{"ts": "2026-11-21T12:00:00Z", "level": "ERROR", "msg": "payment failed", "code": 503}')
    assert (js.level, js.message, js.fields) == ("error", "payment failed", {"code": "503"})
    plain = parse_line("2026-11-21T12:01:02Z ERROR [handler] request exceeded deadline")
    assert (plain.level, plain.message) == ("error", "[handler] request exceeded deadline")
    assert parse_line("2026-11-21T12:01:02Z [fatal] boom").level == "error"
    assert parse_line("just some text").level == "info"


def test_parse_python_and_java_stack_traces():
    py = parse_line(
        "2026-11-21T12:00:00Z ERROR [api] unhandled exception\n"
        "Traceback (most recent call last):\n"
        '  File "app/server.py", line 10, in handle\n    return add(item)\n'
        '  File "app/cart.py", line 42, in add_item\n    total = price / qty\n'
        "ZeroDivisionError: division by zero"
    )
    assert py.level == "error"
    assert [(f.file, f.line, f.function) for f in py.frames] == [
        ("app/cart.py", 42, "add_item"),
        ("app/server.py", 10, "handle"),
    ]
    assert py.exception == "ZeroDivisionError: division by zero"
    assert "ZeroDivisionError" in py.message
    java = parse_line(
        '{"level": "error", "msg": "request failed"}\n'
        "java.lang.OutOfMemoryError: Java heap space\n"
        "\tat com.shop.Cart.add(Cart.java:88)\n\tat com.shop.Api.handle(Api.java:12)"
    )
    assert java.frames[0].file == "Cart.java" and java.frames[0].line == 88
    assert java.exception == "java.lang.OutOfMemoryError: Java heap space"


# --- logs ------------------------------------------------------------------------------------------------


def _log_records():
    rng = random.Random(7)
    for i in range(0, 45 * 60, 3):
        ts = T0 + i
        yield LogRecord(ts, "cart", f'ts=x level=info msg="served request id={rng.randint(1, 10**6)} in 12ms"')
        if i % 30 == 0:
            yield LogRecord(ts, "cart", "2026-11-21T12:00:00Z WARN deprecated API v1 called by client 42")
        if ts < WINDOW.start.timestamp() and i % 60 == 0:
            yield LogRecord(ts, "cart", '{"level": "info", "msg": "nightly export heartbeat"}')
        if ts >= ONSET and i % 6 == 0:
            yield LogRecord(
                ts,
                "cart",
                (
                    "2026-11-21T12:00:00Z ERROR [api] unhandled password=hunter22\n"
                    "Traceback (most recent call last):\n"
                    "  File \"cart/api.py\", line 77, in add_item\n    x\nKeyError: 'sku'"
                ),
            )
        if i % 60 == 0 or (ts >= ONSET and i % 9 == 0):
            yield LogRecord(ts, "web-frontend", f'{{"level": "warn", "msg": "retrying request attempt={i % 3}"}}')


def test_summarize_logs_kinds_rates_frames_and_redaction():
    ev = summarize_logs(_log_records(), WINDOW)
    by_text = {t.template: t for t in ev.templates}
    new = next(t for t in ev.templates if "KeyError" in t.template)
    assert new.kind == "new" and new.level == "error" and new.baseline_count == 0 and new.incident_count == 80
    assert abs(new.first_seen.timestamp() - ONSET) < 6
    assert "hunter22" not in new.sample and "KeyError" in new.sample
    spiking = next(t for t in ev.templates if t.service == "web-frontend")
    assert spiking.kind == "spiking" and abs(spiking.first_seen.timestamp() - ONSET) < 60
    dropped = next(t for t in ev.templates if "heartbeat" in t.template)
    assert dropped.kind == "dropped"
    assert not any("deprecated" in text for text in by_text), "steady templates are not notable"
    assert ev.templates[0] is new or ev.templates[0].level == "error"
    assert ev.stack_frames[0].file == "cart/api.py" and ev.stack_frames[0].line == 77
    cart = ev.services["cart"]
    assert cart.baseline_errors_per_min == 0 and cart.incident_errors_per_min > 5
    assert abs(cart.error_onset.timestamp() - ONSET) < 6
    assert ev.lines_read > 1000


# --- metrics -----------------------------------------------------------------------------------------------


def test_metrics_onset_direction_and_blip():
    blip_at = END.timestamp() - 60
    ev = summarize_metrics(
        [
            series("memory_bytes", "cart", lambda t: 4e8 * (1 + max(0.0, t - ONSET) / 120)),
            series("request_rate", "cart", after(ONSET + 30, 100.0, 20.0)),
            series("latency_p99", "checkout", lambda t: 1.5 if blip_at <= t < blip_at + 30 else 0.2),
            series("cpu_usage", "checkout", lambda t: 0.3),
        ],
        WINDOW,
    )
    by_key = {(m.service, m.signal): m for m in ev.signals}
    memory = by_key[("cart", "memory_bytes")]
    assert memory.direction == "up" and memory.score > 10 and memory.current > 3 * memory.baseline
    assert abs(memory.onset.timestamp() - ONSET) <= 60
    rate = by_key[("cart", "request_rate")]
    assert rate.direction == "down" and abs(rate.onset.timestamp() - (ONSET + 30)) <= 15
    assert ("checkout", "latency_p99") not in by_key, "a 2-step blip is not a sustained anomaly"
    assert ("checkout", "cpu_usage") not in by_key
    assert ev.series_read == 4


def test_certificate_expiry_crossing_scores():
    expires = ONSET
    ev = summarize_metrics(
        [
            MetricSeries("cert_expiry_timestamp", "payments", [(T0 + s, expires) for s in STEPS]),
            MetricSeries("cert_expiry_timestamp", "cart", [(T0 + s, END.timestamp() + 86400 * 30) for s in STEPS]),
        ],
        WINDOW,
    )
    assert [(m.service, m.direction) for m in ev.signals] == [("payments", "down")]
    assert abs(ev.signals[0].onset.timestamp() - expires) <= 15


# --- traces ------------------------------------------------------------------------------------------------


def _trace(tid, start, error_at=None, no_server=False):
    spans = [
        Span(tid, f"{tid}-1", None, "gateway", "GET /buy", start, 50, error=error_at is not None),
        Span(
            tid,
            f"{tid}-2",
            f"{tid}-1",
            "gateway",
            "call checkout",
            start,
            45,
            error=error_at is not None,
            peer="checkout",
        ),
    ]
    if not no_server:
        spans += [
            Span(
                tid,
                f"{tid}-3",
                f"{tid}-2",
                "checkout",
                "POST /checkout",
                start,
                40,
                error=error_at == "checkout",
            ),
            Span(
                tid,
                f"{tid}-4",
                f"{tid}-3",
                "checkout",
                "call payments",
                start,
                30,
                error=error_at == "payments",
                peer="payments",
                message="dial tcp payments:8080: i/o timeout",
            ),
        ]
    return spans


def test_trace_error_origins_and_edges():
    start = WINDOW.start.timestamp() + 60
    spans = _trace("a", start - 1200) + _trace("b", start, "payments") + _trace("c", start + 1, "checkout")
    spans += _trace("d", start + 2, "checkout", no_server=True)
    ev = summarize_traces(spans, WINDOW)
    assert ev.traces_read == 3 and ev.error_traces == 3
    # payments never answered (failing client span, no server span); a bare call to checkout blames checkout
    assert ev.error_origins == {"checkout": 2, "payments": 1}
    assert ("checkout", "payments") in ev.edges and ("gateway", "checkout") in ev.edges
    assert any("i/o timeout" in s for s in ev.samples)


def test_deploys_sorted_merged_and_near_window():
    at = WINDOW.start + timedelta(minutes=3)
    ev = summarize_deploys(
        [
            DeployEvent(at=at, service="cart", version="1.8.0", source="metrics"),
            DeployEvent(at=at + timedelta(seconds=20), service="cart", version="1.8.0", commit="abc1234", source="git"),
            DeployEvent(at=WINDOW.baseline_start + timedelta(minutes=1), service="catalog", version="2.0"),
            DeployEvent(at=WINDOW.baseline_start - timedelta(hours=3), service="catalog", version="1.9"),
        ],
        WINDOW,
    )
    assert [(d.service, d.version, d.commit) for d in ev.deploys] == [
        ("catalog", "2.0", None),
        ("cart", "1.8.0", "abc1234"),
    ]
    assert ev.deploys[1].at == at


# --- ranking and detection ---------------------------------------------------------------------------------

DEPS = [("web", "checkout"), ("checkout", "payments"), ("payments", "provider"), ("checkout", "db-proxy")]


def _evidence(metrics, logs=None, deploys=(), alerted="web"):
    ev = Evidence(
        alerted_service=alerted,
        window=WINDOW,
        services=["web", "checkout", "payments", "db-proxy"],
        dependencies=DEPS,
        logs=logs,
        metrics=summarize_metrics(metrics, WINDOW) if metrics else None,
        deploys=list(deploys),
    )
    ev.candidates = rank_candidates(ev)
    ev.onset = estimate_onset(ev)
    return ev


def _propagated_errors(root_onset):
    return [
        series("error_ratio", "web", after(root_onset + 30, 0.001, 0.2)),
        series("client_error_ratio", "web", after(root_onset + 30, 0.0, 0.2), peer="checkout"),
        series("error_ratio", "checkout", after(root_onset + 15, 0.001, 0.3)),
    ]


def test_topology_discount_picks_the_downstream_root():
    metrics = _propagated_errors(ONSET) + [
        series("client_error_ratio", "checkout", after(ONSET + 15, 0.0, 0.3), peer="db-proxy"),
        series("db_pool_in_use", "db-proxy", lambda t: 20.0 if t >= ONSET else 8.0),
        series("db_pool_max", "db-proxy", lambda t: 20.0),
        series("latency_p99", "db-proxy", after(ONSET, 0.05, 2.0)),
    ]
    ev = _evidence(metrics)
    top = ev.candidates[0]
    assert (top.service, top.fault_type) == ("db-proxy", "db_connection_exhaustion")
    assert any("db_pool_in_use" in e for e in top.evidence)
    assert 0 < top.confidence <= 1 and len(ev.candidates) >= 2
    assert abs(ev.onset.timestamp() - ONSET) <= 60
    detection = detect(ev, ev.candidates)
    assert detection.is_incident and detection.severity == "P1" and not detection.code_regression


def test_external_dependency_without_telemetry_is_blamed_through_callers():
    metrics = _propagated_errors(ONSET) + [
        series("client_error_ratio", "checkout", after(ONSET + 15, 0.0, 0.3), peer="payments"),
        series("error_ratio", "payments", after(ONSET, 0.001, 0.5)),
        series("client_error_ratio", "payments", after(ONSET, 0.0, 0.6), peer="provider"),
    ]
    records = [LogRecord(T0 + i, "payments", "ts=x level=info msg=ok") for i in range(0, 2700, 5)]
    records += [
        LogRecord(ONSET + i, "payments", 'level=error msg="provider returned 503 Service Unavailable"')
        for i in range(0, 400, 4)
    ]
    ev = _evidence(metrics, logs=summarize_logs(records, WINDOW))
    assert (ev.candidates[0].service, ev.candidates[0].fault_type) == ("provider", "dependency_outage")


def test_code_regression_and_graceful_degradation():
    deploy = DeployEvent(
        at=datetime.fromtimestamp(ONSET - 20, UTC),
        service="checkout",
        version="1.8.0",
        commit="abc1234def",
        kind="code",
    )
    innocent = DeployEvent(at=datetime.fromtimestamp(ONSET - 900, UTC), service="web", version="3.1", commit="fff0000")
    logs = summarize_logs(_log_records(), WINDOW)
    logs = logs.model_copy(
        update={
            "templates": [t.model_copy(update={"service": "checkout"}) for t in logs.templates],
            "stack_frames": [f.model_copy(update={"service": "checkout"}) for f in logs.stack_frames],
        }
    )
    ev = _evidence(_propagated_errors(ONSET), logs=logs, deploys=[innocent, deploy])
    assert (ev.candidates[0].service, ev.candidates[0].fault_type) == ("checkout", "deployment_regression")
    detection = detect(ev, ev.candidates)
    assert detection.code_regression and detection.suspect_commit == "abc1234def"
    assert detection.suspect_service == "checkout"

    without_logs = _evidence(_propagated_errors(ONSET), deploys=[innocent, deploy])
    assert without_logs.candidates[0].service == "checkout"
    nothing = _evidence([])
    assert nothing.candidates == [] and nothing.onset is None
    assert not detect(nothing, nothing.candidates).is_incident


def test_missing_traces_lower_the_bar_by_what_traces_could_add():
    ev = _evidence(_propagated_errors(ONSET))
    assert ev.traces is None or not ev.traces.traces_read
    weak = [ev.candidates[0].model_copy(update={"score": 4.0, "confidence": 0.4}), *ev.candidates[1:]]
    assert detect(ev, weak).is_incident  # no trace backend: a 4.0 candidate with corroborated anomalies counts
    traced = ev.model_copy(update={"traces": TraceEvidence(traces_read=200)})
    assert not detect(traced, weak).is_incident  # traces were read and added nothing: below the bar


def test_a_blip_is_not_an_incident():
    blip_at = END.timestamp() - 45
    ev = _evidence(
        [
            series("latency_p99", "web", lambda t: 2.0 if blip_at <= t < blip_at + 30 else 0.2),
            series("error_ratio", "web", lambda t: 0.001),
        ]
    )
    detection = detect(ev, ev.candidates)
    assert not detection.is_incident and detection.severity == "P4"


# --- accuracy on the simulator ----------------------------------------------------------------------------


def test_accuracy_on_simulator_seeds():
    pytest.importorskip("sim.generate")
    from evals.engine import evaluate

    result = evaluate(1, end=datetime(2026, 3, 2, 8, 30, tzinfo=UTC))
    assert result["cases"] == 11
    assert result["top1_service"] >= 0.9, result
    assert result["top1_fault"] >= 0.9, result
    assert result["false_alarms_ok"] == 1.0, result
