"""Streamed log summary: templates per service with baseline vs incident counts, and incident stack frames."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from analysis.logparse import parse_line
from analysis.records import LogRecord
from analysis.templates import TemplateMiner
from state import LogEvidence, LogTemplate, ServiceLogStats, StackFrame, Window
from tools.redact import redact

LEVEL_RANK = {"error": 3, "warn": 2, "info": 1, "debug": 0}
SAMPLE_CHARS = 140
TEMPLATE_CHARS = 120
MAX_FRAMES = 12
BUCKETS = 30
SPIKE_RATIO = 3.0


@dataclass(slots=True)
class _Template:
    service: str
    level: str
    baseline: int = 0
    incident: int = 0
    first_ts: float | None = None
    sample: str = ""
    buckets: list[int] = field(default_factory=lambda: [0] * BUCKETS)
    bucket_first: list[float | None] = field(default_factory=lambda: [None] * BUCKETS)


@dataclass(slots=True)
class _Service:
    baseline_lines: int = 0
    incident_lines: int = 0
    baseline_errors: int = 0
    incident_errors: int = 0
    buckets: list[int] = field(default_factory=lambda: [0] * BUCKETS)
    bucket_first: list[float | None] = field(default_factory=lambda: [None] * BUCKETS)


def summarize_logs(records: Iterable[LogRecord], window: Window, *, max_templates: int = 40) -> LogEvidence:
    """Summarise log entries of the baseline and incident windows in one streaming pass."""
    base_start, start, end = (_ts(window.baseline_start), _ts(window.start), _ts(window.end))
    bucket_len = max((end - start) / BUCKETS, 1e-9)
    miner = TemplateMiner()
    templates: dict[tuple[str, str], _Template] = {}
    services: dict[str, _Service] = {}
    frames: Counter[tuple[str, str, int | None, str | None]] = Counter()
    lines = size = 0
    for record in records:
        lines += 1
        size += len(record.line)
        if not base_start <= record.ts <= end:
            continue
        parsed = parse_line(record.line)
        template_id, _ = miner.add(parsed.message)
        incident = record.ts >= start
        acc = templates.get((record.service, template_id))
        if acc is None:
            acc = templates[(record.service, template_id)] = _Template(record.service, parsed.level)
        elif LEVEL_RANK[parsed.level] > LEVEL_RANK[acc.level]:
            acc.level = parsed.level
        svc = services.setdefault(record.service, _Service())
        is_error = parsed.level == "error"
        if acc.first_ts is None:
            acc.first_ts = record.ts
        if not incident:
            acc.baseline += 1
            svc.baseline_lines += 1
            svc.baseline_errors += is_error
            if not acc.sample:
                acc.sample = _sample(parsed.message, parsed.fields)
            continue
        if acc.incident == 0:
            acc.sample = _sample(parsed.message, parsed.fields)
        acc.incident += 1
        svc.incident_lines += 1
        bucket = min(int((record.ts - start) / bucket_len), BUCKETS - 1)
        _bump(acc.buckets, acc.bucket_first, bucket, record.ts)
        if is_error:
            svc.incident_errors += 1
            _bump(svc.buckets, svc.bucket_first, bucket, record.ts)
            for frame in parsed.frames:
                frames[(record.service, frame.file, frame.line, frame.function)] += 1

    base_min = max((start - base_start) / 60, 1e-9)
    inc_min = max((end - start) / 60, 1e-9)
    texts = miner.templates()
    summarised = [
        _summarise(template_id, acc, texts.get(template_id, ""), base_min, inc_min)
        for (_, template_id), acc in templates.items()
    ]
    notable = sorted((t for t in summarised if t.kind != "steady"), key=_priority)
    return LogEvidence(
        services={name: _service_stats(svc, base_min, inc_min) for name, svc in sorted(services.items())},
        templates=notable[:max_templates],
        stack_frames=[
            StackFrame(service=svc, file=file, line=line, function=func, count=count)
            for (svc, file, line, func), count in frames.most_common(MAX_FRAMES)
        ],
        lines_read=lines,
        bytes_read=size,
    )


def _ts(value: datetime) -> float:
    return value.timestamp()


def _dt(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(int(ts), UTC)


def _bump(buckets: list[int], first: list[float | None], index: int, ts: float) -> None:
    buckets[index] += 1
    if first[index] is None:
        first[index] = ts


def _sample(message: str, fields: dict[str, str]) -> str:
    """The parsed message (exception included) and its fields, without the timestamp prefix, redacted."""
    text = redact(" ".join([message, *(f"{k}={v}" for k, v in fields.items() if "\n" not in v)]))
    return text if len(text) <= SAMPLE_CHARS else text[: SAMPLE_CHARS - 3] + "..."


def _excess(count: float, expected: float) -> bool:
    """Count clearly above a Poisson expectation (3 sigma and at least a couple of events)."""
    return count > expected + 3 * math.sqrt(expected) + 2


def _onset(buckets: list[int], first: list[float | None], expected_per_bucket: float) -> float | None:
    """Start of the first sustained rise: a hot bucket, 2 of 3 hot from it, and at least half the rest hot."""
    hot = [count > expected_per_bucket + 3 * math.sqrt(expected_per_bucket) + 0.5 for count in buckets]
    for i, is_hot in enumerate(hot):
        rest = hot[i:]
        if is_hot and sum(rest[:3]) >= min(2, len(rest)) and sum(rest) >= len(rest) / 2:
            return first[i]
    return None


def _summarise(template_id: str, acc: _Template, text: str, base_min: float, inc_min: float) -> LogTemplate:
    expected = acc.baseline * inc_min / base_min
    first_seen = acc.first_ts
    if acc.baseline == 0 and acc.incident > 0:
        kind = "new"
    elif acc.incident > SPIKE_RATIO * expected and _excess(acc.incident, expected):
        kind = "spiking"
        first_incident = next(ts for ts in acc.bucket_first if ts is not None)
        first_seen = _onset(acc.buckets, acc.bucket_first, expected / BUCKETS) or first_incident
    elif expected >= 5 and acc.incident < expected / SPIKE_RATIO and _excess(expected, acc.incident):
        kind = "dropped"
    else:
        kind = "steady"
    if len(text) > TEMPLATE_CHARS:
        text = text[: TEMPLATE_CHARS - 3] + "..."
    return LogTemplate(
        template_id=template_id,
        service=acc.service,
        template=text,
        level=acc.level,
        baseline_count=acc.baseline,
        incident_count=acc.incident,
        kind=kind,
        first_seen=_dt(first_seen),
        sample=acc.sample,
    )


def _priority(t: LogTemplate) -> tuple:
    rising = t.kind in ("new", "spiking")
    group = 0 if rising and LEVEL_RANK[t.level] >= 2 else (1 if t.kind == "dropped" else 2)
    return (group, -LEVEL_RANK[t.level], -t.incident_count, t.service, t.template_id)


def _service_stats(svc: _Service, base_min: float, inc_min: float) -> ServiceLogStats:
    expected = svc.baseline_errors / base_min * inc_min / BUCKETS
    onset = None
    if _excess(svc.incident_errors, expected * BUCKETS):
        onset = _onset(svc.buckets, svc.bucket_first, expected)
    return ServiceLogStats(
        baseline_lines=svc.baseline_lines,
        incident_lines=svc.incident_lines,
        baseline_errors_per_min=round(svc.baseline_errors / base_min, 3),
        incident_errors_per_min=round(svc.incident_errors / inc_min, 3),
        error_onset=_dt(onset),
    )
