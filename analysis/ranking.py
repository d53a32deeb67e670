"""Rank candidate root causes: fault signatures per service, weighed by topology, onsets and traces."""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from analysis.deploys import MIN_ERROR_LINES, changes_near, new_error_starts
from analysis.signatures import SIGNATURES
from state import DeployEvent, Evidence, Hypothesis, LogTemplate, MetricSignal

ANOMALY = 4.0
MAX_HYPOTHESES = 5
DEPLOY_BEFORE = timedelta(minutes=3)  # a deploy this close before (or after) a service's onset is a suspect
DEPLOY_AFTER = timedelta(minutes=2)
EXPLAINED_DISCOUNT = 0.6
# Confidence: a softmax over the candidates' scores at this temperature (a lead of 2 points, a third of a strong fact,
# is worth a factor e in odds), times the support of the evidence count: the signature's facts present and a trace
# origin (each independent fact halves the doubt; where the onset lies is not counted, it ranks but proves little).
TEMPERATURE = 2.0
# A fault can cause the alerted service's symptoms only on its dependency paths: the service itself, what it calls
# directly or transitively, the infrastructure those use (load alone flows the other way, from callers down). Where
# the call graph was observed (edge metrics, traces) and shows a candidate off those paths, that candidate is a
# concurrent, unrelated incident: it stays in the list, its odds lowered by OFF_PATH_ODDS, the chance we give an
# observed graph of missing a real causal path (1 in 100). On the score scale above that is T * ln(odds) points.
OFF_PATH_ODDS = 100.0
# An effect cannot begin before its cause. A candidate whose anomaly under way began more than ONSET_SLACK after every
# anomaly under way at the alerted service is a fault that came later: it stays in the list, its odds lowered by
# LATE_ODDS, the chance we give two onset estimates of being misordered by more than the slack (1 in 20). The slack
# covers what delays an onset estimate: the minute a deviation must hold (analysis/metrics.py SUSTAIN_SECONDS) and a
# minute of timeouts and rate windows before callers see it. A trend that began before the history read (a leak, a
# filling disk) started long before its anomalies show, so it is never judged by them.
ONSET_SLACK = timedelta(minutes=2)
LATE_ODDS = 20.0
PRIOR_TRENDS = ("memory_trend", "disk_exhaustion")


@dataclass
class Facts:
    """What the evidence says about one service; `notes` are the evidence strings per fact."""

    signals: dict[tuple[str, str | None], MetricSignal] = field(default_factory=dict)
    inbound: list[MetricSignal] = field(default_factory=list)  # callers' failing calls to it that it is blamed for
    outbound: list[MetricSignal] = field(default_factory=list)  # its failing calls that its callee is not blamed for
    load_driven: list[str] = field(default_factory=list)  # saturation that rose with its load (notes)
    slow_inbound: list[MetricSignal] = field(default_factory=list)  # callers' slow calls to it, its server not slow
    slow_outbound: list[MetricSignal] = field(default_factory=list)  # its slow calls that others' calls do not share
    own_cues: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    peer_cues: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    cue_notes: dict[str, str] = field(default_factory=dict)
    new_errors: list[LogTemplate] = field(default_factory=list)
    frames: int = 0
    frame_note: str = ""
    deploys: list[DeployEvent] = field(default_factory=list)
    onset: datetime | None = None
    has_telemetry: bool = False
    trace_share: float = 0.0
    own_trace_share: float = 0.0  # of failing traces, those whose deepest failing span is its own
    slow_share: float = 0.0
    cut_notes: list[str] = field(default_factory=list)  # traces: callers' requests that now end after calling it
    dropped: dict[str, str] = field(default_factory=dict)  # metrics: callees its requests stopped calling -> note
    errors_measured: bool = False  # a metric measures its own error ratio

    def sig(self, signal: str, peer: str | None = None) -> MetricSignal | None:
        return self.signals.get((signal, peer))

    def anomalous(self, signal: str, direction: str = "up") -> MetricSignal | None:
        """The signal when it deviates in `direction` and still does at the window's end."""
        m = self.sig(signal)
        return m if m and m.score >= ANOMALY and m.direction == direction and _active(m) else None


def rank_candidates(evidence: Evidence) -> list[Hypothesis]:
    """Hypotheses (service, fault type, confidence, evidence), best first, at most five.

    Each signature of analysis/signatures.py is scored on the facts established at each service, plus where the
    trouble starts (_location); ties go to the candidate with more facts behind it."""
    graph = _Graph(evidence)
    facts = _collect(evidence, graph)
    on_path = _dependency_paths(evidence.alerted_service, graph)
    measured = evidence.metrics.measured if evidence.metrics else {}
    # (score, (facts the signature used, independent facts), service, fault, evidence lines)
    scored: list[tuple[float, tuple[int, int], str, str, list[str]]] = []
    for service in sorted(facts):
        f = facts[service]
        established = _establish(service, f, facts, graph)
        strengths = {name: strength for name, (strength, _) in established.items()}
        explained = _explained_by(service, facts, graph, measured)
        location, location_notes = _location(service, f, facts, graph, explained)
        late = _began_later(service, f, facts, evidence.alerted_service)
        for signature in SIGNATURES:
            score = signature.score(strengths)
            if score <= 0:
                continue
            used = [name for name in signature.weights if name in established]
            notes = [note for name in used for note in established[name][1]]
            # Load flows downstream: a surge is never explained by a callee.
            discounted = explained and signature.fault != "traffic_surge"
            total = (score + location) * (EXPLAINED_DISCOUNT if discounted else 1.0)
            extra = [f"symptoms of {service} are explained by anomalous dependency {explained}"] if discounted else []
            if off_path := _off_path(service, signature.fault, evidence.alerted_service, on_path, graph):
                total -= TEMPERATURE * math.log(OFF_PATH_ODDS)
                extra.append(off_path)
            elif late and not any(name in used for name in PRIOR_TRENDS):
                total -= TEMPERATURE * math.log(LATE_ODDS)
                extra.append(late)
            traced = f.trace_share >= TRACE_SHARE and "errors_start_here" not in established  # counted once
            support = len(_independent(set(used) | (SYMPTOMS & set(established)))) + traced
            evidence_count = (len(used), support)
            scored.append((round(total, 3), evidence_count, service, signature.fault, notes + location_notes + extra))
    # ties: the candidate with more facts behind it first (its signature's, then all independent ones); names last
    scored.sort(key=lambda x: (-x[0], -x[1][0], -x[1][1], x[2], x[3]))
    picked: list[tuple[float, tuple[int, int], str, str, list[str]]] = []
    per_service: dict[str, int] = defaultdict(int)
    for item in scored:
        if per_service[item[2]] < 2:
            picked.append(item)
            per_service[item[2]] += 1
        if len(picked) == MAX_HYPOTHESES:
            break
    return _hypotheses(picked)


def estimate_onset(evidence: Evidence) -> datetime | None:
    """Onset of the top candidate's anomalies; without candidates, the earliest corroborated anomaly."""
    graph = _Graph(evidence)
    facts = _collect(evidence, graph)
    if evidence.candidates and evidence.candidates[0].service in facts:
        onset = facts[evidence.candidates[0].service].onset
        if onset:
            return onset
    onsets = sorted(f.onset for f in facts.values() if f.onset)
    return onsets[len(onsets) // 4] if onsets else None


# --- building the facts --------------------------------------------------------------------------------


class _Graph:
    def __init__(self, evidence: Evidence) -> None:
        edges = set(map(tuple, evidence.dependencies))
        if evidence.traces:
            edges |= set(map(tuple, evidence.traces.edges))
        self.edges = sorted(edges)
        self.callers: dict[str, set[str]] = defaultdict(set)
        self.callees: dict[str, set[str]] = defaultdict(set)
        for caller, callee in self.edges:
            self.callers[callee].add(caller)
            self.callees[caller].add(callee)
        names = set(evidence.services) | {s for e in self.edges for s in e}
        self.services = sorted(names)
        # the services whose telemetry was read (all of them when the scope is unknown): the others were not looked at
        self.read = set(evidence.services) or names
        self.name_re = {s: re.compile(rf"(?<![\w-]){re.escape(s)}(?![\w-])") for s in self.services}


def _collect(evidence: Evidence, graph: _Graph) -> dict[str, Facts]:
    facts: dict[str, Facts] = defaultdict(Facts)
    for service in graph.services:  # every known service is a candidate, even without telemetry of its own
        facts.setdefault(service, Facts())
    measured = evidence.metrics.measured if evidence.metrics else {}
    if evidence.metrics:
        for m in evidence.metrics.signals:
            f = facts[m.service]
            f.has_telemetry = True
            f.signals[(m.signal, m.peer)] = m
        for m in evidence.metrics.signals:
            if m.signal == "client_error_ratio" and m.peer and _edge_fails(facts[m.service], m.peer):
                if _callee_agrees(m, facts, graph, measured):
                    facts[m.peer].inbound.append(m)
                    facts[m.peer].signals.setdefault(("inbound_error", m.service), m)
                else:
                    facts[m.service].outbound.append(m)
            elif m.signal == "client_latency_p99" and m.peer and _edge_slow(facts[m.service], m.peer):
                _blame_slow_edge(m, facts, graph, measured)
    for service, signals in measured.items():
        facts[service].has_telemetry = True
        facts[service].errors_measured = "error_ratio" in signals
    if evidence.logs:
        for service in evidence.logs.services:
            facts[service].has_telemetry = True
        for t in evidence.logs.templates:
            _add_template(facts, graph, t)
        for frame in evidence.logs.stack_frames:
            f = facts[frame.service]
            f.frames += frame.count
            if not f.frame_note:
                where = f"{frame.file}:{frame.line}" + (f" in {frame.function}" if frame.function else "")
                f.frame_note = f"stack trace in {frame.service} logs points at {where} ({frame.count}x)"
    if evidence.traces and evidence.traces.error_traces:
        total = evidence.traces.error_traces
        for service, count in evidence.traces.error_origins.items():
            facts[service].trace_share = count / total
        for service, count in evidence.traces.own_error_origins.items():
            facts[service].own_trace_share = count / total
    if evidence.traces and evidence.traces.slow_origins:
        total = sum(evidence.traces.slow_origins.values())
        for service, count in evidence.traces.slow_origins.items():
            facts[service].slow_share = count / total
    if evidence.traces:
        for service, notes in evidence.traces.cut_after.items():
            facts[service].cut_notes += notes
    if evidence.metrics:
        for service, dropped in evidence.metrics.dropped_calls.items():
            facts[service].dropped.update(dropped)
    for d in evidence.deploys:
        facts[d.service].deploys.append(d)
    for service, f in facts.items():
        f.onset = _onset(f, evidence.logs.services.get(service) if evidence.logs else None)
    return dict(facts)


def _onset(f: Facts, log_stats) -> datetime | None:
    """Onset of a service: where its strongest sustained, still active anomaly starts (not its earliest wobble);
    without one, where its own error logs start."""
    anomalies = [
        m
        for m in list(f.signals.values()) + f.inbound + f.slow_inbound
        if m.score >= ANOMALY and m.onset and m.signal != "db_pool_max" and _active(m)
    ]
    if anomalies:
        return max(anomalies, key=lambda m: (m.score, -m.onset.timestamp())).onset
    starts = [t.first_seen for t in f.new_errors if t.first_seen]
    if log_stats is not None and log_stats.error_onset:
        starts.append(log_stats.error_onset)
    return min(starts) if starts else None


def _callee_agrees(m: MetricSignal, facts: dict[str, Facts], graph: _Graph, measured: dict[str, list[str]]) -> bool:
    """Does a failing edge caller->callee blame the callee? Yes when the callee's own server side shows trouble
    (errors, slowness, traffic that stopped arriving, a failed scrape) or another caller's calls to it fail too, or
    nothing measured says it is fine; no when its server side and its other callers were measured and are fine: then
    the caller's side of the edge (its network, its client) is at fault."""
    callee = facts[m.peer]
    own = (("error_ratio", "up"), ("latency_p99", "up"), ("request_rate", "down"), ("up", "down"))
    if any(callee.anomalous(signal, direction) for signal, direction in own):
        return True
    others = [c for c in graph.callers.get(m.peer, ()) if c != m.service]
    if any(_edge_fails(facts[c], m.peer) for c in others):
        return True
    server_fine = "error_ratio" in measured.get(m.peer, [])
    callers_fine = any(f"client_error_ratio->{m.peer}" in measured.get(c, []) for c in others)
    return not (server_fine or callers_fine)


def _blame_slow_edge(
    m: MetricSignal, facts: dict[str, Facts], graph: _Graph, measured: dict[str, list[str]]
) -> None:
    """A slow edge caller->callee: a callee slow at its own server side is slow itself (its p99 says so); with a
    flat server p99 the time is lost between them, on the callee's network when its other callers see it too (or
    none was measured), else on the caller's."""
    callee = facts[m.peer]
    if callee.anomalous("latency_p99"):
        return
    others = [c for c in graph.callers.get(m.peer, ()) if c != m.service]
    agreed = any(_edge_slow(facts[c], m.peer) for c in others)
    fine = any(f"client_latency_p99->{m.peer}" in measured.get(c, []) for c in others)
    if agreed or not fine:
        callee.slow_inbound.append(m)
    else:
        facts[m.service].slow_outbound.append(m)


def _edge_slow(caller: Facts, callee: str) -> bool:
    m = caller.sig("client_latency_p99", callee)
    return bool(m and m.score >= ANOMALY and m.direction == "up" and _active(m))


def _edge_fails(caller: Facts, callee: str) -> bool:
    m = caller.sig("client_error_ratio", callee)
    return bool(m and m.score >= ANOMALY and m.direction == "up" and _active(m))


def _add_template(facts: dict[str, Facts], graph: _Graph, t: LogTemplate) -> None:
    if t.kind not in ("new", "spiking"):
        return
    f = facts[t.service]
    text = f"{t.template} {t.sample}"
    if t.level == "error" and t.incident_count >= MIN_ERROR_LINES:
        f.new_errors.append(t)
    peers = [s for s in graph.callees.get(t.service, ()) if graph.name_re[s].search(text)]
    for cue, count in t.cues.items():  # matched on whole messages by analysis/logs.py (see analysis/log_cues.py)
        f.own_cues[cue] += count
        note = f"log template '{t.template[:90]}' of {t.service} {t.kind}: {t.incident_count} in incident window"
        f.cue_notes.setdefault(cue, note)
        for peer in peers:
            facts[peer].peer_cues[cue] += count
            facts[peer].cue_notes.setdefault("peer_" + cue, note)


# --- scoring -------------------------------------------------------------------------------------------


def _ratio(m: MetricSignal, value: float | None = None) -> float:
    value = m.current if value is None else value
    return value / m.baseline if m.baseline else math.inf


def _describe(m: MetricSignal) -> str:
    edge = f" of {m.service}" + (f"->{m.peer}" if m.peer else "")
    since = f" since {m.onset:%H:%M:%S}" if m.onset else ""
    if m.baseline and m.current / m.baseline >= 0.01:
        change = f"x{m.current / m.baseline:.3g}"
    else:
        change = f"{m.baseline:.3g} -> {m.current:.3g}"
    return f"metric {m.signal}{edge} {m.direction} {change} (score {m.score:.0f}){since}"


def _cue(f: Facts, cue: str, own: bool = True) -> tuple[float, list[str]]:
    """Weight of a log cue (0 when absent, up to 1 with its count) and the note of its template."""
    count = f.own_cues.get(cue, 0) if own else f.peer_cues.get(cue, 0)
    if not count:
        return 0.0, []
    return min(1.0, 0.4 + math.log1p(count) / 6), [f.cue_notes["peer_" + cue if not own else cue]]


def _near_onset(f: Facts, kind: str) -> DeployEvent | None:
    """The last change of this kind near where the service's trouble began: its onset, or the first line of an error
    template it never logged before (analysis/deploys.py new_error_starts)."""
    marks = ([f.onset] if f.onset else []) + new_error_starts(f.new_errors)
    hits = changes_near((d for d in f.deploys if d.kind == kind), marks, DEPLOY_BEFORE, DEPLOY_AFTER)
    return hits[-1] if hits else None


def _establish(service: str, f: Facts, facts: dict[str, Facts], graph: _Graph) -> dict[str, tuple[float, list[str]]]:
    """The facts of signatures.FACTS that hold at a service: {name: (strength in (0, 1], evidence strings)}."""
    out: dict[str, tuple[float, list[str]]] = {}

    def fact(name: str, strength: float, notes: list[str]) -> None:
        if strength > 0:
            out[name] = (min(1.0, strength), notes)

    err = f.anomalous("error_ratio")
    lat = f.anomalous("latency_p99")
    rate_up = f.anomalous("request_rate")
    up = f.sig("up")
    down = up if up and up.score >= ANOMALY and up.direction == "down" and _active(up) else None
    mem = f.sig("memory_bytes")
    load = _load_ratio(service, f, facts, graph)

    # A leak holds what it took: memory still up 1.5x, or it grew that far and the process was killed for it (its
    # level fell at once, or a scrape failed: a scraper sees no memory while the process restarts, then its level
    # at start). A step that rises once and settles lower (an allocation spike, a tool's buffer) is no leak.
    restarted = bool(up and up.peak < 0.5 or mem and mem.resets)  # both read in the incident window only
    grown = mem and (_ratio(mem) >= 1.5 or restarted and _ratio(mem, mem.peak) >= 1.5)
    if mem and grown and mem.score >= ANOMALY and mem.direction == "up" and _active(mem):
        fact("memory_growth", 1, [_describe(mem)])
    if mem and mem.trend and mem.trend > 0:
        fact("memory_trend", 1, [f"metric memory_bytes of {service} rising steadily ({_per_hour(mem)})"])
    if restarted:
        fact("restarts", 1, [f"{service} restarted in the window (`up` dipped to 0 or memory fell by half at once)"])
    if (cpu := f.anomalous("cpu_usage")) and _ratio(cpu) >= 1.8:
        if _ratio(cpu) / load >= 1.8:
            fact("cpu_high", 1, [_describe(cpu)])
        else:
            f.load_driven.append(_describe(cpu) + f", as its load rose x{load:.3g}")
    if lat:
        fact("latency_up", 1, [_describe(lat)])
    if pool := f.anomalous("db_pool_in_use"):
        limit = f.sig("db_pool_max")
        full = limit is not None and limit.current > 0 and pool.current >= 0.9 * limit.current
        if _ratio(pool) / load >= 1.5:
            fact("pool_busy", 1, [_describe(pool)])
            if full and limit:
                fact("pool_full", 1, [f"db pool of {service} at its max {limit.current:g}"])
        else:
            f.load_driven.append(_describe(pool) + f", as its load rose x{load:.3g}")
    disk = f.sig("disk_free_bytes")
    if disk and disk.direction == "down" and disk.score >= ANOMALY and disk.current <= 0.1 * disk.baseline + 1e6:
        fact("disk_low", 1, [_describe(disk)])
    if disk and disk.trend and disk.trend < 0 and disk.current / -disk.trend <= EXHAUSTION_HORIZON:
        hours = disk.current / -disk.trend / 3600
        fact("disk_exhaustion", 1, [f"disk of {service} runs out in {hours:.1f} h at its current rate"])
    cert = f.sig("cert_expiry_timestamp")
    if cert and cert.score > 0:
        when = f" at {cert.onset:%H:%M:%S}" if cert.onset else ""
        fact("cert_expired", 1, [f"TLS certificate of {service} expired{when}"])

    for name, cue, own in CUE_FACTS:
        weight, notes = _cue(f, cue, own)
        fact(name, weight, notes)

    if f.inbound:
        inbound = sorted(f.inbound, key=lambda m: -m.score)
        callers = ", ".join(sorted({m.service for m in inbound}))
        more = f" (callers failing: {callers})" if len(inbound) > 1 else ""
        fact("inbound_errors", 1, [_describe(inbound[0]) + more])
    if f.outbound:
        m = max(f.outbound, key=lambda m: m.score)
        fact("outbound_errors", 1, [_describe(m) + f", while {m.peer} serves its other callers"])
    if f.slow_inbound:
        m = max(f.slow_inbound, key=lambda m: m.score)
        fact("inbound_latency", 1, [_describe(m) + f", while the p99 {service} serves with is flat (network delay)"])
    if f.slow_outbound:
        m = max(f.slow_outbound, key=lambda m: m.score)
        fact("outbound_latency", 1, [_describe(m) + f", while {m.peer}'s other callers see no delay"])
    if down:
        fact("down", 1, [_describe(down)])
    if rate_down := f.anomalous("request_rate", "down"):
        fact("rate_down", 1, [_describe(rate_down)])
    if not f.has_telemetry and service in graph.read:
        fact("no_telemetry", 1, [f"{service} has no telemetry of its own (external dependency)"])
    if not err and not f.new_errors:
        fact("quiet", 1, [])

    if rate_up and _ratio(rate_up) >= 2:
        callers_surging = [c for c in graph.callers.get(service, ()) if facts[c].anomalous("request_rate")]
        fact("surge", 1 / 3 if callers_surging else 1, [_describe(rate_up)])
        below = _downstream(service, graph)
        spread = sorted(c for c in graph.callees.get(service, ()) if facts[c].anomalous("request_rate"))
        if spread:
            fact("surge_spread", 1, [f"request_rate also up downstream at {', '.join(spread)}"])
        filled = [note for c in below for note in facts[c].load_driven] + f.load_driven
        if filled:
            fact("load_saturation", 1, [f"saturation under load: {filled[0]}"])

    if code := _near_onset(f, "code"):
        fact("code_deploy", 1, [_deploy_note(code)])
    if config := _near_onset(f, "config"):
        fact("config_change", 1, [_deploy_note(config)])
    if err:
        fact("error_ratio_up", 1, [_describe(err)])
    elif f.new_errors and not f.errors_measured:
        # where no metric measures its errors, its own new error logs are the witness of its failing requests
        t = f.new_errors[0]
        fact("error_ratio_up", 1, [f"no metric measures the error ratio of {service}; its logs show a new error:"
                                   f" '{t.template[:90]}' ({t.incident_count} in incident window)"])
    if f.new_errors:
        t = f.new_errors[0]
        fact("new_errors", 1, [f"log template '{t.template[:90]}' of {service} {t.kind}: {t.incident_count}"])
    if f.frames:
        fact("stack_frames", 1, [f.frame_note])
    # callers also give up on a callee that got slow (timeouts): a cut names its answers' content only when it
    # answers as fast as before, else its slowness names the fault; and its code only when no change of
    # configuration nor a resource running out explains the bad answers (as for errors_start_here below)
    if f.cut_notes and not lat and not f.slow_inbound and not any(n in out for n in EXPLAINS_ERRORS):
        fact("cuts_requests", 1, f.cut_notes[:2])

    # its requests end before calls they used to make (metrics): its code fails or gives up, unless a callee that
    # is slow or fails, a change or a resource running out explains it; a callee that is down or whose calls fail
    # lost its calls to that, not to this service's code
    stopped = [note for callee, note in sorted(f.dropped.items()) if not _unreachable(f, callee, facts[callee])]
    if stopped and not (lat or f.slow_inbound or _slow_callee(service, f, facts, graph)) and not any(
        n in out for n in EXPLAINS_ERRORS
    ):
        fact("stops_calling", 1, stopped[:2])

    # errors that start in its own spans with nothing else of its own to explain them: its code fails
    if f.own_trace_share >= TRACE_SHARE and not any(n in out for n in EXPLAINS_ERRORS):
        share = f.own_trace_share
        fact("errors_start_here", 1, [f"traces: {share:.0%} of failing traces end in {service}'s own spans"])
    own = [n for n in OWN_FAULT_FACTS if n in out]
    if own:
        fact("own_fault", 1, [f"{service} shows a fault of its own: {', '.join(own)}"])
    if lat and not own and not _slow_callee(service, f, facts, graph):
        slow = f.slow_share
        notes = [_describe(lat)] + ([f"traces: {slow:.0%} of slow traces end at {service}"] if slow >= 0.2 else [])
        fact("latency_origin", 1, notes)
    return out


# A service's share of failing traces that makes it a place where errors start (a fifth: one of a handful of origins).
TRACE_SHARE = 0.2
# Facts of a change or an exhausted resource: each explains errors where it holds better than "its code fails".
EXPLAINS_ERRORS = (
    "config_change",
    "config_cue",
    "memory_growth",
    "memory_trend",
    "oom_cue",
    "cpu_high",
    "pool_busy",
    "pool_cue",
    "disk_low",
    "disk_exhaustion",
    "disk_cue",
    "cert_expired",
)
# Facts that say a service has a fault of its own (dependency_outage is then the wrong name for its trouble).
OWN_FAULT_FACTS = (
    "error_ratio_up",
    "new_errors",
    "code_deploy",
    "config_change",
    "memory_growth",
    "memory_trend",
    "cpu_high",
    "pool_busy",
    "disk_low",
    "disk_exhaustion",
    "cert_expired",
    "cuts_requests",
    "stops_calling",
    "errors_start_here",
)


def _independent(names: set[str]) -> set[str]:
    """Facts that count as independent evidence: an absence (quiet) proves nothing, and latency_origin is a reading
    of latency_up, not a second observation."""
    names = names - {"quiet"}
    return names - {"latency_up"} if "latency_origin" in names else names


# Symptoms of the service itself: each corroborates any fault named there, whichever signature weighs it.
SYMPTOMS = frozenset({"latency_up", "error_ratio_up", "inbound_errors", "inbound_latency", "new_errors"})
# Log cue facts: (fact, cue of analysis/log_cues.py, in the service's own logs or in its callers').
CUE_FACTS = (
    ("oom_cue", "oom", True),
    ("cpu_cue", "cpu", True),
    ("pool_cue", "pool", True),
    ("peer_pool_cue", "pool", False),
    ("disk_cue", "disk", True),
    ("peer_cert_cue", "cert", False),
    ("peer_net_cue", "net", False),
    ("peer_refused_cue", "refused", False),
    ("ratelimit_cue", "ratelimit", True),
    ("config_cue", "config", True),
)
EXHAUSTION_HORIZON = 3600.0  # a disk that runs out within the hour needs action before anyone reads a weekly report


def _active(m: MetricSignal) -> bool:
    """Still deviating at the window's end (analysis/metrics.py): an anomaly that already recovered belongs to an
    earlier fault, kept apart from the alerted one."""
    return m.active


def _per_hour(m: MetricSignal) -> str:
    level = m.current or m.baseline
    return f"{m.trend * 3600 / level:+.0%} of its level per hour" if level and m.trend else "trend"


def _load_ratio(service: str, f: Facts, facts: dict[str, Facts], graph: _Graph) -> float:
    """How much the load on a service rose: its request rate's rise, else its callers' (at least 1)."""
    own = f.anomalous("request_rate")
    if own:
        return max(1.0, _ratio(own))
    rises = [_ratio(m) for c in graph.callers.get(service, ()) if (m := facts[c].anomalous("request_rate"))]
    return max([1.0, *rises])


def _downstream(service: str, graph: _Graph) -> list[str]:
    seen, todo = [], list(graph.callees.get(service, ()))
    while todo:
        s = todo.pop()
        if s not in seen and s != service:
            seen.append(s)
            todo.extend(graph.callees.get(s, ()))
    return sorted(seen)


def _slow_callee(service: str, f: Facts, facts: dict[str, Facts], graph: _Graph) -> bool:
    """A callee slow or failing no later than this service explains its latency (a slow dependency)."""
    for callee in graph.callees.get(service, ()):
        c = facts[callee]
        trouble = c.anomalous("latency_p99") or c.inbound or c.slow_inbound or c.anomalous("error_ratio")
        if trouble and (c.onset is None or f.onset is None or c.onset <= f.onset + timedelta(seconds=30)):
            return True
    return False


def _dependency_paths(alerted: str, graph: _Graph) -> set[str] | None:
    """The alerted service and everything it calls, directly or transitively, in the observed call graph; None when
    the graph was not observed or does not show the alerted service (unknown topology rules nothing out)."""
    if alerted not in graph.callers and alerted not in graph.callees:
        return None
    return {alerted, *_downstream(alerted, graph)}


def _off_path(service: str, fault: str, alerted: str, on_path: set[str] | None, graph: _Graph) -> str | None:
    """The note demoting a candidate the observed call graph shows off the alerted service's dependency paths, or
    None: on them, of unknown place (in no observed edge), or a surge entering upstream of the alerted service."""
    if on_path is None or service in on_path or (service not in graph.callers and service not in graph.callees):
        return None
    if fault == "traffic_surge" and alerted in _downstream(service, graph):
        return None  # load flows from callers down to the alerted service
    return (f"{service} is not on the dependency paths of {alerted} in the observed call graph: "
            "a concurrent, unrelated fault, not the cause of the alert")


def _began_later(service: str, f: Facts, facts: dict[str, Facts], alerted: str) -> str | None:
    """The note demoting a candidate whose fault (the onset of its strongest anomaly under way, _onset) began more
    than ONSET_SLACK after the last of the alerted service's anomalies under way began: it came later, so it started
    none of them. None for the alerted service itself, or when either onset is unknown."""
    if service == alerted or f.onset is None or alerted not in facts:
        return None
    a = facts[alerted]
    onsets = [m.onset for m in list(a.signals.values()) + a.inbound + a.slow_inbound
              if m.score >= ANOMALY and m.onset and _active(m)]
    if not onsets or f.onset <= max(onsets) + ONSET_SLACK:
        return None
    return (f"{service}'s anomalies began at {f.onset:%H:%M:%S}, after every anomaly of {alerted} (the last at"
            f" {max(onsets):%H:%M:%S}): a later fault, not what started the alert")


def _deploy_note(d: DeployEvent) -> str:
    what = "config change" if d.kind == "config" else "deploy"
    commit = f" (commit {d.commit[:7]})" if d.commit else ""
    return f"{what} {d.service} {d.version}{commit} at {d.at:%H:%M:%S}"


def _symptomatic(f: Facts) -> bool:
    return bool(
        f.anomalous("error_ratio")
        or f.anomalous("latency_p99")
        or f.inbound
        or f.slow_inbound
        or f.new_errors
        or f.cut_notes
        or f.dropped
    )


def _unreachable(f: Facts, callee: str, c: Facts) -> bool:
    """Is the callee down, or do this service's calls to it fail? Then it lost its calls to that."""
    up = c.sig("up")
    return bool(_edge_fails(f, callee) or up and up.direction == "down" and up.score >= ANOMALY)


def _explained_by(service: str, facts: dict[str, Facts], graph: _Graph, measured: dict[str, list[str]]) -> str | None:
    """A callee whose own trouble explains this service's symptoms: failing calls to it, calls to it that got slow
    while it is slow itself (this service measured the time going there), or it is anomalous and started no later
    than this service, unless this service's calls to it were measured and are fine: trouble reaches a caller only
    through its calls."""
    f = facts[service]
    for callee in sorted(graph.callees.get(service, ())):
        c = facts.get(callee)
        if c is None:
            continue
        if any(m.service == service for m in c.inbound + c.slow_inbound):  # failing or slow calls blamed on it
            return callee
        if _edge_slow(f, callee) and c.anomalous("latency_p99"):
            return callee
        earlier = _symptomatic(c) and c.onset and f.onset and c.onset <= f.onset
        if earlier and not _calls_fine(f, callee, c, measured.get(service, [])):
            return callee
    return None


def _calls_fine(f: Facts, callee: str, c: Facts, measured: list[str]) -> bool:
    """Were this service's calls to the callee measured and fine: not failing, and not slow (by their own latency
    when measured, else by the callee's server p99)?"""
    if f"client_error_ratio->{callee}" not in measured or _edge_fails(f, callee):
        return False
    if f"client_latency_p99->{callee}" in measured:
        return not _edge_slow(f, callee)
    return not c.anomalous("latency_p99")


def _location(
    service: str, f: Facts, facts: dict[str, Facts], graph: _Graph, explained: str | None
) -> tuple[float, list[str]]:
    """Bonus for where the trouble starts: trace error origins, earliest onset, an unexplained symptom."""
    score, notes = 0.0, []
    if f.trace_share >= TRACE_SHARE:
        score += 2 * f.trace_share
        notes.append(f"traces: {f.trace_share:.0%} of failing traces originate at {service}")
    if _symptomatic(f) and not explained:
        score += 1
    onsets = [x.onset for x in facts.values() if x.onset and _symptomatic(x)]
    if f.onset and onsets and f.onset <= min(onsets) + timedelta(seconds=30):
        score += 0.5
        notes.append(f"earliest anomaly onset at {f.onset:%H:%M:%S}")
    return score, notes


def _hypotheses(picked: list[tuple[float, tuple[int, int], str, str, list[str]]]) -> list[Hypothesis]:
    """Confidence = the candidate's share of a softmax over the scores (its margin over the others, and over the
    hypothesis that none of them is at fault, which no evidence supports: score 0) times the support of its evidence
    count, 1 - 2^-n: one fact alone leaves even odds, each further independent fact halves the doubt."""
    if not picked:
        return []
    best = picked[0][0]
    weights = [math.exp((score - best) / TEMPERATURE) for score, *_ in picked]
    total = sum(weights) + math.exp(-best / TEMPERATURE)
    result = []
    for (score, (_, support), service, fault, notes), weight in zip(picked, weights, strict=True):
        confidence = round(weight / total * (1 - 0.5**support), 3)
        lead = notes[0] if notes else "no direct evidence"
        result.append(
            Hypothesis(
                service=service,
                fault_type=fault,
                confidence=confidence,
                score=score,
                summary=f"{fault.replace('_', ' ')} at {service}: {lead}.",
                evidence=list(dict.fromkeys(notes))[:6],
            )
        )
    return result
