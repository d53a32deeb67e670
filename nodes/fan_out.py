"""fan_out: hand root-cause analysis and mitigation planning the same inputs, in parallel branches."""

from __future__ import annotations

from typing import Any

from langgraph.types import Send

from nodes.common import evidence_digest
from state import IncidentState


async def fan_out(state: IncidentState) -> dict[str, Any]:
    """Fold the code findings, when there are any, into the digest both branches reason over."""
    code = state.get("code")
    if code is None:
        return {}
    return {"digest": evidence_digest(state["evidence"], code, state["alert"])}


def route_branches(state: IncidentState) -> list[Send]:
    """rca and suggest run as two Sends of the same state: two checkpointed steps in one superstep."""
    return [Send("rca", state), Send("suggest", state)]
