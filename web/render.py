"""Rendering of the incident brief (Markdown, HTML on disk, HTML mail with its chart images) from the state.

Untrusted text (alert names, labels, log samples, model answers) is made safe below the templates, so any template
keeps it: the state is redacted before the view is built (`redacted_view`), HTML is autoescaped, and every value
printed in Markdown is escaped by the environment itself unless a filter (`code`, `fence`, `url`) made it safe.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemBytecodeCache, FileSystemLoader, StrictUndefined

from graph.context import Context
from tools.redact import redact_value
from web.charts import sparkline_png
from web.view import Chart, IncidentPage, brief_title, incident_page

__all__ = ["brief_title", "render_brief_email", "render_brief_html", "render_brief_markdown", "template_env"]

_TEMPLATES = Path(__file__).parent / "templates"
MAIL_CHARTS = 4  # a mail shows the strongest few; the dashboard has the rest
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>#|~!])")  # what can open emphasis, code, a link, HTML, a table cell
_MD_LINE_START = re.compile(r"^(\d+[.)]|[-+=])")  # a list item or a setext underline, at the start of a value


class MarkdownSafe(str):
    """Text already safe to place in Markdown (escaped, or inside a code span or fence)."""


def md_escape(value: Any) -> str:
    """One line of Markdown that shows `value` literally: no heading, list, link, emphasis, HTML or comment."""
    if isinstance(value, MarkdownSafe):
        return value
    text = _MD_SPECIAL.sub(r"\\\1", " ".join(str(value).split()))
    return MarkdownSafe(_MD_LINE_START.sub(lambda m: m.group(1)[:-1] + "\\" + m.group(1)[-1], text, count=1))


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


def md_url(value: Any) -> MarkdownSafe:
    """A link destination that cannot end the link early or open HTML."""
    text = "".join(f"%{ord(c):02X}" if c in " ()<>[]`" else c for c in str(value))
    return MarkdownSafe(text)


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
        # every CLI run is a new process: compiled templates are kept in Jinja's per-user cache directory, keyed
        # by their source, so only the first process compiles them
        bytecode_cache=FileSystemBytecodeCache(),
    )
    env.filters["hhmm"] = lambda t: t.strftime("%H:%M:%S") if t else "-"
    env.filters["pct"] = lambda x: f"{round(100 * x)}%"
    env.filters["code"] = md_code
    env.filters["fence"] = md_fence
    env.filters["url"] = md_url
    return env


def redacted_view(values: dict[str, Any]) -> dict[str, Any]:
    """The state (or any page's data) with every secret redacted: what views, pages and API answers are built from."""
    return redact_value(dict(values))


def render_brief_markdown(state: dict[str, Any], summary: str | None = None, context: Context | None = None) -> str:
    """The brief as Markdown (Slack, the CLI, the API)."""
    state = redacted_view(state)
    page = incident_page(state, context)
    return template_env(False).get_template("brief.md.j2").render(
        p=page, summary=summary, similar=state.get("similar_incidents") or [])


def render_brief_html(state: dict[str, Any], context: Context | None = None,
                      image_src: Callable[[Chart], str] | None = None) -> str:
    """The brief as a standalone HTML page that mail clients display too: inline styles, charts as PNG images
    (`image_src` names each one; without it, no images); the state must already hold the brief."""
    state = redacted_view(state)
    page = incident_page(state, context)
    return _html(page, state, image_src)


def render_brief_email(state: dict[str, Any], context: Context | None = None) -> tuple[str, dict[str, bytes]]:
    """The brief for HTML mail: the HTML and its chart images by Content-ID (attach them inline as image/png)."""
    state = redacted_view(state)
    page = incident_page(state, context)
    charts = page.charts[:MAIL_CHARTS]
    images = {chart_cid(c): sparkline_png(c.data, c.window_start, c.onset_at) for c in charts}
    return _html(page, state, lambda c: f"cid:{chart_cid(c)}"), images


def brief_chart_files(state: dict[str, Any], context: Context | None = None) -> dict[str, bytes]:
    """The brief's chart images by file name, to write beside brief.html (which refers to them as charts/NAME)."""
    page = incident_page(state, context)
    return {chart_file(c): sparkline_png(c.data, c.window_start, c.onset_at) for c in page.charts[:MAIL_CHARTS]}


def chart_cid(chart: Chart) -> str:
    """The Content-ID of a chart's image in a mail."""
    return f"{chart.key}@incident-copilot"


def chart_file(chart: Chart) -> str:
    """The file name of a chart's image beside brief.html."""
    return f"{chart.key}.png"


def _html(page: IncidentPage, state: dict[str, Any], image_src: Callable[[Chart], str] | None) -> str:
    return template_env(True).get_template("brief.html.j2").render(
        p=page, summary=state["brief"].summary or None, charts=page.charts[:MAIL_CHARTS], image_src=image_src,
        similar=state.get("similar_incidents") or [],
    )
