"""Rendering of the incident brief (Markdown, HTML on disk, HTML mail with its chart images) from the state."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from graph.context import Context
from web.charts import sparkline_png
from web.view import Chart, IncidentPage, brief_title, incident_page

__all__ = ["brief_title", "render_brief_email", "render_brief_html", "render_brief_markdown", "template_env"]

_TEMPLATES = Path(__file__).parent / "templates"
MAIL_CHARTS = 4  # a mail shows the strongest few; the dashboard has the rest


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


def render_brief_markdown(state: dict[str, Any], summary: str | None = None, context: Context | None = None) -> str:
    """The brief as Markdown (Slack, the CLI, the API)."""
    page = incident_page(state, context)
    return template_env(False).get_template("brief.md.j2").render(p=page, summary=summary)


def render_brief_html(state: dict[str, Any], context: Context | None = None,
                      image_src: Callable[[Chart], str] | None = None) -> str:
    """The brief as a standalone HTML page that mail clients display too: inline styles, charts as PNG images
    (`image_src` names each one; without it, no images); the state must already hold the brief."""
    page = incident_page(state, context)
    return _html(page, state["brief"].summary or None, image_src)


def render_brief_email(state: dict[str, Any], context: Context | None = None) -> tuple[str, dict[str, bytes]]:
    """The brief for HTML mail: the HTML and its chart images by Content-ID (attach them inline as image/png)."""
    page = incident_page(state, context)
    charts = page.charts[:MAIL_CHARTS]
    images = {chart_cid(c): sparkline_png(c.data, c.window_start, c.onset_at) for c in charts}
    return _html(page, state["brief"].summary or None, lambda c: f"cid:{chart_cid(c)}"), images


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


def _html(page: IncidentPage, summary: str | None, image_src: Callable[[Chart], str] | None) -> str:
    return template_env(True).get_template("brief.html.j2").render(
        p=page, summary=summary, charts=page.charts[:MAIL_CHARTS], image_src=image_src
    )
