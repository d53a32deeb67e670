"""The hard suite's twists (sim/names.py HARD_SCENARIOS): what real fleets add to a classic scenario.

Each twist is a general phenomenon, applied to the fleet model of the classic scenario with the same seed, so a hard
case keeps its classic truth (root service and fault): a fault that began long before the window (its trend fills
the baseline, OOM restarts fall in it), an unrelated fault that began earlier elsewhere, short traffic bursts, a fleet
of a few requests per second, and the log forms whose levels are easy to lose.
"""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING

from analysis.records import MetricSeries
from sim.scenarios import STEP_SECONDS, scenario_rng, spec_of
from sim.topology import INTERNAL, SERVICES, callees_of, upstream_of

if TYPE_CHECKING:
    from sim.generate import _Model

EARLY_TREND_STEPS = (240, 360)  # the trend began 60-90 min before the end: before the 45 min of data
BURST_GAP_STEPS = (8, 24)  # a burst every 2-6 min ...
BURST_STEPS = (1, 3)  # ... of 15-45 s ...
BURST_FACTOR = (1.6, 2.6)  # ... at this much traffic
LOW_GATEWAY_RPS = (1.5, 4.0)  # requests/s entering the whole fleet
LOG_SHAPES = ("pino", "logback", "plain_msg", "bare")  # bare: no level in the text, only Loki's detected_level
OVERLAP_FAULTS = {"backend": ("cpu_saturation", "memory_leak"), "frontend": ("memory_leak",),
                  "db_proxy": ("db_connection_exhaustion",)}
OVERLAP_LEAD_STEPS = (12, 40)  # the unrelated fault began 3-10 min before the alerted one


def _rng(model: _Model, twist: str) -> random.Random:
    return scenario_rng(model.sc.variant or model.sc.name, model.sc.seed, twist)


def apply_fault(model: _Model) -> bool:
    """Run the scenario's fault with its early-trend form when it has one; False when the classic fault applies."""
    sc = model.sc
    if "early_trend" not in sc.twists or sc.root_service is None:
        return False
    if sc.name == "memory_leak":
        _early_leak(model, sc.root_service, sc.magnitude)
        return True
    if sc.name == "disk_full":
        model.fault_disk_full(sc.root_service, sc.magnitude)
        _early_disk(model, sc.root_service)
        return True
    return False


def apply_before_propagation(model: _Model) -> None:
    """Twists on the fleet's state: an overlapping fault, bursts, low traffic, log forms."""
    twists = model.sc.twists
    if "overlap" in twists:
        _overlap(model)
    if "bursty" in twists:
        _bursts(model)
    if "low_traffic" in twists:
        model.gateway_rps = _rng(model, "low_traffic").uniform(*LOW_GATEWAY_RPS)
        model.base_rate = model._base_rates()
    if "log_shapes" in twists:
        _log_shapes(model)


def apply_to_metrics(model: _Model, series: list[MetricSeries]) -> list[MetricSeries]:
    """Twists on the sampled series: with low traffic, a scrape sees whole requests. Each step's requests are a
    Poisson count; the rate is that count per second and the error ratio the failed share of it (a scrape without a
    request has no ratio point, as 0/0 in Prometheus), so the counters behind both are whole numbers."""
    if "low_traffic" not in model.sc.twists:
        return series
    rng = _rng(model, "low_traffic_counts")
    ratio_of = {"request_rate": "error_ratio", "client_request_rate": "client_error_ratio"}
    ratios = {(s.signal, s.service, s.peer): s for s in series if s.signal in ratio_of.values()}
    counted: dict[tuple[str, str, str | None], MetricSeries] = {}
    for s in series:
        ratio = ratios.get((ratio_of.get(s.signal, ""), s.service, s.peer))
        if ratio is None:
            continue
        failing = dict(ratio.points)
        rates, shares = [], []
        for t, rate in s.points:
            count = _poisson(rng, rate * STEP_SECONDS)
            rates.append((t, count / STEP_SECONDS))
            if count:
                shares.append((t, sum(rng.random() < failing.get(t, 0.0) for _ in range(count)) / count))
        counted[(s.signal, s.service, s.peer)] = MetricSeries(s.signal, s.service, rates, s.peer)
        counted[(ratio.signal, s.service, s.peer)] = MetricSeries(ratio.signal, s.service, shares, s.peer)
    return [counted.get((s.signal, s.service, s.peer), s) for s in series]


def _poisson(rng: random.Random, mean: float) -> int:
    if mean > 50:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, p = math.exp(-mean), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def _early_leak(model: _Model, root: str, mag: float) -> None:
    """A leak that began an hour or more before the end: memory rises through the whole baseline to an OOM kill in
    the incident window (one scrape down, memory back to its start), then rises again at the same pace; latency
    and errors grow with the heap as in the classic leak."""
    from sim.generate import PROFILES, _Template

    rng = _rng(model, "early_trend")
    base, runtime = model.base_mem[root], PROFILES[root].runtime
    cycle = rng.randint(*EARLY_TREND_STEPS)
    kill = model.onset_i + rng.randint(2, 6)  # the kill falls just after the classic onset, inside the window
    gc_rate = [0.0] * model.n
    for i in range(model.n):
        elapsed = (i - kill - 1) % cycle
        ts = model.times[i]
        if elapsed == cycle - 1:
            model._oom_kill(root, i, base, runtime, rng)
            continue
        frac = elapsed / (cycle - 1)
        model.mem[root][i] = base + (base * mag - base) * frac
        model.p99_mult[root][i] = 1 + 5 * frac**2
        model.own_err[root][i] = model.base_err[root] + 0.12 * frac**3
        model.slow[root][i] = 0.25 * frac**3
        model.cpu_mult[root][i] = 1 + 1.5 * frac**2
        model.kind[root][i] = "timeout"
        gc_rate[i] = 1.2 * frac**2
        if elapsed == 0 and i > 0:
            model.event(ts + rng.uniform(3, 9), root, "warn", "main",
                        "previous instance terminated: OOMKilled (exit code 137)")
            model.event(ts + rng.uniform(9, 14), root, "info", "main",
                        f"starting {root} version={model.version[root]} pid={rng.randint(1, 60)}")
    gc_text = ("GC pause (G1 Evacuation Pause) {slowms}ms, heap nearly full" if runtime == "java"
               else "memory usage high: rss above soft limit, gc collected 0 objects in {slowms}ms")
    model.rate_logs.append((root, _Template(1, "warn", "gc", gc_text), gc_rate))
    model.own_templates[root] = [_Template(1, "error", "http", "request timed out after 2000ms path={path}")]


def _early_disk(model: _Model, root: str) -> None:
    """The disk began filling an hour before the end: it declines through the whole baseline, not minutes before."""
    rng = _rng(model, "early_trend")
    began = model.onset_i - rng.randint(*EARLY_TREND_STEPS)
    full_at = model.onset_i
    floor = model.disk[root][full_at - 1]
    start_level = model.disk0[root]
    for i in range(full_at):
        frac = (i - began) / (full_at - began)
        model.disk[root][i] = start_level + (floor - start_level) * frac


def _overlap(model: _Model) -> None:
    """An unrelated fault on a service the alerted one does not depend on, begun minutes before the alerted one."""
    sc, rng = model.sc, _rng(model, "overlap")
    reached = {sc.alerted_service}
    frontier = [sc.alerted_service]
    while frontier:
        for callee in callees_of(frontier.pop()):
            if callee not in reached:
                reached.add(callee)
                frontier.append(callee)
    on_path = set(upstream_of(sc.root_service)) | {sc.root_service} if sc.root_service else set()
    eligible = [s for s in INTERNAL if s not in reached and s not in on_path and SERVICES[s] in OVERLAP_FAULTS]
    if not eligible:  # the alerted service reaches the whole fleet: any other service will do
        eligible = [s for s in INTERNAL if s not in on_path and s != sc.alerted_service
                    and SERVICES[s] in OVERLAP_FAULTS]
    other = rng.choice(eligible)
    fault = rng.choice(OVERLAP_FAULTS[SERVICES[other]])
    magnitude = round(rng.uniform(*spec_of(fault).magnitude), 3)
    onset = model.onset_i
    model.onset_i = max(2, onset - rng.randint(*OVERLAP_LEAD_STEPS))
    try:
        getattr(model, f"fault_{fault}")(other, magnitude)
    finally:
        model.onset_i = onset


def _bursts(model: _Model) -> None:
    """Short traffic bursts at the gateway all through the data: the load is not smooth."""
    rng = _rng(model, "bursty")
    i = rng.randint(0, BURST_GAP_STEPS[1])
    while i < model.n:
        factor = rng.uniform(*BURST_FACTOR)
        for j in range(i, min(model.n, i + rng.randint(*BURST_STEPS))):
            model.load[j] *= factor
        i += rng.randint(*BURST_GAP_STEPS)


def _log_shapes(model: _Model) -> None:
    """The root and its callers log in the forms whose levels are easy to lose."""
    sc, rng = model.sc, _rng(model, "log_shapes")
    services = [sc.root_service, *upstream_of(sc.root_service)] if sc.root_service else [sc.alerted_service]
    for service in services:
        if service in model.formats:
            model.formats[service] = rng.choice(LOG_SHAPES)
