"""Trace summary: where errors and slowness originate, where requests are cut short, and which service calls were
observed."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable
from statistics import median

from analysis.records import Span
from analysis.secrets import redact
from analysis.statistics import SIGNIFICANCE
from state import TraceEvidence, Window

SLOW_FACTOR = 3.0
MAX_SAMPLES = 5
SAMPLE_CHARS = 160
# Alerting rules fire after a symptom held for one to a few minutes: the requests of the window's last minutes are the
# ones an alert is about, while its earlier part may hold an earlier, finished episode.
RECENT_SECONDS = 300.0


def summarize_traces(spans: list[Span], window: Window) -> TraceEvidence:
    """Count error and slow origins per service over the incident window's traces; list observed edges."""
    start, end = window.start.timestamp(), window.end.timestamp()
    typical = _typical_durations([s for s in spans if s.start < start] or spans)
    traces: dict[str, list[Span]] = defaultdict(list)
    for span in spans:
        traces[span.trace_id].append(span)
    incident = {tid: group for tid, group in traces.items() if start <= min(s.start for s in group) <= end}

    error_origins: Counter[str] = Counter()
    own_origins: Counter[str] = Counter()
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
            own_origins.update({s.service for s in failing if _blame(s) == s.service})
            for s in failing:
                if s.message and len(samples) < MAX_SAMPLES:
                    samples.append(_sample(s))
        slow = _origins(group, children, lambda s: _is_slow(s, typical))
        slow_origins.update({_blame(s) for s in slow})
    return TraceEvidence(
        traces_read=len(incident),
        cut_after=_cut_after(spans, start, end),
        error_traces=error_traces,
        error_origins=dict(error_origins.most_common()),
        own_error_origins=dict(own_origins.most_common()),
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


def _cut_after(spans: list[Span], start: float, end: float) -> dict[str, list[str]]:
    """Callees after whose answer requests now stop: callee -> notes.

    Code handles a failed call by returning at once (fail fast): when a callee starts answering with errors or wrong
    values, the requests calling it end right after that call and skip the calls that used to follow. Per operation
    (service, span name), the share of its spans whose last call goes to each callee is compared between the
    baseline and the window's last RECENT_SECONDS; a callee that now ends significantly more of them (binomial tail
    under SIGNIFICANCE), while the operation makes fewer calls per span than before, is named."""
    by_parent: dict[str | None, list[Span]] = defaultdict(list)
    for span in spans:
        by_parent[span.parent_id].append(span)
    # per operation and period (False: baseline, True: recent): spans, calls, and spans ending after each callee
    seen: dict[tuple[str, str], dict[bool, Counter[str]]] = defaultdict(lambda: {False: Counter(), True: Counter()})
    for span in spans:
        if span.start > end or start <= span.start < end - RECENT_SECONDS:
            continue
        calls = _calls(span, by_parent)
        if not calls:
            continue
        counts = seen[(span.service, span.name)][span.start >= start]
        counts["<spans>"] += 1
        counts["<calls>"] += len(calls)
        counts[max(calls)[1]] += 1
    out: dict[str, list[str]] = defaultdict(list)
    for (service, name), periods in sorted(seen.items()):
        before, now = periods[False], periods[True]
        n_before, n_now = before.pop("<spans>", 0), now.pop("<spans>", 0)
        if not n_before or not n_now or now.pop("<calls>") / n_now >= before.pop("<calls>") / n_before:
            continue
        for callee in sorted(now):
            share = (before[callee] + 0.5) / (n_before + 1)
            if _more(now[callee], n_now, share):
                out[callee].append(
                    f"traces: {now[callee]} of {n_now} recent {service} {name} spans end right after calling "
                    f"{callee} ({before[callee]} of {n_before} before), making fewer calls than before"
                )
    return dict(out)


def _calls(span: Span, by_parent: dict[str | None, list[Span]]) -> list[tuple[float, str]]:
    """(start, callee) of the calls a span makes: its first hops out of its own service, through its own client
    spans."""
    calls = []
    todo = list(by_parent.get(span.span_id, []))
    while todo:
        child = todo.pop()
        callee = child.service if child.service != span.service else child.peer
        if callee and callee != span.service:
            calls.append((child.start, callee))
        else:
            todo.extend(by_parent.get(child.span_id, []))
    return calls


def _more(observed: int, trials: int, share: float) -> bool:
    """Are `observed` events in `trials` significantly more than a per-trial `share` predicts (binomial upper tail
    under SIGNIFICANCE)? Summed in log space: thousands of spans overflow a float's binomial coefficients."""
    if observed <= share * trials:
        return False
    log_p, log_q = math.log(share), math.log1p(-share)
    head = math.lgamma(trials + 1)
    above = sum(
        math.exp(head - math.lgamma(k + 1) - math.lgamma(trials - k + 1) + k * log_p + (trials - k) * log_q)
        for k in range(observed, trials + 1)
    )
    return above < SIGNIFICANCE
