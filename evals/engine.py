"""The engine harness: simulator scenarios through the evidence engine alone, in process (no graph, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from analysis.deploys import summarize_deploys
from analysis.detection import detect
from analysis.logs import summarize_logs
from analysis.metrics import summarize_metrics
from analysis.ranking import estimate_onset, rank_candidates
from analysis.traces import summarize_traces
from evals.scoring import aggregate, score_case
from state import Detection, Evidence, Window

DEFAULT_END = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
INCIDENT = timedelta(minutes=15)
BASELINE = timedelta(minutes=30)


def window_for(end: datetime) -> Window:
    """The incident window ending at the alert and the baseline window before it."""
    return Window(start=end - INCIDENT, end=end, baseline_start=end - INCIDENT - BASELINE)


def analyze_case(
    scenario, data, services: list[str], dependencies: list[tuple[str, str]]
) -> tuple[Evidence, Detection]:
    """Run every summariser, the ranking and detection on one scenario's telemetry."""
    window = window_for(scenario.end)
    evidence = Evidence(
        alerted_service=scenario.alerted_service,
        window=window,
        services=services,
        dependencies=dependencies,
        logs=summarize_logs(data.logs, window),
        metrics=summarize_metrics(data.metrics, window, dependencies=dependencies),
        traces=summarize_traces(data.spans, window),
        deploys=summarize_deploys(data.deploys, window).deploys,
    )
    evidence.candidates = rank_candidates(evidence)
    evidence.onset = estimate_onset(evidence)
    return evidence, detect(evidence, evidence.candidates)


def evaluate(seeds: int, scenarios=None, *, end: datetime = DEFAULT_END) -> dict:
    """Top-1/top-3 root-cause service and top-1 fault accuracy over scenarios x seeds, engine only (no graph)."""
    from sim.generate import generate
    from sim.scenarios import SCENARIOS, build_scenario
    from sim.topology import EDGES, SERVICES

    cases = []
    for name in scenarios or SCENARIOS:
        for seed in range(seeds):
            scenario = build_scenario(name, seed, end)
            evidence, detection = analyze_case(scenario, generate(scenario), list(SERVICES), list(EDGES))
            ranked = [(h.service, h.fault_type) for h in evidence.candidates]
            score = score_case(scenario.fault_type, scenario.root_service, detection.is_incident, ranked)
            confidence = evidence.candidates[0].confidence if evidence.candidates else 0.0
            cases.append({"scenario": name, "seed": seed, "confidence": confidence, **score})
    return aggregate(cases)
