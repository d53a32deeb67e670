"""Small statistical tests the evidence engine relies on: counts, trends and change points, each safe on short data."""

from __future__ import annotations

import math

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


def pairwise_slopes(points: list[tuple[float, float]], limit: int = 120) -> list[float]:
    """Slopes between every pair of points (thinned evenly to `limit` points): their median is the Theil-Sen trend,
    which a few outliers (spikes, restarts) cannot move."""
    if len(points) > limit:
        stride = len(points) / limit
        points = [points[int(i * stride)] for i in range(limit)]
    return [(v2 - v1) / (t2 - t1) for i, (t1, v1) in enumerate(points) for t2, v2 in points[i + 1 :] if t2 > t1]


def mann_kendall(values: list[float]) -> tuple[float, float]:
    """Mann-Kendall trend statistic S (positive: rising) and its variance under no trend; needs no distribution and
    no fitted line, and adds over independent segments."""
    n = len(values)
    if n < 3:
        return 0.0, 0.0
    s = sum((values[j] > values[i]) - (values[j] < values[i]) for i in range(n) for j in range(i + 1, n))
    return float(s), n * (n - 1) * (2 * n + 5) / 18
