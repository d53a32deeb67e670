"""Small statistical tests the evidence engine relies on: counts, trends and change points, each safe on short data."""

from __future__ import annotations

import math
from statistics import median

# A change is believed when chance alone would produce it less than once in a thousand looks: the engine looks at a
# few hundred series per incident, so a laxer level would flag some series in every quiet window.
SIGNIFICANCE = 1e-3


def poisson_tail(k: int, mu: float) -> float:
    """P(X >= k) for X ~ Poisson(mu): how surprising k events are when mu were expected."""
    if k <= 0:
        return 1.0
    if mu <= 0:
        return 0.0
    term = math.exp(-mu)
    below = term
    for i in range(1, k):
        term *= mu / i
        below += term
    return max(0.0, 1.0 - below)


def excess_events(
    base_events: float, base_trials: float, events: float, trials: float, *, level: float = SIGNIFICANCE
) -> bool:
    """Are `events` in `trials` more than the baseline's `base_events` in `base_trials` explains?

    A ratio of a handful of requests says little (one failure of one request is a ratio of 1): the test counts. The
    baseline's rate gets half an event of prior weight (Jeffreys), so a baseline without events still expects some.
    """
    if trials <= 0:
        return False
    rate = (base_events + 0.5) / (base_trials + 1.0)
    return poisson_tail(round(events), rate * trials) < level


def theil_sen_slope(points: list[tuple[float, float]]) -> float:
    """Median of the pairwise slopes: a trend estimate that a few outliers (restarts, spikes) cannot move."""
    if len(points) > 200:  # thin evenly: the median of slopes needs no more pairs than that
        stride = len(points) / 200
        points = [points[int(i * stride)] for i in range(200)]
    slopes = [
        (v2 - v1) / (t2 - t1)
        for i, (t1, v1) in enumerate(points)
        for t2, v2 in points[i + 1 :]
        if t2 > t1
    ]
    return median(slopes) if slopes else 0.0


def mann_kendall_z(values: list[float]) -> float:
    """Mann-Kendall trend statistic as a z score (positive: rising); needs no distribution and no fitted line."""
    n = len(values)
    if n < 4:
        return 0.0
    s = sum((values[j] > values[i]) - (values[j] < values[i]) for i in range(n) for j in range(i + 1, n))
    var = n * (n - 1) * (2 * n + 5) / 18
    if s == 0:
        return 0.0
    return (s - math.copysign(1, s)) / math.sqrt(var)


def change_point(values: list[float]) -> int | None:
    """Index where the mean shifts most (the split minimising the summed squared error of two flat segments)."""
    n = len(values)
    if n < 2:
        return None
    total, total_sq = sum(values), sum(v * v for v in values)
    best, where, left, left_sq = math.inf, None, 0.0, 0.0
    for i in range(1, n):
        left += values[i - 1]
        left_sq += values[i - 1] ** 2
        right, right_sq = total - left, total_sq - left_sq
        cost = (left_sq - left * left / i) + (right_sq - right * right / (n - i))
        if cost < best:
            best, where = cost, i
    return where
