"""Small statistical tests the evidence engine relies on: counts, trends and change points, each safe on short data."""

from __future__ import annotations

import math
from itertools import accumulate
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


def running_median(values: list[float], width: int) -> list[float]:
    """Median of each sample's neighbourhood of `width` samples (truncated at the ends).

    A running median of 2h+1 samples removes every pulse of at most h samples and leaves steps and monotone ramps
    where they are (they pass through it unchanged), so a smoothed series keeps its change points but not its spikes;
    within h samples of either end a pulse and a step look alike, and both stay."""
    h = max(0, width // 2)
    return [median(values[max(0, i - h) : i + h + 1]) for i in range(len(values))]


def change_point(times: list[float], values: list[float], min_segment: int = 2) -> int | None:
    """Index of the first sample after the one change of level or trend in a series, None when there is none to find.

    Model: a constant level before the change, a straight line (any level, any slope) from it on. A step is the line
    of slope 0, the start of a ramp is the line's start, so one search finds both. The estimate is the split that
    minimises the summed squared error of the two fits: under independent Gaussian noise of constant variance it is the
    maximum likelihood change point (two-phase regression; Hinkley 1970 for the mean shift). It weighs how far and for
    how long the series moved, so a small early wobble does not win by coming first, as it does a first threshold
    crossing. Both segments hold at least `min_segment` samples; non-finite samples are skipped."""
    kept = [i for i, (t, v) in enumerate(zip(times, values, strict=True)) if math.isfinite(t) and math.isfinite(v)]
    n = len(kept)
    m = max(1, min_segment)
    if n < 2 * m:
        return None
    t0, span = times[kept[0]], (times[kept[-1]] - times[kept[0]]) or 1.0
    ys = [values[i] for i in kept]
    mean = sum(ys) / n
    spread = math.sqrt(sum((y - mean) ** 2 for y in ys) / n)
    if spread == 0:
        return None
    # centred and scaled, so the prefix sums below lose no precision on large levels (bytes, epoch seconds)
    ts = [(times[i] - t0) / span for i in kept]
    ys = [(y - mean) / spread for y in ys]
    st, sy, stt, sty, syy = (
        list(accumulate(xs, initial=0.0))
        for xs in (ts, ys, [t * t for t in ts], [t * y for t, y in zip(ts, ys, strict=True)], [y * y for y in ys])
    )
    no_change = syy[n] - sy[n] ** 2 / n
    tie = 1e-9 * max(1.0, no_change)  # rounding of the sums; a tie (the kink of a ramp) goes to the later split
    best, where = no_change - tie, None
    for j in range(m, n - m + 1):
        before = syy[j] - sy[j] ** 2 / j
        k = n - j
        t, y = st[n] - st[j], sy[n] - sy[j]
        after = syy[n] - syy[j] - y * y / k
        vt = stt[n] - stt[j] - t * t / k
        if vt > 1e-12:
            after -= (sty[n] - sty[j] - t * y / k) ** 2 / vt
        cost = max(0.0, before) + max(0.0, after)
        if cost <= best + (tie if where is not None else 0.0):
            best, where = min(best, cost), j
    return None if where is None else kept[where]
