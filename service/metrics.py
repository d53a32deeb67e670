"""Prometheus metrics of the service: counters and histograms of this process (summed over every process of
`serve --processes N` through prometheus_client's multiprocess mode), and gauges read from the database at most
once per DATABASE_GAUGE_SECONDS whatever the number of scrapers."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from psycopg_pool import AsyncConnectionPool

from service.queue import STALLED_SECONDS, live_workers, queue_depth

RUN_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)
NODE_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)
DATABASE_GAUGE_SECONDS = 5.0  # scrapes within this time share one reading of the database
RENDER_SECONDS = 1.0  # ... and scrapes within this time one rendering of the text (counters lag at most this)
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"  # set by `serve --processes N` (N > 1) for every process

log = logging.getLogger(__name__)


class DatabaseGauges(Collector):
    """Incidents by status, the run queue and the notification outbox, as of the last reading (cached)."""

    def __init__(self) -> None:
        self.readings: dict[str, dict[str, int]] = {"incidents": {}, "queue": {}, "notifications": {}}
        self.workers_alive: int | None = None
        self.read_at = float("-inf")
        self.reads = 0  # how many times the database was read (for tests and the bench)
        self._lock = asyncio.Lock()

    async def refresh(self, pool: AsyncConnectionPool) -> None:
        """Read the database unless the last reading is recent; a failed reading keeps the previous values."""
        if time.monotonic() - self.read_at < DATABASE_GAUGE_SECONDS:
            return
        async with self._lock:  # concurrent scrapes wait for one reading instead of each making their own
            if time.monotonic() - self.read_at < DATABASE_GAUGE_SECONDS:
                return
            try:
                async with pool.connection() as conn:
                    cur = await conn.execute(
                        """SELECT 'incidents' AS kind, status, count(*) AS n FROM incidents GROUP BY status
                           UNION ALL
                           SELECT 'notifications', status, count(*) FROM notification_outbox GROUP BY status"""
                    )
                    rows = await cur.fetchall()
                queue = await queue_depth(pool)
                workers = await live_workers(pool)
            except Exception as exc:  # the scrape still answers, with the last values
                log.warning("metrics: cannot read the database: %s", exc)
                self.read_at = time.monotonic()
                return
            readings: dict[str, dict[str, int]] = {"incidents": {}, "notifications": {}, "queue": dict(queue)}
            for row in rows:
                readings[row["kind"]][row["status"]] = row["n"]
            self.readings, self.workers_alive, self.read_at = readings, workers, time.monotonic()
            self.reads += 1

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for name, doc, label, kind in (
            ("incident_copilot_incidents", "Incidents by status", "status", "incidents"),
            ("incident_copilot_run_queue_depth", "Graph runs by queue state", "state", "queue"),
            ("incident_copilot_notifications", "Outbox messages by status (failed = gave up)", "status",
             "notifications"),
        ):
            family = GaugeMetricFamily(name, doc, labels=[label])
            for value, n in sorted(self.readings[kind].items()):
                family.add_metric([value], n)
            yield family
        if self.workers_alive is not None:
            # an intake-only process stays ready without workers (alerts wait in the queue): alert on this instead
            yield GaugeMetricFamily("incident_copilot_run_workers_alive",
                                    f"Run workers (any process) with a heartbeat in the last {STALLED_SECONDS:g} s",
                                    value=self.workers_alive)


class ServerMetrics:
    """Counters for intake and runs, in a registry of their own (one per app); the database gauges beside them
    (not in a worker process: the intake reports them)."""

    def __init__(self, *, database_gauges: bool = True) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.alerts_received = Counter("incident_copilot_alerts_received_total", "Alerts received",
                                       ["format", "status"], registry=r)
        self.alerts_deduplicated = Counter("incident_copilot_alerts_deduplicated_total",
                                           "Alerts attached to an open incident", registry=r)
        self.run_duration = Histogram("incident_copilot_run_duration_seconds", "Duration of one graph run",
                                      ["kind", "outcome"], buckets=RUN_BUCKETS, registry=r)
        self.node_duration = Histogram("incident_copilot_node_duration_seconds", "Duration of one graph node",
                                       ["node"], buckets=NODE_BUCKETS, registry=r)
        self.tokens = Counter("incident_copilot_llm_tokens_total", "LLM tokens used", ["node", "direction"],
                              registry=r)
        self.database = DatabaseGauges()
        if database_gauges:
            r.register(self.database)
        self._rendered: tuple[float, bytes] = (float("-inf"), b"")

    def alerts_accepted(self, fmt: str, accepted: list[Any]) -> None:
        """Count one intake request's alerts."""
        for a in accepted:
            self.alerts_received.labels(format=fmt, status=a.status).inc()
            if a.deduplicated:
                self.alerts_deduplicated.inc()

    def run_finished(self, run: dict[str, Any], result: Any, seconds: float) -> None:
        """Observe one finished run."""
        outcome = result.status if result is not None else "failed"
        self.run_duration.labels(kind=run["kind"], outcome=outcome).observe(seconds)

    def node_finished(self, node: str, update: dict[str, Any], seconds: float) -> None:
        """Observe one node and the tokens it used."""
        self.node_duration.labels(node=node).observe(seconds)
        for name, usage in (update.get("tokens") or {}).items():
            self.tokens.labels(node=name, direction="input").inc(usage.input)
            self.tokens.labels(node=name, direction="output").inc(usage.output)

    async def render(self, pool: AsyncConnectionPool) -> tuple[bytes, str]:
        """The exposition text: every process's counters (one process: this one's) and the database gauges; the
        same text for every scrape within RENDER_SECONDS."""
        rendered_at, text = self._rendered
        if time.monotonic() - rendered_at < RENDER_SECONDS:
            return text, CONTENT_TYPE_LATEST
        await self.database.refresh(pool)
        if os.environ.get(MULTIPROCESS_ENV):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            registry.register(self.database)
        else:
            registry = self.registry
        text = generate_latest(registry)
        self._rendered = (time.monotonic(), text)
        return text, CONTENT_TYPE_LATEST
