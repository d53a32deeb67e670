"""Rank candidate root causes: fault signatures per service, weighed by topology, onsets and traces."""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from state import DeployEvent, Evidence, Hypothesis, LogTemplate, MetricSignal

ANOMALY = 4.0
MAX_HYPOTHESES = 5
DEPLOY_BEFORE = timedelta(minutes=3)  # a deploy this close before (or after) a service's onset is a suspect
DEPLOY_AFTER = timedelta(minutes=2)
EXPLAINED_DISCOUNT = 0.6

@dataclass
class Facts:
    """What the evidence says about one service; `notes` are the evidence strings per fact."""

    signals: dict[tuple[str, str | None], MetricSignal] = field(default_factory=dict)
    inbound: list[MetricSignal] = field(default_factory=list)  # callers' client_error_ratio towards it
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

    def sig(self, signal: str, peer: str | None = None) -> MetricSignal | None:
        return self.signals.get((signal, peer))

    def anomalous(self, signal: str, direction: str = "up") -> MetricSignal | None:
        m = self.sig(signal)
        return m if m and m.score >= ANOMALY and m.direction == direction else None


def rank_candidates(evidence: Evidence) -> list[Hypothesis]:
    """Hypotheses (service, fault type, confidence, evidence), best first, at most five."""
    graph = _Graph(evidence)
    facts = _collect(evidence, graph)
    scored: list[tuple[float, str, str, list[str]]] = []
    for service in sorted(facts):
        f = facts[service]
        explained = _explained_by(service, facts, graph)
        location, location_notes = _location(service, f, facts, graph, explained)
        for fault, (score, notes) in _signatures(service, f, facts, graph).items():
            if score <= 0:
                continue
            # Load flows downstream: a surge is never explained by a callee.
            discounted = explained and fault != "traffic_surge"
            total = (score + location) * (EXPLAINED_DISCOUNT if discounted else 1.0)
            extra = [f"symptoms of {service} are explained by anomalous dependency {explained}"] if discounted else []
            scored.append((round(total, 3), service, fault, notes + location_notes + extra))
    scored.sort(key=lambda x: (-x[0], x[1], x[2]))
    picked: list[tuple[float, str, str, list[str]]] = []
    per_service: dict[str, int] = defaultdict(int)
    for item in scored:
        if per_service[item[1]] < 2:
            picked.append(item)
            per_service[item[1]] += 1
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
        self.name_re = {s: re.compile(rf"(?<![\w-]){re.escape(s)}(?![\w-])") for s in self.services}


def _collect(evidence: Evidence, graph: _Graph) -> dict[str, Facts]:
    facts: dict[str, Facts] = defaultdict(Facts)
    for service in graph.services:  # every known service is a candidate, even without telemetry of its own
        facts.setdefault(service, Facts())
    if evidence.metrics:
        for m in evidence.metrics.signals:
            f = facts[m.service]
            f.has_telemetry = True
            f.signals[(m.signal, m.peer)] = m
            if m.signal == "client_error_ratio" and m.peer and m.score >= ANOMALY and m.direction == "up":
                facts[m.peer].inbound.append(m)
                facts[m.peer].signals.setdefault(("inbound_error", m.service), m)
    if evidence.logs:
        for service, stats in evidence.logs.services.items():
            facts[service].has_telemetry = True
            _earliest(facts[service], stats.error_onset)
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
    for d in evidence.deploys:
        facts[d.service].deploys.append(d)
    for f in facts.values():
        for m in list(f.signals.values()) + f.inbound:
            if m.score >= ANOMALY and m.signal != "db_pool_max":
                _earliest(f, m.onset)
    return dict(facts)


def _earliest(f: Facts, when: datetime | None) -> None:
    if when and (f.onset is None or when < f.onset):
        f.onset = when


def _add_template(facts: dict[str, Facts], graph: _Graph, t: LogTemplate) -> None:
    if t.kind not in ("new", "spiking"):
        return
    f = facts[t.service]
    text = f"{t.template} {t.sample}"
    if t.level == "error" and t.incident_count >= 3:
        f.new_errors.append(t)
        _earliest(f, t.first_seen)
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
    if f.onset is None:
        return None
    hits = [d for d in f.deploys if d.kind == kind and f.onset - DEPLOY_BEFORE <= d.at <= f.onset + DEPLOY_AFTER]
    return hits[-1] if hits else None


def _signatures(service: str, f: Facts, facts: dict[str, Facts], graph: _Graph) -> dict[str, tuple[float, list]]:
    """Score each fault type's signature at a service (about 0..12) with the evidence strings behind it."""
    out: dict[str, tuple[float, list[str]]] = {}
    err = f.anomalous("error_ratio")
    lat = f.anomalous("latency_p99")
    rate_up = f.anomalous("request_rate")
    rate_down = f.anomalous("request_rate", "down")
    up = f.sig("up")
    down = up if up and up.score >= ANOMALY and up.direction == "down" else None
    restarts = up if up and up.peak < 0.5 and not down else None
    inbound = sorted(f.inbound, key=lambda m: -m.score)

    def add(fault: str, weight: float, notes: list[str]) -> None:
        score, acc = out.get(fault, (0.0, []))
        out[fault] = (score + weight, acc + notes)

    if (mem := f.anomalous("memory_bytes")) and _ratio(mem, mem.peak) >= 1.5:
        add("memory_leak", 5, [_describe(mem)])
        if restarts:
            add("memory_leak", 1.5, [f"metric up of {service} dipped to 0 (restarts)"])
        w, n = _cue(f, "oom")
        add("memory_leak", 3 * w, n)
    elif (w := _cue(f, "oom"))[0]:
        add("memory_leak", 2 * w[0], w[1])

    if (cpu := f.anomalous("cpu_usage")) and _ratio(cpu) >= 1.8:
        load_driven = rate_up is not None and _ratio(rate_up) >= 0.5 * _ratio(cpu)
        weight = 1.5 if load_driven else 5
        notes = [_describe(cpu)] + (
            [f"but request_rate of {service} rose as much ({_describe(rate_up)})"] if load_driven else []
        )
        add("cpu_saturation", weight, notes)
        if lat:
            add("cpu_saturation", 1, [_describe(lat)])
        w, n = _cue(f, "cpu")
        add("cpu_saturation", 2 * w, n)

    if pool := f.anomalous("db_pool_in_use"):
        limit = f.sig("db_pool_max")
        full = limit is not None and limit.current > 0 and pool.current >= 0.9 * limit.current
        add(
            "db_connection_exhaustion",
            6 if full else 3,
            [_describe(pool) + (f", at its max {limit.current:g}" if full and limit else "")],
        )
        w, n = _cue(f, "pool")
        add("db_connection_exhaustion", 2 * w, n)
    if f.peer_cues.get("pool") and inbound or (f.peer_cues.get("pool") and pool):
        w, n = _cue(f, "pool", own=False)
        add("db_connection_exhaustion", 1.5 * w, n)

    disk = f.sig("disk_free_bytes")
    if disk and disk.direction == "down" and disk.score >= ANOMALY and disk.current <= 0.1 * disk.baseline + 1e6:
        add("disk_full", 6, [_describe(disk)])
        w, n = _cue(f, "disk")
        add("disk_full", 3 * w, n)
    elif (w := _cue(f, "disk"))[0] and err:
        add("disk_full", 2.5 * w[0], w[1] + [_describe(err)])

    cert = f.sig("cert_expiry_timestamp")
    if cert and cert.score > 0:
        when = f" at {cert.onset:%H:%M:%S}" if cert.onset else ""
        add("certificate_expired", 7, [f"TLS certificate of {service} expired{when}"])
    if (w := _cue(f, "cert", own=False))[0] and inbound:
        add("certificate_expired", 3 * w[0], w[1])

    if inbound:
        callers = ", ".join(sorted({m.service for m in inbound}))
        inbound_note = [_describe(inbound[0]) + (f" (callers failing: {callers})" if len(inbound) > 1 else "")]
        quiet = not err and not f.new_errors
        net_w, net_n = _cue(f, "net", own=False)
        ref_w, ref_n = _cue(f, "refused", own=False)
        partition = 2 + 4 * net_w + (1.5 if down else 0) + (1 if rate_down else 0) + (0.5 if quiet else 0)
        add(
            "network_partition",
            partition,
            inbound_note + net_n + [_describe(m) for m in (down, rate_down) if m],
        )
        outage = 2 + 4 * ref_w + (2 if not f.has_telemetry else 0) + (1 if down else 0)
        notes = (
            inbound_note
            + ref_n
            + ([f"{service} has no telemetry of its own (external dependency)"] if not f.has_telemetry else [])
        )
        add("dependency_outage", outage, notes + ([_describe(down)] if down else []))

    if rate_up and _ratio(rate_up) >= 2:
        callers_surging = [
            c for c in graph.callers.get(service, ()) if facts.get(c) and facts[c].anomalous("request_rate")
        ]
        add("traffic_surge", 3 if not callers_surging else 1, [_describe(rate_up)])
        spread = [c for c in graph.callees.get(service, ()) if facts.get(c) and facts[c].anomalous("request_rate")]
        if spread:
            add("traffic_surge", 1.5, [f"request_rate also up downstream at {', '.join(sorted(spread))}"])
        w, n = _cue(f, "ratelimit")
        add("traffic_surge", 2 * w, n)

    code = _near_onset(f, "code")
    if code and (err or f.new_errors):
        add("deployment_regression", 4, [_deploy_note(code)])
        if err:
            add("deployment_regression", 2, [_describe(err)])
        if f.frames:
            add("deployment_regression", 2, [f.frame_note])
        elif f.new_errors:
            t = f.new_errors[0]
            add("deployment_regression", 1, [f"log template '{t.template[:90]}' {t.kind}: {t.incident_count}"])
    config = _near_onset(f, "config")
    w, n = _cue(f, "config")
    if config and (err or f.new_errors or w):
        add("config_error", 4 + 2 * w, [_deploy_note(config)] + n + ([_describe(err)] if err else []))
    elif w and err:
        add("config_error", 2 * w, n + [_describe(err)])

    if err and f.frames and "deployment_regression" not in out:
        add("deployment_regression", 1.5, [_describe(err), f.frame_note])
    return out


def _deploy_note(d: DeployEvent) -> str:
    what = "config change" if d.kind == "config" else "deploy"
    commit = f" (commit {d.commit[:7]})" if d.commit else ""
    return f"{what} {d.service} {d.version}{commit} at {d.at:%H:%M:%S}"


def _symptomatic(f: Facts) -> bool:
    return bool(f.anomalous("error_ratio") or f.anomalous("latency_p99") or f.inbound or f.new_errors)


def _explained_by(service: str, facts: dict[str, Facts], graph: _Graph) -> str | None:
    """A callee whose own trouble explains this service's symptoms: failing calls to it, or it is anomalous
    and started no later than this service."""
    f = facts[service]
    for callee in sorted(graph.callees.get(service, ())):
        c = facts.get(callee)
        if c is None:
            continue
        failing = f.sig("client_error_ratio", callee)
        if failing and failing.score >= ANOMALY and failing.direction == "up":
            return callee
        if _symptomatic(c) and c.onset and f.onset and c.onset <= f.onset:
            return callee
    return None


def _location(
    service: str, f: Facts, facts: dict[str, Facts], graph: _Graph, explained: str | None
) -> tuple[float, list[str]]:
    """Bonus for where the trouble starts: trace error origins, earliest onset, an unexplained symptom."""
    score, notes = 0.0, []
    if f.trace_share >= 0.2:
        score += 2 * f.trace_share
        notes.append(f"traces: {f.trace_share:.0%} of failing traces originate at {service}")
    if _symptomatic(f) and not explained:
        score += 1
    onsets = [x.onset for x in facts.values() if x.onset and _symptomatic(x)]
    if f.onset and onsets and f.onset <= min(onsets) + timedelta(seconds=30):
        score += 0.5
        notes.append(f"earliest anomaly onset at {f.onset:%H:%M:%S}")
    return score, notes


def _hypotheses(picked: list[tuple[float, str, str, list[str]]]) -> list[Hypothesis]:
    if not picked:
        return []
    best = picked[0][0]
    weights = [math.exp((score - best) / 2) for score, *_ in picked]
    coverage = min(1.0, best / 10)
    result = []
    for (score, service, fault, notes), weight in zip(picked, weights, strict=True):
        confidence = round(coverage * weight / sum(weights), 3)
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
