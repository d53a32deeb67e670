"""logs: stream the window's log lines through template mining into a compact summary."""

from __future__ import annotations

import asyncio
from typing import Any

from langgraph.runtime import Runtime

from analysis.logs import LogSummarizer
from analysis.records import LogRecord
from graph.context import Context
from nodes.collectors import run_collector
from state import CollectTask, SourceEvidence
from tools.telemetry import TelemetrySource

CHUNK = 5000  # records summarised per worker-thread call: memory holds one chunk, the event loop stays free


async def _read(source: TelemetrySource, task: CollectTask) -> SourceEvidence:
    window = task["window"]
    summarizer = LogSummarizer(window)
    chunk: list[LogRecord] = []
    async for record in source.logs(task["services"], window.baseline_start, window.end):
        chunk.append(record)
        if len(chunk) >= CHUNK:
            await asyncio.to_thread(summarizer.add_many, chunk)
            chunk = []
    await asyncio.to_thread(summarizer.add_many, chunk)
    summary = await asyncio.to_thread(summarizer.finish)
    # a live backend that stopped at its line or byte cap says so; the summary then covers part of the window
    stats = getattr(source, "log_stats", None)
    summary.truncated = bool(stats and stats.truncated)
    status = "ok" if summary.lines_read else "no_data"
    return SourceEvidence(source="logs", status=status, logs=summary, queries=len(task["services"]))


async def logs(task: CollectTask, runtime: Runtime[Context]) -> dict[str, Any]:
    """Collect and summarize logs."""
    return await run_collector(task, runtime.context, _read)
