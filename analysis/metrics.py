"""Metric anomalies: a robust baseline per series, a sustained-deviation score, direction and onset."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, datetime
from statistics import median

from analysis.records import MetricSeries
from analysis.statistics import change_point, excess_events, mann_kendall, pairwise_slopes, running_median
from state import MetricEvidence, MetricSignal, Window

# Noise floors of the scale (absolute, relative to the baseline level): a deviation smaller than these is
# operationally meaningless however flat the baseline was.
FLOORS: dict[str, tuple[float, float]] = {
    "request_rate": (0.5, 0.10),
    "error_ratio": (0.01, 0.20),
    "latency_p99": (0.005, 0.10),
    "client_request_rate": (0.5, 0.10),
    "client_error_ratio": (0.01, 0.20),
    "client_latency_p99": (0.005, 0.10),
    "cpu_usage": (0.001, 0.10),  # one millicore: the CPU accounting unit of Kubernetes and cgroups
    "memory_bytes": (1e6, 0.05),
    "db_pool_in_use": (1.0, 0.10),
    "db_pool_max": (1.0, 0.0),
    "disk_free_bytes": (1e6, 0.02),
    "up": (0.1, 0.0),
    "calls_per_request": (1e-9, 0.10),
}
# A deviation must hold for SUSTAIN samples (a minute at the usual 15 s scrape: a 1-2 step blip never scores), or for
# a minute when samples are sparser, but never for fewer than two: at one sample a minute one odd sample never
# scores, while a fault seen for 3 minutes still can.
SUSTAIN = 4
SUSTAIN_SECONDS = 60.0
MIN_SUSTAIN = 2
# A spread (MAD) estimated from fewer samples than this is noise itself: with less history before the window, the
# window's first samples lend the baseline what it lacks, and the signal says its baseline was short.
MIN_BASELINE = 8
ONSET_Z = 3.0
ANOMALY_SCORE = 4.0
MAX_SCORE = 1000.0
EXPIRED_SCORE = 20.0
MAX_SIGNALS = 24
COMPANIONS = {"db_pool_in_use": "db_pool_max"}
# Levels that leak or fill over hours: tested for a steady trend over all the history read, through restarts.
TRENDED = ("memory_bytes", "disk_free_bytes")
TREND_Z = 3.1  # Mann-Kendall z of a one-sided p < 0.001
TREND_SHARE = 0.2  # a change of a fifth of the level over the history read: caches and heaps settle by less
# A ratio is read with the rate of what it divides: its count of events decides whether it means anything.
RATIO_DENOMINATORS = {"error_ratio": "request_rate", "client_error_ratio": "client_request_rate"}
# A caller's calls per request to a callee are set by its code and the mix of its requests, not by its load (a
# surge or a slowdown moves both rates together). Fewer than half of them, held at the window's end while it still
# serves at least half its usual requests, is no drift of the mix: its requests end before those calls.
FANOUT_SHARE = 0.5


def summarize_metrics(
    series: list[MetricSeries], window: Window, *, max_signals: int = MAX_SIGNALS,
    dependencies: list[tuple[str, str]] | None = None,
) -> MetricEvidence:
    """Score each series against its baseline; keep the anomalous ones (and restart dips), strongest first; with the
    call graph, also the callers whose requests stopped making calls (dropped_calls)."""
    start, base_start, end = (
        window.start.timestamp(),
        window.baseline_start.timestamp(),
        window.end.timestamp(),
    )
    signals: list[MetricSignal] = []
    companions: list[MetricSignal] = []
    by_key = {(s.signal, s.service, s.peer): s for s in series}
    short_history = 0
    for s in series:
        points = [(t, v) for t, v in s.points if base_start <= t <= end and not math.isnan(v)]
        base, start_at = baseline_of(points, start, end)
        short = not base or points[0][0] > base_start + (start - base_start) / 2
        short_history += bool(points) and short
        incident = [(t, v) for t, v in points if t >= start_at]
        if not base or not incident:
            continue
        if s.signal == "cert_expiry_timestamp":
            signal = _cert_signal(s, base, incident, points)
        else:
            signal = _score_series(s, base, points, len(points) - len(incident), _sustain_steps(points, s.window))
            denominator = by_key.get((RATIO_DENOMINATORS.get(s.signal), s.service, s.peer))
            if denominator and signal.direction == "up" and not _counts_agree(points, denominator, start_at, signal):
                signal = signal.model_copy(update={"score": 0.0, "direction": "flat", "onset": None})
        if short:
            signal = signal.model_copy(update={"short_baseline": True})
        if s.signal in TRENDED:
            trend, resets = level_trend(points, start)
            signal = signal.model_copy(update={"trend": trend, "resets": resets})
        if signal.score >= ONSET_Z or (s.signal == "up" and signal.peak < 0.5) or signal.trend:
            signals.append(signal)
        elif s.signal in COMPANIONS.values():
            companions.append(signal)
    # A call rate mostly repeats its callee's request_rate: it yields its place to every other signal.
    signals.sort(key=lambda m: (m.signal == "client_request_rate", -m.score, m.service, m.signal, m.peer or ""))
    kept = signals[:max_signals]
    # A usage signal is read against its limit (pool in use vs pool max): keep the limit beside it.
    wanted = {(m.service, COMPANIONS[m.signal]) for m in kept if m.signal in COMPANIONS}
    kept += [m for m in companions if (m.service, m.signal) in wanted]
    measured: dict[str, list[str]] = {}
    for s in series:
        measured.setdefault(s.service, []).append(s.signal + (f"->{s.peer}" if s.peer else ""))
    return MetricEvidence(signals=kept, series_read=len(series), measured={k: sorted(v) for k, v in measured.items()},
                          short_history=short_history, dropped_calls=dropped_calls(series, dependencies or [], window))


def baseline_of(points: list[tuple[float, float]], start: float, end: float) -> tuple[list[float], float]:
    """The baseline values of a series' points and where its incident part begins: the points before `start`; with
    fewer than MIN_BASELINE of them, those before the window's middle (at least the first MIN_BASELINE), when
    SUSTAIN points remain after them for a deviation to hold.

    An alert fires minutes after its symptom began, so a window's first half is mostly what came before; a median
    over all of it resists an earlier episode better than one over its first few samples."""
    base = [v for t, v in points if t < start]
    if len(base) >= MIN_BASELINE or len(points) < MIN_BASELINE + SUSTAIN:
        return base, start
    middle = (start + end) / 2
    n = max(MIN_BASELINE, sum(t < middle for t, _ in points))
    if len(points) - n < SUSTAIN:
        return base, start
    return [v for _, v in points[:n]], points[n][0]


def dropped_calls(
    series: list[MetricSeries], dependencies: list[tuple[str, str]], window: Window
) -> dict[str, dict[str, str]]:
    """Callers whose requests stopped making calls they used to make: {caller: {callee: note}}.

    The calls are the edge's client_request_rate, else the callee's own request_rate when the call graph shows this
    caller as its only one (all its requests are the caller's calls). Per sample, calls per request of the caller;
    a drop counts when each of the last samples a deviation must hold is under FANOUT_SHARE of the baseline's and
    ANOMALY_SCORE robust scales below it, while the caller still serves FANOUT_SHARE of its baseline requests."""
    by_key = {(s.signal, s.service, s.peer): s for s in series}
    callers: dict[str, set[str]] = defaultdict(set)
    for caller, callee in dependencies:
        callers[callee].add(caller)
    out: dict[str, dict[str, str]] = defaultdict(dict)
    for caller, callee in sorted({(a, b) for a, b in dependencies if a != b}):
        requests = by_key.get(("request_rate", caller, None))
        calls = by_key.get(("client_request_rate", caller, callee))
        if calls is None and callers[callee] == {caller}:
            calls = by_key.get(("request_rate", callee, None))
        if requests is not None and calls is not None and (note := _fanout_drop(caller, callee, requests, calls,
                                                                                  window)):
            out[caller][callee] = note
    return dict(out)


def _fanout_drop(
    caller: str, callee: str, requests: MetricSeries, calls: MetricSeries, window: Window
) -> str | None:
    """The note of a drop of the caller's calls per request to the callee (dropped_calls), or None."""
    start, base_start, end = window.start.timestamp(), window.baseline_start.timestamp(), window.end.timestamp()
    served = {t: v for t, v in requests.points if base_start <= t <= end and math.isfinite(v)}
    points = [(t, served[t], v) for t, v in calls.points if t in served and math.isfinite(v)]
    if not points or points[-1][0] != max(served):  # the callee must be measured up to the window's end
        return None
    ratios = [(t, v / r) for t, r, v in points if r > 0]
    base, start_at = baseline_of(ratios, start, end)
    base_served = [r for t, r, _ in points if t < start_at]
    k = _sustain_steps([(t, v) for t, _, v in points], calls.window)
    recent = points[-k:]
    if not base or len(recent) < k or recent[0][0] < start_at or any(r <= 0 for _, r, _ in recent):
        return None
    center, scale = robust_scale("calls_per_request", base)
    usual = median(base_served)
    now = [v / r for _, r, v in recent]
    dropped = all(x <= FANOUT_SHARE * center and (center - x) / scale >= ANOMALY_SCORE for x in now)
    if not dropped or any(r < FANOUT_SHARE * usual for _, r, _ in recent):
        return None
    return (f"{caller} made {center:.3g} calls to {callee} per request it served, now {median(now):.3g} (last {k}"
            f" samples) while still serving {median(r for _, r, _ in recent):.3g}/s ({usual:.3g}/s before): its"
            " requests end before those calls")


def level_trend(points: list[tuple[float, float]], since: float) -> tuple[float | None, int]:
    """A steady trend of a level over its history (slope per second, None when not significant) and its resets
    from `since` on (the incident window).

    A reset is the level falling at once to under half its last value and below where its segment started: a
    restart (a spike falling back to its usual level is none). Resets split the history into segments; the
    Mann-Kendall statistic adds over them and the slope is the median of the pairwise slopes within segments, so a
    leak that restarts still shows as one rising trend."""
    segments: list[list[tuple[float, float]]] = [[]]
    resets = 0
    for t, v in points:
        seg = segments[-1]
        if seg and v < 0.5 * seg[-1][1] and v < 0.9 * seg[0][1]:
            segments.append([])
            resets += t >= since
        segments[-1].append((t, v))
    s_total = var_total = 0.0
    slopes: list[float] = []
    for seg in segments:
        s, var = mann_kendall([v for _, v in seg])
        s_total, var_total = s_total + s, var_total + var
        slopes += pairwise_slopes(seg)
    if not var_total or not slopes or not s_total:
        return None, resets
    z = (s_total - math.copysign(1, s_total)) / math.sqrt(var_total)
    slope = median(slopes)
    level = median(v for _, v in points)
    span = points[-1][0] - points[0][0]
    if abs(z) < TREND_Z or not level or abs(slope) * span < TREND_SHARE * abs(level):
        return None, resets
    return _round(slope), resets


def robust_scale(signal: str, values: list[float]) -> tuple[float, float]:
    """Median and a noise scale (1.4826 x MAD, floored per signal) of baseline values."""
    center = median(values)
    mad = median(abs(v - center) for v in values) * 1.4826
    floor_abs, floor_rel = FLOORS.get(signal, (1e-9, 0.05))
    return center, max(mad, floor_abs, floor_rel * abs(center))


def sustained(z: list[float], k: int = SUSTAIN) -> tuple[float, int | None]:
    """Largest level held for k consecutive steps (max over windows of the window minimum), and where."""
    k = min(k, len(z))
    best, where = -math.inf, None
    for i in range(len(z) - k + 1):
        level = min(z[i : i + k])
        if level > best:
            best, where = level, i
    return best, where


def first_sustained(z: list[float], threshold: float = ONSET_Z, k: int = SUSTAIN) -> int | None:
    """Index where z first stays above threshold for k steps."""
    k = min(k, len(z))
    return next((i for i in range(len(z) - k + 1) if min(z[i : i + k]) >= threshold), None)


def episode_onset(times: list[float], oriented: list[float], at: int, k: int = SUSTAIN) -> int:
    """Where the episode holding sample `at` (oriented z >= ONSET_Z for k samples from there) began: the change that
    brought its series to the level it holds at the episode's end (statistics.change_point), searched from the end
    of the previous episode.

    The episode's edge, its first sample past ONSET_Z / 2, is a threshold crossing that an early weak wobble pulls
    back by minutes. A change point is believed when it is a change by the engine's own rule: the level at the end
    (its last k samples) departs from the level just before the split (the k samples before it) by ONSET_Z scales.
    A burst that came and went inside the episode is no such change (least squares weighs it heavily), so the search
    goes on before it; with no change found, the edge stands. Spikes shorter than the k samples a deviation must hold
    are smoothed away first (a running median of 2k - 1), and both segments hold k samples, as any deviation must;
    the samples that only begin the change count as its. Never before the first sample of the series."""
    first, end = at, at + k
    while first > 0 and oriented[first - 1] >= ONSET_Z / 2:
        first -= 1
    while end < len(oriented) and oriented[end] >= ONSET_Z / 2:
        end += 1
    lo = _previous_episode_end(oriented, first, k)
    smooth = running_median(oriented[lo:end], 2 * k - 1)
    level = median(smooth[-k:])
    hi = len(smooth)
    while (split := change_point(times[lo : lo + hi], smooth[:hi], k)) is not None:
        if level - median(smooth[split - k : split]) >= ONSET_Z:
            break
        hi = split
    else:
        return first
    # The split falls after the samples that only begin the change: a step that a rate or quantile window smears
    # into a ramp as long as the window, the first burst of a bursty fault (which the smoothing took for a spike).
    # Samples just before it that already left the level before them (by an episode edge's ONSET_Z / 2) are its.
    onset = lo + split
    while onset - 1 > lo and oriented[onset - 1] - median(oriented[max(lo, onset - 1 - k) : onset - 1]) >= ONSET_Z / 2:
        onset -= 1
    return onset


def _previous_episode_end(oriented: list[float], first: int, k: int) -> int:
    """Index after the last earlier episode (|z| >= ONSET_Z for k samples, and its tail above ONSET_Z / 2) before
    `first`, or 0: an earlier fault that recovered is kept apart from the one under way."""
    run = 0
    for i in range(first - 1, -1, -1):
        run = run + 1 if abs(oriented[i]) >= ONSET_Z else 0
        if run == k:
            j = i + k
            while j < first and abs(oriented[j]) >= ONSET_Z / 2:
                j += 1
            return j
    return 0


def _sustain_steps(points: list[tuple[float, float]], window: float = 0.0) -> int:
    """Samples a deviation must hold: SUSTAIN, or a minute's worth when the series' step is longer (MIN_SUSTAIN+);
    plus the samples a rate window of `window` seconds smears any deviation over (a change between two scrapes
    shows in every window that spans both: window / step - 1 more points), so a blip read through rate() still
    never scores."""
    gaps = [b[0] - a[0] for a, b in zip(points, points[1:], strict=False) if b[0] > a[0]]
    step = median(gaps) if gaps else SUSTAIN_SECONDS / SUSTAIN
    smear = max(0, math.ceil(window / step - 1e-9) - 1)
    return min(SUSTAIN, max(MIN_SUSTAIN, math.ceil(SUSTAIN_SECONDS / step - 1e-9))) + smear


def _counts_agree(
    points: list[tuple[float, float]], denominator: MetricSeries, start: float, signal: MetricSignal
) -> bool:
    """Does the count of events behind a rising ratio exceed what its baseline explains (statistics.excess_events)?

    Counts are the ratio times its denominator's rate, summed over samples; an unknown denominator is no evidence
    against the ratio."""
    rates = dict(denominator.points)
    step = (points[-1][0] - points[0][0]) / max(1, len(points) - 1)
    since = signal.onset.timestamp() if signal.onset else start
    base_trials = base_events = trials = events = 0.0
    for t, ratio in points:
        rate = rates.get(t)
        if rate is None or math.isnan(rate):
            continue
        n = max(rate, 0.0) * step
        if t < start:
            base_trials, base_events = base_trials + n, base_events + n * min(max(ratio, 0.0), 1.0)
        elif t >= since:
            trials, events = trials + n, events + n * min(max(ratio, 0.0), 1.0)
    if base_trials == 0 and trials == 0:
        return True
    return excess_events(base_events, base_trials, events, trials)


def _score_series(
    s: MetricSeries, base: list[float], points: list[tuple[float, float]], first: int, k: int = SUSTAIN
) -> MetricSignal:
    """Score the samples from `first` on (the incident) against the baseline `base`; the onset may lie earlier."""
    center, scale = robust_scale(s.signal, base)
    times = [t for t, _ in points]
    values = [v for _, v in points]
    z_all = [(v - center) / scale for v in values]
    z = z_all[first:]
    up, _ = sustained(z, k)
    down, _ = sustained([-x for x in z], k)
    direction = "up" if up >= down else "down"
    score = max(up, down, 0.0)
    oriented = z_all if direction == "up" else [-x for x in z_all]
    incident = values[first:]
    # `up` is read by its worst scrape: one failed scrape is a restart or a crash whatever the others said (a dip
    # too short to score still ties with the flat rest, which would read the series as rising)
    peak = min(incident) if direction == "down" or s.signal == "up" else max(incident)
    tail = incident[-k:]
    # Still deviating at the window's end? Then the onset is that of the episode under way: an earlier episode of the
    # same series that recovered in between is an earlier fault, not this one's start.
    active = score >= ONSET_Z and median(oriented[-k:]) >= ONSET_Z
    onset = None
    if score >= ONSET_Z:
        # the episode under way at the window's end when there is one, else the window's first
        at = max(first, len(oriented) - k) if active else first + (first_sustained(oriented[first:], k=k) or 0)
        onset = episode_onset(times, oriented, at, k)
    return MetricSignal(
        service=s.service,
        signal=s.signal,
        peer=s.peer,
        baseline=_round(center),
        current=_round(median(tail)),
        peak=_round(peak),
        score=round(min(score, MAX_SCORE), 2),
        direction=direction if score >= ONSET_Z else "flat",
        onset=None if onset is None else datetime.fromtimestamp(times[onset], UTC),
        active=active,
    )


def _cert_signal(
    s: MetricSeries, base: list[float], incident: list[tuple[float, float]], points: list[tuple[float, float]]
) -> MetricSignal:
    """A certificate matters when it expires: score the crossing of its expiry time inside the window."""
    expired_at = next((t for t, v in incident if v <= t), None)
    expired_before = any(v <= t for t, v in points if t < incident[0][0])
    score = EXPIRED_SCORE if expired_at is not None and not expired_before else 0.0
    return MetricSignal(
        service=s.service,
        signal=s.signal,
        peer=s.peer,
        baseline=_round(median(base)),
        current=_round(incident[-1][1]),
        peak=_round(min(v for _, v in incident)),
        score=score,
        direction="down" if score else "flat",
        onset=datetime.fromtimestamp(expired_at, UTC) if score else None,
    )


def _round(value: float) -> float:
    """Four significant digits keep the evidence compact without changing what it says."""
    if value == 0 or not math.isfinite(value):
        return value
    return round(value, max(0, 3 - int(math.floor(math.log10(abs(value))))))
