"""Jaeger connector: the query service's /api/traces search (whole traces, one service per search) over time slices,
under the run's trace cap and query budget."""

from __future__ import annotations

import asyncio
import json
import math
from datetime import datetime
from typing import Any

from analysis.records import Span
from tools.http_client import BackendClient, BackendError, QueryBudget
from tools.spans import TraceReadStats, bounded, failed_status, hex_id, in_range, peer_of, run_searches, time_slices
from tools.telemetry_config import HttpConfig, TracesConfig

ERROR_TAGS = {"error": "true"}


class JaegerClient(BackendClient):
    """GET /api/traces with retries; failures raise BackendError."""

    name = "jaeger"

    def __init__(
        self, base_url: str, credentials: str | None, config: TracesConfig, http: HttpConfig, budget: QueryBudget
    ) -> None:
        super().__init__(base_url, credentials, config.timeout_seconds, http, budget)

    async def search(
        self, service: str, start: datetime, end: datetime, limit: int, tags: dict[str, str] | None = None
    ) -> list[list[Span]]:
        """Up to `limit` whole traces with a span of `service` in [start, end] (and the tags, when given)."""
        params = {
            "service": service,
            "start": str(math.floor(start.timestamp() * 1e6)),
            "end": str(math.ceil(end.timestamp() * 1e6)),
            "limit": str(limit),
            "lookback": "custom",
        }
        if tags:
            params["tags"] = json.dumps(tags, separators=(",", ":"))
        query = f"service={service}" + (f" tags={params['tags']}" if tags else "")
        body = await self.get_json("/api/traces", params, query)
        errors = body.get("errors")
        if errors and not body.get("data"):
            raise BackendError(self.name, query, 200, _errors(errors))
        try:
            return [jaeger_spans(trace) for trace in body.get("data") or []]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BackendError(self.name, query, 200, f"malformed answer: {type(exc).__name__}: {exc}") from None


def _errors(errors: Any) -> str:
    try:
        return "; ".join(f"{e.get('code')}: {e.get('msg')}" for e in errors)[:300]
    except (AttributeError, TypeError):
        return str(errors)[:300]


def jaeger_spans(trace: dict[str, Any]) -> list[Span]:
    """The spans of one trace of Jaeger's JSON (spans with processID, the processes' service names)."""
    processes = {key: (value or {}).get("serviceName") for key, value in (trace.get("processes") or {}).items()}
    spans = []
    for raw in trace["spans"]:
        tags = {t["key"]: t.get("value") for t in raw.get("tags") or []}
        parent = raw.get("parentSpanID") or None
        for ref in raw.get("references") or []:
            if ref.get("refType") == "CHILD_OF" or parent is None:
                parent = ref.get("spanID")
                if ref.get("refType") == "CHILD_OF":
                    break
        error = tags.get("error") in (True, "true") or tags.get("otel.status_code") == "ERROR" or failed_status(tags)
        start_us, duration_us = int(raw["startTime"]), int(raw.get("duration") or 0)
        spans.append(
            Span(
                trace_id=hex_id(raw["traceID"]).rjust(32, "0"),
                span_id=hex_id(raw["spanID"]),
                parent_id=hex_id(parent) if parent else None,
                service=str(processes.get(raw.get("processID")) or "unknown"),
                name=str(raw.get("operationName") or ""),
                start=start_us / 1e6,
                duration_ms=duration_us / 1e3,
                error=bool(error),
                peer=peer_of(tags) if tags.get("span.kind") == "client" else None,
                message=_message(tags, raw.get("logs") or []) if error else "",
            )
        )
    return spans


def _message(tags: dict[str, Any], logs: list[dict[str, Any]]) -> str:
    """The error's text: the status description, else the message of an error or exception log."""
    if tags.get("otel.status_description"):
        return str(tags["otel.status_description"])
    for log in logs:
        fields = {f["key"]: f.get("value") for f in log.get("fields") or []}
        for key in ("exception.message", "error.object", "message"):
            if fields.get(key) and fields.get("event") in ("error", "exception", None):
                return str(fields[key])
    return ""


async def read_spans(
    client: JaegerClient, services: list[str], start: datetime, end: datetime, config: TracesConfig,
    stats: TraceReadStats,
) -> list[Span]:
    """Spans of up to `config.max_traces` traces that start in [start, end], through the first
    `config.max_services` services (the alerted one first): per service an error-tagged search and one search per
    time slice. Raises when every search failed; a failed search or spent budget is counted in `stats`."""
    searched = services[: config.max_services]
    error_limit = max(1, math.ceil(config.error_traces / len(searched)))
    per_slice = max(1, (config.max_traces - config.error_traces) // (config.slices * len(searched)))
    searches: list[tuple[str, datetime, datetime, int, dict[str, str] | None]] = []
    for service in searched:
        searches.append((service, start, end, error_limit, ERROR_TAGS))
        searches += [(service, a, b, per_slice, None) for a, b in time_slices(start, end, config.slices)]
    gate = asyncio.Semaphore(config.max_concurrent_queries)
    found = await run_searches([bounded(gate, client.search(*s)) for s in searches], stats)
    traces: dict[str, list[Span]] = {}
    for outcome in found:
        for trace in outcome:
            if trace:
                traces.setdefault(trace[0].trace_id, trace)
    if len(traces) > config.max_traces:
        stats.truncated = True
        stats.reasons.append(f"traces: {len(traces)} found, kept the first {config.max_traces} (the cap per read)")
    kept = list(traces.values())[: config.max_traces]
    stats.traces += len(kept)
    return in_range([span for trace in kept for span in trace], start, end)
