"""Server-rendered dashboard pages (no build step): the incidents list and one incident with its gate."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from psycopg_pool import AsyncConnectionPool

from graph.runs import RunError, incident_view, thread_config
from tools import incidents
from web.render import template_env, timeline


def _age(created: datetime) -> str:
    seconds = int((datetime.now(UTC) - created).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


class DashboardViews:
    """Renders the pages from the incidents table and the checkpoints."""

    def __init__(self) -> None:
        self.env = template_env(True)

    async def index(self, pool: AsyncConnectionPool, status: str | None, service: str | None) -> str:
        """The incidents list, newest first."""
        rows = await incidents.list_incidents(pool, status=status, service=service, limit=100)
        for row in rows:
            row["age"] = _age(row["created_at"])
        return self.env.get_template("dashboard/index.html.j2").render(rows=rows, status=status, service=service)

    async def incident(self, app_state: Any, incident_id: str) -> str | None:
        """One incident: verdict, timeline of steps, evidence, hypotheses, the diff and the gate."""
        row = await incidents.get_incident(app_state.db.pool, incident_id)
        if row is None:
            return None
        snapshot = await app_state.graph.aget_state(thread_config(incident_id))
        values = snapshot.values
        try:
            steps = await app_state.runner.history(incident_id) if values else []
        except RunError:
            steps = []
        view = await incident_view(app_state.db.pool, snapshot, row["status"])
        return self.env.get_template("dashboard/incident.html.j2").render(
            row=row, s=values, status=view.status, steps=steps, gate=view.gate, decision=view.decision,
            timeline=timeline(values) if values.get("window") else [],
        )

    def login(self, error: str | None) -> str:
        """The API-key form that sets the session cookie."""
        return self.env.get_template("dashboard/login.html.j2").render(error=error)
