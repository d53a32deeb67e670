"""Rendering of the incident brief (Markdown and HTML) from the graph state.

Untrusted text (alert names, labels, log samples, model answers) is made safe below the templates, so any template
keeps it: views are redacted (`redacted_view`), HTML is autoescaped, and every value printed in Markdown is escaped
by the environment itself unless a filter (`code`, `fence`) made it safe in its own way.
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from tools.redact import redact_value

_TEMPLATES = Path(__file__).parent / "templates"
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>#|~!])")  # what can open emphasis, code, a link, HTML, a table cell
_MD_LINE_START = re.compile(r"^(\d*)([-+=.)])")  # a list item or a setext underline, at the start of a value


class MarkdownSafe(str):
    """Text already safe to place in Markdown (escaped, or inside a code span or fence)."""


def md_escape(value: Any) -> str:
    """One line of Markdown that shows `value` literally: no heading, list, link, emphasis, HTML or comment."""
    if isinstance(value, MarkdownSafe):
        return value
    text = _MD_SPECIAL.sub(r"\\\1", " ".join(str(value).split()))
    return MarkdownSafe(_MD_LINE_START.sub(r"\1\\\2", text, count=1))


def md_code(value: Any) -> MarkdownSafe:
    """An inline code span that no backtick in `value` can end early."""
    text = " ".join(str(value).split())
    ticks = "`" * (max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return MarkdownSafe(f"{ticks}{pad}{text}{pad}{ticks}")


def md_fence(value: Any, lang: str = "") -> MarkdownSafe:
    """A fenced code block longer than any backtick run inside it."""
    text = str(value)
    ticks = "`" * max(3, max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    return MarkdownSafe(f"{ticks}{lang}\n{text.rstrip()}\n{ticks}")


def _md_finalize(value: Any) -> Any:
    if value is None or isinstance(value, MarkdownSafe | int | float):
        return value
    return md_escape(value)


@cache
def template_env(autoescape: bool) -> Environment:
    """The Jinja environment: HTML autoescaped (autoescape=True), or Markdown with every value escaped."""
    env = Environment(
        loader=FileSystemLoader(_TEMPLATES),
        autoescape=autoescape,  # alert labels and log samples are untrusted: HTML output is always escaped
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=None if autoescape else _md_finalize,
    )
    env.filters["hhmm"] = lambda t: t.strftime("%H:%M:%S") if t else "-"
    env.filters["pct"] = lambda x: f"{round(100 * x)}%"
    env.filters["code"] = md_code
    env.filters["fence"] = md_fence
    return env


def redacted_view(values: dict[str, Any]) -> dict[str, Any]:
    """The state (or any page's data) with every secret redacted: what templates and API answers are given."""
    return redact_value(dict(values))


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
    state = redacted_view(state)
    return {
        "title": brief_title(state),
        "summary": summary,
        "s": state,
        "timeline": timeline(state),
        "hypotheses": (state.get("hypotheses") or [])[:5],
        "suggestions": state.get("suggestions") or [],
        "errors": state.get("errors") or [],
        "similar": state.get("similar_incidents") or [],
    }


def render_brief_markdown(state: dict[str, Any], summary: str | None = None) -> str:
    """The brief as Markdown."""
    return template_env(False).get_template("brief.md.j2").render(**_context(state, summary))


def render_brief_html(state: dict[str, Any]) -> str:
    """The brief as a standalone HTML page (the state must already hold the brief)."""
    return template_env(True).get_template("brief.html.j2").render(**_context(state, state["brief"].summary or None))
