"""Ranking by the alerted service's dependency paths: a fault the observed call graph shows off them is a
concurrent, unrelated incident, ranked below the faults on them; an unknown topology changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from analysis.ranking import rank_candidates
from state import DeployEvent, Evidence, MetricEvidence, MetricSignal, Window

END = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
WINDOW = Window(start=END - timedelta(minutes=15), end=END, baseline_start=END - timedelta(minutes=45))
# the gateway calls checkout and catalog; checkout calls payments: catalog is not on checkout's paths
EDGES = [("gateway", "checkout"), ("gateway", "catalog"), ("checkout", "payments")]


def signal(service: str, name: str, baseline: float, current: float, minutes_ago: float, **extra) -> MetricSignal:
    direction = "up" if current > baseline else "down"
    return MetricSignal(service=service, signal=name, baseline=baseline, current=current, peak=current, score=30,
                        direction=direction, onset=END - timedelta(minutes=minutes_ago), **extra)


def evidence(edges: list[tuple[str, str]], signals: list[MetricSignal], deploys=(), alerted="checkout") -> Evidence:
    return Evidence(alerted_service=alerted, window=WINDOW, services=sorted({s for e in EDGES for s in e}),
                    dependencies=edges, metrics=MetricEvidence(signals=signals), deploys=list(deploys))


def overlapping() -> tuple[list[MetricSignal], list[DeployEvent]]:
    """A bad deploy of payments (checkout's callee) 6 min ago, and a memory leak of catalog begun 12 min ago."""
    signals = [
        signal("payments", "error_ratio", 0.01, 0.3, 6),
        signal("checkout", "error_ratio", 0.01, 0.2, 5.75),
        signal("catalog", "memory_bytes", 2e8, 8e8, 12, trend=5e5),
        signal("catalog", "latency_p99", 0.2, 1.5, 10),
    ]
    deploy = DeployEvent(at=END - timedelta(minutes=6, seconds=20), service="payments", kind="code", version="1.8.0")
    return signals, [deploy]


def test_a_fault_off_the_alerted_services_paths_ranks_below_the_one_on_them() -> None:
    signals, deploys = overlapping()
    ranked = rank_candidates(evidence(EDGES, signals, deploys))
    assert (ranked[0].service, ranked[0].fault_type) == ("payments", "deployment_regression")
    leak = next(h for h in ranked if h.service == "catalog")  # demoted, not dropped: a concurrent incident
    assert leak.fault_type == "memory_leak" and leak.confidence < ranked[0].confidence
    assert any("not on the dependency paths of checkout" in note for note in leak.evidence)


def test_unknown_topology_changes_nothing() -> None:
    signals, deploys = overlapping()
    unobserved = rank_candidates(evidence([], signals, deploys))
    assert (unobserved[0].service, unobserved[0].fault_type) == ("catalog", "memory_leak")
    # a graph that does not show the alerted service says nothing about its paths either
    elsewhere = rank_candidates(evidence([("gateway", "catalog")], signals, deploys))
    assert elsewhere[0].service == "catalog"


def test_a_surge_upstream_of_the_alerted_service_stays_on_its_paths() -> None:
    signals = [signal(s, "request_rate", 100, 500, 6) for s in ("gateway", "checkout", "catalog")]
    ranked = {(h.service, h.fault_type): h for h in rank_candidates(evidence(EDGES, signals))}
    off_path = "not on the dependency paths of checkout"
    # load flows down from the gateway to checkout; catalog's load does not reach checkout
    assert not any(off_path in note for note in ranked[("gateway", "traffic_surge")].evidence)
    assert any(off_path in note for note in ranked[("catalog", "traffic_surge")].evidence)
