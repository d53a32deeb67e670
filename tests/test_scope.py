"""Which services an investigation reads: every service related to the alerted one up to a cap a fleet can set, and
a note in the report when the cap left some unread; ranking never takes an unread service for one without
telemetry of its own."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from analysis.ranking import rank_candidates
from graph.context import Context
from nodes.collect import related_services, scope
from service.settings import load_settings
from state import Evidence, MetricEvidence, MetricSignal, Window

# A storefront gateway in front of 40 services, as TrainTicket's UI gateway fronts most of its 41 services: an
# alert at the gateway must read the services whose names sort last too.
GATEWAY_EDGES = [("gateway", f"svc-{i:02d}") for i in range(40)] + [("svc-39", "db")]


def test_a_gateway_in_front_of_forty_services_reads_them_all_by_default() -> None:
    services, left_out = scope("gateway", GATEWAY_EDGES, Context().max_services)
    assert len(services) == 42 and {"svc-39", "db"} <= set(services) and left_out is None


def test_a_cap_reads_the_nearest_first_and_says_which_it_left() -> None:
    services, left_out = scope("gateway", GATEWAY_EDGES, 25)
    assert services == related_services("gateway", GATEWAY_EDGES)[:25] and services[0] == "gateway"
    assert left_out is not None
    assert "read 25 of the 42 services related to gateway" in left_out
    assert "svc-24" in left_out and "INCIDENT_MAX_SERVICES" in left_out


def test_callers_count_only_at_the_alerted_service_and_deeper_services_come_later() -> None:
    edges = [("web", "api"), ("mobile", "api"), ("api", "db"), ("db", "disk"), ("cron", "db")]
    assert related_services("api", edges) == ["api", "db", "mobile", "web", "disk"]


def test_the_cap_is_a_setting() -> None:
    settings = load_settings(env={"INCIDENT_MAX_SERVICES": "30"})
    assert settings.run_context().max_services == 30
    assert load_settings(env={}).run_context().max_services == 100


END = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
WINDOW = Window(start=END - timedelta(minutes=15), end=END, baseline_start=END - timedelta(minutes=45))


def test_a_service_left_unread_is_not_taken_for_an_external_dependency() -> None:
    """`no_telemetry` (an external dependency) is a finding only about a service that was read and had none."""
    edges = [("checkout", "payments"), ("checkout", "ledger")]
    failing = MetricSignal(service="checkout", signal="client_error_ratio", peer="ledger", baseline=0.0, current=0.4,
                           peak=0.5, score=30, direction="up", onset=END - timedelta(minutes=4))

    def evidence(services: list[str]) -> Evidence:
        measured = {"checkout": ["client_error_ratio->ledger"]}
        return Evidence(alerted_service="checkout", window=WINDOW, services=services, dependencies=edges,
                        metrics=MetricEvidence(signals=[failing], measured=measured))

    read = rank_candidates(evidence(["checkout", "payments", "ledger"]))
    ledger = next(h for h in read if h.service == "ledger")
    assert any("no telemetry of its own" in line for line in ledger.evidence)
    unread = rank_candidates(evidence(["checkout", "payments"]))
    assert all("no telemetry of its own" not in line for h in unread for line in h.evidence)


async def test_a_run_with_a_small_cap_reads_that_many_and_reports_the_rest(tmp_path) -> None:
    from langgraph.checkpoint.memory import InMemorySaver

    from graph.builder import build_graph
    from graph.summary import incident_report
    from service.alert_payloads import fingerprint_of
    from state import Alert, TelemetrySpec
    from tools.database import checkpoint_serializer

    graph = build_graph(checkpointer=InMemorySaver(serde=checkpoint_serializer()))
    config = {"configurable": {"thread_id": "scope"}}
    alert = Alert(source="cli", alertname="HighLatency", service="gateway", starts_at=END,
                  fingerprint=fingerprint_of("HighLatency", "gateway"), summary="HighLatency on gateway")
    context = Context(notify_channels=(), output_dir=str(tmp_path), max_services=3)
    await graph.ainvoke({"incident_id": "inc-20261121-120000-scopes", "alert": alert,
                         "telemetry": TelemetrySpec(kind="sim", scenario="cpu_saturation", seed=0, end=END)},
                        config, context=context)
    state = dict((await graph.aget_state(config)).values)
    assert len(state["services"]) == 3 and state["services"][0] == "gateway"
    notes = [e["message"] for e in incident_report(state)["errors"] if e["source"] == "topology"]
    assert len(notes) == 1 and notes[0].startswith("scope capped: read 3 of the ")
