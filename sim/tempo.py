"""Spans as Tempo serves them: a store found by trace start and id, the TraceQL subset a connector sends
(`{ cond && cond }`), and the JSON of Tempo's search and trace-by-id answers (sim/wire.py serves them)."""

from __future__ import annotations

import base64
import bisect
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from analysis.records import Span

TraceMatcher = Callable[[list[Span]], bool]

# --- TraceQL: one spanset of conditions joined by && ----------------------------------------------------------

_TOKEN = re.compile(
    r'\s*(?:(?P<string>"(?:[^"\\]|\\.)*")|(?P<op>&&|=~|!~|!=|>=|<=|=|>|<)|(?P<punct>[{}])'
    r"|(?P<duration>\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))|(?P<number>-?\d+(?:\.\d+)?)"
    r"|(?P<name>[A-Za-z_.:][A-Za-z0-9_.:-]*))"
)
_DURATION_UNITS = {"ns": 1e-6, "us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4, "h": 3.6e6}
_STATUS = {"error", "ok", "unset"}
_FIELDS: dict[str, Callable[[Span], object]] = {
    "resource.service.name": lambda s: s.service,
    ".service.name": lambda s: s.service,
    "name": lambda s: s.name,
    "span.peer.service": lambda s: s.peer or "",
    ".peer.service": lambda s: s.peer or "",
    "status": lambda s: "error" if s.error else "unset",
    "duration": lambda s: s.duration_ms,
    "kind": lambda s: "client" if s.peer else "unspecified",
}


class TraceQLError(ValueError):
    """A query outside the subset served here, worded as Tempo words parse errors."""


def parse_traceql(query: str) -> TraceMatcher:
    """A trace matcher for `{ field op value && ... }` (or `{}`): a trace matches when one of its spans meets
    every condition. Fields: resource.service.name, name, status, duration, kind, span.peer.service."""
    tokens: list[tuple[str, str, int]] = []
    at = 0
    text = query.strip()
    while at < len(text):
        match = _TOKEN.match(text, at)
        if not match or match.end() == at:
            raise TraceQLError(f"parse error at line 1, col {at + 1}: syntax error: unexpected {text[at:at + 10]!r}")
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind), match.start(kind) + 1))
        at = match.end()
    if len(tokens) < 2 or tokens[0][1] != "{" or tokens[-1][1] != "}":
        raise TraceQLError("parse error at line 1, col 1: syntax error: a query is one spanset { ... }")
    body = tokens[1:-1]
    conditions: list[Callable[[Span], bool]] = []
    for k in range(0, len(body), 4):
        part = body[k : k + 4]
        if len(part) < 3 or part[0][0] != "name" or part[1][0] != "op" or part[1][1] == "&&":
            col = part[0][2] if part else tokens[-1][2]
            raise TraceQLError(f"parse error at line 1, col {col}: syntax error: expected field op value")
        if len(part) == 4 and part[3][1] != "&&":
            raise TraceQLError(f"parse error at line 1, col {part[3][2]}: syntax error: only && joins conditions")
        conditions.append(_condition(part[0][1], part[1][1], part[2]))
    if body and body[-1][1] == "&&":
        raise TraceQLError(f"parse error at line 1, col {body[-1][2]}: syntax error: unexpected }}")

    def matches(trace: list[Span]) -> bool:
        return any(all(test(span) for test in conditions) for span in trace)

    return matches


def _condition(field: str, op: str, value: tuple[str, str, int]) -> Callable[[Span], bool]:
    if field not in _FIELDS:
        raise TraceQLError(f"parse error at line 1, col {value[2]}: unknown attribute {field!r} in this server")
    get = _FIELDS[field]
    kind, text, col = value
    if kind == "string":
        target: object = json.loads(text)
    elif kind == "duration":
        number = re.match(r"[\d.]+", text).group()  # type: ignore[union-attr]
        target = float(number) * _DURATION_UNITS[text[len(number) :]]
    elif kind == "number":
        target = float(text)
    elif kind == "name" and text in _STATUS | {"client", "server", "unspecified"}:
        target = text
    else:
        raise TraceQLError(f"parse error at line 1, col {col}: syntax error: unexpected {text!r}")
    if op in ("=~", "!~"):
        try:
            pattern = re.compile(str(target))
        except re.error as exc:
            raise TraceQLError(f"invalid regex {target!r}: {exc}") from None
        return lambda s: bool(pattern.fullmatch(str(get(s)))) == (op == "=~")
    compare: dict[str, Callable[[object, object], bool]] = {
        "=": lambda a, b: a == b,
        "!=": lambda a, b: a != b,
        ">": lambda a, b: a > b,  # type: ignore[operator]
        ">=": lambda a, b: a >= b,  # type: ignore[operator]
        "<": lambda a, b: a < b,  # type: ignore[operator]
        "<=": lambda a, b: a <= b,  # type: ignore[operator]
    }
    if op not in compare:
        raise TraceQLError(f"parse error at line 1, col {col}: syntax error: unexpected {op!r}")
    if op not in ("=", "!=") and not isinstance(target, float):
        raise TraceQLError(f"parse error at line 1, col {col}: {op} needs a number or a duration")
    return lambda s: compare[op](get(s), target)


# --- the store ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TraceSummary:
    """One search hit: the trace's spans and when it started and ended (unix ns)."""

    trace_id: str
    spans: list[Span]
    start_ns: int
    end_ns: int


class SpanStore:
    """Spans of many traces, found by trace start time (search) and by trace id."""

    def __init__(self, spans: Iterable[Span] = ()) -> None:
        self._traces: dict[str, list[Span]] = {}
        self._starts: list[tuple[float, str]] = []
        self.add(spans)

    def add(self, spans: Iterable[Span]) -> None:
        """Add spans (of new or known traces)."""
        for span in spans:
            self._traces.setdefault(span.trace_id, []).append(span)
        self._starts = sorted((min(s.start for s in group), tid) for tid, group in self._traces.items())

    def __len__(self) -> int:
        return len(self._traces)

    def search(
        self, matches: TraceMatcher, start_ns: int, end_ns: int, limit: int, done_by: float | None = None
    ) -> list[TraceSummary]:
        """Up to `limit` traces starting in [start_ns, end_ns] that `matches` accepts, the newest first, as Tempo
        answers; with `done_by` (unix s), only traces that had ended by then."""
        lo = bisect.bisect_left(self._starts, (start_ns / 1e9, ""))
        hi = bisect.bisect_right(self._starts, (end_ns / 1e9, "\uffff"))
        out: list[TraceSummary] = []
        for _, tid in reversed(self._starts[lo:hi]):
            summary = self.summary(tid)
            if done_by is not None and summary.end_ns > done_by * 1e9:
                continue
            if matches(summary.spans):
                out.append(summary)
                if len(out) >= limit:
                    break
        return out

    def summary(self, trace_id: str) -> TraceSummary:
        """A known trace with its start and end."""
        spans = self._traces[trace_id]
        start = min(s.start for s in spans)
        end = max(s.start + s.duration_ms / 1e3 for s in spans)
        return TraceSummary(trace_id, spans, round(start * 1e9), round(end * 1e9))

    def trace(self, trace_id: str) -> list[Span] | None:
        """The spans of a trace, or None when unknown."""
        return self._traces.get(trace_id.lower().rjust(32, "0"))


# --- Tempo's JSON ------------------------------------------------------------------------------------------------


def search_json(hits: list[TraceSummary], inspected: int) -> dict:
    """Tempo's /api/search answer."""
    traces = []
    for hit in hits:
        root = min(hit.spans, key=lambda s: (s.parent_id is not None, s.start))
        sample = [
            {
                "spanID": s.span_id,
                "startTimeUnixNano": str(round(s.start * 1e9)),
                "durationNanos": str(round(s.duration_ms * 1e6)),
                "attributes": [_attribute("service.name", s.service)],
            }
            for s in hit.spans[:3]
        ]
        span_set = {"spans": sample, "matched": len(hit.spans)}
        traces.append(
            {
                "traceID": hit.trace_id.lstrip("0") or "0",  # Tempo drops leading zeros here
                "rootServiceName": root.service,
                "rootTraceName": root.name,
                "startTimeUnixNano": str(hit.start_ns),
                "durationMs": max(0, round((hit.end_ns - hit.start_ns) / 1e6)),
                "spanSet": span_set,
                "spanSets": [span_set],
            }
        )
    return {
        "traces": traces,
        "metrics": {"inspectedTraces": inspected, "inspectedBytes": str(inspected * 1500), "completedJobs": 1,
                    "totalJobs": 1},
    }


def trace_json(spans: list[Span]) -> dict:
    """Tempo's /api/traces/<id> answer: OTLP JSON batches per service, ids as protobuf bytes (base64)."""
    by_service: dict[str, list[Span]] = {}
    for span in spans:
        by_service.setdefault(span.service, []).append(span)
    return {
        "batches": [
            {
                "resource": {"attributes": [_attribute("service.name", service)]},
                "scopeSpans": [{"scope": {"name": "incident-copilot-sim"}, "spans": [_otlp(s) for s in members]}],
            }
            for service, members in by_service.items()
        ]
    }


def _otlp(span: Span) -> dict:
    out: dict = {
        "traceId": _b64(span.trace_id),
        "spanId": _b64(span.span_id),
        "name": span.name,
        "startTimeUnixNano": str(round(span.start * 1e9)),
        "endTimeUnixNano": str(round((span.start + span.duration_ms / 1e3) * 1e9)),
        "attributes": [],
        "status": {},
    }
    if span.parent_id:
        out["parentSpanId"] = _b64(span.parent_id)
    if span.peer:
        out["kind"] = "SPAN_KIND_CLIENT"
        out["attributes"].append(_attribute("peer.service", span.peer))
    if span.error:
        out["status"] = {"code": "STATUS_CODE_ERROR", "message": span.message}
    return out


def _attribute(key: str, value: str) -> dict:
    return {"key": key, "value": {"stringValue": value}}


def _b64(hex_text: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_text)).decode("ascii")
