"""deploys: list the deploys and config changes around the window."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from analysis.deploys import summarize_deploys
from graph.context import Context
from nodes.collectors import run_collector
from state import CollectTask, SourceEvidence
from tools.telemetry import TelemetrySource


async def _read(source: TelemetrySource, task: CollectTask) -> SourceEvidence:
    window = task["window"]
    found = await source.deploys(task["services"], window.baseline_start, window.end)
    summary = summarize_deploys(found, window)
    # no deploy in the window is a finding, not missing data
    return SourceEvidence(source="deploys", status="ok", deploys=summary, queries=1)


async def deploys(task: CollectTask, runtime: Runtime[Context]) -> dict[str, Any]:
    """Collect deploys."""
    return await run_collector(task, runtime.context, _read)
