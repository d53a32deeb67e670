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

MAX_SERVICES = 25


def related_services(alerted: str, edges: list[tuple[str, str]], limit: int = MAX_SERVICES) -> list[str]:
    """The alerted service, then services reachable downstream, then its callers, nearest first, capped."""
    down: dict[str, list[str]] = {}
    up: dict[str, list[str]] = {}
    for caller, callee in edges:
        down.setdefault(caller, []).append(callee)
        up.setdefault(callee, []).append(caller)
    seen = [alerted]
    queue = deque([(alerted, 0)])
    while queue and len(seen) < limit:
        service, depth = queue.popleft()
        neighbours = sorted(down.get(service, [])) + (sorted(up.get(service, [])) if depth == 0 else [])
        for other in neighbours:
            if other not in seen and len(seen) < limit:
                seen.append(other)
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
    return {"dependencies": edges, "services": related_services(alert.service, edges)}


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
