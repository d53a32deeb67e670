"""ingest: fix the incident window from the alert and the run settings."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from langgraph.runtime import Runtime

from graph.context import Context
from state import Alert, IncidentState, TelemetrySpec, Window
from tools.redact import redact_value


async def ingest(state: IncidentState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Window = [alert time - lookup window, alert time], baseline before it; telemetry defaults to live."""
    # input over the LangGraph API arrives as JSON dicts: validate it into the state's models here, at the edge
    # the state's copy of the alert is redacted (it is checkpointed); the raw alert is the intake's record
    alert = redact_value(Alert.model_validate(state["alert"]))
    telemetry = TelemetrySpec.model_validate(state.get("telemetry") or {"kind": "live"})
    end = telemetry.end or alert.starts_at
    length = timedelta(seconds=alert.lookup_window_seconds or runtime.context.window_seconds)
    baseline = timedelta(seconds=runtime.context.baseline_seconds)
    window = Window(start=end - length, end=end, baseline_start=end - length - baseline)
    return {"alert": alert, "telemetry": telemetry, "window": window}
