"""The simulated fleet played live: a generated scenario mapped onto the wall clock, read as each service's
metric samples at any moment and as the log entries written up to now.

Simulated time runs `speed` times faster than the wall clock from the fleet's start, when both agree. Counters
grow per wall second by the generated per-second rate, so a Prometheus `rate()` reads the generated values at
any speed; log entries carry the wall time of their simulated time.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from analysis.records import LogRecord, Span
from sim.generate import STEP, SimData, _iso, generate
from sim.scenarios import Scenario, build_scenario
from sim.tempo import SpanStore, TraceMatcher, TraceSummary
from sim.topology import INTERNAL, callees_of

HISTORY = 45 * 60.0  # simulated seconds of logs before the start: an alert raised at once has its baseline
HORIZON = 3600.0  # simulated seconds the scenario plays after its onset; then the fleet holds its last state
LE_BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_Z99 = 2.3263478740408408  # standard normal 99th percentile
_SIGMA = math.log(4.0) / _Z99  # lognormal latency with median p99 / 4, as the generator's spans
LOKI_LABEL = "service_name"  # the stream label naming a log entry's service, as Loki's OTLP and Alloy set it

# Metric families as OpenMetrics names them (counters without _total): type, help.
FAMILIES: dict[str, tuple[str, str]] = {
    "http_requests": ("counter", "HTTP requests served, by status code."),
    "http_request_duration_seconds": ("histogram", "Duration of served HTTP requests."),
    "http_client_requests": ("counter", "Calls to dependencies by peer and code (status, timeout, connection_error)."),
    "process_cpu_seconds": ("counter", "CPU time used, seconds."),
    "process_resident_memory_bytes": ("gauge", "Resident memory, bytes."),
    "db_pool_connections_in_use": ("gauge", "Server connections of the pool in use."),
    "db_pool_connections_max": ("gauge", "Size of the server connection pool."),
    "disk_free_bytes": ("gauge", "Free bytes on the data volume."),
    "tls_cert_expiry_timestamp_seconds": ("gauge", "Expiry of the serving TLS certificate, unix seconds."),
    "app_build": ("info", "Running build; a version change is a deploy."),
    "up": ("gauge", "1 when the target answered its scrape (Prometheus' own; written only by the export)."),
}
CUMULATIVE = frozenset(f for f, (kind, _) in FAMILIES.items() if kind in ("counter", "histogram"))
GAUGES = {
    "memory_bytes": "process_resident_memory_bytes",
    "db_pool_in_use": "db_pool_connections_in_use",
    "db_pool_max": "db_pool_connections_max",
    "disk_free_bytes": "disk_free_bytes",
    "cert_expiry_timestamp": "tls_cert_expiry_timestamp_seconds",
}
WALL_CLOCK_GAUGES = frozenset({"tls_cert_expiry_timestamp_seconds"})  # values that are unix timestamps
# How a call to the root fails, by fault; every other failed call is answered 503.
ROOT_CALL_FAILURE = {
    "memory_leak": "timeout",
    "deployment_regression": "500",
    "db_connection_exhaustion": "timeout",
    "network_partition": "timeout",
    "cpu_saturation": "timeout",
    "config_error": "500",
    "disk_full": "500",
    "certificate_expired": "connection_error",
    "traffic_surge": "503",
}
_ROOT_ANSWERS_500 = frozenset({"deployment_regression", "config_error", "disk_full"})

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Sample:
    """One metric sample: its family (OpenMetrics name), sample name, labels in order, value."""

    family: str
    name: str
    labels: Labels
    value: float


def latency_distribution(p99: float) -> tuple[list[float], float]:
    """CDF at LE_BOUNDS and mean of a per-step latency distribution whose 99th percentile is `p99`.

    A lognormal (median p99/4) at the bucket bounds, linear inside each bucket, with the bounds around p99 moved
    so that the 99 % point falls exactly at p99: Prometheus' histogram_quantile(0.99) then reads p99 back
    (below the first bound, 5 ms, it can only read inside that bucket).
    """
    p99 = max(p99, 1e-6)
    mu = math.log(p99 / 4.0)
    cdf = [0.5 * math.erfc(-(math.log(b) - mu) / (_SIGMA * math.sqrt(2.0))) for b in LE_BOUNDS]
    k = bisect.bisect_left(LE_BOUNDS, p99)
    if k < len(LE_BOUNDS):
        lo, below = (LE_BOUNDS[k - 1], cdf[k - 1]) if k else (0.0, 0.0)
        hi = LE_BOUNDS[k]
        at_hi = below + (0.99 - below) * (hi - lo) / (p99 - lo)
        if at_hi > 1.0:
            at_hi = 1.0
            if k:
                cdf[k - 1] = 0.99 - 0.01 * (p99 - lo) / (hi - p99)
        cdf[k] = at_hi
        for j in range(k + 1, len(cdf)):
            cdf[j] = max(cdf[j], at_hi)
    masses = [c - c0 for c, c0 in zip(cdf, (0.0, *cdf[:-1]), strict=True)]
    mean = sum(m * (lo + hi) / 2 for m, lo, hi in zip(masses, (0.0, *LE_BOUNDS[:-1]), LE_BOUNDS, strict=True))
    return cdf, mean + (1.0 - cdf[-1]) * LE_BOUNDS[-1] * 1.5  # the slowest requests count as 15 s


class Timeline:
    """A SimData on its 15 s grid: gauges per step, counters as running integrals of their per-second rates."""

    def __init__(self, data: SimData) -> None:
        sc = data.scenario
        self.data = data
        self.start = sc.start.timestamp()
        grid = [t for t, _ in next(m for m in data.metrics if m.signal == "up").points]
        # a series may skip steps (a ratio in a scrape without requests, whose rate is then 0): 0 there
        values = {
            (m.signal, m.service, m.peer): [v for _, v in m.points] if len(m.points) == len(grid)
            else [dict(m.points).get(t, 0.0) for t in grid]
            for m in data.metrics
        }
        self.n = len(grid)
        self.values = values
        self.versions = {
            s: [(d.at.timestamp(), d.version) for d in data.deploys if d.service == s and d.kind == "code"]
            for s in INTERNAL
        }
        self.rates: dict[str, list[tuple[str, str, Labels, list[float]]]] = {s: [] for s in INTERNAL}
        for s in INTERNAL:
            self._add_counters(sc, s)
        self.prefix = {
            (name, labels): [0.0, *itertools.accumulate(r * STEP for r in rates)]
            for s in INTERNAL
            for _, name, labels, rates in self.rates[s]
        }

    def _add_counters(self, sc: Scenario, s: str) -> None:
        served = (("service", s),)

        def add(family: str, suffix: str, labels: Labels, rates: list[float]) -> None:
            self.rates[s].append((family, family + suffix, labels, rates))

        rate, err = self.values[("request_rate", s, None)], self.values[("error_ratio", s, None)]
        error_code = "500" if s == sc.root_service and sc.name in _ROOT_ANSWERS_500 else "503"
        add("http_requests", "_total", (*served, ("code", "200")), _times(rate, [1 - e for e in err]))
        add("http_requests", "_total", (*served, ("code", error_code)), _times(rate, err))
        shapes = [latency_distribution(p) for p in self.values[("latency_p99", s, None)]]
        latency = "http_request_duration_seconds"
        for k, bound in enumerate(LE_BOUNDS):
            add(latency, "_bucket", (*served, ("le", f"{bound:g}")), _times(rate, [c[k] for c, _ in shapes]))
        add(latency, "_bucket", (*served, ("le", "+Inf")), rate)
        add(latency, "_count", served, rate)
        add(latency, "_sum", served, _times(rate, [mean for _, mean in shapes]))
        for peer in callees_of(s):
            calls = self.values[("client_request_rate", s, peer)]
            failed = self.values[("client_error_ratio", s, peer)]
            code = ROOT_CALL_FAILURE.get(sc.name, "503") if peer == sc.root_service else "503"
            edge = (*served, ("peer", peer))
            add("http_client_requests", "_total", (*edge, ("code", "200")), _times(calls, [1 - f for f in failed]))
            add("http_client_requests", "_total", (*edge, ("code", code)), _times(calls, failed))
        add("process_cpu_seconds", "_total", served, self.values[("cpu_usage", s, None)])

    def locate(self, at: float) -> tuple[int, float]:
        """Step index of a simulated time (held at the last step after the data) and the seconds into it."""
        i = max(0, min(self.n - 1, math.floor((at - self.start) / STEP)))
        return i, max(0.0, at - (self.start + i * STEP))

    def up(self, service: str, at: float) -> bool:
        """Whether the service answers scrapes at this simulated time."""
        return self.values[("up", service, None)][self.locate(at)[0]] > 0

    def version(self, service: str, at: float) -> str:
        """The code version running at this simulated time."""
        version = self.data.versions[service]
        for deployed_at, new in self.versions[service]:
            if deployed_at <= at:
                version = new
        return version

    def samples(self, service: str, at: float) -> list[Sample]:
        """The service's samples at a simulated time; counters as integrals since the data start (per
        simulated second)."""
        i, into = self.locate(at)
        out = [
            Sample(family, name, labels, self.prefix[(name, labels)][i] + rates[i] * into)
            for family, name, labels, rates in self.rates[service]
        ]
        for signal, family in GAUGES.items():
            values = self.values.get((signal, service, None))
            if values is not None:
                out.append(Sample(family, family, (("service", service),), values[i]))
        build = (("service", service), ("version", self.version(service, at)))
        out.append(Sample("app_build", "app_build_info", build, 1.0))
        return out


def _times(a: list[float], b: list[float]) -> list[float]:
    return [x * y for x, y in zip(a, b, strict=True)]


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


class StreamLabels:
    """The Loki stream of each log entry: its service's label plus the entry's own stream labels (such as
    `detected_level`), one shared mapping per distinct label set, as Loki groups entries into streams."""

    def __init__(self) -> None:
        self._streams: dict[tuple[tuple[str, str], ...], Mapping[str, str]] = {}

    def of(self, record: LogRecord) -> Mapping[str, str]:
        """The stream labels of `record`."""
        labels = {LOKI_LABEL: record.service, **(record.labels or {})}
        key = tuple(sorted(labels.items()))
        return self._streams.setdefault(key, labels)


def stream_entries(
    ns: list[int], stream: list[Mapping[str, str]], line: list[str], first: int, last: int,
    selects: Callable[[Mapping[str, str]], bool], keep: Callable[[str], bool], limit: int, forward: bool,
) -> list[tuple[int, Mapping[str, str], str]]:
    """Up to `limit` (ns, stream labels, line) of entries [first, last) of time-ordered columns whose stream
    `selects` accepts and whose line `keep` accepts: the oldest first when `forward`, else the newest first."""
    chosen: dict[int, bool] = {}  # by the stream mapping's id: each stream's labels are tested once
    out: list[tuple[int, Mapping[str, str], str]] = []
    for j in range(first, last) if forward else range(last - 1, first - 1, -1):
        labels = stream[j]
        selected = chosen.get(id(labels))
        if selected is None:
            selected = chosen[id(labels)] = selects(labels)
        if selected and keep(line[j]):
            out.append((ns[j], labels, line[j]))
            if len(out) >= limit:
                break
    return out


@dataclass(frozen=True)
class _Segment:
    """A timeline serving from simulated time `since` on, its counters continuing the previous segment's."""

    since: float
    timeline: Timeline
    base: dict[tuple[str, Labels], float]  # the timeline's counter integrals at `since`
    offsets: dict[tuple[str, Labels], float]  # the fleet's counter values at `since`
    log_ns: list[int]
    log_stream: list[Mapping[str, str]]  # each entry's stream labels (StreamLabels: one mapping per stream)
    log_line: list[str]
    spans: SpanStore  # the plan's traces at their wall time


class Fleet:
    """A scenario played live from now at `speed` simulated seconds per wall second: baseline, then the fault
    `inject_after` wall seconds after the start (None: only on inject()), played for `horizon` simulated
    seconds. `clock` gives the wall time (tests drive it)."""

    def __init__(
        self,
        name: str,
        seed: int = 1,
        *,
        inject_after: float | None = 60.0,
        speed: float = 1.0,
        horizon: float = HORIZON,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.name, self.seed, self.speed, self.horizon = name, seed, speed, horizon
        self.clock = clock
        self.started = clock()
        self.scenario = build_scenario(name, seed, _utc(self.started))  # root and alert do not depend on the time
        self.onset: float | None = None  # simulated time the fault starts
        self._lock = threading.Lock()
        self._inject_lock = threading.Lock()
        self._segments: list[_Segment] = []
        if inject_after is None:
            data = self._baseline()
        else:
            self.onset = self.started + inject_after * speed
            data = self._incident(self.onset, self.started - HISTORY)
        timeline = Timeline(data)
        self._segments = [self._segment(timeline, self._logs(data), self._spans(data), timeline.start)]

    # --- time ------------------------------------------------------------------------------------------------

    def sim_time(self, wall: float) -> float:
        """Simulated time of a wall time."""
        return self.started + (wall - self.started) * self.speed

    def wall_time(self, sim: float) -> float:
        """Wall time of a simulated time."""
        return self.started + (sim - self.started) / self.speed

    def _now(self) -> tuple[list[_Segment], float]:
        with self._lock:
            return self._segments, self.sim_time(self.clock())

    # --- plans -----------------------------------------------------------------------------------------------

    def _baseline(self) -> SimData:
        """The scenario's fleet without its fault or story, from the history start over the horizon."""
        sc = dataclasses.replace(
            self.scenario,
            start=_utc(self.started - HISTORY),
            end=_utc(self.started + self.horizon),
            innocent_deploy_at=None,
            innocent_deploy_service=None,
            noisy_service=None,
            noisy_start=None,
        )
        return generate(sc, fault=False)

    def _incident(self, onset: float, history_from: float) -> SimData:
        """The scenario with its onset at `onset`, its data from `history_from` (or its own start when
        later) to `horizon` after the onset."""
        probe = build_scenario(self.name, self.seed, _utc(onset))
        lead = probe.end - probe.onset
        sc = build_scenario(self.name, self.seed, _utc(onset) + lead)
        before = max(sc.onset - sc.start, timedelta(seconds=onset - history_from))
        steps_before = math.ceil(before.total_seconds() / STEP)
        steps_after = max(math.ceil(self.horizon / STEP), round(lead.total_seconds() / STEP))
        sc = dataclasses.replace(
            sc,
            start=sc.onset - timedelta(seconds=steps_before * STEP),
            end=sc.onset + timedelta(seconds=steps_after * STEP),
        )
        self.scenario = sc
        return generate(sc)

    def _logs(self, data: SimData) -> tuple[list[int], list[Mapping[str, str]], list[str]]:
        """The data's log entries at their wall time (ns), stream labels and lines (re-stamped when sped up)."""
        restamp, streams = self.speed != 1.0, StreamLabels()
        log_ns, log_stream, log_line = [], [], []
        for record in data.logs:
            wall = self.wall_time(record.ts)
            log_ns.append(round(wall * 1e9))
            log_stream.append(streams.of(record))
            log_line.append(record.line.replace(_iso(record.ts), _iso(wall), 1) if restamp else record.line)
        return log_ns, log_stream, log_line

    def _spans(self, data: SimData) -> SpanStore:
        """The data's traces with their spans at wall time (durations stay as generated)."""
        if self.speed == 1.0:
            return SpanStore(data.spans)
        return SpanStore(dataclasses.replace(span, start=self.wall_time(span.start)) for span in data.spans)

    def _segment(
        self, timeline: Timeline, logs: tuple[list[int], list[str], list[str]], spans: SpanStore, since: float
    ) -> _Segment:
        """Serve a timeline from `since`, its counters continuing the current segments' values there."""
        base, offsets = {}, {}
        for service in INTERNAL:
            previous = {(x.name, x.labels): x.value for x in self._cumulative_samples(service, since)}
            for sample in timeline.samples(service, since):
                if sample.family in CUMULATIVE:
                    key = (sample.name, sample.labels)
                    base[key], offsets[key] = sample.value, previous.get(key, 0.0)
        return _Segment(since, timeline, base, offsets, *logs, spans)

    def inject(self) -> bool:
        """Start the fault now (a new plan with its onset now); False when it has already started."""
        with self._inject_lock:
            _, now = self._now()
            if self.onset is not None and self.onset <= now:
                return False
            data = self._incident(now, now)
            timeline, logs, spans = Timeline(data), self._logs(data), self._spans(data)
            with self._lock:
                since = self.sim_time(self.clock())
                self._segments = [*self._segments, self._segment(timeline, logs, spans, since)]
                self.onset = since
            return True

    # --- reading ---------------------------------------------------------------------------------------------

    @property
    def timeline(self) -> Timeline:
        """The latest plan's timeline (the generated values the fleet serves from its onset, or its start)."""
        return self._segments[-1].timeline

    @staticmethod
    def _serving(segments: list[_Segment], at: float) -> _Segment:
        return next(seg for seg in reversed(segments) if seg.since <= at or seg is segments[0])

    def _cumulative_samples(self, service: str, at: float) -> list[Sample]:
        """The fleet's counter samples of a service at a simulated time (none before the first segment)."""
        if not self._segments:
            return []
        seg = self._serving(self._segments, at)
        return [self._continue(seg, x) for x in seg.timeline.samples(service, at) if x.family in CUMULATIVE]

    def _continue(self, seg: _Segment, sample: Sample) -> Sample:
        key = (sample.name, sample.labels)
        value = seg.offsets[key] + (sample.value - seg.base[key]) / self.speed
        return Sample(sample.family, sample.name, sample.labels, value)

    def samples(self, service: str) -> list[Sample] | None:
        """What the service's /metrics shows now; None when it does not answer (up = 0, or no endpoint)."""
        segments, now = self._now()
        if service not in INTERNAL:
            return None
        seg = self._serving(segments, now)
        if not seg.timeline.up(service, now):
            return None
        return [self._shown(seg, x) for x in seg.timeline.samples(service, now)]

    def _shown(self, seg: _Segment, sample: Sample) -> Sample:
        """A sample as the live endpoint shows it: counters carried on, timestamps as wall-clock seconds."""
        if sample.family in CUMULATIVE:
            return self._continue(seg, sample)
        if sample.family in WALL_CLOCK_GAUGES:  # under --speed the expiry must cross at the fault's wall time
            return dataclasses.replace(sample, value=self.wall_time(sample.value))
        return sample

    def log_entries(
        self,
        selects: Callable[[Mapping[str, str]], bool],
        start_ns: int,
        end_ns: int,
        keep: Callable[[str], bool],
        limit: int,
        forward: bool,
    ) -> list[tuple[int, Mapping[str, str], str]]:
        """Up to `limit` (ns, stream labels, line) in [start_ns, end_ns) written by now, of the streams `selects`
        accepts, that `keep` accepts: the oldest first when `forward`, else the newest first."""
        segments, now = self._now()
        end_ns = min(end_ns, round(self.wall_time(now) * 1e9) + 1)
        spans = []
        for k, seg in enumerate(segments):
            lo = round(self.wall_time(seg.since) * 1e9) if k else start_ns
            hi = round(self.wall_time(segments[k + 1].since) * 1e9) if k + 1 < len(segments) else end_ns
            spans.append((seg, max(lo, start_ns), min(hi, end_ns)))
        out: list[tuple[int, Mapping[str, str], str]] = []
        for seg, lo, hi in spans if forward else reversed(spans):
            if lo >= hi:
                continue
            first, last = bisect.bisect_left(seg.log_ns, lo), bisect.bisect_left(seg.log_ns, hi)
            out += stream_entries(seg.log_ns, seg.log_stream, seg.log_line, first, last, selects, keep,
                                  limit - len(out), forward)
            if len(out) >= limit:
                return out
        return out

    def search(
        self, matches: TraceMatcher, start_ns: int, end_ns: int, limit: int, done_by: float | None = None
    ) -> list[TraceSummary]:
        """Tempo's search over the traces finished by now: each plan's traces from its start on, newest first."""
        segments, now = self._now()
        wall_now = self.wall_time(now) if done_by is None else min(done_by, self.wall_time(now))  # written by now
        out: list[TraceSummary] = []
        for k in range(len(segments) - 1, -1, -1):
            lo = round(self.wall_time(segments[k].since) * 1e9) if k else start_ns
            hi = round(self.wall_time(segments[k + 1].since) * 1e9) - 1 if k + 1 < len(segments) else end_ns
            if max(lo, start_ns) <= min(hi, end_ns):
                hits = segments[k].spans.search(matches, max(lo, start_ns), min(hi, end_ns), limit - len(out),
                                                wall_now)
                out.extend(hits)
            if len(out) >= limit:
                break
        return out

    def trace(self, trace_id: str) -> list[Span] | None:
        """A trace of any plan by id (None when unknown)."""
        segments, _ = self._now()
        for seg in reversed(segments):
            spans = seg.spans.trace(trace_id)
            if spans is not None:
                return spans
        return None

    def __len__(self) -> int:
        return sum(len(seg.spans) for seg in self._now()[0])

    def state(self) -> dict:
        """The scenario, its root and alerted service, and when the fault starts or started (wall, ISO)."""
        _, now = self._now()
        sc = self.scenario
        onset = None if self.onset is None else _utc(self.wall_time(self.onset)).isoformat()
        return {
            "scenario": self.name,
            "seed": self.seed,
            "fault_type": sc.fault_type,
            "root_service": sc.root_service,
            "alerted_service": sc.alerted_service,
            "alert_signal": sc.alert_signal,
            "speed": self.speed,
            "started_at": _utc(self.started).isoformat(),
            "now": _utc(self.wall_time(now)).isoformat(),
            "inject_at": onset,
            "injected_at": onset if self.onset is not None and self.onset <= now else None,
        }
