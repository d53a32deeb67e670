"""logs: stream the window's log lines through template mining into a compact summary."""

from __future__ import annotations

import asyncio
from typing import Any

from langgraph.runtime import Runtime

from analysis.logs import summarize_logs
from graph.context import Context
from nodes.collectors import run_collector
from state import CollectTask, SourceEvidence
from tools.telemetry import TelemetrySource


async def _read(source: TelemetrySource, task: CollectTask) -> SourceEvidence:
    window = task["window"]
    records = [r async for r in source.logs(task["services"], window.baseline_start, window.end)]
    summary = await asyncio.to_thread(summarize_logs, records, window)
    status = "ok" if summary.lines_read else "no_data"
    return SourceEvidence(source="logs", status=status, logs=summary, queries=len(task["services"]))


async def logs(task: CollectTask, runtime: Runtime[Context]) -> dict[str, Any]:
    """Collect and summarize logs."""
    return await run_collector(task, runtime.context, _read)
