"""notify: the brief's local outputs (a file, stdout), the memory of the incident, and what announces it.

People are reached through the notification outbox (tools/notify/outbox.py): the runner writes the events that
`status_notices` makes in the transaction that changes the incident's status (awaiting approval, completed), at most
once per incident and kind, so a crash, a re-run or a replay sends nothing twice and loses nothing.
"""

from __future__ import annotations

import asyncio
import base64
from html import escape
from pathlib import Path
from typing import Any

from langgraph.runtime import Runtime

from graph.context import Context
from graph.summary import incident_report
from nodes.common import error_record
from state import Brief, IncidentState, Notification, check_incident_id
from tools.memory import remember
from web.render import (
    brief_chart_files,
    brief_title,
    chart_file,
    redacted_view,
    render_brief_email,
    render_brief_html,
)


def write_brief(state: IncidentState, context: Context) -> tuple[Path, Path]:
    """Write brief.md, brief.html and its chart images (charts/*.png) under output_dir/<incident id>/ (rewriting
    them is harmless)."""
    folder = Path(context.output_dir) / check_incident_id(state["incident_id"])  # a name, never a path
    (folder / "charts").mkdir(parents=True, exist_ok=True)
    md_path, html_path = folder / "brief.md", folder / "brief.html"
    md_path.write_text(state["brief"].markdown)
    for name, png in brief_chart_files(state, context).items():
        (folder / "charts" / name).write_bytes(png)
    html_path.write_text(render_brief_html(state, context, image_src=lambda chart: f"charts/{chart_file(chart)}"))
    return md_path, html_path


def opened_payload(state: dict[str, Any], context: Context | None = None) -> dict[str, Any]:
    """An incident confirmed and briefed: the brief as text and as HTML mail with its charts (PNG by Content-ID,
    base64), and the incident JSON."""
    state = redacted_view(state)
    html, images = render_brief_email(state, context)
    return {
        "service": state["alert"].service, "severity": state["detection"].severity,
        "subject": f"{brief_title(state)} ({state['incident_id']})", "text": state["brief"].markdown, "html": html,
        "images": {cid: base64.b64encode(png).decode() for cid, png in images.items()},
        "incident": incident_report(state),
    }


def gate_payload(state: dict[str, Any]) -> dict[str, Any]:
    """A fix waits at the approval gate: the root cause, the checks and the diff; the message links to the gate."""
    state = redacted_view(state)
    patch, root, severity = state["patch"], state.get("root_cause"), state["detection"].severity
    cause = f"{root.fault_type} in {root.service}: {root.summary}" if root else "root cause unknown"
    checks = [f"[{'x' if c.ok else ' '}] {c.name}" for c in patch.checks]
    head = f"Approval needed for incident {state['incident_id']}: {patch.title}"
    text = "\n".join([head, "", f"Root cause: {cause}", "", "Checks:", *checks, "", patch.diff[:3000]])
    html = (f"<p>{escape(head)}</p><p>Root cause: {escape(cause)}</p>"
            f"<ul>{''.join(f'<li>{escape(c)}</li>' for c in checks)}</ul><pre>{escape(patch.diff[:3000])}</pre>")
    return {
        "service": state["alert"].service, "severity": severity, "anchor": "#gate",
        "subject": f"[{severity}] Approval needed: {patch.title} ({state['incident_id']})", "text": text, "html": html,
        "incident": {"incident_id": state["incident_id"], "title": patch.title, "root_cause": cause},
    }


def status_notices(state: dict[str, Any], status: str, context: Context | None) -> list[tuple[str, dict[str, Any]]]:
    """The notification events (kind, payload) that announce an incident's new status: a fix waiting at the gate,
    or an incident briefed. Written by the runner in the transaction of the status change (service/incidents.py)."""
    if status == "awaiting_approval" and state.get("patch") is not None:
        return [("awaiting_approval", gate_payload(state))]
    detection = state.get("detection")
    # an inconclusive run (is_incident None) is told too: nobody could look, so a person must
    told = detection is not None and detection.is_incident is not False
    if status == "completed" and told and state.get("brief") is not None:
        return [("opened", opened_payload(state, context))]
    return []


async def notify(state: IncidentState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Local outputs per notify_channels, then the memory of the incident (its notices are the runner's)."""
    context = runtime.context
    sent: list[Notification] = []
    brief: Brief = state["brief"]
    update: dict[str, Any] = {}
    for channel in context.notify_channels:
        if channel == "file":
            md_path, html_path = await asyncio.to_thread(write_brief, state, context)
            brief = brief.model_copy(update={"markdown_path": str(md_path), "html_path": str(html_path)})
            update["brief"] = brief
            sent.append(Notification(channel="file", status="written", target=str(html_path)))
        elif channel == "stdout":
            print(brief.markdown, flush=True)
            sent.append(Notification(channel="stdout", status="sent"))
        else:
            sent.append(Notification(channel=channel, status="skipped", detail="unknown local output"))
    if context.database is None:
        sent.append(Notification(channel="outbox", status="skipped", detail="no database in this run: nobody notified"))
    else:
        try:
            async with context.database.pool.connection() as conn, conn.transaction():
                await remember(conn, state)
        except Exception as exc:  # the brief stands; memory is a help
            update["errors"] = [error_record("notify", f"memory of the incident not kept: {type(exc).__name__}: {exc}")]
    update["notifications"] = sent
    return update
