"""Prometheus HTTP API connector: range and instant PromQL queries into plain series."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from string import Template
from typing import Any

from tools.http_client import BackendClient, BackendError, QueryBudget
from tools.telemetry_config import HttpConfig, PrometheusConfig

REGEX_SPECIAL = frozenset("\\.+*?()|[]{}^$")


@dataclass(frozen=True, slots=True)
class PromSeries:
    """One series of a query result: labels and [(unix seconds, value), ...]; values may be NaN or +-Inf."""

    labels: dict[str, str]
    points: list[tuple[float, float]]


@dataclass(frozen=True, slots=True)
class PromResult:
    """The series of one query and the warnings Prometheus attached to it."""

    series: list[PromSeries]
    warnings: list[str]


def quote(text: str) -> str:
    """A PromQL/LogQL double-quoted string literal of `text` (quotes, backslashes, controls escaped)."""
    return json.dumps(text, ensure_ascii=False)


def any_of(label: str, values: Iterable[str]) -> str:
    """The matcher label=~"v1|v2|..." selecting exactly these values (regex metacharacters escaped)."""
    alternatives = "|".join("".join("\\" + c if c in REGEX_SPECIAL else c for c in v) for v in values)
    return f"{label}=~{quote(alternatives)}"


def render_query(
    config: PrometheusConfig,
    name: str,
    services: Iterable[str] = (),
    window_seconds: float = 0.0,
    min_calls: float = 0.0,
) -> str:
    """The configured query `name` with its placeholders filled for these services."""
    return Template(config.queries[name]).substitute(
        selector=any_of(config.service_label, services),
        range=config.range_window,
        service_label=config.service_label,
        peer_label=config.peer_label,
        version_label=config.version_label,
        revision_labels=", ".join(config.revision_labels),
        window=f"{max(1, round(window_seconds))}s",
        min_calls=f"{min_calls:g}",
    )


class PrometheusClient(BackendClient):
    """GET /api/v1/query_range and /api/v1/query with retries; failures raise BackendError."""

    name = "prometheus"

    def __init__(
        self,
        base_url: str,
        credentials: str | None,
        config: PrometheusConfig,
        http: HttpConfig,
        budget: QueryBudget,
    ) -> None:
        super().__init__(base_url, credentials, config.timeout_seconds, http, budget)

    async def query_range(self, query: str, start: datetime, end: datetime, step: float) -> PromResult:
        """Evaluate `query` at start, start + step, ... end."""
        params = {"query": query, "start": _unix(start), "end": _unix(end), "step": f"{step:g}"}
        body = await self.get_json("/api/v1/query_range", params, query)
        return _parse(body, self.name, query)

    async def query(self, query: str, at: datetime) -> PromResult:
        """Evaluate `query` once, at `at`."""
        body = await self.get_json("/api/v1/query", {"query": query, "time": _unix(at)}, query)
        return _parse(body, self.name, query)


def _parse(body: dict[str, Any], backend: str, query: str) -> PromResult:
    """Matrix, vector or scalar results into PromSeries; any other shape is a malformed answer."""
    data = body.get("data")
    warnings = [str(w) for w in body.get("warnings") or []]
    try:
        kind, result = data["resultType"], data["result"]
        if kind == "matrix":
            series = [PromSeries(_labels(item), [_point(p) for p in item["values"]]) for item in result]
        elif kind == "vector":
            series = [PromSeries(_labels(item), [_point(item["value"])]) for item in result]
        elif kind == "scalar":
            series = [PromSeries({}, [_point(result)])]
        else:
            raise ValueError(f"result type {kind!r}")
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise BackendError(backend, query, 200, f"malformed answer: {type(exc).__name__}: {exc}") from None
    return PromResult(series, warnings)


def _labels(item: dict[str, Any]) -> dict[str, str]:
    labels = item.get("metric", {})
    if not isinstance(labels, dict):
        raise TypeError("metric is not an object")
    return {str(k): str(v) for k, v in labels.items()}


def _point(pair: list[Any]) -> tuple[float, float]:
    """[<unix seconds>, "<value>"]; float() reads Prometheus' "NaN", "+Inf" and "-Inf"."""
    at, value = pair
    return float(at), float(value)


def _unix(at: datetime) -> str:
    aware = at if at.tzinfo else at.replace(tzinfo=UTC)
    return f"{aware.timestamp():.3f}"
