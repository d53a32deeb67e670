"""The interface every telemetry backend implements, and the one place that picks a backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from analysis.records import LogRecord, MetricSeries, Span
from state import CodeRepository, DeployEvent, TelemetrySpec

if TYPE_CHECKING:
    from graph.context import Context


class TelemetrySource(Protocol):
    """Reads one incident's telemetry. Methods raise on failure; collectors turn that into a status."""

    async def dependencies(self, start: datetime, end: datetime) -> list[tuple[str, str]]:
        """Caller -> callee edges seen in the window."""
        ...

    def logs(self, services: list[str], start: datetime, end: datetime) -> AsyncIterator[LogRecord]:
        """Log entries of the services in the window, in time order, streamed."""
        ...

    async def metrics(self, services: list[str], start: datetime, end: datetime, step: float) -> list[MetricSeries]:
        """The signals of analysis.records.SIGNALS for the services (edges: callers among them)."""
        ...

    async def traces(self, services: list[str], start: datetime, end: datetime) -> list[Span]:
        """Spans touching the services in the window."""
        ...

    async def deploys(self, services: list[str], start: datetime, end: datetime) -> list[DeployEvent]:
        """Deploys and config changes of the services in the window."""
        ...

    async def code_repository(self, service: str) -> CodeRepository | None:
        """Where the service's code lives, when the backend knows it."""
        ...


def open_source(spec: TelemetrySpec, context: Context) -> TelemetrySource:
    """The backend a run's telemetry spec names; live backends take their URLs and credentials from the context."""
    if spec.kind == "sim":
        from sim.source import SimTelemetry

        return SimTelemetry(spec)
    from tools.live import LiveTelemetry

    return LiveTelemetry(context)
