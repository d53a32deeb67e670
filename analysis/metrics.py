"""Metric anomalies: a robust baseline per series, a sustained-deviation score, direction and onset."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from statistics import median

from analysis.records import MetricSeries
from state import MetricEvidence, MetricSignal, Window

# Noise floors of the scale (absolute, relative to the baseline level): a deviation smaller than these is
# operationally meaningless however flat the baseline was.
FLOORS: dict[str, tuple[float, float]] = {
    "request_rate": (0.5, 0.10),
    "error_ratio": (0.01, 0.20),
    "latency_p99": (0.005, 0.10),
    "client_request_rate": (0.5, 0.10),
    "client_error_ratio": (0.01, 0.20),
    "cpu_usage": (0.05, 0.10),
    "memory_bytes": (1e6, 0.05),
    "db_pool_in_use": (1.0, 0.10),
    "db_pool_max": (1.0, 0.0),
    "disk_free_bytes": (1e6, 0.02),
    "up": (0.1, 0.0),
}
SUSTAIN = 4  # steps a deviation must hold (4 x 15 s): a 1-2 step blip never scores
ONSET_Z = 3.0
ANOMALY_SCORE = 4.0
MAX_SCORE = 1000.0
EXPIRED_SCORE = 20.0
MAX_SIGNALS = 24
COMPANIONS = {"db_pool_in_use": "db_pool_max"}
# A median and MAD over fewer baseline points than two sustained deviations span cannot tell a shift from noise.
MIN_BASELINE_POINTS = 2 * SUSTAIN


def summarize_metrics(series: list[MetricSeries], window: Window, *, max_signals: int = MAX_SIGNALS) -> MetricEvidence:
    """Score each series against its baseline; keep the anomalous ones (and restart dips), strongest first."""
    start, base_start, end = (
        window.start.timestamp(),
        window.baseline_start.timestamp(),
        window.end.timestamp(),
    )
    signals: list[MetricSignal] = []
    companions: list[MetricSignal] = []
    short_history = 0
    for s in series:
        points = [(t, v) for t, v in s.points if base_start <= t <= end and not math.isnan(v)]
        base = [v for t, v in points if t < start]
        incident = [(t, v) for t, v in points if t >= start]
        short_history += bool(incident) and len(base) < MIN_BASELINE_POINTS
        if not base or not incident:
            continue
        if s.signal == "cert_expiry_timestamp":
            signal = _cert_signal(s, base, incident, points)
        else:
            signal = _score_series(s, base, incident)
        if signal.score >= ONSET_Z or (s.signal == "up" and signal.peak < 0.5):
            signals.append(signal)
        elif s.signal in COMPANIONS.values():
            companions.append(signal)
    # A call rate mostly repeats its callee's request_rate: it yields its place to every other signal.
    signals.sort(key=lambda m: (m.signal == "client_request_rate", -m.score, m.service, m.signal, m.peer or ""))
    kept = signals[:max_signals]
    # A usage signal is read against its limit (pool in use vs pool max): keep the limit beside it.
    wanted = {(m.service, COMPANIONS[m.signal]) for m in kept if m.signal in COMPANIONS}
    kept += [m for m in companions if (m.service, m.signal) in wanted]
    return MetricEvidence(signals=kept, series_read=len(series), short_history=short_history)


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
    """Index where z first stays above threshold for k steps, moved back over the ramp leading to it."""
    k = min(k, len(z))
    for i in range(len(z) - k + 1):
        if min(z[i : i + k]) >= threshold:
            while i > 0 and z[i - 1] >= 1.5:
                i -= 1
            return i
    return None


def _score_series(s: MetricSeries, base: list[float], incident: list[tuple[float, float]]) -> MetricSignal:
    center, scale = robust_scale(s.signal, base)
    values = [v for _, v in incident]
    z = [(v - center) / scale for v in values]
    up, _ = sustained(z)
    down, _ = sustained([-x for x in z])
    direction = "up" if up >= down else "down"
    score = max(up, down, 0.0)
    oriented = z if direction == "up" else [-x for x in z]
    onset = first_sustained(oriented) if score >= ONSET_Z else None
    peak = max(values) if direction == "up" else min(values)
    tail = values[-SUSTAIN:]
    return MetricSignal(
        service=s.service,
        signal=s.signal,
        peer=s.peer,
        baseline=_round(center),
        current=_round(median(tail)),
        peak=_round(peak),
        score=round(min(score, MAX_SCORE), 2),
        direction=direction if score >= ONSET_Z else "flat",
        onset=None if onset is None else datetime.fromtimestamp(incident[onset][0], UTC),
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
