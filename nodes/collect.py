"""collect: find the services related to the alerted one, then fan out one collector per source."""

from __future__ import annotations

from collections import deque
from typing import Any

from langgraph.runtime import Runtime
from langgraph.types import Send

from graph.context import Context
from nodes.common import error_record
from state import SOURCES, CollectTask, IncidentState
from tools.telemetry import open_source


def related_services(alerted: str, edges: list[tuple[str, str]]) -> list[str]:
    """The alerted service, then services reachable downstream, then its callers, nearest first."""
    down: dict[str, list[str]] = {}
    up: dict[str, list[str]] = {}
    for caller, callee in edges:
        down.setdefault(caller, []).append(callee)
        up.setdefault(callee, []).append(caller)
    seen = [alerted]
    known = {alerted}
    queue = deque([(alerted, 0)])
    while queue:
        service, depth = queue.popleft()
        neighbours = sorted(down.get(service, [])) + (sorted(up.get(service, [])) if depth == 0 else [])
        for other in neighbours:
            if other not in known:
                seen.append(other)
                known.add(other)
                queue.append((other, depth + 1))
    return seen


async def collect(state: IncidentState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Read the dependency graph of the window and choose the services in scope."""
    alert, window = state["alert"], state["window"]
    try:
        edges = await open_source(state["telemetry"], runtime.context).dependencies(window.baseline_start, window.end)
    except Exception as exc:  # no topology: investigate the alerted service alone
        edges = []
        error = error_record("collect", f"dependency graph unavailable: {exc}", source="topology")
        return {"dependencies": [], "services": [alert.service], "errors": [error]}
    edges = sorted({(a, b) for a, b in edges})
    services, left_out = scope(alert.service, edges, runtime.context.max_services)
    if left_out is None:
        return {"dependencies": edges, "services": services}
    return {"dependencies": edges, "services": services, "errors": [error_record("collect", left_out,
                                                                                   source="topology")]}


def scope(alerted: str, edges: list[tuple[str, str]], limit: int) -> tuple[list[str], str | None]:
    """The services to read (related_services, the first `limit`) and, when some were left out, the note that says
    which: an investigation that did not read every related service must not look as if it had."""
    related = related_services(alerted, edges)
    if len(related) <= limit:
        return related, None
    rest = related[limit:]
    named = ", ".join(rest[:10]) + (", ..." if len(rest) > 10 else "")
    return related[:limit], (f"scope capped: read {limit} of the {len(related)} services related to {alerted}"
                             f" (nearest first); not read: {named} (INCIDENT_MAX_SERVICES raises the cap)")


def route_collectors(state: IncidentState) -> list[Send]:
    """One Send per telemetry source; each collector gets its own checkpointed step."""
    task = {
        "incident_id": state["incident_id"],
        "telemetry": state["telemetry"],
        "window": state["window"],
        "services": state["services"],
        "alerted_service": state["alert"].service,
        "dependencies": state.get("dependencies") or [],
    }
    return [Send(source, CollectTask(source=source, **task)) for source in SOURCES]
