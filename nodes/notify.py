"""notify: deliver the brief to the configured sinks (files under output/, and stdout for the CLI)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from langgraph.runtime import Runtime

from graph.context import Context
from state import Brief, IncidentState, Notification
from web.render import brief_chart_files, chart_file, render_brief_html


def write_brief(state: IncidentState, context: Context) -> tuple[Path, Path]:
    """Write brief.md, brief.html and its chart images (charts/*.png) under output_dir/<incident id>/ (rewriting
    them is harmless)."""
    folder = Path(context.output_dir) / state["incident_id"]
    (folder / "charts").mkdir(parents=True, exist_ok=True)
    md_path, html_path = folder / "brief.md", folder / "brief.html"
    md_path.write_text(state["brief"].markdown)
    for name, png in brief_chart_files(state, context).items():
        (folder / "charts" / name).write_bytes(png)
    html_path.write_text(render_brief_html(state, context, image_src=lambda chart: f"charts/{chart_file(chart)}"))
    return md_path, html_path


async def notify(state: IncidentState, runtime: Runtime[Context]) -> dict[str, Any]:
    """One Notification per channel; an unknown channel is recorded as skipped, not fatal."""
    sent: list[Notification] = []
    brief: Brief = state["brief"]
    update: dict[str, Any] = {}
    for channel in runtime.context.notify_channels:
        if channel == "file":
            md_path, html_path = await asyncio.to_thread(write_brief, state, runtime.context)
            brief = brief.model_copy(update={"markdown_path": str(md_path), "html_path": str(html_path)})
            update["brief"] = brief
            sent.append(Notification(channel="file", status="written", target=str(html_path)))
        elif channel == "stdout":
            print(brief.markdown, flush=True)
            sent.append(Notification(channel="stdout", status="sent"))
        else:
            sent.append(Notification(channel=channel, status="skipped", detail="channel not available in this build"))
    update["notifications"] = sent
    return update
