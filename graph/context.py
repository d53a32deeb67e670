"""Run settings that travel with each graph run as its `context_schema` (filled from the one configuration,
service/settings.py, by `Settings.run_context()`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import SecretStr

LLM_PROVIDERS = ("offline", "google", "openai")


class ConfigError(ValueError):
    """Run settings that cannot work (unknown LLM provider or model, missing key): the program refuses to start."""


@dataclass
class Context:
    """Settings of one run; the defaults are the configuration's defaults."""

    llm_provider: Literal["offline", "google", "openai"] = "offline"
    """Which LLM answers the reasoning nodes; offline = the deterministic engine alone."""
    reasoning_model: str = "gemini-2.5-pro"
    """Model for detect, analyze_code and propose_fix."""
    fast_model: str = "gemini-2.5-flash"
    """Model for rca, suggest and brief."""
    llm_api_key: SecretStr | None = None
    """The provider's API key, from the configuration (environment, .env or TOML file); shown masked."""
    llm_base_url: str | None = None
    """Endpoint of the provider's API (LLM_BASE_URL): OpenRouter, vLLM, Ollama, or a Gemini gateway."""
    llm_timeout_seconds: float = 60.0
    """Longest wait for one model call; a call that takes longer falls back to the rules' answer."""
    llm_max_attempts: int = 3
    """Attempts per model call when the provider answers 429/5xx or drops the connection."""
    llm_backoff_seconds: float = 1.0
    """First wait between attempts; doubled after each failed attempt."""
    token_budget: int = 60_000
    """LLM tokens (in + out) one incident may use; no call is made past it (0 = no limit)."""
    repo: str | None = None
    """The code repository of the alerted fleet (a local git path); None = use the telemetry's own, if any."""
    pr_backend: Literal["local", "github"] = "local"
    """Where create_pr writes: github = a pull request for repositories on GitHub (a local branch for the others);
    local = always a branch in the local checkout."""
    github_token: str | None = None
    """Token for GitHub's API (GITHUB_TOKEN): pull requests, and deployments/releases/tags of the repository map."""
    github_api_url: str = "https://api.github.com"
    """GitHub's API base URL (GITHUB_API_URL), e.g. https://ghe.example.com/api/v3 for GitHub Enterprise Server."""
    github_mcp: str | None = None
    """GitHub's MCP server for repositories without a local checkout: its URL, or the command that starts it."""
    window_seconds: int = 900
    """Length of the incident window before the alert time."""
    baseline_seconds: int = 1800
    """Length of the baseline window before the incident window."""
    metrics_step_seconds: float = 15.0
    """Resolution of metric series read for analysis."""
    max_services: int = 100
    """Most services one investigation reads, nearest first: the alerted one, what it calls (directly or further
    down) and its callers."""
    require_approval: bool = True
    """Stop at the approval gate before any pull request is opened."""
    output_dir: str = "output"
    """Where briefs are written."""
    notify_channels: tuple[str, ...] = ("file",)
    """Sinks the brief goes to."""
    loki_url: str | None = None
    """Loki base URL for live telemetry (LOKI_URL)."""
    loki_auth: str | None = None
    """Loki credentials: "user:password" (basic) or "Bearer <token>" (LOKI_AUTH)."""
    prometheus_url: str | None = None
    """Prometheus base URL for live telemetry (PROMETHEUS_URL)."""
    prometheus_auth: str | None = None
    """Prometheus credentials, same forms as loki_auth (PROMETHEUS_AUTH)."""
    tempo_url: str | None = None
    """Tempo base URL for live traces (TEMPO_URL); used before Jaeger when both are set."""
    tempo_auth: str | None = None
    """Tempo credentials, same forms as loki_auth (TEMPO_AUTH)."""
    jaeger_url: str | None = None
    """Jaeger query service base URL for live traces (JAEGER_URL)."""
    jaeger_auth: str | None = None
    """Jaeger credentials, same forms as loki_auth (JAEGER_AUTH)."""
    telemetry_config: str | None = None
    """A TOML file overriding query names, labels and thresholds of the connectors (TELEMETRY_CONFIG)."""
    telemetry_tables: dict[str, Any] = field(default_factory=dict)
    """Connector settings from the configuration's [telemetry.*] tables, applied over telemetry_config."""
    runbooks_dir: str | None = None
    """A folder of Markdown runbooks with front matter (RUNBOOKS_DIR); matching ones feed suggest and the brief."""
    runbooks_base_url: str | None = None
    """Where people read those runbooks: base URL + file name, e.g. a repository's web view (RUNBOOKS_BASE_URL)."""
    grafana_url: str | None = None
    """Grafana base URL for Explore deep links in the brief and the dashboard (GRAFANA_URL)."""
    grafana_prometheus_uid: str | None = None
    """uid of Grafana's Prometheus data source, for Explore links (GRAFANA_PROMETHEUS_UID)."""
    grafana_loki_uid: str | None = None
    """uid of Grafana's Loki data source, for Explore links (GRAFANA_LOKI_UID)."""
    prometheus_link_url: str | None = None
    """The Prometheus URL people open, when it differs from prometheus_url (PROMETHEUS_LINK_URL)."""
    incident_is_thread: bool = False
    """The incident id must be the thread id (runs LangGraph Server drives: each thread is one incident)."""
    notify_config: str | None = None
    """A TOML file of notification channels and routes (NOTIFY_CONFIG); none = nobody is notified."""
    notifications: Any = None
    """The channels and routes of notify_config with their secrets (tools.notify.config.NotifyConfig), loaded by the
    configuration at start-up; never persisted."""
    database: Any = None
    """The run's open database (outbox, memory of past incidents); set by the runner, never persisted."""
    chat_models: dict[str, Any] = field(default_factory=dict)
    """Chat model instances by tier ("reasoning", "fast"); set by tests or embedding apps, never persisted."""

    def __post_init__(self) -> None:
        if self.llm_provider not in LLM_PROVIDERS:
            raise ConfigError(f"unknown LLM provider {self.llm_provider!r}: use one of {', '.join(LLM_PROVIDERS)}")
        if self.pr_backend == "github" and not self.github_token:
            raise ConfigError("PR_BACKEND=github needs GITHUB_TOKEN (a token with contents and pull-request write)")
