"""The shared shape of the four collectors: read one source, reduce it to evidence, never raise."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from graph.context import Context
from nodes.common import error_record
from state import CollectTask, SourceEvidence
from tools.redact import redact_value
from tools.telemetry import TelemetrySource, open_source

Reader = Callable[[TelemetrySource, CollectTask], Awaitable[SourceEvidence]]


async def run_collector(task: CollectTask, context: Context, read: Reader) -> dict[str, Any]:
    """Run `read` for the task's source; a failure becomes status=error and an errors entry."""
    source = task["source"]
    backend = None
    try:
        backend = open_source(task["telemetry"], context)
        evidence = await read(backend, task)
    except Exception as exc:
        message = f"{source} unavailable: {type(exc).__name__}: {exc}"
        evidence = SourceEvidence(source=source, status="error", error=message[:500])
        return {"evidence_parts": {source: evidence}, "errors": [error_record(source, message, source=source)]}
    # what a live backend noted on the way (failed queries, warnings, truncation) is kept, never dropped
    notes = list(getattr(backend, "notes", []))
    if evidence.status == "no_data" and notes:
        evidence = evidence.model_copy(update={"error": "; ".join(notes)[:500]})
        notes = []
    # the state is checkpointed: log samples and templates keep no secret there, nor anywhere after
    update: dict[str, Any] = {"evidence_parts": {source: redact_value(evidence)}}
    if notes:
        update["errors"] = [error_record(source, note, source=source) for note in notes]
    return update
