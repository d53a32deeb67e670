"""The small statistical tests of analysis/statistics.py on inputs whose answers are known by hand."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

from analysis.metrics import summarize_metrics
from analysis.records import MetricSeries
from analysis.statistics import (
    change_point,
    excess_events,
    mann_kendall,
    pairwise_slopes,
    poisson_tail,
    running_median,
)
from state import Window

END = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
WINDOW = Window(start=END - timedelta(minutes=15), end=END, baseline_start=END - timedelta(minutes=45))
T0 = WINDOW.baseline_start.timestamp()
SHIFT = END.timestamp() - 8 * 60


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


# --- onsets: the change point of the episode under way, not its first threshold crossing (issue 7) ---------------


def series(signal, value, step=15, noise=0.02, since=T0, service="payments"):
    """A series from `since` to the window end at `step` seconds: `value(t)` times deterministic noise."""
    rng = random.Random(f"{signal}/{noise}/{step}")
    times = [since + s for s in range(0, int(END.timestamp() - since) + 1, step)]
    return MetricSeries(signal, service, [(t, value(t) * (1 + rng.gauss(0, noise))) for t in times])


def onset_of(*metrics, window=WINDOW):
    signals = summarize_metrics(list(metrics), window).signals
    return {m.signal: m.onset.timestamp() if m.onset else None for m in signals}


def test_onset_is_the_level_shift_not_an_early_weak_wobble():
    # p99 creeps up by two noise scales from the window start, then jumps five-fold seven minutes later
    wobble = WINDOW.start.timestamp()
    p99 = series("latency_p99", lambda t: 0.5 if t >= SHIFT else 0.12 if t >= wobble else 0.1)
    assert abs(onset_of(p99)["latency_p99"] - SHIFT) <= 15
    # the same with a wobble that is an anomaly of its own (z about 5): the shift is still the larger change
    p99 = series("latency_p99", lambda t: 0.5 if t >= SHIFT else 0.15 if t >= wobble else 0.1)
    assert abs(onset_of(p99)["latency_p99"] - SHIFT) <= 15
    # a minute-long burst late in the episode, back to the shifted level after: the shift is still the change
    burst = END.timestamp() - 2 * 60
    p99 = series("latency_p99", lambda t: 3.0 if burst <= t < burst + 60 else 0.3 if t >= SHIFT else 0.1)
    assert abs(onset_of(p99)["latency_p99"] - SHIFT) <= 15


def test_a_change_is_dated_at_the_sample_that_begins_it():
    # a one-minute scrape of a rate over a minute: the sample after the step holds a part of it (Nezha's p99s do)
    ramp = {SHIFT: 0.13}
    p99 = series("latency_p99", lambda t: ramp.get(t, 1.5 if t > SHIFT else 0.1), step=60, noise=0.0)
    assert onset_of(p99)["latency_p99"] == SHIFT
    # a bursty fault at the same scrape: a first burst, one quiet scrape, then it holds; the first burst is its start
    bursts = series("latency_p99", lambda t: 0.1 if t < SHIFT or t == SHIFT + 60 else 0.6, step=60)
    assert onset_of(bursts)["latency_p99"] == SHIFT


def test_onset_of_a_noisy_shift_that_began_before_the_window_is_not_the_window_start():
    # 10% noise and a few spikes; the error ratio rose six minutes before the window opened
    shift = WINDOW.start.timestamp() - 6 * 60
    spikes = {T0 + 300, T0 + 900, WINDOW.start.timestamp() + 120}
    errors = series("error_ratio", lambda t: (0.2 if t >= shift else 0.01) * (4 if t in spikes else 1), noise=0.1)
    onset = onset_of(errors)["error_ratio"]
    assert abs(onset - shift) <= 30 and onset < WINDOW.start.timestamp()


def test_onset_of_a_slow_ramp_is_where_it_starts():
    # a leak from 14 minutes before the end, 2 MB a scrape: it takes minutes to rise past the noise floor (5% of 400 MB)
    start = END.timestamp() - 14 * 60
    memory = series("memory_bytes", lambda t: 4e8 + 2e6 * max(0.0, t - start) / 15, noise=0.002)
    assert abs(onset_of(memory)["memory_bytes"] - start) <= 60


def test_onsets_on_short_sparse_and_gappy_series():
    # a handful of samples a minute apart, with a gap and a NaN: an onset inside the history, no crash
    since = END.timestamp() - 20 * 60
    sparse = series("cpu_usage", lambda t: 0.9 if t >= SHIFT else 0.1, step=60, noise=0.0, since=since)
    sparse.points[3] = (sparse.points[3][0], math.nan)
    del sparse.points[5]
    onset = onset_of(sparse)["cpu_usage"]
    assert sparse.points[0][0] <= onset and abs(onset - SHIFT) <= 60
    # a handful of samples: too few for a baseline, so no signal and no onset, and no crash
    few = series("cpu_usage", lambda t: 0.9 if t >= SHIFT else 0.1, step=60, since=END.timestamp() - 5 * 60)
    assert onset_of(few) == {}
    flat = series("cpu_usage", lambda t: 0.3, noise=0.0)
    assert onset_of(flat) == {}
    # two samples, one each side of the window start; a series of NaNs
    two = MetricSeries("cpu_usage", "payments", [(T0, 0.1), (SHIFT, 0.9)])
    assert onset_of(two) == {"cpu_usage": SHIFT}
    assert onset_of(MetricSeries("cpu_usage", "payments", [(T0, math.nan), (SHIFT, math.nan)])) == {}


def test_change_point_finds_steps_and_ramp_starts():
    times = [15.0 * i for i in range(40)]
    step = [1.0] * 25 + [5.0] * 15
    assert change_point(times, step, 4) == 25
    ramp = [1.0] * 12 + [1.0 + 0.5 * i for i in range(1, 29)]
    assert change_point(times, ramp, 4) == 12
    # a spike of one sample before the step: the running median removes it, the step stays where it was
    spiky = step[:]
    spiky[10] = 100.0
    assert change_point(times, running_median(spiky, 7), 4) == 25
    assert running_median([1.0, 1.0, 9.0, 1.0, 1.0], 3) == [1.0, 1.0, 1.0, 1.0, 1.0]


def test_change_point_is_none_when_there_is_nothing_to_find():
    assert change_point([], [], 4) is None
    assert change_point([0.0, 1.0, 2.0], [1.0, 5.0, 5.0], 2) is None  # fewer than two segments of two
    assert change_point([15.0 * i for i in range(20)], [3.0] * 20, 4) is None  # constant
    assert change_point([15.0 * i for i in range(8)], [math.nan] * 8, 2) is None
    values = [1.0, 1.0, math.nan, 1.0, 1.0, 6.0, 6.0, math.nan, 6.0, 6.0]
    assert change_point([15.0 * i for i in range(10)], values, 2) == 5  # an index of the input, NaNs skipped
