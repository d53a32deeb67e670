"""Honest outcomes: a run that could not look is `inconclusive`, never a false alarm; a strong candidate is never
dismissed by the gate; the errors come first in the report, the brief and the dashboard; `serve` warns when live
mode has nothing to read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from langgraph.checkpoint.memory import InMemorySaver

from analysis.detection import detect, severity_of_alert
from analysis.metrics import summarize_metrics
from analysis.records import MetricSeries
from graph.builder import build_graph
from graph.context import Context
from graph.summary import incident_report
from nodes.detect import DetectVerdict, merge_verdict
from service.alert_payloads import fingerprint_of
from state import Alert, Evidence, Hypothesis, LogEvidence, MetricEvidence, MetricSignal, TelemetrySpec, Window
from tests.live_server import start_server
from tools.database import checkpoint_serializer
from tools.net import free_port
from web.render import render_brief_html, render_brief_markdown
from web.view import incident_page

REPO_ROOT = Path(__file__).resolve().parents[1]
AT = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
WINDOW = Window(start=AT - timedelta(minutes=15), end=AT, baseline_start=AT - timedelta(minutes=45))
SOURCE_VARS = ("LOKI_URL", "PROMETHEUS_URL", "TEMPO_URL", "JAEGER_URL", "TELEMETRY_CONFIG")


def alert(severity: str | None = None) -> Alert:
    return Alert(source="alertmanager", alertname="HighErrorRate", service="checkout", starts_at=AT,
                 severity=severity, fingerprint=fingerprint_of("HighErrorRate", "checkout"), summary="5xx above 5%")


async def live_run(tmp_path: Path, the_alert: Alert, **urls: str) -> dict:
    """The state after a live run against the given backends (none: nothing configured)."""
    graph = build_graph(checkpointer=InMemorySaver(serde=checkpoint_serializer()))
    config = {"configurable": {"thread_id": "outcome"}}
    context = Context(notify_channels=(), output_dir=str(tmp_path), **urls)
    await graph.ainvoke({"incident_id": "inc-20261121-120000-outcom", "alert": the_alert,
                         "telemetry": TelemetrySpec(kind="live", end=AT)}, config, context=context)
    return dict((await graph.aget_state(config)).values)


# --- "No data is reported as no incident" -------------------------------------------------------------------


async def test_no_data_source_is_inconclusive_at_the_alerts_severity_not_a_p4_false_alarm(tmp_path):
    state = await live_run(tmp_path, alert("critical"))
    detection = state["detection"]
    assert (detection.outcome, detection.is_incident, detection.severity) == ("inconclusive", None, "P1")
    report = incident_report(state)
    assert (report["outcome"], report["is_incident"], report["severity"]) == ("inconclusive", None, "P1")
    assert {e["source"] for e in report["errors"]} >= {"logs", "metrics"}
    assert any("LOKI_URL" in e["message"] for e in report["errors"])
    title = state["brief"].title
    assert title.startswith("Inconclusive: ") and "false alarm" not in title.lower()
    markdown = render_brief_markdown(state)
    assert "false alarm" not in markdown.lower() and "Not an incident" not in markdown
    # what could not be read comes first: before the verdict line
    assert markdown.index("logs: could not be read") < markdown.index("**Inconclusive:**"), markdown[:600]
    html = render_brief_html(state)
    assert html.index("metrics: could not be read") < html.index(">Inconclusive</div>"), html[:3000]


async def test_every_source_failing_is_inconclusive_and_an_alert_without_severity_is_not_p4(tmp_path):
    closed = f"http://127.0.0.1:{free_port()}"
    state = await live_run(tmp_path, alert(None), loki_url=closed, prometheus_url=closed)
    assert all(state["evidence_parts"][s].status == "error" for s in ("logs", "metrics", "deploys"))
    detection = state["detection"]
    assert detection.outcome == "inconclusive" and detection.severity == "P3"
    assert any("could not be read" in r or "unreadable" in r for r in detection.reasons), detection.reasons
    page = incident_page(state)
    assert page.card.outcome == "inconclusive" and page.card.verdict == "Inconclusive"
    assert {p.split(":")[0] for p in page.card.problems} >= {"logs", "metrics"}


def test_the_alerts_own_severity_is_read_in_its_usual_forms():
    cases = {"critical": "P1", "page": "P1", "P1": "P1", "sev2": "P2", "SEV-2": "P2", "error": "P2", "high": "P2",
             "warning": "P3", "medium": "P3", "info": "P4", "low": "P4", "p4": "P4", None: "P3", "whatever": "P3"}
    assert {k: severity_of_alert(k) for k in cases} == cases


def _quiet_evidence(missing: list[str], metrics: MetricEvidence | None = None) -> Evidence:
    return Evidence(alerted_service="checkout", window=WINDOW, services=["checkout"], dependencies=[],
                    logs=None if "logs" in missing else LogEvidence(lines_read=900),
                    metrics=metrics or (None if "metrics" in missing else MetricEvidence(series_read=12)),
                    missing=missing)


def test_a_quiet_window_is_not_an_incident_only_when_logs_and_metrics_were_both_read():
    assert detect(_quiet_evidence(["traces"]), []).outcome == "not_an_incident"  # traces are optional
    assert detect(_quiet_evidence(["traces (no data)"]), []).outcome == "not_an_incident"
    for missing in (["metrics"], ["logs"], ["logs", "metrics", "traces", "deploys"]):
        detection = detect(_quiet_evidence(missing), [], alert_severity="warning")
        assert (detection.outcome, detection.is_incident, detection.severity) == ("inconclusive", None, "P3"), missing
    # one source answered with nothing for the service, the other read fine: we looked
    assert detect(_quiet_evidence(["logs (no data)"]), []).outcome == "not_an_incident"
    # neither has anything on the service: nothing was seen, nothing can be ruled out
    assert detect(_quiet_evidence(["logs (no data)", "metrics (no data)"]), []).outcome == "inconclusive"


def _series(service: str, signal: str, start: float, value: float) -> MetricSeries:
    end = WINDOW.end.timestamp()
    points = [(t, value) for t in range(int(start), int(end) + 1, 15)]
    return MetricSeries(service=service, signal=signal, points=points)


def test_a_history_too_short_for_a_baseline_is_inconclusive_not_healthy():
    new = WINDOW.start.timestamp() - 30  # the service's metrics begin 30 s before the window: two baseline points
    metrics = summarize_metrics([_series("checkout", s, new, 1.0) for s in ("request_rate", "cpu_usage")], WINDOW)
    assert metrics.short_history == 2
    detection = detect(_quiet_evidence([], metrics), [])
    assert detection.outcome == "inconclusive" and any("history" in r for r in detection.reasons), detection.reasons
    old = WINDOW.baseline_start.timestamp()
    long_metrics = summarize_metrics([_series("checkout", "request_rate", old, 1.0)], WINDOW)
    assert long_metrics.short_history == 0
    assert detect(_quiet_evidence([], long_metrics), []).outcome == "not_an_incident"


# --- the gate ---------------------------------------------------------------------------------------------


def test_a_top_candidate_at_075_or_more_is_never_dismissed_by_the_gate():
    evidence = _quiet_evidence([])  # no corroborating anomaly beyond what the candidate itself names
    strong = Hypothesis(service="payments", fault_type="disk_full", confidence=0.8, score=5.5,
                        evidence=["disk_free_bytes of payments down"])
    detection = detect(evidence, [strong])
    assert detection.outcome == "incident" and detection.suspect_service == "payments", detection.reasons
    weaker = strong.model_copy(update={"confidence": 0.6})
    assert detect(evidence, [weaker]).outcome == "not_an_incident"
    # a model cannot dismiss it either, nor turn "could not look" into an answer
    no = DetectVerdict(is_incident=False, severity="P4", code_regression=False)
    assert merge_verdict(detection, no, 0.8).is_incident is True
    unsure = detect(_quiet_evidence(["logs", "metrics"]), [], alert_severity="critical")
    yes = DetectVerdict(is_incident=True, severity="P1", code_regression=False)
    merged = merge_verdict(unsure, yes, 0.45)
    assert (merged.outcome, merged.severity) == ("inconclusive", "P1")


def test_the_alerted_services_own_symptom_still_active_is_never_dismissed_as_a_false_alarm():
    """Real faults whose cause the evidence does not name (a callee's code answering errors, no deploy, no logs):
    the alerted service's own error ratio jumped and still stands at the alert. Calling that a P4 false alarm
    contradicts the measurement; without a cause, the honest outcome is inconclusive at the alert's severity."""
    def errors(score: float, active: bool) -> MetricEvidence:
        return MetricEvidence(series_read=12, signals=[MetricSignal(
            service="checkout", signal="error_ratio", baseline=0.0, current=0.15, peak=0.17, score=score,
            direction="up", active=active)])
    detection = detect(_quiet_evidence([], errors(13.0, active=True)), [], alert_severity="critical")
    assert (detection.outcome, detection.severity) == ("inconclusive", "P1"), detection.reasons
    assert any("error_ratio of checkout" in r and "still" in r for r in detection.reasons), detection.reasons
    # the same jump over by the alert's time, or too weak to be a strong anomaly: dismissed as before
    assert detect(_quiet_evidence([], errors(13.0, active=False)), []).outcome == "not_an_incident"
    assert detect(_quiet_evidence([], errors(5.0, active=True)), []).outcome == "not_an_incident"


# --- the command and the service ---------------------------------------------------------------------------


def _environment(database_url: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (*SOURCE_VARS, "LLM_PROVIDER", "GOOGLE_API_KEY")}
    return {**env, "DATABASE_URL": database_url, "OUTPUT_DIR": str(tmp_path / "out")}


def test_investigate_with_every_source_failing_exits_3_with_an_inconclusive_report(database_url, tmp_path):
    closed = f"http://127.0.0.1:{free_port()}"
    env = {**_environment(database_url, tmp_path), "LOKI_URL": closed, "PROMETHEUS_URL": closed}
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "cli.py"), "investigate", "--service", "checkout", "--window", "15m",
         "--json"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=180)
    assert done.returncode == 3, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["outcome"] == "inconclusive" and report["is_incident"] is None
    assert report["severity"] == "P3" and {e["source"] for e in report["errors"]} >= {"logs", "metrics"}
    # with no source at all the command refuses to start instead of pretending to look
    unset = subprocess.run([sys.executable, str(REPO_ROOT / "cli.py"), "investigate", "--service", "checkout"],
                           capture_output=True, text=True, env=_environment(database_url, tmp_path), timeout=60)
    assert unset.returncode == 2 and "LOKI_URL" in unset.stderr


def test_serve_warns_at_start_up_when_live_mode_has_no_data_source(database_url, tmp_path, monkeypatch):
    for name in SOURCE_VARS:
        monkeypatch.delenv(name, raising=False)
    server = start_server(database_url, tmp_path, telemetry="live", workers=1)
    server.stop()
    log = server.log()
    assert "no telemetry source is configured" in log, log[-3000:]
    for name in ("LOKI_URL", "PROMETHEUS_URL", "TEMPO_URL"):
        assert name in log, log[-3000:]
