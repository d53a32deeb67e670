"""`incident-copilot eval`: every scenario over N seeds through the whole graph, scored against the truth."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from evals.scoring import aggregate, format_calibration
from graph.context import Context
from service.runs import IncidentRunner
from state import TelemetrySpec
from tools.database import open_database

EVAL_END = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


async def evaluate_graph(
    seeds: int, scenarios: list[str] | None = None, *, database_url: str | None = None,
    on_case: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run each (scenario, seed) up to the approval gate on the durable checkpointer (at `database_url`, else the
    configured one) and score it; `on_case` hears of each case as it is scored. Also `cases_detail` (per case:
    verdict, top-3, score), as evals/wire.py gives it, so both can be compared case by case."""
    from evals.wire import case_details, run_case
    from sim.scenarios import SCENARIOS, build_scenario

    context = Context(notify_channels=(), llm_provider="offline")
    cases = []
    async with open_database(database_url) as db:
        runner = IncidentRunner(db, context)
        for name in scenarios or SCENARIOS:
            for seed in range(seeds):
                scenario = build_scenario(name, seed, EVAL_END)
                telemetry = TelemetrySpec(kind="sim", scenario=name, seed=seed, end=EVAL_END)
                cases.append({"scenario": name, "seed": seed, **await run_case(runner, scenario, telemetry)})
                if on_case is not None:
                    on_case(cases[-1])
    return {**aggregate(cases), "cases_detail": case_details(cases)}


def format_table(scores: dict[str, Any]) -> str:
    """The eval result as a text table."""
    w = max(26, *(len(name) for name in scores["per_scenario"]))
    lines = [f"{'scenario':<{w}} {'cases':>5} {'top1 svc':>9} {'top3 svc':>9} {'top1 fault':>10} {'median s':>9}"]
    for name, s in scores["per_scenario"].items():
        lines.append(f"{name:<{w}} {s['cases']:>5} {s['top1_service']:>9.0%} {s['top3_service']:>9.0%} "
                     f"{s['top1_fault']:>10.0%} {s['median_seconds']:>9.2f}")
    lines.append(f"{'all':<{w}} {scores['cases']:>5} {scores['top1_service']:>9.0%} {scores['top3_service']:>9.0%} "
                 f"{scores['top1_fault']:>10.0%} {scores['median_seconds']:>9.2f}")
    lines.append(f"false alarms classified as no incident: {scores['false_alarms_ok']:.0%}")
    lines += format_calibration(scores)
    return "\n".join(lines)
