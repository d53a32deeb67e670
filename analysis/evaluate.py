"""Offline accuracy harness: simulator scenarios through the evidence engine, in process (no graph)."""

from __future__ import annotations

from collections import defaultdict
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


def evaluate(seeds: int, scenarios=None, *, end: datetime = DEFAULT_END) -> dict:
    """Top-1/top-3 root-cause service and top-1 fault accuracy over scenarios x seeds (fractions).

    For the false alarm a case is correct when detection says it is not an incident.
    """
    from sim.generate import generate
    from sim.scenarios import SCENARIOS, build_scenario
    from sim.topology import EDGES, SERVICES

    per: dict[str, dict] = defaultdict(
        lambda: {"cases": 0, "top1_service": 0, "top3_service": 0, "top1_fault": 0, "misses": []}
    )
    false_alarm_ok = false_alarm_cases = 0
    for name in scenarios or SCENARIOS:
        for seed in range(seeds):
            scenario = build_scenario(name, seed, end)
            evidence, detection = analyze_case(scenario, generate(scenario), list(SERVICES), list(EDGES))
            row = per[name]
            row["cases"] += 1
            ranked = [(h.service, h.fault_type) for h in evidence.candidates]
            if scenario.fault_type == "none":
                ok = not detection.is_incident
                false_alarm_cases += 1
                false_alarm_ok += ok
                hit1 = hit3 = fault = ok
            else:
                services = [s for s, _ in ranked]
                hit1 = bool(ranked) and detection.is_incident and ranked[0][0] == scenario.root_service
                hit3 = scenario.root_service in services[:3]
                fault = bool(ranked) and detection.is_incident and ranked[0][1] == scenario.fault_type
            row["top1_service"] += hit1
            row["top3_service"] += hit3
            row["top1_fault"] += fault
            if not (hit1 and fault):
                got = ranked[0] if ranked else None
                row["misses"].append(
                    {
                        "seed": seed,
                        "root": scenario.root_service,
                        "got": got,
                        "is_incident": detection.is_incident,
                    }
                )
    cases = sum(r["cases"] for r in per.values())
    totals = {key: sum(r[key] for r in per.values()) for key in ("top1_service", "top3_service", "top1_fault")}
    return {
        "cases": cases,
        **{key: round(value / cases, 4) if cases else 0.0 for key, value in totals.items()},
        "false_alarms_ok": round(false_alarm_ok / false_alarm_cases, 4) if false_alarm_cases else None,
        "per_scenario": {
            name: {
                **r,
                **{k: round(r[k] / r["cases"], 4) for k in ("top1_service", "top3_service", "top1_fault")},
            }
            for name, r in per.items()
        },
    }
