"""The simulated fleet: services, their kinds and the caller -> callee edges."""

from __future__ import annotations

from collections import deque

SERVICES: dict[str, str] = {
    "gateway": "gateway",
    "web-frontend": "frontend",
    "mobile-bff": "frontend",
    "catalog": "backend",
    "cart": "backend",
    "checkout": "backend",
    "payments": "backend",
    "inventory": "backend",
    "payments-db-proxy": "db_proxy",
    "catalog-db-proxy": "db_proxy",
    "redis-cache": "cache",
    "payment-provider": "external",
}

EDGES: tuple[tuple[str, str], ...] = (
    ("gateway", "web-frontend"),
    ("gateway", "mobile-bff"),
    ("web-frontend", "catalog"),
    ("web-frontend", "cart"),
    ("web-frontend", "checkout"),
    ("mobile-bff", "catalog"),
    ("mobile-bff", "checkout"),
    ("checkout", "cart"),
    ("checkout", "payments"),
    ("checkout", "inventory"),
    ("checkout", "payments-db-proxy"),
    ("payments", "payment-provider"),
    ("payments", "payments-db-proxy"),
    ("catalog", "catalog-db-proxy"),
    ("catalog", "redis-cache"),
    ("cart", "redis-cache"),
    ("inventory", "catalog-db-proxy"),
)

# Edge -> (calls per caller request, chance that a failed call fails the caller's request).
CALLS: dict[tuple[str, str], tuple[float, float]] = {
    ("gateway", "web-frontend"): (0.6, 1.0),
    ("gateway", "mobile-bff"): (0.4, 1.0),
    ("web-frontend", "catalog"): (0.8, 0.7),
    ("web-frontend", "cart"): (0.3, 0.8),
    ("web-frontend", "checkout"): (0.1, 1.0),
    ("mobile-bff", "catalog"): (0.9, 0.7),
    ("mobile-bff", "checkout"): (0.12, 1.0),
    ("checkout", "cart"): (1.0, 0.9),
    ("checkout", "payments"): (0.9, 1.0),
    ("checkout", "inventory"): (1.0, 0.8),
    ("checkout", "payments-db-proxy"): (1.0, 1.0),
    ("payments", "payment-provider"): (1.0, 1.0),
    ("payments", "payments-db-proxy"): (2.0, 1.0),
    ("catalog", "catalog-db-proxy"): (0.3, 1.0),
    ("catalog", "redis-cache"): (1.5, 0.05),  # a cache miss falls back to the database
    ("cart", "redis-cache"): (2.0, 0.9),
    ("inventory", "catalog-db-proxy"): (1.0, 1.0),
}

# Services that emit their own telemetry (the external provider is only seen through its callers).
INTERNAL: tuple[str, ...] = tuple(s for s, kind in SERVICES.items() if kind != "external")

# Services that emit server spans; proxies, the cache and the provider only appear as peers of client spans.
TRACED: frozenset[str] = frozenset(s for s, kind in SERVICES.items() if kind in ("gateway", "frontend", "backend"))


def callers_of(service: str) -> list[str]:
    """Direct callers of a service, in edge order."""
    return [caller for caller, callee in EDGES if callee == service]


def callees_of(service: str) -> list[str]:
    """Direct callees of a service, in edge order."""
    return [callee for caller, callee in EDGES if caller == service]


def upstream_distances(service: str) -> dict[str, int]:
    """Every transitive caller of a service with its hop count (shortest), the service itself at 0."""
    distances = {service: 0}
    queue = deque([service])
    while queue:
        current = queue.popleft()
        for caller in callers_of(current):
            if caller not in distances:
                distances[caller] = distances[current] + 1
                queue.append(caller)
    return distances


def error_impact(service: str) -> dict[str, float]:
    """The service and each transitive caller -> the share of its requests failing when `service` fails."""
    impact = {service: 1.0}
    for caller in reversed(topological_order()):
        if caller != service:
            share = sum(
                min(1.0, CALLS[(caller, p)][0]) * CALLS[(caller, p)][1] * impact.get(p, 0.0) for p in callees_of(caller)
            )
            if share > 0:
                impact[caller] = min(1.0, share)
    return impact


def upstream_of(service: str) -> list[str]:
    """Transitive callers of a service, nearest first."""
    distances = upstream_distances(service)
    return sorted((s for s in distances if s != service), key=lambda s: (distances[s], s))


def upstream_path(caller: str, callee: str) -> list[str] | None:
    """Shortest call path from `caller` down to `callee` (both included), or None when it does not call it."""
    previous: dict[str, str | None] = {caller: None}
    queue = deque([caller])
    while queue:
        current = queue.popleft()
        if current == callee:
            path = [current]
            while (parent := previous[path[-1]]) is not None:
                path.append(parent)
            return path[::-1]
        for nxt in callees_of(current):
            if nxt not in previous:
                previous[nxt] = current
                queue.append(nxt)
    return None


def topological_order() -> list[str]:
    """All services, every caller before its callees."""
    indegree = {s: 0 for s in SERVICES}
    for _, callee in EDGES:
        indegree[callee] += 1
    ready = [s for s in SERVICES if indegree[s] == 0]
    order: list[str] = []
    while ready:
        current = ready.pop(0)
        order.append(current)
        for callee in callees_of(current):
            indegree[callee] -= 1
            if indegree[callee] == 0:
                ready.append(callee)
    return order
