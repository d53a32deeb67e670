"""What the trace connectors (tools/tempo.py, tools/jaeger.py) share: the time slices of a bounded read, span fields
from OpenTelemetry attributes, and the outcome of a read."""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from analysis.records import Span
from tools.http_client import BackendError, QueryBudgetExceeded

T = TypeVar("T")

# Where a client span names its callee, most specific first (OpenTelemetry semantic conventions, old and new).
PEER_ATTRIBUTES = ("peer.service", "server.address", "net.peer.name")
STATUS_ATTRIBUTES = ("http.response.status_code", "http.status_code")
_IP = re.compile(r"[0-9.]+")
_HEX = re.compile(r"[0-9a-fA-F]{1,32}")


@dataclass
class TraceReadStats:
    """What one trace read did: searches, traces fetched, and why it stopped early when it did."""

    searches: int = 0
    traces: int = 0
    failed: int = 0
    truncated: bool = False
    reasons: list[str] = field(default_factory=list)


def time_slices(start: datetime, end: datetime, count: int) -> list[tuple[datetime, datetime]]:
    """[start, end] cut into `count` equal slices, so a read samples the whole range, not only its newest part."""
    step = (end - start) / count
    return [(start + step * k, end if k == count - 1 else start + step * (k + 1)) for k in range(count)]


def hex_id(value: str) -> str:
    """A trace or span id as lower-case hex: hex as it comes (left-padded to 16 or 32 digits), else base64 bytes
    (Tempo's JSON encodes ids as protobuf bytes)."""
    text = value.strip()
    if not _HEX.fullmatch(text):
        try:
            return base64.b64decode(text, validate=True).hex()
        except (binascii.Error, ValueError):
            raise ValueError(f"unreadable id {value[:40]!r}") from None
    width = 16 if len(text) <= 16 else 32
    return text.lower().rjust(width, "0")


def peer_of(attributes: dict[str, Any]) -> str | None:
    """The callee a client span names: peer.service, else a host name's first label (no port; an IP address
    names no service)."""
    for key in PEER_ATTRIBUTES:
        value = attributes.get(key)
        if not isinstance(value, str) or not value:
            continue
        if key == "peer.service":
            return value
        host = value.rsplit(":", 1)[0] if value.count(":") == 1 else value
        if host and not _IP.fullmatch(host) and ":" not in host:
            return host.split(".")[0]
    return None


def failed_status(attributes: dict[str, Any]) -> bool:
    """An HTTP 5xx answer recorded as an attribute (spans that set no error status but carry the code)."""
    for key in STATUS_ATTRIBUTES:
        try:
            if int(attributes.get(key) or 0) >= 500:
                return True
        except (TypeError, ValueError):
            continue
    return False


def in_range(spans: Iterable[Span], start: datetime, end: datetime) -> list[Span]:
    """The spans of the traces that start in [start, end] (a trace starts at its earliest span)."""
    first: dict[str, float] = {}
    spans = list(spans)
    for span in spans:
        first[span.trace_id] = min(first.get(span.trace_id, span.start), span.start)
    lo, hi = start.timestamp(), end.timestamp()
    return [s for s in spans if lo <= first[s.trace_id] <= hi]


async def bounded(gate: asyncio.Semaphore, call: Awaitable[T]) -> T:
    """Await `call` holding one of the gate's places (the connector's concurrency limit)."""
    async with gate:
        return await call


async def run_searches(calls: list[Awaitable[T]], stats: TraceReadStats) -> list[T]:
    """The answers of the searches that succeeded, in order. Raises when every search failed; otherwise a failed
    search or a spent query budget is counted and noted in `stats`."""
    found = await asyncio.gather(*calls, return_exceptions=True)
    failures = [f for f in found if isinstance(f, BackendError | QueryBudgetExceeded)]
    for outcome in found:
        if isinstance(outcome, BaseException) and not isinstance(outcome, BackendError | QueryBudgetExceeded):
            raise outcome
    stats.searches += len(calls) - len(failures)
    if failures and len(failures) == len(calls):
        raise failures[0]
    if failures:
        stats.reasons.append(f"traces: {len(failures)} of {len(calls)} searches failed; first: {failures[0]}")
    return [f for f in found if not isinstance(f, BaseException)]
