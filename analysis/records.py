"""Raw telemetry records as adapters hand them to the evidence engine (never stored in the graph state)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

# Metric signals the engine understands, one series per (signal, service[, peer]); values per step.
SIGNALS: dict[str, str] = {
    "request_rate": "requests/s served (rate of http_requests_total)",
    "error_ratio": "fraction of served requests answered 5xx (0..1)",
    "latency_p99": "p99 of http_request_duration_seconds, seconds",
    "client_request_rate": "calls/s from service to peer (rate of http_client_requests_total)",
    "client_error_ratio": "fraction of calls from service to peer that failed (0..1)",
    "client_latency_p99": "p99 of calls from service to peer as the caller saw them, seconds",
    "cpu_usage": "CPU cores used (rate of process_cpu_seconds_total)",
    "memory_bytes": "process_resident_memory_bytes",
    "db_pool_in_use": "db_pool_connections_in_use",
    "db_pool_max": "db_pool_connections_max",
    "disk_free_bytes": "disk_free_bytes",
    "cert_expiry_timestamp": "tls_cert_expiry_timestamp_seconds (unix seconds)",
    "up": "1 when the target was scraped, 0 when not",
}
PEER_SIGNALS = frozenset({"client_request_rate", "client_error_ratio", "client_latency_p99"})


@dataclass(slots=True, frozen=True)
class LogRecord:
    """One log entry as stored (a stack trace is one entry with newlines); ts in unix seconds.

    `labels` are the labels of the entry's stream when the source has them (Loki's stream labels and structured
    metadata, such as `level` or `detected_level`); one mapping is shared by all entries of a stream.
    """

    ts: float
    service: str
    line: str
    labels: Mapping[str, str] | None = field(default=None, hash=False)


@dataclass(slots=True, frozen=True)
class MetricSeries:
    """One signal of one service (or service->peer edge): [(unix seconds, value), ...] in time order."""

    signal: str
    service: str
    points: list[tuple[float, float]]
    peer: str | None = None
    # seconds of samples each point summarises (the window of a PromQL rate()); 0 for a value read at its instant
    window: float = 0.0


@dataclass(slots=True, frozen=True)
class Span:
    """One span of a trace; `peer` is the callee for client spans."""

    trace_id: str
    span_id: str
    parent_id: str | None
    service: str
    name: str
    start: float
    duration_ms: float
    error: bool = False
    peer: str | None = None
    message: str = ""
