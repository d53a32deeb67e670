"""Sparkline data: the kept metric signals' series, downsampled, with the band the anomaly score measures against."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from statistics import fmean

from analysis.metrics import ONSET_Z, robust_scale
from analysis.records import MetricSeries
from state import MetricChart, MetricSignal, Window

MAX_POINTS = 90  # a sparkline a few hundred pixels wide shows no more; 45 minutes at 15 s is 180 steps
# An expiry timestamp is a flat line whatever happens; its story is one time, told in words, not a chart.
NOT_CHARTED = frozenset({"cert_expiry_timestamp"})


def metric_charts(
    series: list[MetricSeries], signals: list[MetricSignal], window: Window, max_points: int = MAX_POINTS
) -> list[MetricChart]:
    """One chart per kept signal: its series from the baseline start to the window's end, averaged into at most
    `max_points` buckets, and the baseline band (median +- ONSET_Z robust sigma), outside which the score counts."""
    by_key = {(s.signal, s.service, s.peer): s for s in series}
    start, end = window.baseline_start.timestamp(), window.end.timestamp()
    step = max((end - start) / max_points, 1e-9)
    charts = []
    for signal in signals:
        found = by_key.get((signal.signal, signal.service, signal.peer))
        if found is None or signal.signal in NOT_CHARTED:
            continue
        points = [(t, v) for t, v in found.points if start <= t <= end and math.isfinite(v)]
        base = [v for t, v in points if t < window.start.timestamp()]
        if not points or not base:
            continue
        buckets: list[list[float]] = [[] for _ in range(max_points)]
        for t, v in points:
            buckets[min(int((t - start) / step), max_points - 1)].append(v)
        center, scale = robust_scale(signal.signal, base)
        charts.append(MetricChart(
            service=signal.service, signal=signal.signal, peer=signal.peer,
            start=datetime.fromtimestamp(start, UTC), step_seconds=round(step, 3),
            values=[_round(fmean(b)) if b else None for b in buckets],
            baseline=_round(center), band_low=_round(center - ONSET_Z * scale),
            band_high=_round(center + ONSET_Z * scale),
        ))
    return charts


def _round(value: float) -> float:
    """Five significant digits: more than a sparkline can show, and compact in a checkpoint."""
    return float(f"{value:.5g}")
