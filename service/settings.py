"""The one configuration: the service, the runs and the telemetry, from the environment, `.env` and one TOML file.

`load_settings()` reads, highest first: explicit overrides, the environment, `./.env`, the TOML file
(`--config FILE`, else $INCIDENT_COPILOT_CONFIG, else ./incident-copilot.toml when it exists), then the defaults.
Every setting has one documented environment name (next to its field below) and one place in the TOML file
(`[section] name`). Values are validated at start-up: each bad value gets one message naming where it came from,
unknown INCIDENT_COPILOT_* variables and unknown TOML keys are errors (a typo never degrades silently), and
secrets are SecretStr: shown masked, never in a message.

`ServerSettings` is what the running service reads (built by `Settings.server_settings()`); run settings reach the
graph as its `Context` (`Settings.run_context()`).
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

ROLES = ("intake", "viewer", "approver", "admin")
LEGACY_ROLE = "admin"  # a key named without a role: before roles, every key could do everything
PLACEHOLDER_SECRETS = {"", "changeme", "change-me", "secret", "placeholder", "password", "test", "xxx", "todo"}
ENV_PREFIX = "INCIDENT_COPILOT_"
CONFIG_ENV = "INCIDENT_COPILOT_CONFIG"
DEFAULT_CONFIG_FILE = Path("incident-copilot.toml")
DOTENV_FILE = Path(".env")


class SettingsError(ValueError):
    """The configuration is unusable: one line per problem, each naming the setting and where it came from."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def setting(default: Any, env: str, description: str, example: str = "", **constraints: Any) -> Any:
    """A field with its environment name, what it means, and an example value (for `config check` and the README)."""
    return Field(default, description=description, json_schema_extra={"env": env, "example": example},
                 **constraints)


class Section(BaseModel):
    """A table of the TOML file; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


def _split(value: Any) -> Any:
    """"a,b" from the environment as a list; lists from TOML as they are."""
    return [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else value


class DatabaseSection(Section):
    """Where checkpoints and the incident tables live."""

    url: SecretStr | None = setting(None, "DATABASE_URL", "PostgreSQL URL; unset: an embedded PostgreSQL (pgserver)",
                                    "postgresql://postgres@db:5432/incident_copilot")
    home: Path | None = setting(None, "INCIDENT_COPILOT_HOME", "data directory: the embedded database, sample repos "
                                "(default ~/.local/share/incident-copilot)", "/var/lib/incident-copilot")


    @field_validator("url")
    @classmethod
    def _conninfo(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            from psycopg.conninfo import conninfo_to_dict

            try:
                conninfo_to_dict(value.get_secret_value())
            except Exception:  # psycopg's message may quote the URL, password included: never shown
                raise ValueError("not a PostgreSQL URL or connection string, e.g. "
                                 "postgresql://user@host:5432/db") from None
        return value


class ServerSection(Section):
    """The HTTP service."""

    api_keys: dict[str, SecretStr] = setting({}, "INCIDENT_COPILOT_API_KEYS", "API keys by the name and role of "
                                             "their holder, name:role (roles: intake, viewer, approver, admin; "
                                             "a name without a role is admin); env: name:role=key pairs, "
                                             "comma-separated", "alice:approver=...,grafana:intake=...")
    webhook_api_key: SecretStr | None = setting(None, "WEBHOOK_API_KEY", "an API key for alert senders only (name "
                                                "'webhook', role intake)", "(openssl rand -hex 24)")
    public_url: str | None = setting(None, "INCIDENT_COPILOT_PUBLIC_URL", "the address people open the dashboard "
                                     "at, when a proxy stands in front (its origin is the one forms may come from; "
                                     "https: the session cookie is Secure)", "https://copilot.example.com")
    session_hours: float = setting(8.0, "INCIDENT_COPILOT_SESSION_HOURS", "how long a dashboard sign-in lasts",
                                   "8", gt=0, le=24 * 30)
    login_attempts: int = setting(5, "INCIDENT_COPILOT_LOGIN_ATTEMPTS", "failed dashboard sign-ins one address "
                                  "may make in 5 minutes before it has to wait", "5", ge=1, le=1000)
    auth: Literal["required", "disabled"] = setting("required", "INCIDENT_COPILOT_AUTH",
                                                    "'disabled' only together with local = true", "required")
    local: bool = setting(False, "INCIDENT_COPILOT_LOCAL", "a local set-up: allows short keys and auth disabled",
                          "false")
    max_body_bytes: int = setting(1_048_576, "INCIDENT_COPILOT_MAX_BODY_BYTES", "largest request body accepted",
                                  "1048576", ge=1024)
    max_alerts_per_request: int = setting(1000, "INCIDENT_COPILOT_MAX_ALERTS", "most alerts in one webhook", "1000",
                                          ge=1, le=100_000)
    workers: int = setting(2, "INCIDENT_COPILOT_WORKERS", "graph runs at once per process", "2", ge=1, le=64)
    run_workers: bool = setting(True, "INCIDENT_COPILOT_RUN_WORKERS", "false: an intake-only replica", "true")
    max_queued_runs: int = setting(1000, "INCIDENT_COPILOT_MAX_QUEUED_RUNS", "runs that may wait for a worker; "
                                   "past it, requests that queue runs answer 429 with Retry-After", "1000",
                                   ge=1, le=1_000_000)
    run_attempts: int = setting(5, "INCIDENT_COPILOT_RUN_ATTEMPTS", "attempts of a run (ended by an error, or by "
                                "its worker dying or stopping) before its incident is failed", "5", ge=1, le=20)
    group_ttl_seconds: int = setting(86_400, "INCIDENT_COPILOT_GROUP_TTL_SECONDS", "an alert group with no new alert "
                                     "for this long closes: its next alert opens a new incident", "86400",
                                     ge=60, le=90 * 86_400)
    telemetry: Literal["live", "sim"] = setting("live", "INCIDENT_COPILOT_TELEMETRY",
                                                "live backends, or the simulator (alert labels scenario, seed)", "live")
    db_acquire_timeout: float = setting(0.5, "INCIDENT_COPILOT_DB_ACQUIRE_TIMEOUT", "seconds a request waits for a "
                                        "database connection, or an alert's statement for its answer, before "
                                        "asking whether the database answers at all (a new connection, 1 s; no: "
                                        "503 at once; yes: it waits on)",
                                        "0.5", gt=0, le=60)
    db_deadline: float = setting(10.0, "INCIDENT_COPILOT_DB_DEADLINE", "seconds an alert's database work may take "
                                 "before it answers 503, even while the database answers (a connection gone "
                                 "silent alone)", "10", gt=0, le=300)

    @field_validator("api_keys", mode="before")
    @classmethod
    def _pairs(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        keys = {}
        for item in _split(value):
            identity, sep, key = item.partition("=")
            if not sep or not identity.strip() or not key.strip():
                raise ValueError("takes name:role=key pairs separated by commas")
            keys[identity.strip()] = key.strip()
        return keys

    @field_validator("api_keys")
    @classmethod
    def _roles(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for holder in value:
            name, _, role = holder.partition(":")
            if not name.strip() or name.strip() == "webhook":
                raise ValueError(f"{holder!r}: a key needs a name of its own ('webhook' is WEBHOOK_API_KEY's)")
            if role and role not in ROLES:
                raise ValueError(f"{holder!r}: unknown role {role!r}; roles: {', '.join(ROLES)}")
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/") if value else value


class RunSection(Section):
    """How each investigation runs."""

    window_seconds: int = setting(900, "INCIDENT_WINDOW_SECONDS", "incident window before the alert time", "900",
                                  ge=1, le=86_400)
    baseline_seconds: int = setting(1800, "INCIDENT_BASELINE_SECONDS", "baseline window before the incident window",
                                    "1800", ge=1, le=7 * 86_400)
    metrics_step_seconds: float = setting(15.0, "INCIDENT_METRICS_STEP_SECONDS", "resolution of metric series read",
                                          "15", gt=0, le=3600)
    max_services: int = setting(100, "INCIDENT_MAX_SERVICES", "most services one investigation reads, nearest first: "
                                "the alerted one, what it calls (directly or further down) and its callers; the "
                                "report says when more were left", "100", ge=1, le=1000)
    require_approval: bool = setting(True, "REQUIRE_APPROVAL", "stop at the approval gate before any pull request",
                                     "true")
    repo: str | None = setting(None, "INCIDENT_REPO", "local git repository of the alerted services "
                               "(default: the telemetry's own)", "/srv/repos/shop")
    pr_backend: Literal["local", "github"] = setting("local", "PR_BACKEND", "where approved fixes go: github = pull "
                                                     "requests for repositories on GitHub, local = branches", "github")
    github_token: SecretStr | None = setting(None, "GITHUB_TOKEN", "GitHub token (contents and pull-request write)",
                                             "github_pat_...")
    github_api_url: str = setting("https://api.github.com", "GITHUB_API_URL", "GitHub's API (Enterprise: "
                                  "https://HOST/api/v3)", "https://api.github.com")
    github_mcp: str | None = setting(None, "GITHUB_MCP", "GitHub's MCP server, for repositories without a local "
                                     "checkout: its URL or the command that starts it",
                                     "github-mcp-server stdio --read-only --toolsets repos")
    output_dir: Path = setting(Path("output"), "OUTPUT_DIR", "where briefs are written", "output")
    notify_channels: tuple[str, ...] = setting(("file",), "NOTIFY_CHANNELS", "sinks of the brief (comma-separated)",
                                               "file,stdout")

    notify_config: Path | None = setting(None, "NOTIFY_CONFIG", "TOML file of notification channels and routes",
                                         "notify.toml")

    @field_validator("github_api_url")
    @classmethod
    def _github_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("notify_channels", mode="before")
    @classmethod
    def _channels(cls, value: Any) -> Any:
        return _split(value)


class LLMSection(Section):
    """The model on top of the deterministic engine (offline: none)."""

    provider: Literal["offline", "google", "openai"] | None = setting(
        None, "LLM_PROVIDER", "offline, google or openai (default: google when a Google key is set, else offline)",
        "offline")
    reasoning_model: str = setting("gemini-2.5-pro", "REASONING_MODEL", "model for detect, code and fix",
                                   "gemini-2.5-pro")
    fast_model: str = setting("gemini-2.5-flash", "FAST_MODEL", "model for rca, suggest and brief", "gemini-2.5-flash")
    google_api_key: SecretStr | None = setting(None, "GOOGLE_API_KEY", "Gemini API key", "AIza...")
    openai_api_key: SecretStr | None = setting(None, "OPENAI_API_KEY", "OpenAI (or compatible) API key", "sk-...")
    base_url: str | None = setting(None, "LLM_BASE_URL", "the provider's endpoint: OpenRouter, vLLM, Ollama",
                                   "http://127.0.0.1:11434/v1")
    timeout_seconds: float = setting(60.0, "LLM_TIMEOUT_SECONDS", "longest wait for one model call", "60", gt=0)
    max_attempts: int = setting(3, "LLM_MAX_ATTEMPTS", "attempts per call on 429/5xx", "3", ge=1, le=10)
    token_budget: int = setting(60_000, "TOKEN_BUDGET", "LLM tokens one incident may use (0 = no limit)", "60000",
                                ge=0)

    def api_key(self) -> SecretStr | None:
        """The key of the chosen provider."""
        return {"google": self.google_api_key, "openai": self.openai_api_key}.get(self.provider or "")

    @model_validator(mode="after")
    def _provider(self) -> LLMSection:
        if self.provider is None:
            self.provider = ("google" if self.google_api_key else "openai" if self.openai_api_key else "offline")
        return self


class TelemetrySection(Section):
    """Where live telemetry is read; the connectors' own tables ([telemetry.prometheus], ...) tune the queries."""

    loki_url: str | None = setting(None, "LOKI_URL", "Loki base URL", "http://loki:3100")
    loki_auth: SecretStr | None = setting(None, "LOKI_AUTH", "Loki credentials: user:password or Bearer <token>",
                                          "Bearer ...")
    prometheus_url: str | None = setting(None, "PROMETHEUS_URL", "Prometheus base URL", "http://prometheus:9090")
    prometheus_auth: SecretStr | None = setting(None, "PROMETHEUS_AUTH", "Prometheus credentials, as loki_auth",
                                                "user:password")
    tempo_url: str | None = setting(None, "TEMPO_URL", "Tempo base URL (traces; before Jaeger when both are set)",
                                    "http://tempo:3200")
    tempo_auth: SecretStr | None = setting(None, "TEMPO_AUTH", "Tempo credentials, as loki_auth", "Bearer ...")
    jaeger_url: str | None = setting(None, "JAEGER_URL", "Jaeger query service base URL (traces)",
                                     "http://jaeger-query:16686")
    jaeger_auth: SecretStr | None = setting(None, "JAEGER_AUTH", "Jaeger credentials, as loki_auth", "user:password")
    config_file: Path | None = setting(None, "TELEMETRY_CONFIG", "a TOML file of connector settings (queries, "
                                       "labels, limits), read before the tables here", "telemetry.toml")
    query_budget: int | None = setting(None, "", "most backend queries per run (connector default 200)", "200", ge=1)
    prometheus: dict[str, Any] = setting({}, "", "table [telemetry.prometheus]: labels, step, queries", "")
    loki: dict[str, Any] = setting({}, "", "table [telemetry.loki]: label, page size, caps, line filters", "")
    traces: dict[str, Any] = setting({}, "", "table [telemetry.traces]: how many traces, error searches", "")
    http: dict[str, Any] = setting({}, "", "table [telemetry.http]: timeouts and retries", "")
    thresholds: dict[str, Any] = setting({}, "", "table [telemetry.thresholds]", "")
    repositories: dict[str, Any] = setting({}, "", "tables [telemetry.repositories.<service>]: github, checkout, "
                                           "path, base_branch, test_command", "")

    @field_validator("loki_url", "prometheus_url", "tempo_url", "jaeger_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/") if value else value

    @field_validator("prometheus", "loki", "traces", "http", "thresholds", "repositories")
    @classmethod
    def _table(cls, value: dict[str, Any], info: Any) -> dict[str, Any]:
        from tools.telemetry_config import load_config

        if value:
            load_config(None, {info.field_name: value})  # each table on its own: every bad key is reported
        return value

    @model_validator(mode="after")
    def _connectors(self) -> TelemetrySection:
        self.connector_config()  # a bad query or limit is a start-up error, not a failed run
        return self

    def connector_tables(self) -> dict[str, Any]:
        """The connector settings given here, as a table over the defaults (and over config_file, if any)."""
        names = ("prometheus", "loki", "traces", "http", "thresholds", "repositories")
        tables = {name: getattr(self, name) for name in names if getattr(self, name)}
        return tables | ({"query_budget": self.query_budget} if self.query_budget is not None else {})

    def connector_config(self) -> Any:
        """The effective tools.telemetry_config.TelemetryConfig; ValueError naming the bad key."""
        from tools.telemetry_config import load_config

        return load_config(str(self.config_file) if self.config_file else None, self.connector_tables())


class LinksSection(Section):
    """Base URLs of the deep links on the incident page and in the brief."""

    grafana_url: str | None = setting(None, "GRAFANA_URL", "Grafana base URL (Explore links)",
                                      "https://grafana.example.com")
    grafana_prometheus_uid: str | None = setting(None, "GRAFANA_PROMETHEUS_UID", "uid of Grafana's Prometheus data "
                                                 "source", "prometheus")
    grafana_loki_uid: str | None = setting(None, "GRAFANA_LOKI_UID", "uid of Grafana's Loki data source", "loki")
    prometheus_url: str | None = setting(None, "PROMETHEUS_LINK_URL", "the Prometheus people open (default: "
                                         "telemetry.prometheus_url)", "https://prometheus.example.com")

    @field_validator("grafana_url", "prometheus_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return TelemetrySection._url(value)


class RunbooksSection(Section):
    """The team's runbooks (Markdown with front matter)."""

    dir: Path | None = setting(None, "RUNBOOKS_DIR", "folder of runbooks (simulated runs: sim/runbooks)",
                               "/srv/runbooks")
    base_url: str | None = setting(None, "RUNBOOKS_BASE_URL", "where people read them: base URL + file name",
                                   "https://git.example.com/ops/runbooks/blob/main/")


@dataclass(frozen=True)
class Sources:
    """Where one load reads from: the environment, the .env file's values, the TOML file's tables."""

    env: Mapping[str, str]
    dotenv: Mapping[str, str]
    dotenv_path: Path | None
    toml: dict[str, Any]
    toml_path: Path | None


_loading: ContextVar[Sources] = ContextVar("settings_sources")


class Settings(BaseSettings):
    """Every setting of Incident CoPilot, by section."""

    model_config = SettingsConfigDict(extra="forbid", validate_default=True)

    database: DatabaseSection = DatabaseSection()
    server: ServerSection = ServerSection()
    run: RunSection = RunSection()
    llm: LLMSection = LLMSection()
    telemetry: TelemetrySection = TelemetrySection()
    links: LinksSection = LinksSection()
    runbooks: RunbooksSection = RunbooksSection()
    _sources: Sources | None = PrivateAttr(None)

    def origin(self, path: tuple[str, ...]) -> str:
        """Where the value of the setting at `path` came from."""
        info = dict(setting_fields()).get(path)
        return origin_of(path, self._sources, info) if self._sources is not None else "given"

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource, *_: Any, **__: Any
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources = _loading.get()
        return (init_settings, NamedVariables(settings_cls, sources.env), NamedVariables(settings_cls, sources.dotenv),
                TomlTables(settings_cls, sources.toml))

    def server_settings(self) -> ServerSettings:
        """What the running service reads."""
        keys, roles = {}, {"webhook": "intake"}
        for holder, key in self.server.api_keys.items():
            name, _, role = holder.partition(":")
            keys[key.get_secret_value()] = name.strip()
            roles[name.strip()] = role or LEGACY_ROLE
        if self.server.webhook_api_key is not None:
            keys[self.server.webhook_api_key.get_secret_value()] = "webhook"
        return ServerSettings(
            database_url=self.database.url.get_secret_value() if self.database.url else None, api_keys=keys,
            auth_disabled=self.server.auth == "disabled", local_mode=self.server.local,
            max_body_bytes=self.server.max_body_bytes, max_alerts_per_request=self.server.max_alerts_per_request,
            workers=self.server.workers, run_workers=self.server.run_workers, telemetry=self.server.telemetry,
            output_dir=str(self.run.output_dir), group_ttl_seconds=self.server.group_ttl_seconds,
            max_queued_runs=self.server.max_queued_runs, run_attempts=self.server.run_attempts,
            db_acquire_timeout=self.server.db_acquire_timeout, db_deadline=self.server.db_deadline,
            roles=roles, public_url=self.server.public_url, session_hours=self.server.session_hours,
            login_attempts=self.server.login_attempts,
        )

    def run_context(self, **overrides: Any) -> Any:
        """The graph's run settings (graph.context.Context) from these settings, then explicit overrides."""
        from graph.context import Context

        secret = _secret_value
        values = {
            "llm_provider": self.llm.provider, "llm_api_key": self.llm.api_key(),
            "reasoning_model": self.llm.reasoning_model,
            "fast_model": self.llm.fast_model, "llm_base_url": self.llm.base_url,
            "llm_timeout_seconds": self.llm.timeout_seconds, "llm_max_attempts": self.llm.max_attempts,
            "token_budget": self.llm.token_budget,
            "notify_config": str(self.run.notify_config) if self.run.notify_config else None,
            "repo": self.run.repo, "pr_backend": self.run.pr_backend, "github_mcp": self.run.github_mcp,
            "github_token": secret(self.run.github_token), "github_api_url": self.run.github_api_url,
            "window_seconds": self.run.window_seconds, "baseline_seconds": self.run.baseline_seconds,
            "metrics_step_seconds": self.run.metrics_step_seconds, "require_approval": self.run.require_approval,
            "max_services": self.run.max_services,
            "output_dir": str(self.run.output_dir), "notify_channels": self.run.notify_channels,
            "loki_url": self.telemetry.loki_url, "loki_auth": secret(self.telemetry.loki_auth),
            "prometheus_url": self.telemetry.prometheus_url, "prometheus_auth": secret(self.telemetry.prometheus_auth),
            "tempo_url": self.telemetry.tempo_url, "tempo_auth": secret(self.telemetry.tempo_auth),
            "jaeger_url": self.telemetry.jaeger_url, "jaeger_auth": secret(self.telemetry.jaeger_auth),
            "telemetry_config": str(self.telemetry.config_file) if self.telemetry.config_file else None,
            "telemetry_tables": self.telemetry.connector_tables(),
            "runbooks_dir": str(self.runbooks.dir) if self.runbooks.dir else None,
            "runbooks_base_url": self.runbooks.base_url, "grafana_url": self.links.grafana_url,
            "grafana_prometheus_uid": self.links.grafana_prometheus_uid,
            "grafana_loki_uid": self.links.grafana_loki_uid, "prometheus_link_url": self.links.prometheus_url,
        }
        unknown = set(overrides) - set(Context.__dataclass_fields__)
        if unknown:
            raise TypeError(f"unknown run settings: {sorted(unknown)}")
        context = Context(**(values | {k: v for k, v in overrides.items() if v is not None}))
        from tools.notify.config import load_notify_config

        # settings that cannot work refuse to start (ConfigError); secrets go to their clients from here
        if not context.chat_models:
            from tools.llm import check_llm_settings

            check_llm_settings(context, env={})  # the key is the configuration's, passed in the context
        if context.notifications is None:
            context.notifications = load_notify_config(context.notify_config, self.variables())
        return context

    def variables(self) -> dict[str, str]:
        """The variables this configuration was read from: the environment over .env."""
        sources = self._sources
        return {**sources.dotenv, **sources.env} if sources is not None else dict(os.environ)


def _secret_value(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


# --- reading the sources ----------------------------------------------------------------------------------


def setting_fields(model: type[BaseModel] = Settings, prefix: tuple[str, ...] = ()) -> Iterator[
        tuple[tuple[str, ...], FieldInfo]]:
    """(path, field) of every setting, depth first: ("server", "workers"), ..."""
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, Section):
            yield from setting_fields(annotation, (*prefix, name))
        else:
            yield (*prefix, name), info


def env_name(info: FieldInfo) -> str:
    """The environment variable of a setting ("" for tables that live in the TOML file only)."""
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    return str(extra.get("env", ""))


ENV_NAMES: dict[str, tuple[str, ...]] = {env_name(i): p for p, i in setting_fields() if env_name(i)}


class NamedVariables(PydanticBaseSettingsSource):
    """The settings given by their environment names in one mapping (the environment, or .env's values)."""

    def __init__(self, settings_cls: type[BaseSettings], variables: Mapping[str, str]):
        super().__init__(settings_cls)
        self.variables = variables

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # __call__ builds the nested tables at once

    def __call__(self) -> dict[str, Any]:
        tables: dict[str, Any] = {}
        for name, path in ENV_NAMES.items():
            value = self.variables.get(name)
            if value is not None and value != "":
                tables.setdefault(path[0], {})[path[1]] = value
        return tables


class TomlTables(PydanticBaseSettingsSource):
    """The TOML file's tables."""

    def __init__(self, settings_cls: type[BaseSettings], tables: dict[str, Any]):
        super().__init__(settings_cls)
        self.tables = tables

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return self.tables


def config_path(given: str | Path | None, env: Mapping[str, str]) -> Path | None:
    """The TOML file to read: the one given, else $INCIDENT_COPILOT_CONFIG, else ./incident-copilot.toml if any."""
    if given or env.get(CONFIG_ENV):
        return Path(given or env[CONFIG_ENV])
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None


def read_sources(config_file: str | Path | None = None, env: Mapping[str, str] | None = None,
                 dotenv: Path | None = DOTENV_FILE) -> Sources:
    """Read the environment, .env and the TOML file; SettingsError when a file cannot be read."""
    from dotenv import dotenv_values

    env = dict(os.environ if env is None else env)
    problems = []
    dotenv_values_: dict[str, str] = {}
    if dotenv is not None and dotenv.is_file():
        dotenv_values_ = {k: v for k, v in dotenv_values(dotenv).items() if v is not None}
    toml_path = config_path(config_file, env)
    toml: dict[str, Any] = {}
    if toml_path is not None:
        try:
            toml = tomllib.loads(toml_path.read_text(encoding="utf-8"))
        except OSError as exc:
            problems.append(f"config file {toml_path}: cannot read it: {exc.strerror or exc}")
        except tomllib.TOMLDecodeError as exc:
            problems.append(f"config file {toml_path}: not valid TOML: {exc}")
    for origin, variables in (("environment", env), (str(dotenv), dotenv_values_)):
        for name in sorted(variables):
            if name.startswith(ENV_PREFIX) and name not in ENV_NAMES and name != CONFIG_ENV:
                close = difflib.get_close_matches(name, [*ENV_NAMES, CONFIG_ENV], n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                problems.append(f"{name} ({origin}): not a setting{hint}")
    if problems:
        raise SettingsError(problems)
    return Sources(env=env, dotenv=dotenv_values_, dotenv_path=dotenv if dotenv_values_ else None, toml=toml,
                   toml_path=toml_path)


def load_settings(config_file: str | Path | None = None, env: Mapping[str, str] | None = None,
                  dotenv: Path | None = DOTENV_FILE, **overrides: Any) -> Settings:
    """The settings from overrides, the environment, .env and the TOML file; SettingsError lists every problem."""
    sources = read_sources(config_file, env, dotenv)
    token = _loading.set(sources)
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError([_problem(error, sources) for error in exc.errors()]) from None
    finally:
        _loading.reset(token)
    settings._sources = sources
    return settings


def origin_of(path: tuple[str, ...], sources: Sources, info: FieldInfo | None = None) -> str:
    """Where a setting's value comes from: the environment variable, .env, the TOML file, or the default."""
    name = env_name(info) if info is not None else ""
    if name and sources.env.get(name):
        return f"environment {name}"
    if name and sources.dotenv.get(name):
        return f"{sources.dotenv_path} {name}"
    table: Any = sources.toml
    for part in path:
        if not isinstance(table, dict) or part not in table:
            return "default"
        table = table[part]
    return f"{sources.toml_path} [{'.'.join(path[:-1])}] {path[-1]}" if len(path) > 1 else f"{sources.toml_path}"


def _problem(error: Any, sources: Sources) -> str:
    """One line for one validation error: the setting, where its value came from, what is wrong."""
    loc = tuple(str(part) for part in error["loc"])
    fields = dict(setting_fields())
    path = next((loc[:n] for n in range(len(loc), 0, -1) if loc[:n] in fields), loc)
    info = fields.get(path)
    where = origin_of(path, sources, info) if info is not None else str(sources.toml_path or "configuration")
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        known = _known_keys(loc[:-1])
        close = difflib.get_close_matches(loc[-1], known, n=1)
        message = "unknown setting" + (f" (did you mean {close[0]!r}?)" if close else f"; known: {', '.join(known)}")
        where = f"{sources.toml_path} [{'.'.join(loc[:-1])}]" if len(loc) > 1 else f"{sources.toml_path}"
    secret = info is not None and "Secret" in str(info.annotation)
    shown = "" if secret or error["type"] == "extra_forbidden" else f" = {error.get('input')!r}"
    if isinstance(error.get("input"), dict):
        shown = ""
    return f"{'.'.join(loc)} ({where}){shown}: {message}"


def _known_keys(table: tuple[str, ...]) -> list[str]:
    model: type[BaseModel] = Settings
    for part in table:
        annotation = model.model_fields[part].annotation if part in model.model_fields else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


# --- what the running service reads --------------------------------------------------------------------


@dataclass(frozen=True)
class ServerSettings:
    """Settings of the HTTP service, validated before it starts (built from `Settings.server_settings()`)."""

    database_url: str | None = None
    api_keys: dict[str, str] = field(default_factory=dict)  # key -> name of its holder
    roles: dict[str, str] = field(default_factory=dict)  # name -> role (default: intake for 'webhook', else admin)
    auth_disabled: bool = False
    local_mode: bool = False
    max_body_bytes: int = 1_048_576
    max_alerts_per_request: int = 1000
    workers: int = 2
    run_workers: bool = True
    telemetry: Literal["live", "sim"] = "live"
    output_dir: str = "output"
    group_ttl_seconds: int = 86_400
    max_queued_runs: int = 1000
    run_attempts: int = 5
    db_acquire_timeout: float = 0.5
    db_deadline: float = 10.0
    public_url: str | None = None
    session_hours: float = 8.0
    login_attempts: int = 5

    def role_of(self, name: str) -> str:
        """The role of the key holder called `name`."""
        return self.roles.get(name) or ("intake" if name == "webhook" else LEGACY_ROLE)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServerSettings:
        """From the one configuration (environment, .env, TOML file)."""
        return load_settings(env=env).server_settings()

    def validate(self) -> None:
        """Refuse unsafe or impossible settings."""
        if self.auth_disabled and not self.local_mode:
            raise SettingsError(["auth can only be disabled in local mode (INCIDENT_COPILOT_LOCAL=true)"])
        if not self.auth_disabled and not self.api_keys:
            raise SettingsError(["no API key: set WEBHOOK_API_KEY or INCIDENT_COPILOT_API_KEYS"])
        weak = [k for k in self.api_keys if k.lower() in PLACEHOLDER_SECRETS or len(k) < 16]
        if weak and not self.local_mode:
            raise SettingsError(["an API key is a placeholder or shorter than 16 characters"])
        unknown = sorted({role for role in self.roles.values() if role not in ROLES})
        if unknown:
            raise SettingsError([f"unknown role(s) {', '.join(unknown)}: roles are {', '.join(ROLES)}"])
        if not 1 <= self.workers <= 64:
            raise SettingsError(["INCIDENT_COPILOT_WORKERS must be between 1 and 64"])
        if self.max_queued_runs < self.max_alerts_per_request:  # else one full webhook could never be accepted
            raise SettingsError(["INCIDENT_COPILOT_MAX_QUEUED_RUNS must be at least INCIDENT_COPILOT_MAX_ALERTS"])
        if self.max_body_bytes < 1024:
            raise SettingsError(["INCIDENT_COPILOT_MAX_BODY_BYTES must be at least 1024"])

    def check_folders(self, home: Path | None) -> None:
        """Refuse an output folder (and a data directory) this process cannot write: at start, not in every run."""
        problems = []
        for where, path in (("run.output_dir (OUTPUT_DIR)", Path(self.output_dir)),
                            ("database.home (INCIDENT_COPILOT_HOME)", home)):
            problem = unwritable_folder(path) if path is not None else None
            if problem:
                problems.append(f"{where} = {str(path)!r}: {problem}")
        if problems:
            raise SettingsError(problems)


def unwritable_folder(path: Path) -> str | None:
    """Why `path` cannot be a folder this process writes into (created if missing), or None."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"cannot create the folder: {exc.strerror or exc}"
    if not path.is_dir():
        return "not a folder"
    if not os.access(path, os.W_OK | os.X_OK):
        return "the folder is not writable"
    return None
