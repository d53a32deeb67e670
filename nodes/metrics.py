"""metrics: read the default series of the services and score their anomalies."""

from __future__ import annotations

import asyncio
from typing import Any

from langgraph.runtime import Runtime

from analysis.charts import metric_charts
from analysis.metrics import summarize_metrics
from graph.context import Context
from nodes.collectors import run_collector
from state import CollectTask, SourceEvidence
from tools.telemetry import TelemetrySource


async def metrics(task: CollectTask, runtime: Runtime[Context]) -> dict[str, Any]:
    """Collect and summarize metrics at the run's metric resolution."""
    step = runtime.context.metrics_step_seconds

    async def read(source: TelemetrySource, task: CollectTask) -> SourceEvidence:
        window = task["window"]
        series = await source.metrics(task["services"], window.baseline_start, window.end, step)
        edges = [(a, b) for a, b in task.get("dependencies") or []]
        summary = await asyncio.to_thread(summarize_metrics, series, window, dependencies=edges)
        charts = metric_charts(series, summary.signals, window)
        status = "ok" if series else "no_data"
        return SourceEvidence(source="metrics", status=status, metrics=summary, charts=charts, queries=len(series))

    return await run_collector(task, runtime.context, read)
