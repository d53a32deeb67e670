"""Trace summary: where errors and slowness originate, and which service calls were observed."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from statistics import median

from analysis.records import Span
from analysis.secrets import redact
from state import TraceEvidence, Window

SLOW_FACTOR = 3.0
MAX_SAMPLES = 5
SAMPLE_CHARS = 160


def summarize_traces(spans: list[Span], window: Window) -> TraceEvidence:
    """Count error and slow origins per service over the incident window's traces; list observed edges."""
    start, end = window.start.timestamp(), window.end.timestamp()
    typical = _typical_durations([s for s in spans if s.start < start] or spans)
    traces: dict[str, list[Span]] = defaultdict(list)
    for span in spans:
        traces[span.trace_id].append(span)
    incident = {tid: group for tid, group in traces.items() if start <= min(s.start for s in group) <= end}

    error_origins: Counter[str] = Counter()
    slow_origins: Counter[str] = Counter()
    samples: list[str] = []
    error_traces = 0
    for tid in sorted(incident):
        group = incident[tid]
        children: dict[str | None, list[Span]] = defaultdict(list)
        for span in group:
            children[span.parent_id].append(span)
        failing = _origins(group, children, lambda s: s.error)
        if failing:
            error_traces += 1
            error_origins.update({_blame(s) for s in failing})
            for s in failing:
                if s.message and len(samples) < MAX_SAMPLES:
                    samples.append(_sample(s))
        slow = _origins(group, children, lambda s: _is_slow(s, typical))
        slow_origins.update({_blame(s) for s in slow})
    return TraceEvidence(
        traces_read=len(incident),
        error_traces=error_traces,
        error_origins=dict(error_origins.most_common()),
        slow_origins=dict(slow_origins.most_common()),
        edges=sorted(_edges(spans)),
        samples=samples,
    )


def _typical_durations(spans: list[Span]) -> dict[tuple[str, str], float]:
    by_key: dict[tuple[str, str], list[float]] = defaultdict(list)
    for span in spans:
        if not span.error:
            by_key[(span.service, span.name)].append(span.duration_ms)
    return {key: median(values) for key, values in by_key.items()}


def _is_slow(span: Span, typical: dict[tuple[str, str], float]) -> bool:
    usual = typical.get((span.service, span.name))
    return usual is not None and span.duration_ms > SLOW_FACTOR * usual + 1.0


def _origins(group: list[Span], children: dict[str | None, list[Span]], bad: Callable[[Span], bool]) -> list[Span]:
    """The deepest bad spans: bad, with no bad descendant below them."""
    memo: dict[str, bool] = {}

    def has_bad_below(span: Span) -> bool:
        if span.span_id not in memo:
            memo[span.span_id] = any(bad(c) or has_bad_below(c) for c in children.get(span.span_id, []))
        return memo[span.span_id]

    return [s for s in group if bad(s) and not has_bad_below(s)]


def _blame(span: Span) -> str:
    """A client span that is the deepest bad one blames its callee (or the network to it)."""
    return span.peer or span.service


def _edges(spans: list[Span]) -> set[tuple[str, str]]:
    by_id = {s.span_id: s for s in spans}
    edges = set()
    for span in spans:
        if span.peer and span.peer != span.service:
            edges.add((span.service, span.peer))
        parent = by_id.get(span.parent_id) if span.parent_id else None
        if parent and parent.service != span.service:
            edges.add((parent.service, span.service))
    return edges


def _sample(span: Span) -> str:
    text = redact(f"{span.service} {span.name}: {span.message}".split("\n", 1)[0])
    return text if len(text) <= SAMPLE_CHARS else text[: SAMPLE_CHARS - 3] + "..."
