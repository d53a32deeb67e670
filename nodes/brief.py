"""brief: the incident brief in Markdown and HTML, from the state (delivery is notify's job)."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime
from pydantic import BaseModel, Field

from graph.context import Context
from nodes.common import llm_outcome
from state import Brief, IncidentState
from tools.llm import structured_call
from tools.redact import redact
from web.render import brief_title, render_brief_markdown


class BriefText(BaseModel):
    """What the model is asked for: a short executive summary."""

    summary: str = Field(max_length=1200)


async def brief(state: IncidentState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Render the brief; a model, when configured, writes the opening summary."""
    update: dict[str, Any] = {}
    summary = None
    if state["detection"].is_incident:
        text, usage, error = await structured_call(
            runtime.context, "fast", BriefText, "brief", evidence=state["digest"]
        )
        update |= llm_outcome("brief", usage, error)
        summary = redact(text.summary) if text is not None else None
    markdown = redact(render_brief_markdown(state, summary, runtime.context))
    update["brief"] = Brief(title=brief_title(state), summary=summary or "", markdown=markdown)
    return update
