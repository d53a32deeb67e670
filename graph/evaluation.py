"""`incident-copilot eval`: every scenario over N seeds through the whole graph, scored against the truth."""

from __future__ import annotations

import statistics
from datetime import UTC, datetime
from typing import Any

from graph.context import Context
from graph.runs import IncidentRunner
from graph.summary import incident_report
from state import TelemetrySpec
from tools.database import open_database

EVAL_END = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def score_case(scenario: Any, report: dict[str, Any]) -> dict[str, bool]:
    """Correctness of one report against its scenario's truth."""
    if scenario.fault_type == "none":
        ok = not report["is_incident"]
        return {"top1_service": ok, "top3_service": ok, "top1_fault": ok, "false_alarm_ok": ok}
    ranked = [h["service"] for h in report["hypotheses"]]
    return {
        "top1_service": report["is_incident"] and report["root_cause"]["service"] == scenario.root_service,
        "top3_service": report["is_incident"] and scenario.root_service in ranked[:3],
        "top1_fault": report["is_incident"] and report["root_cause"]["fault_type"] == scenario.fault_type,
    }


def aggregate(cases: list[dict[str, Any]]) -> dict[str, Any]:
    """The eval table: accuracies as fractions, per scenario and overall."""
    def frac(rows: list[dict[str, Any]], key: str) -> float:
        rows = [r for r in rows if key in r]
        return round(sum(r[key] for r in rows) / len(rows), 4) if rows else 0.0

    per_scenario: dict[str, Any] = {}
    for name in dict.fromkeys(c["scenario"] for c in cases):
        rows = [c for c in cases if c["scenario"] == name]
        per_scenario[name] = {
            "cases": len(rows), "top1_service": frac(rows, "top1_service"), "top3_service": frac(rows, "top3_service"),
            "top1_fault": frac(rows, "top1_fault"),
            "median_seconds": round(statistics.median(r["seconds"] for r in rows), 3),
        }
    return {
        "cases": len(cases),
        "top1_service": frac(cases, "top1_service"),
        "top3_service": frac(cases, "top3_service"),
        "top1_fault": frac(cases, "top1_fault"),
        "false_alarms_ok": frac(cases, "false_alarm_ok"),
        "median_seconds": round(statistics.median(c["seconds"] for c in cases), 3) if cases else 0.0,
        "per_scenario": per_scenario,
    }


async def evaluate_graph(seeds: int, scenarios: list[str] | None = None) -> dict[str, Any]:
    """Run each (scenario, seed) up to the approval gate on the durable checkpointer and score it."""
    from sim.scenarios import SCENARIOS, build_scenario

    context = Context.from_env(notify_channels=(), llm_provider="offline")
    cases = []
    async with open_database() as db:
        runner = IncidentRunner(db, context)
        for name in scenarios or SCENARIOS:
            for seed in range(seeds):
                scenario = build_scenario(name, seed, EVAL_END)
                telemetry = TelemetrySpec(kind="sim", scenario=name, seed=seed, end=EVAL_END)
                result = await runner.start(scenario.alert, telemetry)
                report = incident_report(result.values)
                cases.append({"scenario": name, "seed": seed, "seconds": result.seconds,
                              "predicted": [report["root_cause"]["service"], report["root_cause"]["fault_type"]],
                              **score_case(scenario, report)})
    return aggregate(cases)


def format_table(scores: dict[str, Any]) -> str:
    """The eval result as a text table."""
    lines = [f"{'scenario':<26} {'cases':>5} {'top1 svc':>9} {'top3 svc':>9} {'top1 fault':>10} {'median s':>9}"]
    for name, s in scores["per_scenario"].items():
        lines.append(f"{name:<26} {s['cases']:>5} {s['top1_service']:>9.0%} {s['top3_service']:>9.0%} "
                     f"{s['top1_fault']:>10.0%} {s['median_seconds']:>9.2f}")
    lines.append(f"{'all':<26} {scores['cases']:>5} {scores['top1_service']:>9.0%} {scores['top3_service']:>9.0%} "
                 f"{scores['top1_fault']:>10.0%} {scores['median_seconds']:>9.2f}")
    lines.append(f"false alarms classified as no incident: {scores['false_alarms_ok']:.0%}")
    return "\n".join(lines)
