"""Settings of the live telemetry connectors: queries, labels, limits; one TOML file overrides any of them."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass, field
from string import Template
from typing import Any

LINE_FILTER_OPS = ("|=", "!=", "|~", "!~")

# PromQL templates. $selector = service=~"a|b|..." (regex-escaped names), $range = the rate window,
# $service_label / $peer_label / $version_label = label names, $window = the dependency lookback ("2700s"),
# $min_calls = the dependency threshold.
DEFAULT_QUERIES: dict[str, str] = {
    "request_rate": "sum by ($service_label) (rate(http_requests_total{$selector}[$range]))",
    "error_ratio": (
        'sum by ($service_label) (rate(http_requests_total{$selector, code=~"5.."}[$range]))'
        " / sum by ($service_label) (rate(http_requests_total{$selector}[$range]))"
    ),
    "latency_p99": (
        "histogram_quantile(0.99, sum by ($service_label, le) "
        "(rate(http_request_duration_seconds_bucket{$selector}[$range])))"
    ),
    "client_request_rate": (
        "sum by ($service_label, $peer_label) (rate(http_client_requests_total{$selector}[$range]))"
    ),
    "client_error_ratio": (
        "sum by ($service_label, $peer_label) "
        '(rate(http_client_requests_total{$selector, code!~"2..|3..|4.."}[$range]))'
        " / sum by ($service_label, $peer_label) (rate(http_client_requests_total{$selector}[$range]))"
    ),
    "client_latency_p99": (
        "histogram_quantile(0.99, sum by ($service_label, $peer_label, le) "
        "(rate(http_client_request_duration_seconds_bucket{$selector}[$range])))"
    ),
    "cpu_usage": "sum by ($service_label) (rate(process_cpu_seconds_total{$selector}[$range]))",
    "memory_bytes": "max by ($service_label) (process_resident_memory_bytes{$selector})",
    "db_pool_in_use": "max by ($service_label) (db_pool_connections_in_use{$selector})",
    "db_pool_max": "max by ($service_label) (db_pool_connections_max{$selector})",
    "disk_free_bytes": "min by ($service_label) (disk_free_bytes{$selector})",
    "cert_expiry_timestamp": "min by ($service_label) (tls_cert_expiry_timestamp_seconds{$selector})",
    "up": "min by ($service_label) (up{$selector})",
    "deploys": "max by ($service_label, $version_label, $revision_labels) (app_build_info{$selector})",
    "dependencies": (
        "sum by ($service_label, $peer_label) (increase(http_client_requests_total[$window])) > $min_calls"
    ),
}
TEMPLATE_FIELDS = (
    "selector", "range", "service_label", "peer_label", "version_label", "revision_labels", "window", "min_calls",
)
GITHUB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}$")


@dataclass(frozen=True)
class PrometheusConfig:
    """Where and how metrics, dependencies and deploys are read."""

    service_label: str = "service"
    peer_label: str = "peer"
    version_label: str = "version"
    # labels of app_build_info naming the deployed commit, first found wins (the build-info convention:
    # `revision`, some exporters say `commit`)
    revision_labels: tuple[str, ...] = ("revision", "commit")
    range_window: str = "1m"
    step_seconds: float = 15.0
    services_per_query: int = 25
    max_concurrent_queries: int = 4
    timeout_seconds: float = 15.0
    queries: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_QUERIES))

    def __post_init__(self) -> None:
        try:  # a bad window fails at load, not in every run's metrics read
            duration_seconds(self.range_window)
        except ValueError as exc:
            raise ValueError(f"prometheus.range_window: {exc}") from None


@dataclass(frozen=True)
class LokiConfig:
    """Where and how much log text is read per run."""

    label: str = "service_name"
    page_size: int = 5000
    max_lines: int = 200_000
    max_bytes: int = 64 * 1024 * 1024
    timeout_seconds: float = 30.0
    line_filters: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class TracesConfig:
    """How many traces a trace read looks at (Tempo or Jaeger; a run reads the baseline and the incident window)."""

    max_traces: int = 60
    error_traces: int = 20
    slices: int = 3
    max_services: int = 3
    max_concurrent_queries: int = 4
    timeout_seconds: float = 15.0
    service_attribute: str = "resource.service.name"


@dataclass(frozen=True)
class HttpConfig:
    """Connection timeout and retries shared by both backends."""

    connect_timeout_seconds: float = 5.0
    retries: int = 3
    backoff_seconds: float = 0.5
    backoff_max_seconds: float = 10.0


@dataclass(frozen=True)
class Thresholds:
    """Cut-offs the connectors apply before the evidence engine sees anything."""

    dependency_min_calls: float = 0.0


@dataclass(frozen=True)
class RepositoryConfig:
    """Where one service's code lives ([repositories.<service>]): a GitHub repository, a local clone, or both."""

    github: str = ""  # owner/name
    checkout: str = ""  # path of a local clone
    path: str = ""  # the service's folder in a monorepo; "" = the whole repository
    base_branch: str = "main"
    test_command: tuple[str, ...] = ()  # argv, no shell; () = none configured
    environment: str = ""  # the GitHub deployment environment of the service ("" = every environment)


@dataclass(frozen=True)
class TelemetryConfig:
    """All connector settings; the defaults are LIVE.md's wire contract."""

    query_budget: int = 200
    prometheus: PrometheusConfig = field(default_factory=PrometheusConfig)
    loki: LokiConfig = field(default_factory=LokiConfig)
    traces: TracesConfig = field(default_factory=TracesConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    thresholds: Thresholds = field(default_factory=Thresholds)
    repositories: dict[str, RepositoryConfig] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _validate(self)


def duration_seconds(text: str) -> float:
    """A Prometheus duration (`1m`, `90s`, `1m30s`, `500ms`) in seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|[smhdwy])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return sum(float(n) * units[u] for n, u in parts)


def load_config(path: str | None, tables: dict[str, Any] | None = None) -> TelemetryConfig:
    """The defaults, overridden by the TOML file at `path` when given, then by `tables` (the [telemetry] tables of
    the main configuration file); unknown keys are an error."""
    config = TelemetryConfig()
    if path:
        try:
            with open(path, "rb") as handle:
                table = tomllib.load(handle)
        except OSError as exc:
            raise ValueError(f"telemetry config {path}: cannot read: {exc.strerror or exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"telemetry config {path}: invalid TOML: {exc}") from exc
        try:
            config = _merge(config, table, "")
        except (TypeError, ValueError) as exc:
            raise ValueError(f"telemetry config {path}: {exc}") from exc
    if tables:
        try:
            config = _merge(config, tables, "telemetry.")
        except (TypeError, ValueError) as exc:
            raise ValueError(str(exc)) from exc
    return config


def _merge(current: Any, table: dict[str, Any], prefix: str) -> Any:
    """A copy of dataclass `current` with `table`'s values, checked key by key against the defaults."""
    known = {f.name: getattr(current, f.name) for f in dataclasses.fields(current)}
    changes: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if key not in known:
            raise ValueError(f"unknown key {name!r} (known here: {', '.join(sorted(known))})")
        default = known[key]
        if dataclasses.is_dataclass(default):
            if not isinstance(value, dict):
                raise TypeError(f"{name!r} must be a table")
            changes[key] = _merge(default, value, f"{name}.")
        elif key == "queries":
            changes[key] = _merge_queries(default, value, name)
        elif key == "line_filters":
            changes[key] = _line_filters(value, name)
        elif key == "repositories":
            changes[key] = {**default, **_repositories(value, name)}
        elif key in ("revision_labels", "test_command"):
            changes[key] = _strings(value, name)
        else:
            changes[key] = _scalar(default, value, name)
    return dataclasses.replace(current, **changes)


def _merge_queries(default: dict[str, str], value: Any, name: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise TypeError(f"{name!r} must be a table")
    unknown = sorted(set(value) - set(DEFAULT_QUERIES))
    if unknown:
        raise ValueError(
            f"unknown key {name}.{unknown[0]!r} (known here: {', '.join(sorted(DEFAULT_QUERIES))})"
        )
    for key, text in value.items():
        if not isinstance(text, str) or not text.strip():
            raise TypeError(f"'{name}.{key}' must be a non-empty string")
    return {**default, **value}


def _line_filters(value: Any, name: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, list):
        raise TypeError(f"{name!r} must be a list of [operator, text] pairs")
    pairs = []
    for item in value:
        if not (isinstance(item, list) and len(item) == 2 and all(isinstance(part, str) for part in item)):
            raise TypeError(f"{name!r} entries must be [operator, text] pairs of strings, got {item!r}")
        pairs.append((item[0], item[1]))
    return tuple(pairs)


def _repositories(value: Any, name: str) -> dict[str, RepositoryConfig]:
    if not isinstance(value, dict):
        raise TypeError(f"{name!r} must be a table of services")
    found = {}
    for service, table in value.items():
        if not isinstance(table, dict):
            raise TypeError(f"'{name}.{service}' must be a table")
        repository = _merge(RepositoryConfig(), table, f"{name}.{service}.")
        if not (repository.github or repository.checkout):
            raise ValueError(f"'{name}.{service}' needs 'github' (owner/name) or 'checkout' (a local clone)")
        if repository.github and not GITHUB_NAME.match(repository.github):
            raise ValueError(f"'{name}.{service}.github' must be owner/name, got {repository.github!r}")
        if repository.path.startswith("/") or ".." in repository.path.split("/"):
            raise ValueError(f"'{name}.{service}.path' must be a folder inside the repository")
        found[service] = repository
    return found


def _strings(value: Any, name: str) -> tuple[str, ...]:
    if not (isinstance(value, list) and all(isinstance(item, str) and item for item in value)):
        raise TypeError(f"{name!r} must be a list of non-empty strings")
    return tuple(value)


def _scalar(default: Any, value: Any, name: str) -> Any:
    expected = (int, float) if isinstance(default, float) else type(default)
    if isinstance(value, bool) or not isinstance(value, expected):
        raise TypeError(f"{name!r} must be a {type(default).__name__}, got {value!r}")
    return type(default)(value)


def _validate(config: TelemetryConfig) -> None:
    """Reject settings no run could use, naming the setting."""
    positive = {
        "query_budget": config.query_budget,
        "prometheus.step_seconds": config.prometheus.step_seconds,
        "prometheus.services_per_query": config.prometheus.services_per_query,
        "prometheus.max_concurrent_queries": config.prometheus.max_concurrent_queries,
        "prometheus.timeout_seconds": config.prometheus.timeout_seconds,
        "loki.page_size": config.loki.page_size,
        "loki.max_lines": config.loki.max_lines,
        "loki.max_bytes": config.loki.max_bytes,
        "loki.timeout_seconds": config.loki.timeout_seconds,
        "traces.max_traces": config.traces.max_traces,
        "traces.slices": config.traces.slices,
        "traces.max_services": config.traces.max_services,
        "traces.max_concurrent_queries": config.traces.max_concurrent_queries,
        "traces.timeout_seconds": config.traces.timeout_seconds,
        "http.connect_timeout_seconds": config.http.connect_timeout_seconds,
    }
    for name, value in positive.items():
        if value <= 0:
            raise ValueError(f"{name!r} must be positive, got {value!r}")
    if not 0 <= config.traces.error_traces <= config.traces.max_traces:
        raise ValueError("'traces.error_traces' must be between 0 and 'traces.max_traces'")
    if config.http.retries < 0 or config.http.backoff_seconds < 0 or config.http.backoff_max_seconds < 0:
        raise ValueError("'http.retries', 'http.backoff_seconds' and 'http.backoff_max_seconds' must be >= 0")
    for op, _ in config.loki.line_filters:
        if op not in LINE_FILTER_OPS:
            raise ValueError(
                f"'loki.line_filters': operator {op!r} is not one of {', '.join(LINE_FILTER_OPS)}"
            )
    if not config.prometheus.revision_labels:
        raise ValueError("'prometheus.revision_labels' must name at least one label")
    sample = dict.fromkeys(TEMPLATE_FIELDS, "x")
    for key, text in config.prometheus.queries.items():
        try:
            Template(text).substitute(sample)
        except (KeyError, ValueError) as exc:
            raise ValueError(
                f"'prometheus.queries.{key}': bad placeholder {exc} (allowed: "
                f"{', '.join('$' + f for f in TEMPLATE_FIELDS)})"
            ) from exc
