"""traces: find where errors and slowness originate in the window's traces."""

from __future__ import annotations

import asyncio
from typing import Any

from langgraph.runtime import Runtime

from analysis.traces import summarize_traces
from graph.context import Context
from nodes.collectors import run_collector
from state import CollectTask, SourceEvidence
from tools.telemetry import TelemetrySource


async def _read(source: TelemetrySource, task: CollectTask) -> SourceEvidence:
    window = task["window"]
    spans = await source.traces(task["services"], window.baseline_start, window.end)
    summary = await asyncio.to_thread(summarize_traces, spans, window)
    status = "ok" if spans else "no_data"
    return SourceEvidence(source="traces", status=status, traces=summary, queries=1)


async def traces(task: CollectTask, runtime: Runtime[Context]) -> dict[str, Any]:
    """Collect and summarize traces."""
    return await run_collector(task, runtime.context, _read)
