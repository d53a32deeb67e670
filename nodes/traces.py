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
    """The baseline's traces and the incident window's, read apart so that a capped read samples both."""
    window, services = task["window"], task["services"]
    baseline = await source.traces(services, window.baseline_start, window.start)
    incident = await source.traces(services, window.start, window.end)
    spans = list({(s.trace_id, s.span_id): s for s in [*baseline, *incident]}.values())
    summary = await asyncio.to_thread(summarize_traces, spans, window)
    status = "ok" if spans else "no_data"
    return SourceEvidence(source="traces", status=status, traces=summary, queries=2)


async def traces(task: CollectTask, runtime: Runtime[Context]) -> dict[str, Any]:
    """Collect and summarize traces."""
    return await run_collector(task, runtime.context, _read)
