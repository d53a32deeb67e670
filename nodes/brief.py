"""brief: the incident brief in Markdown and HTML, from the state (delivery is notify's job)."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime
from pydantic import BaseModel, Field

from graph.context import Context
from nodes.common import error_record, llm_outcome
from prompts.views import conclusions_view
from state import Brief, IncidentState, PastIncident
from tools.llm import spent_tokens, structured_call
from tools.memory import error_templates, similar_incidents
from tools.redact import redact
from web.render import brief_title, render_brief_markdown


class BriefText(BaseModel):
    """What the model is asked for: a short executive summary."""

    summary: str = Field(max_length=1200)


async def past_incidents(state: IncidentState, context: Context) -> list[PastIncident] | None:
    """Similar past incidents from memory (None when the run has no database)."""
    root = state.get("root_cause")
    if context.database is None or root is None or not state["detection"].is_incident:
        return None
    return await similar_incidents(context.database.pool, state["incident_id"], root.service, root.fault_type,
                                   error_templates(state.get("evidence")))


async def brief(state: IncidentState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Render the brief; a model, when configured, writes the opening summary."""
    update: dict[str, Any] = {}
    summary = None
    if state["detection"].is_incident:
        text, usage, error = await structured_call(
            runtime.context, "fast", BriefText, "brief", spent=spent_tokens(state.get("tokens")),
            conclusions=conclusions_view(state),
        )
        update |= llm_outcome("brief", usage, error)
        summary = redact(text.summary) if text is not None else None
    try:
        similar = await past_incidents(state, runtime.context)
    except Exception as exc:  # memory is a help, never a reason to lose the brief
        similar = None
        update.setdefault("errors", []).append(error_record("brief", f"memory of past incidents: {exc}"))
    if similar is not None:
        update["similar_incidents"] = similar
        state = {**state, "similar_incidents": similar}
    markdown = redact(render_brief_markdown(state, summary, runtime.context))
    update["brief"] = Brief(title=brief_title(state), summary=summary or "", markdown=markdown)
    return update
