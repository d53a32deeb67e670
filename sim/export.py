"""A scenario's metric history as OpenMetrics text with timestamps, for backfilling a Prometheus with
`promtool tsdb create-blocks-from openmetrics FILE DIR` (replays of past windows over the wire)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from sim.fleet import FAMILIES, Labels, Sample, Timeline
from sim.generate import STEP, SimData
from sim.source import sim_data
from sim.topology import INTERNAL


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


def format_sample(sample: Sample, timestamp: float | None = None) -> str:
    """One exposition line: name{labels} value [timestamp in seconds]."""
    labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sample.labels)
    line = f"{sample.name}{{{labels}}} {_number(sample.value)}" if labels else f"{sample.name} {_number(sample.value)}"
    return line if timestamp is None else f"{line} {_number(timestamp)}"


def openmetrics(data: SimData) -> Iterator[str]:
    """The data's metrics over its whole span, one sample per service and step as a scrape would see them
    (a step where the service is down has only up = 0), counters integrated from 0 at the data start."""
    timeline = Timeline(data)
    # family -> metric (labels without le) -> [(timestamp, samples of that metric point)]
    families: dict[str, dict[Labels, list[tuple[float, list[Sample]]]]] = {f: {} for f in FAMILIES}
    for i in range(timeline.n):
        at = timeline.start + i * STEP
        for service in INTERNAL:
            up = timeline.up(service, at)
            points: dict[tuple[str, Labels], list[Sample]] = {}
            if up:
                for sample in timeline.samples(service, at):
                    metric = tuple((k, v) for k, v in sample.labels if k != "le")
                    points.setdefault((sample.family, metric), []).append(sample)
            points[("up", (("service", service),))] = [Sample("up", "up", (("service", service),), float(up))]
            for (family, metric), samples in points.items():
                families[family].setdefault(metric, []).append((at, samples))
    for family, metrics in families.items():
        kind, text = FAMILIES[family]
        yield f"# TYPE {family} {kind}"
        yield f"# HELP {family} {text}"
        for points in metrics.values():
            for at, samples in points:
                for sample in samples:
                    yield format_sample(sample, at)
    yield "# EOF"


def export_openmetrics(name: str, seed: int, end: datetime, out: Path) -> int:
    """Write the scenario's history [end - 45 min, end] (the data the in-process source serves) to `out`;
    returns the number of samples written."""
    count = 0
    with out.open("w") as handle:
        for line in openmetrics(sim_data(name, seed, end if end.tzinfo else end.replace(tzinfo=UTC))):
            handle.write(line + "\n")
            count += not line.startswith("#")
    return count
