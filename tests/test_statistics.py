"""The small statistical tests of analysis/statistics.py on inputs whose answers are known by hand."""

from __future__ import annotations

import math

from analysis.statistics import excess_events, mann_kendall, pairwise_slopes, poisson_tail


def test_poisson_tail_matches_its_closed_forms():
    assert poisson_tail(0, 3.0) == 1.0
    assert math.isclose(poisson_tail(1, 0.5), 1 - math.exp(-0.5))
    assert math.isclose(poisson_tail(3, 2.0), 1 - math.exp(-2) * (1 + 2 + 2))
    assert poisson_tail(2, 0.0) == 0.0


def test_excess_events_counts_not_ratios():
    # one failure of about one request, none in 18 before: chance explains it
    assert not excess_events(0, 18, 1, 0.6)
    # 120 failures of 2,400 requests, none of 72,000 before: chance does not
    assert excess_events(0, 72_000, 120, 2_400)
    # the same 5% failing both before and now: no excess
    assert not excess_events(3_600, 72_000, 120, 2_400)
    assert not excess_events(0, 100, 5, 0)


def test_mann_kendall_sign_and_variance():
    s, var = mann_kendall([1.0, 2.0, 3.0, 4.0, 5.0])
    assert s == 10 and math.isclose(var, 5 * 4 * 15 / 18)
    assert mann_kendall([5.0, 4.0, 3.0, 2.0])[0] == -6
    assert mann_kendall([1.0, 1.0])[1] == 0.0  # too short to say anything


def test_pairwise_slopes_median_ignores_an_outlier():
    points = [(t, 2.0 * t) for t in range(10)]
    points[4] = (4, 1000.0)
    slopes = sorted(pairwise_slopes(points))
    assert slopes[len(slopes) // 2] == 2.0
    assert len(pairwise_slopes([(t, t) for t in range(500)], limit=50)) == 50 * 49 // 2
