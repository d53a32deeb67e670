"""ingest: fix the incident window from the alert and the run settings."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from langgraph.runtime import Runtime

from graph.context import Context
from state import IncidentState, TelemetrySpec, Window


async def ingest(state: IncidentState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Window = [alert time - lookup window, alert time], baseline before it; telemetry defaults to live."""
    alert = state["alert"]
    telemetry = state.get("telemetry") or TelemetrySpec(kind="live")
    end = telemetry.end or alert.starts_at
    length = timedelta(seconds=alert.lookup_window_seconds or runtime.context.window_seconds)
    baseline = timedelta(seconds=runtime.context.baseline_seconds)
    window = Window(start=end - length, end=end, baseline_start=end - length - baseline)
    return {"telemetry": telemetry, "window": window}
