"""The simulator as a telemetry backend: SimTelemetry serves one generated scenario."""

from __future__ import annotations

import asyncio
import bisect
import functools
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from analysis.records import PEER_SIGNALS, LogRecord, MetricSeries, Span
from sim.generate import STEP, SimData, generate
from sim.sample_repo import SAMPLE_TEST_COMMAND
from sim.scenarios import Scenario, build_scenario
from state import CodeRepository, DeployEvent, TelemetrySpec

LOOKBACK = 300.0  # seconds a sample stays current when resampling to a coarser step, as in PromQL


@functools.lru_cache(maxsize=8)
def sim_data(name: str, seed: int, end: datetime) -> SimData:
    """The generated telemetry of a scenario, cached per (name, seed, end) in this process."""
    return generate(build_scenario(name, seed, end))


def _utc(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _default_end() -> datetime:
    now = datetime.now(UTC).timestamp()
    return datetime.fromtimestamp(now - now % STEP, UTC)


class SimTelemetry:
    """TelemetrySource over a simulated scenario (spec.kind == "sim"); without spec.end the data ends now."""

    def __init__(self, spec: TelemetrySpec) -> None:
        if spec.kind != "sim" or not spec.scenario:
            raise ValueError("SimTelemetry needs a TelemetrySpec with kind='sim' and a scenario")
        self._key = (spec.scenario, spec.seed, _utc(spec.end) if spec.end else _default_end())
        self._loaded: SimData | None = None
        self._log_ts: list[float] = []

    @property
    def scenario(self) -> Scenario:
        """The scenario being served (root, onset, alert)."""
        return self.data.scenario

    @property
    def data(self) -> SimData:
        """All generated telemetry, unfiltered."""
        return self._loaded or sim_data(*self._key)

    async def _ready(self) -> SimData:
        """Generate (or take from the cache) off the event loop: generation is CPU work of a second or so."""
        if self._loaded is None:
            self._loaded = await asyncio.to_thread(sim_data, *self._key)
            self._log_ts = [record.ts for record in self._loaded.logs]
        return self._loaded

    async def dependencies(self, start: datetime, end: datetime) -> list[tuple[str, str]]:
        """Caller -> callee edges with calls in the window."""
        data = await self._ready()
        lo, hi = _utc(start).timestamp(), _utc(end).timestamp()
        return [
            (series.service, series.peer)
            for series in data.metrics
            if series.signal == "client_request_rate"
            and series.peer
            and any(lo <= t <= hi and v > 0 for t, v in series.points)
        ]

    async def logs(self, services: list[str], start: datetime, end: datetime) -> AsyncIterator[LogRecord]:
        """Log entries of the services in [start, end], in time order."""
        data = await self._ready()
        wanted = set(services)
        lo = bisect.bisect_left(self._log_ts, _utc(start).timestamp())
        hi = bisect.bisect_right(self._log_ts, _utc(end).timestamp())
        for record in data.logs[lo:hi]:
            if record.service in wanted:
                yield record

    async def metrics(self, services: list[str], start: datetime, end: datetime, step: float) -> list[MetricSeries]:
        """Series of the services (edge series of callers among them) in [start, end] at `step` seconds."""
        data = await self._ready()
        wanted = set(services)
        lo, hi = _utc(start).timestamp(), _utc(end).timestamp()
        result = []
        for series in data.metrics:
            if series.service not in wanted:
                continue
            points = _resample(series.points, lo, hi, step)
            if points:
                peer = series.peer if series.signal in PEER_SIGNALS else None
                result.append(MetricSeries(series.signal, series.service, points, peer))
        return result

    async def traces(self, services: list[str], start: datetime, end: datetime) -> list[Span]:
        """All spans of the traces that start in [start, end] and touch one of the services."""
        data = await self._ready()
        wanted = set(services)
        lo, hi = _utc(start).timestamp(), _utc(end).timestamp()
        roots = {span.trace_id for span in data.spans if span.parent_id is None and lo <= span.start <= hi}
        touching = {
            span.trace_id
            for span in data.spans
            if span.trace_id in roots and (span.service in wanted or span.peer in wanted)
        }
        return [span for span in data.spans if span.trace_id in touching]

    async def deploys(self, services: list[str], start: datetime, end: datetime) -> list[DeployEvent]:
        """Deploys and config changes of the services in [start, end]."""
        data = await self._ready()
        wanted = set(services)
        lo, hi = _utc(start), _utc(end)
        return [d for d in data.deploys if d.service in wanted and lo <= d.at <= hi]

    async def code_repository(self, service: str) -> CodeRepository | None:
        """The sample repo with the bad commit, for deployment_regression's root; else None."""
        scenario = (await self._ready()).scenario
        if scenario.name != "deployment_regression" or service != scenario.root_service:
            return None
        from sim.sample_repo import ensure_sample_repo

        path = str((await asyncio.to_thread(ensure_sample_repo, service)).path)
        return CodeRepository(service=service, checkout=path, test_command=list(SAMPLE_TEST_COMMAND))


def _resample(points: list[tuple[float, float]], lo: float, hi: float, step: float) -> list[tuple[float, float]]:
    """Points in [lo, hi]; at a coarser step, the latest sample at or before each lo + k*step (as PromQL)."""
    if step <= STEP:
        return [(t, v) for t, v in points if lo <= t <= hi]
    times = [t for t, _ in points]
    out = []
    at = lo
    while at <= hi + 1e-6:
        index = bisect.bisect_right(times, at + 1e-6) - 1
        if index >= 0 and at - times[index] <= LOOKBACK:
            out.append((at, points[index][1]))
        at += step
    return out
