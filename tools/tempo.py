"""Tempo connector: TraceQL searches over time slices (/api/search), then each trace by id (/api/traces/<id>, OTLP
JSON), under the run's trace cap and query budget."""

from __future__ import annotations

import asyncio
import math
from datetime import datetime
from typing import Any

from analysis.records import Span
from tools.http_client import BackendClient, BackendError, QueryBudget, QueryBudgetExceeded
from tools.prometheus import any_of
from tools.spans import (
    TraceReadStats,
    bounded,
    failed_status,
    hex_id,
    in_range,
    peer_of,
    run_searches,
    time_slices,
)
from tools.telemetry_config import HttpConfig, TracesConfig

_ERROR_CODES = (2, "2", "STATUS_CODE_ERROR")
_CLIENT_KINDS = (3, "3", "SPAN_KIND_CLIENT")


class TempoClient(BackendClient):
    """GET /api/search and /api/traces/<id> with retries; failures raise BackendError."""

    name = "tempo"

    def __init__(
        self, base_url: str, credentials: str | None, config: TracesConfig, http: HttpConfig, budget: QueryBudget
    ) -> None:
        super().__init__(base_url, credentials, config.timeout_seconds, http, budget)

    async def search(self, query: str, start: datetime, end: datetime, limit: int) -> list[str]:
        """Ids (hex) of up to `limit` traces in [start, end] that the TraceQL `query` matches."""
        params = {
            "q": query,
            "start": str(math.floor(start.timestamp())),
            "end": str(math.ceil(end.timestamp())),
            "limit": str(limit),
            "spss": "1",
        }
        body = await self.get_json("/api/search", params, query)
        try:
            return [hex_id(str(trace["traceID"])).rjust(32, "0") for trace in body.get("traces") or []]
        except (KeyError, TypeError, ValueError) as exc:
            raise BackendError(self.name, query, 200, f"malformed answer: {type(exc).__name__}: {exc}") from None

    async def trace(self, trace_id: str) -> list[Span] | None:
        """The spans of one trace; None when Tempo no longer has it (404)."""
        query = f"trace {trace_id}"
        try:
            body = await self.get_json(f"/api/traces/{trace_id}", {}, query)
        except BackendError as exc:
            if exc.status == 404:
                return None
            raise
        try:
            return otlp_spans(body)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BackendError(self.name, query, 200, f"malformed answer: {type(exc).__name__}: {exc}") from None


def otlp_spans(body: dict[str, Any]) -> list[Span]:
    """The spans of an OTLP JSON trace: Tempo's {"batches": [...]}, its v2 {"trace": {"resourceSpans": [...]}},
    or plain {"resourceSpans": [...]}; ids as hex or base64, enums as names or numbers."""
    groups = body.get("batches") or body.get("resourceSpans") or (body.get("trace") or {}).get("resourceSpans") or []
    spans = []
    for group in groups:
        resource = attributes((group.get("resource") or {}).get("attributes"))
        service = str(resource.get("service.name") or "unknown")
        for scope in group.get("scopeSpans") or group.get("instrumentationLibrarySpans") or []:
            for raw in scope.get("spans") or []:
                spans.append(_span(raw, service))
    return spans


def _span(raw: dict[str, Any], service: str) -> Span:
    attrs = attributes(raw.get("attributes"))
    status = raw.get("status") or {}
    start_ns, end_ns = int(raw["startTimeUnixNano"]), int(raw["endTimeUnixNano"])
    error = status.get("code") in _ERROR_CODES or attrs.get("error") is True or failed_status(attrs)
    message = str(status.get("message") or "")
    for event in raw.get("events") or []:
        if not message and event.get("name") == "exception":
            message = str(attributes(event.get("attributes")).get("exception.message") or "")
    parent = raw.get("parentSpanId") or None
    return Span(
        trace_id=hex_id(raw["traceId"]),
        span_id=hex_id(raw["spanId"]),
        parent_id=hex_id(parent) if parent else None,
        service=service,
        name=str(raw.get("name") or ""),
        start=start_ns / 1e9,
        duration_ms=max(0, end_ns - start_ns) / 1e6,
        error=bool(error),
        peer=peer_of(attrs) if raw.get("kind") in _CLIENT_KINDS else None,
        message=message if error else "",
    )


def attributes(items: list[dict[str, Any]] | None) -> dict[str, Any]:
    """OTLP key/value attributes as a dict (string, int, double and bool values; others as their JSON)."""
    out: dict[str, Any] = {}
    for item in items or []:
        value = item.get("value") or {}
        if "stringValue" in value:
            out[item["key"]] = value["stringValue"]
        elif "intValue" in value:
            out[item["key"]] = int(value["intValue"])
        elif "doubleValue" in value:
            out[item["key"]] = float(value["doubleValue"])
        elif "boolValue" in value:
            out[item["key"]] = bool(value["boolValue"])
        else:
            out[item["key"]] = value
    return out


async def read_spans(
    client: TempoClient, services: list[str], start: datetime, end: datetime, config: TracesConfig,
    stats: TraceReadStats,
) -> list[Span]:
    """Spans of up to `config.max_traces` traces touching the services that start in [start, end]: error traces
    first (one search), then an equal sample of each time slice (one search each), each trace fetched by id.

    Raises when every search failed; a failed search or fetch, or a spent query budget, is counted in `stats` and
    the traces already read still count."""
    selector = any_of(config.service_attribute, services)
    per_slice = max(1, (config.max_traces - config.error_traces) // config.slices)
    searches = [(f"{{ {selector} && status = error }}", start, end, config.error_traces)]
    searches += [(f"{{ {selector} }}", a, b, per_slice) for a, b in time_slices(start, end, config.slices)]
    gate = asyncio.Semaphore(config.max_concurrent_queries)
    found = await run_searches([bounded(gate, client.search(*s)) for s in searches], stats)
    ids = list(dict.fromkeys(tid for ids in found for tid in ids))
    if len(ids) > config.max_traces:
        stats.truncated = True
        stats.reasons.append(f"traces: {len(ids)} found, read the first {config.max_traces} (the cap per read)")
        ids = ids[: config.max_traces]

    fetched = await asyncio.gather(*(bounded(gate, client.trace(tid)) for tid in ids), return_exceptions=True)
    spans: list[Span] = []
    unread: list[BaseException] = []
    gone = 0
    for outcome in fetched:
        if isinstance(outcome, BackendError | QueryBudgetExceeded):
            unread.append(outcome)
        elif isinstance(outcome, BaseException):
            raise outcome
        elif outcome is None:
            gone += 1
        else:
            stats.traces += 1
            spans.extend(outcome)
    stats.failed += len(unread) + gone
    if unread:
        stats.truncated = True
        stats.reasons.append(f"traces: {len(unread)} of {len(ids)} traces unread; first: {unread[0]}")
    if gone:
        stats.reasons.append(f"traces: {gone} of {len(ids)} traces found by search were gone when fetched")
    return in_range(spans, start, end)
