"""Live telemetry: Loki for logs and config reloads, Prometheus for metrics, dependencies and deploys, Tempo or
Jaeger for traces."""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import AsyncIterator
from contextlib import aclosing
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from analysis.deploy_logs import DEPLOY_LINE_FILTER, deploys_from_logs
from analysis.records import PEER_SIGNALS, SIGNALS, LogRecord, MetricSeries, Span
from state import CodeRepository, DeployEvent
from tools.http_client import BackendError, QueryBudget, QueryBudgetExceeded
from tools.loki import LogReadStats, LokiClient
from tools.prometheus import PrometheusClient, PromResult, render_query
from tools.spans import TraceReadStats
from tools.telemetry_config import TelemetryConfig, duration_seconds, load_config

if TYPE_CHECKING:
    from graph.context import Context

# A ratio is absent where nothing failed (no numerator series) and NaN where nothing was requested (0/0):
# both mean 0 wherever its rate series has a point.
RATIO_OF_RATE = {"error_ratio": "request_rate", "client_error_ratio": "client_request_rate"}
SIGNAL_ORDER = {name: index for index, name in enumerate(SIGNALS)}
MAX_CODE_HOST_SERVICES = 5  # services whose deployments one read asks GitHub for


class NotConfiguredError(RuntimeError):
    """A live backend was asked for but its URL is not set."""


class LiveTelemetry:
    """TelemetrySource over Loki and Prometheus, from the run's Context (URLs, credentials, config file).

    One instance serves one collector: its query budget, `notes` (warnings, truncation, skipped queries) and
    `log_stats` belong to that collector's read.
    """

    def __init__(self, context: Context, config: TelemetryConfig | None = None) -> None:
        self.config = config or load_config(context.telemetry_config, context.telemetry_tables)
        self._context = context
        self.budget = QueryBudget(self.config.query_budget)
        self.notes: list[str] = []
        self.log_stats = LogReadStats()

    async def dependencies(self, start: datetime, end: datetime) -> list[tuple[str, str]]:
        """Caller -> callee edges with calls in the window (callees may be external, unscraped peers)."""
        prom = self.config.prometheus
        window = (_utc(end) - _utc(start)).total_seconds()
        query = render_query(
            prom, "dependencies", window_seconds=window, min_calls=self.config.thresholds.dependency_min_calls
        )
        async with self._prometheus() as client:
            result = await client.query(query, end)
        self._note_warnings(result)
        edges = {
            (s.labels[prom.service_label], s.labels[prom.peer_label])
            for s in result.series
            if s.labels.get(prom.service_label) and s.labels.get(prom.peer_label)
        }
        return sorted(edges)

    async def logs(self, services: list[str], start: datetime, end: datetime) -> AsyncIterator[LogRecord]:
        """Raw entries of the services in [start, end], in time order, one Loki page in memory at a time."""
        if not self._context.loki_url:
            raise NotConfiguredError("Loki is not configured: set LOKI_URL")
        if not services:
            return
        self.log_stats = LogReadStats()
        client = LokiClient(
            self._context.loki_url, self._context.loki_auth, self.config.loki, self.config.http, self.budget
        )
        async with client, aclosing(client.pages(services, start, end, self.log_stats)) as pages:
            async for page in pages:
                for record in page:
                    yield record
        if self.log_stats.truncated:
            self.notes.append(f"logs truncated after {self.log_stats.lines} lines: {self.log_stats.reason}")

    async def metrics(
        self, services: list[str], start: datetime, end: datetime, step: float
    ) -> list[MetricSeries]:
        """The SIGNALS of the services at `step` seconds: one query per signal and batch of services.

        A failed or unsent query leaves its signal out (noted); only when every query failed does this raise.
        """
        prom = self.config.prometheus
        if not services:
            return []
        batches = [
            services[i : i + prom.services_per_query]
            for i in range(0, len(services), prom.services_per_query)
        ]
        tasks = [(signal, batch) for signal in SIGNALS for batch in batches]
        gate = asyncio.Semaphore(prom.max_concurrent_queries)
        async with self._prometheus() as client:

            async def run(signal: str, batch: list[str]) -> PromResult:
                async with gate:
                    return await client.query_range(render_query(prom, signal, batch), start, end, step)

            outcomes = await asyncio.gather(*(run(s, b) for s, b in tasks), return_exceptions=True)
        wanted = set(services)
        found: dict[tuple[str, str, str | None], list[tuple[float, float]]] = {}
        answered: set[tuple[str, str]] = set()
        failures: list[BaseException] = []
        for (signal, batch), outcome in zip(tasks, outcomes, strict=True):
            if isinstance(outcome, BackendError | QueryBudgetExceeded):
                failures.append(outcome)
                continue
            if isinstance(outcome, BaseException):
                raise outcome
            self._note_warnings(outcome)
            answered.update((signal, service) for service in batch)
            for series in outcome.series:
                service = series.labels.get(prom.service_label)
                peer = series.labels.get(prom.peer_label) if signal in PEER_SIGNALS else None
                if service in wanted and (peer or signal not in PEER_SIGNALS):
                    found[(signal, service, peer)] = series.points
        if failures and len(failures) == len(tasks):
            raise failures[0]
        if failures:
            self.notes.append(
                f"metrics: {len(failures)} of {len(tasks)} queries failed or were not sent; "
                f"first: {failures[0]}"
            )
        windows = {signal: duration_seconds(prom.range_window) for signal, query in prom.queries.items()
                   if "$range" in query}
        return _metric_series(found, answered, windows)

    async def traces(self, services: list[str], start: datetime, end: datetime) -> list[Span]:
        """Spans of a bounded sample of the traces touching the services that start in [start, end], from Tempo
        (TEMPO_URL) or else Jaeger (JAEGER_URL); without either, none (noted: no data, not an error)."""
        from tools import jaeger, tempo

        context, config = self._context, self.config
        if context.tempo_url:
            client, read = tempo.TempoClient(context.tempo_url, context.tempo_auth, config.traces, config.http,
                                             self.budget), tempo.read_spans
        elif context.jaeger_url:
            client, read = jaeger.JaegerClient(context.jaeger_url, context.jaeger_auth, config.traces, config.http,
                                               self.budget), jaeger.read_spans
        else:
            self._note("traces: no trace backend configured (set TEMPO_URL or JAEGER_URL)")
            return []
        if not services:
            return []
        stats = TraceReadStats()
        async with client:
            spans = await read(client, services, start, end, config.traces, stats)  # type: ignore[arg-type]
        for reason in stats.reasons:
            self._note(reason)
        return spans

    async def deploys(self, services: list[str], start: datetime, end: datetime) -> list[DeployEvent]:
        """Version changes of app_build_info in the window, with the commit its revision label names, and the
        deploys and config reloads the logs tell (Loki)."""
        prom = self.config.prometheus
        if not services:
            return []
        size = prom.services_per_query
        versions: dict[str, dict[str, set[float]]] = {}
        revisions: dict[str, dict[str, str]] = {}
        async with self._prometheus() as client:
            for i in range(0, len(services), size):
                query = render_query(prom, "deploys", services[i : i + size])
                result = await client.query_range(query, start, end, prom.step_seconds)
                self._note_warnings(result)
                for series in result.series:
                    service, version = (
                        series.labels.get(prom.service_label),
                        series.labels.get(prom.version_label),
                    )
                    if service and version:
                        seen = versions.setdefault(service, {}).setdefault(version, set())
                        seen.update(t for t, v in series.points if math.isfinite(v))
                        revision = next((series.labels[k] for k in prom.revision_labels if series.labels.get(k)), None)
                        if revision:
                            revisions.setdefault(service, {})[version] = revision
        events = [
            event
            for service in sorted(versions)
            for event in version_changes(service, versions[service], revisions.get(service, {}))
        ]
        events += await self._log_changes(services, start, end)
        events += await self._code_host_changes(services, start, end)
        return sorted(events, key=lambda e: (e.at, e.service))

    async def _log_changes(self, services: list[str], start: datetime, end: datetime) -> list[DeployEvent]:
        """Deploys and config reloads the services logged in the window (analysis/deploy_logs.py).

        Without Loki there are none (the logs collector reports Loki missing); a failed read is noted and the
        version changes still count."""
        if not self._context.loki_url:
            return []
        loki = dataclasses.replace(self.config.loki, line_filters=(DEPLOY_LINE_FILTER,))
        client = LokiClient(self._context.loki_url, self._context.loki_auth, loki, self.config.http, self.budget)
        records = []
        try:
            async with client:
                async for record in client.entries(services, start, end):
                    records.append(record)
        except (BackendError, QueryBudgetExceeded) as exc:
            self.notes.append(f"deploys: deploys and config changes from logs unavailable: {exc}")
        return deploys_from_logs(records)

    async def _code_host_changes(self, services: list[str], start: datetime, end: datetime) -> list[DeployEvent]:
        """Deployments and releases on GitHub of the services whose repository map names a GitHub repository;
        a failure is noted and the other sources still count."""
        mapped = [(s, r) for s in services if (r := self.config.repositories.get(s)) and r.github]
        if not mapped:
            return []
        if not self._context.github_token:
            self._note("deploys: GitHub deployments and releases not read: set GITHUB_TOKEN")
            return []
        from github import GithubException

        from tools.github import deploy_events, error_reason, github_client

        client = github_client(self._context.github_token, self._context.github_api_url)
        events: list[DeployEvent] = []
        for service, repository in mapped[:MAX_CODE_HOST_SERVICES]:
            try:
                events += await asyncio.to_thread(
                    deploy_events, client, repository.github, service, _utc(start), _utc(end), repository.environment
                )
            except GithubException as exc:
                self._note(f"deploys: GitHub {repository.github}: {error_reason(exc, repository.github)}")
            except Exception as exc:  # a transport error or an odd answer: this source only is missing
                self._note(f"deploys: GitHub {repository.github}: {type(exc).__name__}: {exc}")
        return events

    async def code_repository(self, service: str) -> CodeRepository | None:
        """The service's repository from the configuration's repository map ([repositories.<service>])."""
        found = self.config.repositories.get(service)
        if found is None:
            return None
        return CodeRepository(
            service=service, checkout=found.checkout or None, github=found.github or None, path=found.path,
            base_branch=found.base_branch, test_command=list(found.test_command),
        )

    def _prometheus(self) -> PrometheusClient:
        if not self._context.prometheus_url:
            raise NotConfiguredError("Prometheus is not configured: set PROMETHEUS_URL")
        return PrometheusClient(
            self._context.prometheus_url,
            self._context.prometheus_auth,
            self.config.prometheus,
            self.config.http,
            self.budget,
        )

    def _note(self, note: str) -> None:
        if note not in self.notes:
            self.notes.append(note)

    def _note_warnings(self, result: PromResult) -> None:
        self.notes.extend(f"prometheus warning: {warning}" for warning in result.warnings)


def version_changes(
    service: str, versions: dict[str, set[float]], revisions: dict[str, str] | None = None
) -> list[DeployEvent]:
    """Deploys from the timestamps each version of a service was reported at; `revisions` names the commit of a
    version (app_build_info's revision label).

    At each step the current version is the newest (latest first seen) of those reported, so the overlap while
    an old series goes stale does not count as a change, and a rollback shows once the newer version is gone.
    """
    first_seen = {version: min(times) for version, times in versions.items() if times}
    events = []
    current: str | None = None
    for at in sorted(set().union(*versions.values())):
        present = [v for v, times in versions.items() if at in times]
        newest = max(present, key=lambda v: (first_seen[v], v))
        if current is not None and newest != current:
            events.append(
                DeployEvent(
                    at=datetime.fromtimestamp(at, UTC),
                    service=service,
                    version=newest,
                    previous_version=current,
                    kind="code",
                    commit=(revisions or {}).get(newest),
                    previous_commit=(revisions or {}).get(current),
                    description=f"app_build_info version {current} -> {newest}",
                    source="metrics",
                )
            )
        current = newest
    return events


def _metric_series(
    found: dict[tuple[str, str, str | None], list[tuple[float, float]]], answered: set[tuple[str, str]],
    windows: dict[str, float] | None = None,
) -> list[MetricSeries]:
    """Finite points only; ratios filled with 0 along their rate series where the ratio query answered; each series
    with the rate window its query reads over (`windows` by signal)."""
    points_by_key: dict[tuple[str, str, str | None], list[tuple[float, float]]] = {}
    for (signal, service, peer), points in found.items():
        points_by_key[(signal, service, peer)] = [(t, v) for t, v in points if math.isfinite(v)]
    for ratio, rate in RATIO_OF_RATE.items():
        for (signal, service, peer), rate_points in found.items():
            if signal != rate or (ratio, service) not in answered:
                continue
            values = dict.fromkeys((t for t, _ in rate_points), 0.0)
            values.update(points_by_key.get((ratio, service, peer), []))
            points_by_key[(ratio, service, peer)] = sorted(values.items())
    keys = sorted(points_by_key, key=lambda k: (SIGNAL_ORDER[k[0]], k[1], k[2] or ""))
    return [
        MetricSeries(signal, service, points_by_key[(signal, service, peer)], peer, (windows or {}).get(signal, 0.0))
        for signal, service, peer in keys
        if points_by_key[(signal, service, peer)]
    ]


def _utc(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)
