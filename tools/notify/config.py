"""Where notifications go: channels (one sink each) and routes by service, severity and kind, from one TOML file.

Secrets never sit in the file: a channel names the variables that hold them (`password_env`, `webhook_url_env`,
`routing_key_env`, ...). Loaded with the configuration (`Settings.run_context()`), they are read from its environment
and `.env` at start-up, kept as SecretStr and handed to the sink; one that is not set refuses to start. A config
loaded on its own reads them from the process environment when a message is sent. Example:

    public_url = "https://copilot.example.com"      # links to incidents and their approval gate

    [channels.oncall-email]
    type = "smtp"                                    # smtp | gmail | slack | pagerduty | webhook
    host = "smtp.example.com"
    port = 587
    security = "starttls"                            # starttls | tls | none
    username = "copilot"
    password_env = "SMTP_PASSWORD"
    from = "Incident CoPilot <copilot@example.com>"
    to = ["oncall@example.com"]

    [[routes]]
    services = ["checkout", "payments*"]             # globs; all services when absent
    severities = ["P1", "P2"]                        # all when absent
    kinds = ["opened", "awaiting_approval", "resolved"]
    channels = ["oncall-email"]
"""

from __future__ import annotations

import fnmatch
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from graph.context import ConfigError

KINDS = ("opened", "awaiting_approval", "resolved")
SINKS: dict[str, tuple[set[str], set[str]]] = {  # type -> (required keys, optional keys)
    "smtp": ({"host", "from", "to"}, {"port", "security", "username", "password_env", "ca_file", "timeout"}),
    "gmail": ({"from", "to", "client_id_env", "client_secret_env", "refresh_token_env"},
              {"token_url", "api_url", "timeout"}),
    "slack": ({"webhook_url_env"}, {"timeout"}),
    "pagerduty": ({"routing_key_env"}, {"url", "timeout"}),
    "webhook": ({"url"}, {"secret_env", "headers", "timeout"}),
}


@dataclass(frozen=True)
class Channel:
    """One configured sink."""

    name: str
    type: str
    settings: Mapping[str, Any]
    secrets: Mapping[str, SecretStr] = field(default_factory=dict)
    """The values of the `<key>_env` variables by key, when the configuration resolved them at start-up."""

    def secret(self, key: str) -> str:
        """The secret named by `<key>_env`: resolved at start-up, else from the process environment; refuses when
        it is unset."""
        if key in self.secrets:
            return self.secrets[key].get_secret_value()
        variable = self.settings[f"{key}_env"]
        value = os.environ.get(variable)
        if not value:
            raise ConfigError(f"channel {self.name}: environment variable {variable} is not set")
        return value


@dataclass(frozen=True)
class Route:
    """Which channels hear about which incidents."""

    channels: tuple[str, ...]
    services: tuple[str, ...] = ("*",)
    severities: tuple[str, ...] = ()
    kinds: tuple[str, ...] = KINDS

    def matches(self, service: str, severity: str | None, kind: str) -> bool:
        """True when the route applies to an incident of this service and severity, for this kind of message."""
        return (kind in self.kinds and any(fnmatch.fnmatchcase(service, s) for s in self.services)
                and (not self.severities or severity in self.severities))


@dataclass(frozen=True)
class NotifyConfig:
    """Channels and routes; an empty config routes nothing."""

    channels: Mapping[str, Channel] = field(default_factory=dict)
    routes: tuple[Route, ...] = ()
    public_url: str | None = None

    def channels_for(self, service: str, severity: str | None, kind: str) -> list[Channel]:
        """The channels a message of this kind about this incident goes to, each once, in route order."""
        names: dict[str, None] = {}
        for route in self.routes:
            if route.matches(service, severity, kind):
                names.update(dict.fromkeys(route.channels))
        return [self.channels[n] for n in names]

    def link(self, incident_id: str, anchor: str = "") -> str | None:
        """The dashboard page of an incident, when the public URL is known."""
        if not self.public_url:
            return None
        return f"{self.public_url.rstrip('/')}/ui/incidents/{incident_id}{anchor}"


def parse_notify_config(data: Mapping[str, Any], variables: Mapping[str, str] | None = None) -> NotifyConfig:
    """Validate a config's data: known sink types, required keys, routes naming existing channels; with `variables`
    (the configuration's environment and .env), every secret a channel names must be set there."""
    unknown = set(data) - {"public_url", "channels", "routes"}
    if unknown:
        raise ConfigError(f"notifications: unknown settings {sorted(unknown)}")
    channels: dict[str, Channel] = {}
    for name, settings in (data.get("channels") or {}).items():
        kind = settings.get("type")
        if kind not in SINKS:
            raise ConfigError(f"channel {name}: type must be one of {', '.join(SINKS)}, not {kind!r}")
        required, optional = SINKS[kind]
        missing, extra = required - set(settings), set(settings) - required - optional - {"type"}
        if missing or extra:
            raise ConfigError(f"channel {name} ({kind}): missing {sorted(missing)}, unknown {sorted(extra)}")
        if kind in ("smtp", "gmail") and (not isinstance(settings["to"], list) or not settings["to"]):
            raise ConfigError(f"channel {name}: 'to' must be a non-empty list of addresses")
        if kind == "smtp" and settings.get("security", "starttls") not in ("starttls", "tls", "none"):
            raise ConfigError(f"channel {name}: security must be starttls, tls or none")
        secrets = {}
        for key in (k for k in settings if k.endswith("_env") and variables is not None):
            if not variables.get(settings[key]):
                raise ConfigError(f"channel {name}: {settings[key]} is not set (environment or .env)")
            secrets[key.removesuffix("_env")] = SecretStr(variables[settings[key]])
        channels[name] = Channel(name, kind, dict(settings), secrets)
    routes = []
    for i, raw in enumerate(data.get("routes") or []):
        extra = set(raw) - {"channels", "services", "severities", "kinds"}
        names = tuple(raw.get("channels") or ())
        if extra or not names or set(names) - set(channels):
            raise ConfigError(f"route {i + 1}: needs 'channels' naming configured channels "
                              f"(unknown: {sorted(set(names) - set(channels))}, bad keys: {sorted(extra)})")
        kinds = tuple(raw.get("kinds") or KINDS)
        if set(kinds) - set(KINDS):
            raise ConfigError(f"route {i + 1}: kinds must be among {', '.join(KINDS)}")
        routes.append(Route(names, tuple(raw.get("services") or ("*",)), tuple(raw.get("severities") or ()), kinds))
    return NotifyConfig(channels, tuple(routes), data.get("public_url"))


def notify_config_of(context: Any) -> NotifyConfig:
    """The run's notification config: the one the configuration loaded with its secrets, else its file's."""
    return context.notifications or load_notify_config(context.notify_config)


def load_notify_config(path: str | None, variables: Mapping[str, str] | None = None) -> NotifyConfig:
    """The config in a TOML file (its secrets from `variables` when given), or an empty one (no routes) when no
    file is given."""
    if not path:
        return NotifyConfig()
    try:
        return parse_notify_config(tomllib.loads(Path(path).read_text()), variables)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"notification config {path}: {exc}") from exc
