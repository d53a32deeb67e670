"""`incident-copilot config check`: the effective configuration, secrets masked, and whether its sources answer."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import SecretStr

from service.settings import Settings, env_name, setting_fields

TIMEOUT_SECONDS = 5.0


@dataclass
class SourceCheck:
    """One outside source: ok (it answered), down (it did not), off (not configured, or not checked)."""

    name: str
    state: Literal["ok", "down", "off"]
    detail: str


def unread_telemetry(context: Any) -> str | None:
    """A warning for live mode when logs or metrics have no backend configured (runs would be inconclusive), naming
    every source that is missing; None when logs and metrics can both be read."""
    missing = [f"{what} ({how})" for what, how, url in (
        ("logs", "set LOKI_URL", context.loki_url),
        ("metrics", "set PROMETHEUS_URL", context.prometheus_url),
        ("traces", "set TEMPO_URL or JAEGER_URL", context.tempo_url or context.jaeger_url),
    ) if not url]
    if not any(m.startswith(("logs", "metrics")) for m in missing):
        return None
    blind = not (context.loki_url or context.prometheus_url)
    return ("live telemetry: no telemetry source is configured for " + ", ".join(missing) + "; "
            + ("every investigation will be inconclusive" if blind else
               "investigations that need what is missing will be inconclusive")
            + " (or give [telemetry] in the configuration file)")


def effective_settings(settings: Settings, config_file: Path | None = None) -> dict[str, dict[str, str]]:
    """Every setting: its value as text (secrets masked), where it came from, its environment name."""
    rows = {}
    for path, info in setting_fields():
        value: Any = settings
        for part in path:
            value = getattr(value, part)
        rows[".".join(path)] = {"value": _shown(value), "source": settings.origin(path), "env": env_name(info)}
    return rows


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, SecretStr):
        return "********"
    if isinstance(value, dict):
        if any(isinstance(v, SecretStr) for v in value.values()):
            return ", ".join(f"{k}=********" for k in value) or "-"
        return json.dumps(value) if value else "-"
    if isinstance(value, tuple | list):
        return ",".join(map(str, value)) or "-"
    return "-" if value is None else str(value)


async def check_sources(settings: Settings) -> list[SourceCheck]:
    """Try each configured source once, concurrently, with a short timeout; nothing is written anywhere."""
    return list(await asyncio.gather(
        _database(settings), _http("loki", settings.telemetry.loki_url, "/ready", settings.telemetry.loki_auth),
        _http("prometheus", settings.telemetry.prometheus_url, "/-/ready", settings.telemetry.prometheus_auth),
        _http("tempo", settings.telemetry.tempo_url, "/ready", settings.telemetry.tempo_auth),
        _http("jaeger", settings.telemetry.jaeger_url, "/api/services", settings.telemetry.jaeger_auth),
        _http("grafana (links)", settings.links.grafana_url, "/api/health", None),
        asyncio.to_thread(_runbooks, settings), asyncio.to_thread(_telemetry_config, settings),
        asyncio.to_thread(_llm, settings),
    ))


async def _database(settings: Settings) -> SourceCheck:
    if settings.database.url is None:
        return SourceCheck("database", "off", "no DATABASE_URL: the embedded PostgreSQL starts on demand in the data "
                                              "directory")
    import psycopg

    url = settings.database.url.get_secret_value()
    try:
        async with await psycopg.AsyncConnection.connect(url, connect_timeout=int(TIMEOUT_SECONDS)) as conn:
            row = await (await conn.execute("SHOW server_version")).fetchone()
        return SourceCheck("database", "ok", f"PostgreSQL {row[0]} at {url.split('@')[-1]}")
    except Exception as exc:
        return SourceCheck("database", "down", _reason(exc))


async def _http(name: str, base: str | None, path: str, auth: SecretStr | None) -> SourceCheck:
    if not base:
        return SourceCheck(name, "off", "not configured")
    import httpx

    headers, basic = {}, None
    if auth is not None:
        credential = auth.get_secret_value()
        if credential.lower().startswith("bearer "):
            headers["Authorization"] = credential
        else:
            user, _, password = credential.partition(":")
            basic = (user, password)
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS, auth=basic) as client:
            response = await client.get(base.rstrip("/") + path, headers=headers)
    except httpx.HTTPError as exc:
        return SourceCheck(name, "down", f"{base}: {_reason(exc)}")
    if response.status_code >= 400:
        return SourceCheck(name, "down", f"{base}{path} answered {response.status_code}")
    return SourceCheck(name, "ok", f"{base}{path} answered {response.status_code}")


def _runbooks(settings: Settings) -> SourceCheck:
    if settings.runbooks.dir is None:
        return SourceCheck("runbooks", "off", "not configured")
    from tools.runbooks import load_runbooks

    runbooks, problems = load_runbooks(settings.runbooks.dir)
    if problems:
        return SourceCheck("runbooks", "down", f"{len(runbooks)} usable; " + "; ".join(problems[:3]))
    return SourceCheck("runbooks", "ok", f"{len(runbooks)} runbooks in {settings.runbooks.dir}")


def _telemetry_config(settings: Settings) -> SourceCheck:
    tables = settings.telemetry.connector_tables()
    if settings.telemetry.config_file is None and not tables:
        return SourceCheck("telemetry queries", "off", "the defaults (deploy/telemetry.example.toml)")
    return SourceCheck("telemetry queries", "ok", f"{settings.telemetry.config_file or 'the [telemetry] tables'} "
                                                  "over the defaults, valid")


def _llm(settings: Settings) -> SourceCheck:
    if settings.llm.provider == "offline":
        return SourceCheck("llm", "off", "offline: the deterministic engine alone")
    key = settings.llm.google_api_key if settings.llm.provider == "google" else None
    if settings.llm.provider == "google" and key is None:
        return SourceCheck("llm", "down", "provider google without GOOGLE_API_KEY")
    return SourceCheck("llm", "ok", f"{settings.llm.provider}: configured (not contacted: the check sends no prompt)")


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:300]


def settings_markdown() -> str:
    """The README's table of every setting: TOML key, environment name, default, meaning (kept in step by a test)."""
    lines = ["| setting (TOML `[section] key`) | environment | default | meaning |", "|---|---|---|---|"]
    defaults = Settings.model_construct()
    for path, info in setting_fields():
        value: Any = defaults
        for part in path:
            value = getattr(value, part) if not isinstance(value, dict) else value.get(part)
        default = "-" if value is None or value == {} else _shown(value)
        name = f"`[{'.'.join(path[:-1])}] {path[-1]}`"
        env = f"`{env_name(info)}`" if env_name(info) else "-"
        lines.append(f"| {name} | {env} | {default.replace('|', '/')} | {info.description} |")
    return "\n".join(lines)
