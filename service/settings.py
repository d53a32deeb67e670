"""Settings of the HTTP service and its run workers, validated before anything starts."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

PLACEHOLDER_SECRETS = {"", "changeme", "change-me", "secret", "placeholder", "password", "test", "xxx", "todo"}


class SettingsError(ValueError):
    """The server's settings are unusable; it refuses to start."""


@dataclass(frozen=True)
class ServerSettings:
    """Settings of the HTTP service, validated before it starts."""

    database_url: str | None = None
    api_keys: dict[str, str] = field(default_factory=dict)  # key -> identity of its holder
    auth_disabled: bool = False
    local_mode: bool = False
    max_body_bytes: int = 1_048_576
    max_alerts_per_request: int = 1000
    workers: int = 2
    run_workers: bool = True
    telemetry: Literal["live", "sim"] = "live"
    output_dir: str = "output"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> ServerSettings:
        """From INCIDENT_COPILOT_* variables (see README); explicit, no hidden defaults for secrets."""
        env = dict(os.environ if env is None else env)
        keys: dict[str, str] = {}
        for item in filter(None, (env.get("INCIDENT_COPILOT_API_KEYS") or "").split(",")):
            identity, sep, key = item.partition("=")
            if not sep:
                raise SettingsError("INCIDENT_COPILOT_API_KEYS takes identity=key pairs separated by commas")
            keys[key.strip()] = identity.strip()
        if env.get("WEBHOOK_API_KEY") is not None:
            keys[env["WEBHOOK_API_KEY"].strip()] = "webhook"
        truthy = ("1", "true", "yes", "on")
        return cls(
            database_url=env.get("DATABASE_URL") or None,
            api_keys=keys,
            auth_disabled=env.get("INCIDENT_COPILOT_AUTH", "").lower() == "disabled",
            local_mode=env.get("INCIDENT_COPILOT_LOCAL", "").lower() in truthy,
            max_body_bytes=int(env.get("INCIDENT_COPILOT_MAX_BODY_BYTES", 1_048_576)),
            workers=int(env.get("INCIDENT_COPILOT_WORKERS", 2)),
            run_workers=env.get("INCIDENT_COPILOT_RUN_WORKERS", "true").lower() in truthy,
            telemetry="sim" if env.get("INCIDENT_COPILOT_TELEMETRY", "live") == "sim" else "live",
            output_dir=env.get("OUTPUT_DIR", "output"),
        )

    def validate(self) -> None:
        """Refuse unsafe or impossible settings."""
        if self.auth_disabled and not self.local_mode:
            raise SettingsError("auth can only be disabled in local mode (INCIDENT_COPILOT_LOCAL=true)")
        if not self.auth_disabled and not self.api_keys:
            raise SettingsError("no API key: set WEBHOOK_API_KEY or INCIDENT_COPILOT_API_KEYS")
        weak = [k for k in self.api_keys if k.lower() in PLACEHOLDER_SECRETS or len(k) < 16]
        if weak and not self.local_mode:
            raise SettingsError("an API key is a placeholder or shorter than 16 characters")
        if not 1 <= self.workers <= 64:
            raise SettingsError("INCIDENT_COPILOT_WORKERS must be between 1 and 64")
        if self.max_body_bytes < 1024:
            raise SettingsError("INCIDENT_COPILOT_MAX_BODY_BYTES must be at least 1024")
