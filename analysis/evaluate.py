"""Offline accuracy harness: simulator scenarios through the evidence engine, in process (no graph)."""

from __future__ import annotations

import statistics
from datetime import UTC, datetime, timedelta

from analysis.deploys import summarize_deploys
from analysis.detection import detect
from analysis.logs import summarize_logs
from analysis.metrics import summarize_metrics
from analysis.ranking import estimate_onset, rank_candidates
from analysis.traces import summarize_traces
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
        metrics=summarize_metrics(data.metrics, window),
        traces=summarize_traces(data.spans, window),
        deploys=summarize_deploys(data.deploys, window).deploys,
    )
    evidence.candidates = rank_candidates(evidence)
    evidence.onset = estimate_onset(evidence)
    return evidence, detect(evidence, evidence.candidates)


def score_case(fault_type: str, root_service: str | None, is_incident: bool, ranked: list[tuple[str, str]]) -> dict:
    """Correctness of one case: ranked = [(service, fault_type), ...] best first, the truth is (root, fault).

    A false alarm (fault "none") is correct when it is not called an incident; a real fault needs the verdict
    "incident" too.
    """
    if fault_type == "none":
        ok = not is_incident
        return {"top1_service": ok, "top3_service": ok, "top1_fault": ok, "false_alarm_ok": ok}
    services = [s for s, _ in ranked]
    return {
        "top1_service": is_incident and bool(ranked) and ranked[0][0] == root_service,
        "top3_service": is_incident and root_service in services[:3],
        "top1_fault": is_incident and bool(ranked) and ranked[0][1] == fault_type,
    }


def aggregate(cases: list[dict]) -> dict:
    """The eval table from scored cases ({"scenario", "seconds"?, and score_case's keys}): fractions."""

    def frac(rows: list[dict], key: str) -> float:
        rows = [r for r in rows if key in r]
        return round(sum(r[key] for r in rows) / len(rows), 4) if rows else 0.0

    def median_seconds(rows: list[dict]) -> float:
        timed = [r["seconds"] for r in rows if "seconds" in r]
        return round(statistics.median(timed), 3) if timed else 0.0

    per_scenario = {}
    for name in dict.fromkeys(c["scenario"] for c in cases):
        rows = [c for c in cases if c["scenario"] == name]
        per_scenario[name] = {
            "cases": len(rows),
            **{k: frac(rows, k) for k in ("top1_service", "top3_service", "top1_fault")},
            "median_seconds": median_seconds(rows),
            "misses": [r["seed"] for r in rows if not (r["top1_service"] and r["top1_fault"])],
        }
    return {
        "cases": len(cases),
        **{k: frac(cases, k) for k in ("top1_service", "top3_service", "top1_fault")},
        "false_alarms_ok": frac(cases, "false_alarm_ok"),
        "median_seconds": median_seconds(cases),
        "per_scenario": per_scenario,
    }


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
            cases.append({"scenario": name, "seed": seed, **score})
    return aggregate(cases)
