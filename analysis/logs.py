"""Streamed log summary: templates per service with baseline vs incident counts, cue hits, and the application
frames of the incident window's stack traces."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NamedTuple

from analysis.log_cues import cue_hits
from analysis.logparse import ParsedLog, cue_text, level_of_labels, parse_json_entry, parse_line, unwrap
from analysis.records import LogRecord
from analysis.secrets import redact
from analysis.stacktraces import application_frames
from analysis.templates import LRU, TemplateMiner, masks_alike, shape_key
from state import LogEvidence, LogTemplate, ServiceLogStats, StackFrame, Window

LEVEL_RANK = {"error": 3, "warn": 2, "info": 1, "debug": 0}
SAMPLE_CHARS = 140
TEMPLATE_CHARS = 120
FRAMES_PER_TRACE = 3  # application frames kept of each trace, innermost first
FRAMES_PER_SERVICE = 3  # most common application frames reported per service
MAX_FRAMES = 24
BUCKETS = 30
SPIKE_RATIO = 3.0
PRUNE_AT = 20_000  # (service, template) counters kept before dropping those of templates the miner forgot
# the next digits outside strings (possessive: no backtracking); an unterminated string runs to the end
_OUTSIDE_DIGITS = re.compile(rb'(?:[^"0-9]++|"[^"]*+")*+([0-9]+)')
_NOT_INTEGER = (b".", b"e", b"E", b"x", b"X")  # after a digit outside strings: a float, or no JSON (0x1f)
_LETTER_WORD = re.compile(rb"(?<![0-9A-Za-z])[A-Za-z][0-9A-Za-z]*")
_ZERO = ord("0")
_PRI = re.compile(r"<\d{1,3}>")
_SEP = b"\xfe"  # never in UTF-8, nor in a shape key


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
    cues: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class _Service:
    baseline_lines: int = 0
    incident_lines: int = 0
    baseline_errors: int = 0
    incident_errors: int = 0
    buckets: list[int] = field(default_factory=lambda: [0] * BUCKETS)
    bucket_first: list[float | None] = field(default_factory=lambda: [None] * BUCKETS)


class LogSummarizer:
    """Summarises the log entries of a window as they stream in: memory grows with templates, not lines.

    Feed entries with `add` / `add_many` (any order of calls, entries in time order as sources give them), then
    `finish` for the evidence. The result is the same however the entries are split into calls.
    """

    def __init__(self, window: Window, *, max_templates: int = 40) -> None:
        self._base_start, self._start, self._end = (_ts(window.baseline_start), _ts(window.start), _ts(window.end))
        self._bucket_len = max((self._end - self._start) / BUCKETS, 1e-9)
        self._max_templates = max_templates
        self._miner = TemplateMiner()
        # What entries parse and mask to, by shape key (see _line_shape and _learn).
        self._shapes = LRU()
        self._templates: dict[tuple[str, str], _Template] = {}
        self._prune_at = PRUNE_AT
        self._services: dict[str, _Service] = {}
        # application frames of incident-window error traces, per (service, template)
        self._frames: dict[tuple[str, str], Counter[tuple[str, int | None, str | None]]] = {}
        self._lines = self._size = 0

    def add_many(self, records: Iterable[LogRecord]) -> None:
        """Add entries in time order."""
        for record in records:
            self.add(record)

    def add(self, record: LogRecord) -> None:
        """Add one entry; entries outside the baseline and incident windows only count as read."""
        line = record.line
        self._lines += 1
        self._size += len(line)
        ts = record.ts
        if not self._base_start <= ts <= self._end:
            return
        label_level = level_of_labels(record.labels) if record.labels else None
        level, template_id, parsed, cues = self._mine(line, label_level)
        service = record.service
        acc = self._templates.get((service, template_id))
        if acc is None:
            acc = self._templates[(service, template_id)] = _Template(service, level)
            if len(self._templates) > self._prune_at:
                self._prune()
        elif LEVEL_RANK[level] > LEVEL_RANK[acc.level]:
            acc.level = level
        svc = self._services.get(service)
        if svc is None:
            svc = self._services[service] = _Service()
        is_error = level == "error"
        if acc.first_ts is None:
            acc.first_ts = ts
        if ts < self._start:
            acc.baseline += 1
            svc.baseline_lines += 1
            svc.baseline_errors += is_error
            if not acc.sample:
                acc.sample = _sample(parsed or parse_line(line, label_level))
            return
        if acc.incident == 0:
            acc.sample = _sample(parsed or parse_line(line, label_level))
        acc.incident += 1
        for cue in cues:
            acc.cues[cue] = acc.cues.get(cue, 0) + 1
        svc.incident_lines += 1
        bucket = min(int((ts - self._start) / self._bucket_len), BUCKETS - 1)
        _bump(acc.buckets, acc.bucket_first, bucket, ts)
        if is_error:
            svc.incident_errors += 1
            _bump(svc.buckets, svc.bucket_first, bucket, ts)
            if parsed is not None and parsed.frames:
                frames = self._frames.setdefault((service, template_id), Counter())
                for frame in application_frames(parsed.frames, FRAMES_PER_TRACE):
                    frames[(frame.file, frame.line, frame.function)] += 1

    def finish(self) -> LogEvidence:
        """The evidence of the entries added so far."""
        base_min = max((self._start - self._base_start) / 60, 1e-9)
        inc_min = max((self._end - self._start) / 60, 1e-9)
        texts = self._miner.templates()
        summarised = [
            _summarise(template_id, acc, texts.get(template_id, ""), base_min, inc_min)
            for (_, template_id), acc in self._templates.items()
        ]
        notable = sorted((t for t in summarised if t.kind != "steady"), key=_priority)
        return LogEvidence(
            services={name: _service_stats(svc, base_min, inc_min) for name, svc in sorted(self._services.items())},
            templates=notable[: self._max_templates],
            stack_frames=_top_frames(self._frames, {(t.service, t.template_id) for t in summarised if _rising(t)}),
            lines_read=self._lines,
            bytes_read=self._size,
        )

    def _mine(
        self, line: str, label_level: str | None = None
    ) -> tuple[str, str, ParsedLog | None, tuple[str, ...]]:
        """Level, template id and cue hits of an entry, and its parse unless a known shape made parsing unneeded.

        `label_level` is the level its stream labels give (used when the entry names none of its own).
        """
        line = unwrap(line)
        key: bytes | tuple[bytes, bytes] | None = _line_shape(line, label_level)
        if key is not None:
            known = self._shapes.get(key)
            if known is not None and known.kept:
                key = (key, _digits_at(line, known.kept))
                known = self._shapes.get(key)
            if known is not None and known.level is not None:
                return known.level, self._miner.add_masked(known.masked)[0], None, known.cues
        level, masked, parsed, cues = self._parse(line, label_level)
        if key is not None:
            self._learn(key, line, label_level, level, masked, cues)
        return level, self._miner.add_masked(masked)[0], parsed, cues

    def _parse(self, line: str, label_level: str | None) -> tuple[str, str, ParsedLog | None, tuple[str, ...]]:
        """Level, masked message and cue hits of an entry, and its parse when it took a full one."""
        entry = parse_json_entry(line, label_level) if line[:1] == "{" else None
        if entry is not None:
            return entry[0], self._miner.mask(entry[1]), None, cue_hits(entry[2])
        parsed = parse_line(line, label_level)
        return parsed.level, self._miner.mask(parsed.message), parsed, cue_hits(cue_text(parsed))

    def _learn(
        self,
        key: bytes | tuple[bytes, bytes],
        line: str,
        label_level: str | None,
        level: str,
        masked: str,
        cues: tuple[str, ...],
    ) -> None:
        """Remember the level, masked message and cue hits of an entry for its whole shape, when they hold for it.

        Cue hits always do (no cue tells one digit from another). The rest does when masking kept no digit. When
        it kept some, it does for the entries with the same digits at the kept places, if all other digits are
        masked: checked once per shape by parsing the entry again with every other digit changed.
        """
        if isinstance(key, tuple) or masks_alike(masked):
            self._shapes.put(key, _Known(level, masked, cues))
            return
        if self._shapes.get(key) is not None:
            return
        # the key may start with the labels' level or a <PRI>: the places below are those of the entry's own bytes
        shape = key[len(key) - len(line.encode("utf-8", "surrogatepass")):]
        kept = _glued_digits(shape)
        if kept and self._parse(_other_digits(line, shape, kept), label_level)[:2] == (level, masked):
            self._shapes.put(key, _Known(None, None, (), kept))
            self._shapes.put((key, _digits_at(line, kept)), _Known(level, masked, cues))
        else:
            self._shapes.put(key, _Known(None, None))

    def _prune(self) -> None:
        """Forget templates the miner has dropped (past its own bound), so memory stays bounded by templates."""
        live = self._miner.templates()
        self._templates = {key: acc for key, acc in self._templates.items() if key[1] in live}
        self._frames = {key: frames for key, frames in self._frames.items() if key[1] in live}
        self._prune_at = max(PRUNE_AT, 2 * len(self._templates))


def summarize_logs(records: Iterable[LogRecord], window: Window, *, max_templates: int = 40) -> LogEvidence:
    """Summarise log entries of the baseline and incident windows in one streaming pass."""
    summarizer = LogSummarizer(window, max_templates=max_templates)
    summarizer.add_many(records)
    return summarizer.finish()


def _line_shape(line: str, label_level: str | None = None) -> bytes | None:
    """The shape key of an entry that parses alike for every entry of its shape (same level, message of the
    same shape), or None.

    Not keyed: multi-line entries (a trace's line numbers matter), escapes (a newline or a digit can hide in
    one), and a leading blank. The key holds what else decides the level: the labels' level, the digits of a
    syslog <PRI> header, and JSON's numbers (see _json_numbers).
    """
    first = line[:1]
    if "\n" in line or "\\" in line or first.isspace():
        return None
    key = shape_key(line)
    if key is None:
        return None
    if first == "{":
        key = _json_numbers(line, key)
        if key is None:
            return None
    elif first == "<" and (pri := _PRI.match(line)):
        key = pri[0].encode() + _SEP + key
    return label_level.encode() + _SEP + key if label_level else key


def _json_numbers(line: str, key: bytes) -> bytes | None:
    """The shape key with what JSON's numbers (digits outside strings) decide put back; None unless they are
    all integers.

    Without escapes, a JSON parser reads only the text before the 1st quote, between the 2nd and 3rd, ... as
    outside strings. There an integer of up to 3 digits may be a level (syslog 0-7, pino 10-60, Monolog 100-600),
    so it stays as it is; a longer one never is (every level scale ends below 1000), and only its first digit
    matters to JSON's syntax (a leading 0 is invalid). An integer reads back as the same digits in messages and
    fields; a float may not (1.50 is 1.5), nor convert to a level alike (699.99999999999999999 is 700).
    """
    raw = line.encode("utf-8", "surrogatepass")
    out: bytearray | None = None
    at = 0
    while number := _OUTSIDE_DIGITS.match(raw, at):
        start, at = number.span(1)
        if raw[at : at + 1] in _NOT_INTEGER:
            return None
        out = out if out is not None else bytearray(key)
        kept = at if at - start <= 3 else start + 1  # a level's digits, or a longer integer's first one
        out[start:kept] = raw[start:kept]
    return key if out is None else bytes(out)


class _Known(NamedTuple):
    """What entries of one shape parse and mask to, and their cue hits; level None: masking keeps the digits at
    `kept`, or (none kept) entries of this shape are not cached."""

    level: str | None
    masked: str | None
    cues: tuple[str, ...] = ()
    kept: tuple[int, ...] = ()


def _glued_digits(key: bytes) -> tuple[int, ...]:
    """Places of the digits in words that start with a letter ("v1", "utf8"): the digits masks tend to keep."""
    places: list[int] = []
    for word in _LETTER_WORD.finditer(key):
        places += [i for i in range(word.start(), word.end()) if key[i] == _ZERO]
    return tuple(places)


def _digits_at(line: str, places: tuple[int, ...]) -> bytes:
    raw = line.encode("utf-8", "surrogatepass")
    return bytes(raw[i] for i in places)


def _other_digits(line: str, key: bytes, kept: tuple[int, ...]) -> str:
    """The entry with every digit of its shape changed (0 to 1, others to 0) except those at `kept`."""
    raw = bytearray(line.encode("utf-8", "surrogatepass"))
    keep = set(kept)
    for i, byte in enumerate(key):
        if byte == _ZERO and i not in keep:
            raw[i] = _ZERO + (raw[i] == _ZERO)
    return raw.decode("utf-8", "surrogatepass")


def _ts(value: datetime) -> float:
    return value.timestamp()


def _dt(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(int(ts), UTC)


def _bump(buckets: list[int], first: list[float | None], index: int, ts: float) -> None:
    buckets[index] += 1
    if first[index] is None:
        first[index] = ts


def _sample(parsed: ParsedLog) -> str:
    """The parsed message (exception included) and its fields, without the timestamp prefix, redacted."""
    fields = (f"{k}={v}" for k, v in parsed.fields.items() if "\n" not in v)
    text = redact(" ".join([parsed.message, *fields]))
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
        cues=dict(acc.cues),
    )


def _priority(t: LogTemplate) -> tuple:
    group = 0 if _rising(t) and LEVEL_RANK[t.level] >= 2 else (1 if t.kind == "dropped" else 2)
    return (group, -LEVEL_RANK[t.level], -t.incident_count, t.service, t.template_id)


def _rising(t: LogTemplate) -> bool:
    return t.kind in ("new", "spiking")


def _top_frames(
    frames: dict[tuple[str, str], Counter[tuple[str, int | None, str | None]]], rising: set[tuple[str, str]]
) -> list[StackFrame]:
    """The most common application frames of each service's new or spiking errors (a trace logged as often
    before the incident says nothing about it), most common first overall."""
    counts: Counter[tuple[str, str, int | None, str | None]] = Counter()
    for (service, template_id), by_frame in frames.items():
        if (service, template_id) in rising:
            for (file, line, function), count in by_frame.items():
                counts[(service, file, line, function)] += count
    per_service: dict[str, int] = {}
    out = []
    for (service, file, line, function), count in counts.most_common():
        if per_service.get(service, 0) < FRAMES_PER_SERVICE:
            per_service[service] = per_service.get(service, 0) + 1
            out.append(StackFrame(service=service, file=file, line=line, function=function, count=count))
    return out[:MAX_FRAMES]


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
