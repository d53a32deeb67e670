"""Memory of past incidents in PostgreSQL: what each incident was, what fixed it, and which past ones are alike.

Alike means the same root-cause service and fault type, or error templates in common (the same failure seen from
the logs, even when the ranking named another cause). Templates are compared as mined (numbers already masked).
"""

from __future__ import annotations

from typing import Any

from psycopg.types.json import Jsonb

from state import PastIncident
from tools.redact import redact, redact_value

MAX_TEMPLATES = 20
MAX_SIMILAR = 3


def error_templates(evidence: Any) -> list[str]:
    """The incident's new or spiking error templates, the failure's fingerprint in the logs."""
    if evidence is None or evidence.logs is None:
        return []
    return sorted({t.template for t in evidence.logs.templates
                   if t.level == "error" and t.kind in ("new", "spiking")})[:MAX_TEMPLATES]


def what_fixed_it(state: dict[str, Any]) -> dict[str, Any]:
    """The fix as known when the brief was written: the pull request, or the first mitigation."""
    fix: dict[str, Any] = {}
    patch, pr, approval = state.get("patch"), state.get("pr"), state.get("approval")
    if patch is not None:
        fix["patch"] = patch.title
    if pr is not None and pr.status in ("created", "exists"):
        fix["pull_request"] = pr.url or pr.branch
    if approval is not None:
        fix["approval"] = f"{approval.decision} by {approval.by}"
    suggestions = [s.action for s in state.get("suggestions") or [] if not s.blocked_reason]
    if suggestions:
        fix["mitigation"] = suggestions[0]
    return redact_value(fix)


def describe_fix(fix: dict[str, Any]) -> str:
    """One line for the brief."""
    if fix.get("pull_request"):
        return f"pull request {fix['pull_request']} ({fix.get('patch', 'patch')})"
    if fix.get("patch"):
        return f"proposed fix {fix['patch']}" + (f", {fix['approval']}" if fix.get("approval") else "")
    return f"mitigation: {fix['mitigation']}" if fix.get("mitigation") else "no fix recorded"


async def remember(conn: Any, state: dict[str, Any]) -> None:
    """Store (or refresh, on a re-run) what this incident was and what fixed it."""
    root = state.get("root_cause")
    if root is None:
        return
    await conn.execute(
        """INSERT INTO incident_memory (incident_id, alerted_service, service, fault_type, templates, summary, fix)
           VALUES (%s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT (incident_id) DO UPDATE SET service = EXCLUDED.service, fault_type = EXCLUDED.fault_type,
               templates = EXCLUDED.templates, summary = EXCLUDED.summary, fix = EXCLUDED.fix""",
        (state["incident_id"], state["alert"].service, root.service, root.fault_type,
         error_templates(state.get("evidence")), redact(root.summary), Jsonb(what_fixed_it(state))),
    )


async def similar_incidents(pool: Any, incident_id: str, service: str, fault_type: str,
                            templates: list[str]) -> list[PastIncident]:
    """Past incidents like this one, most alike first: same cause, then most templates shared, then newest."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            """SELECT m.incident_id, m.created_at, m.service, m.fault_type, m.summary, m.fix,
                      cardinality(ARRAY(SELECT unnest(m.templates) INTERSECT SELECT unnest(%(templates)s::text[])))
                          AS shared,
                      (m.service = %(service)s AND m.fault_type = %(fault)s) AS same_cause,
                      i.resolved_at
               FROM incident_memory m LEFT JOIN incidents i ON i.id = m.incident_id
               WHERE m.incident_id <> %(id)s
                 AND ((m.service = %(service)s AND m.fault_type = %(fault)s) OR m.templates && %(templates)s::text[])
               ORDER BY same_cause DESC, shared DESC, m.created_at DESC LIMIT %(limit)s""",
            {"templates": templates, "service": service, "fault": fault_type, "id": incident_id,
             "limit": MAX_SIMILAR},
        )
        rows = await cur.fetchall()
    return [PastIncident(incident_id=r["incident_id"], at=r["created_at"], service=r["service"],
                         fault_type=r["fault_type"], summary=r["summary"], shared_templates=r["shared"],
                         fix=describe_fix(r["fix"]), resolved_at=r["resolved_at"]) for r in rows]
