"""Small helpers shared by the nodes: error records and folding an LLM call's outcome into an update."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from state import ErrorRecord, TokenUsage


def utcnow() -> datetime:
    """The current time, timezone-aware."""
    return datetime.now(UTC)


def error_record(node: str, message: str, source: str | None = None) -> ErrorRecord:
    """An entry for the state's `errors` list, redacted (an exception's text can quote a URL with its password)."""
    from tools.redact import redact

    return ErrorRecord(node=node, message=redact(message)[:1000], source=source, at=utcnow())


def llm_outcome(node: str, usage: TokenUsage | None, error: str | None) -> dict[str, Any]:
    """The `tokens` and `errors` part of a node's update after a structured LLM call."""
    update: dict[str, Any] = {}
    if usage is not None:
        update["tokens"] = {node: usage}
    if error is not None:
        update["errors"] = [error_record(node, error, source="llm")]
    return update


def to_json(value: Any) -> str:
    """Compact JSON of pydantic models and plain data, for prompts."""
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json", exclude_none=True)
    elif isinstance(value, list):
        value = [v.model_dump(mode="json", exclude_none=True) if hasattr(v, "model_dump") else v for v in value]
    return json.dumps(value, separators=(",", ":"), default=str)


def evidence_digest(evidence: Any, code: Any = None, alert: Any = None) -> str:
    """The redacted, compact JSON the LLM sees in place of raw telemetry (capped: prompts/views.py)."""
    from prompts.views import evidence_view
    from tools.redact import redact

    return redact(evidence_view(evidence, alert, code))
