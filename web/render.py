"""Rendering of the incident brief (Markdown and HTML) from the graph state."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

_TEMPLATES = Path(__file__).parent / "templates"


@cache
def template_env(autoescape: bool) -> Environment:
    env = Environment(
        loader=FileSystemLoader(_TEMPLATES),
        autoescape=autoescape,  # alert labels and log samples are untrusted: HTML output is always escaped
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["hhmm"] = lambda t: t.strftime("%H:%M:%S") if t else "-"
    env.filters["pct"] = lambda x: f"{round(100 * x)}%"
    return env


def brief_title(state: dict[str, Any]) -> str:
    """One line: severity, service, and what happened."""
    detection, alert = state["detection"], state["alert"]
    if not detection.is_incident:
        return f"No incident: {alert.alertname} on {alert.service} (false alarm)"
    root = state.get("root_cause")
    cause = f"{root.fault_type.replace('_', ' ')} in {root.service}" if root else "cause unknown"
    return f"[{detection.severity}] {alert.alertname} on {alert.service}: {cause}"


def timeline(state: dict[str, Any]) -> list[tuple[datetime, str]]:
    """What happened when, from the evidence and the run, in time order."""
    evidence, alert = state.get("evidence"), state["alert"]
    events: list[tuple[datetime, str]] = [(alert.starts_at, f"alert {alert.alertname} fired on {alert.service}")]
    if evidence is not None:
        if evidence.onset:
            events.append((evidence.onset, "anomaly onset (earliest sustained deviation)"))
        for d in evidence.deploys:
            what = "config change" if d.kind == "config" else "deploy"
            commit = f" (commit {d.commit[:10]})" if d.commit else ""
            events.append((d.at, f"{what} of {d.service}: {d.previous_version or '?'} -> {d.version}{commit}"))
        for t in (evidence.logs.templates if evidence.logs else [])[:40]:
            if t.kind == "new" and t.level == "error" and t.first_seen:
                events.append((t.first_seen, f"new error in {t.service}: {t.template[:100]}"))
        for s in (evidence.metrics.signals if evidence.metrics else [])[:40]:
            if s.onset and s.score >= 5:
                target = f"{s.service}->{s.peer}" if s.peer else s.service
                events.append((s.onset, f"{s.signal} of {target} {s.direction} ({s.baseline:.3g} -> {s.current:.3g})"))
    approval = state.get("approval")
    if approval is not None:
        events.append((approval.at, f"approval: {approval.decision} by {approval.by}"))
    events.sort(key=lambda e: e[0])
    seen: set[str] = set()
    unique = []
    for at, text in events:
        if text not in seen:
            seen.add(text)
            unique.append((at, text))
    return unique[:30]


def _context(state: dict[str, Any], summary: str | None) -> dict[str, Any]:
    return {
        "title": brief_title(state),
        "summary": summary,
        "s": state,
        "timeline": timeline(state),
        "hypotheses": (state.get("hypotheses") or [])[:5],
        "suggestions": state.get("suggestions") or [],
        "errors": state.get("errors") or [],
    }


def render_brief_markdown(state: dict[str, Any], summary: str | None = None) -> str:
    """The brief as Markdown."""
    return template_env(False).get_template("brief.md.j2").render(**_context(state, summary))


def render_brief_html(state: dict[str, Any]) -> str:
    """The brief as a standalone HTML page (the state must already hold the brief)."""
    return template_env(True).get_template("brief.html.j2").render(**_context(state, state["brief"].summary or None))
