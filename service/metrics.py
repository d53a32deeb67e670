"""Prometheus metrics of the service, in a registry of its own (one per app)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from psycopg_pool import AsyncConnectionPool

from service.queue import queue_depth

RUN_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)
NODE_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)


class ServerMetrics:
    """Counters for intake and runs; gauges read from the database when /metrics is scraped."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.alerts_received = Counter("incident_copilot_alerts_received_total", "Alerts received",
                                       ["format", "status"], registry=r)
        self.alerts_deduplicated = Counter("incident_copilot_alerts_deduplicated_total",
                                           "Alerts attached to an open incident", registry=r)
        self.incidents = Gauge("incident_copilot_incidents", "Incidents by status", ["status"], registry=r)
        self.queue = Gauge("incident_copilot_run_queue_depth", "Graph runs by queue state", ["state"], registry=r)
        self.run_duration = Histogram("incident_copilot_run_duration_seconds", "Duration of one graph run",
                                      ["kind", "outcome"], buckets=RUN_BUCKETS, registry=r)
        self.node_duration = Histogram("incident_copilot_node_duration_seconds", "Duration of one graph node",
                                       ["node"], buckets=NODE_BUCKETS, registry=r)
        self.tokens = Counter("incident_copilot_llm_tokens_total", "LLM tokens used", ["node", "direction"],
                              registry=r)
        self.notifications = Gauge("incident_copilot_notifications", "Outbox messages by status (failed = gave up)",
                                   ["status"], registry=r)

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
        """Refresh the database gauges and render the exposition text."""
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT status, count(*) AS n FROM incidents GROUP BY status")
            rows = await cur.fetchall()
            cur = await conn.execute("SELECT status, count(*) AS n FROM notification_outbox GROUP BY status")
            outbox = await cur.fetchall()
        self.notifications.clear()
        for row in outbox:
            self.notifications.labels(status=row["status"]).set(row["n"])
        self.incidents.clear()
        for row in rows:
            self.incidents.labels(status=row["status"]).set(row["n"])
        for state, n in (await queue_depth(pool)).items():
            self.queue.labels(state=state).set(n)
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
