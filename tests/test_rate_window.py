"""A deviation read through a PromQL rate window shows for window / step - 1 more samples than it lasted: a blip that
never scores in the raw samples must not score through rate() either (the wire-only false alarm of eval --hard
--wire), while a sustained fault still does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from analysis.metrics import summarize_metrics
from analysis.records import MetricSeries
from state import Window
from tools.telemetry_config import duration_seconds, load_config

END = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
WINDOW = Window(start=END - timedelta(minutes=15), end=END, baseline_start=END - timedelta(minutes=45))
T0 = WINDOW.baseline_start.timestamp()


def p99(deviating: range, window: float) -> MetricSeries:
    """A flat p99 with a small wobble, 1.0 s at the deviating steps (of 181 15-s steps)."""
    points = [(T0 + 15 * i, 1.0 if i in deviating else 0.2 + 0.002 * (i % 3)) for i in range(181)]
    return MetricSeries("latency_p99", "api", points, window=window)


def scored(series: MetricSeries) -> bool:
    return any(s.score >= 4 for s in summarize_metrics([series], WINDOW).signals)


def test_a_two_step_blip_through_a_one_minute_rate_window_does_not_score() -> None:
    smeared = range(170, 174)  # 2 scrapes of slow requests shown by rate()[1m] at 4 points
    assert scored(p99(smeared, window=0.0))  # as an instant reading, 4 samples would be a sustained minute
    assert not scored(p99(smeared, window=60.0))


def test_a_sustained_fault_through_a_rate_window_still_scores() -> None:
    assert scored(p99(range(160, 181), window=60.0))


def test_prometheus_durations() -> None:
    assert [duration_seconds(d) for d in ("1m", "90s", "1m30s", "500ms", "2h")] == [60, 90, 90, 0.5, 7200]


def test_a_bad_rate_window_is_refused_when_the_config_loads() -> None:
    with pytest.raises(ValueError, match="prometheus.range_window: not a Prometheus duration: '1 minute'"):
        load_config(None, {"prometheus": {"range_window": "1 minute"}})
    assert load_config(None, {"prometheus": {"range_window": "90s"}}).prometheus.range_window == "90s"
