"""Ranking by the alerted service's dependency paths: a fault the observed call graph shows off them is a
concurrent, unrelated incident, ranked below the faults on them; an unknown topology changes nothing. And by time: a
fault that began after everything the alerted service shows did not start the alert."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from analysis.detection import detect
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


def test_a_lone_candidate_off_the_paths_is_not_confident_for_lack_of_rivals() -> None:
    """Confidence weighs a candidate against the others and against 'none of them' (no evidence, score 0): a lone
    leak elsewhere, demoted below zero, is no confident incident of the alerted service just because nothing else
    was found."""
    leak = [signal("catalog", "memory_bytes", 2e8, 8e8, 12, resets=1)]
    ev = evidence(EDGES, leak)
    ev.candidates = rank_candidates(ev)
    assert [(h.service, h.fault_type) for h in ev.candidates][:1] == [("catalog", "memory_leak")]
    assert ev.candidates[0].score < 0 and ev.candidates[0].confidence < 0.25
    assert detect(ev, ev.candidates).is_incident is not True


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


# checkout calls payments and inventory; both are on its paths
FAN_OUT = [("gateway", "checkout"), ("checkout", "payments"), ("checkout", "inventory")]


def later_leak(*, trend: float | None = None) -> list[MetricSignal]:
    """checkout slow since 10 min ago with inventory's CPU saturated since then; payments' memory grew and its
    process restarted, but only from 4 min ago."""
    return [
        signal("checkout", "latency_p99", 0.2, 1.8, 10),
        signal("inventory", "cpu_usage", 0.3, 2.0, 10.25),
        signal("inventory", "latency_p99", 0.1, 0.75, 10.25),
        signal("payments", "memory_bytes", 2.5e8, 4.3e8, 4, resets=1, trend=trend),
        signal("payments", "latency_p99", 0.17, 0.25, 4),
    ]


def test_a_fault_that_began_after_the_alerted_services_anomalies_ranks_below_the_one_that_started_them() -> None:
    ranked = rank_candidates(evidence(FAN_OUT, later_leak()))
    assert (ranked[0].service, ranked[0].fault_type) == ("inventory", "cpu_saturation")
    leak = next(h for h in ranked if h.service == "payments")  # demoted, not dropped: it is a fault too
    assert leak.fault_type == "memory_leak" and leak.confidence < ranked[0].confidence / 4
    assert any("a later fault, not what started the alert" in note for note in leak.evidence)


def test_a_later_fault_is_kept_when_the_alerted_service_shows_an_anomaly_it_started() -> None:
    """checkout got slow 10 min ago (inventory's CPU) and began failing 4 min ago, when payments' bad deploy went
    out: the deploy started one of checkout's anomalies, so it is not demoted for coming after the other."""
    signals = [
        *later_leak()[:3],
        signal("checkout", "error_ratio", 0.01, 0.2, 3.75),
        signal("payments", "error_ratio", 0.01, 0.4, 4),
    ]
    deploy = DeployEvent(at=END - timedelta(minutes=4, seconds=20), service="payments", kind="code", version="2.1.0")
    ranked = rank_candidates(evidence(FAN_OUT, signals, [deploy]))
    regression = next(h for h in ranked if h.service == "payments")
    assert regression.fault_type == "deployment_regression"
    assert not any("a later fault" in note for note in regression.evidence)
    assert regression in ranked[:2]


def test_a_trend_begun_before_the_history_is_not_judged_by_when_its_anomalies_show() -> None:
    ranked = rank_candidates(evidence(FAN_OUT, later_leak(trend=2e4)))
    leak = next(h for h in ranked if (h.service, h.fault_type) == ("payments", "memory_leak"))
    assert not any("a later fault" in note for note in leak.evidence)
