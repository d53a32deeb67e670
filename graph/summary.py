"""The `investigate --json` contract (DESIGN.md 4.2) built from an incident's state."""

from __future__ import annotations

from typing import Any

from tools.redact import redact_value


def _hypothesis(h: Any) -> dict[str, Any]:
    return {"service": h.service, "fault_type": h.fault_type, "confidence": round(h.confidence, 3),
            "evidence": list(h.evidence)}


def incident_report(values: dict[str, Any]) -> dict[str, Any]:
    """One JSON-able object: verdict, root cause, ranked hypotheses, suggestions, patch, PR, tokens, errors."""
    alert, window, detection = values["alert"], values.get("window"), values.get("detection")
    outcome = detection.outcome if detection else "not_an_incident"
    root = values.get("root_cause")
    candidates = values["evidence"].candidates if values.get("evidence") else []
    if outcome == "inconclusive" and root is None and candidates:  # a best guess that was not analysed further
        root = candidates[0]
    if outcome != "not_an_incident" and root is not None and root.fault_type != "none":
        root_cause = {"service": root.service, "fault_type": root.fault_type, "summary": root.summary,
                      "confidence": round(root.confidence, 3), "evidence": list(root.evidence)}
        hypotheses = [_hypothesis(h) for h in values.get("hypotheses") or candidates]
    else:
        reasons = list(detection.reasons) if detection else []
        verdict = "Inconclusive" if outcome == "inconclusive" else "Not an incident"
        root_cause = {"service": alert.service, "fault_type": "none",
                      "summary": f"{verdict}: " + ("; ".join(reasons[:2]) or "no sustained anomaly"),
                      "confidence": 0.0, "evidence": reasons}
        hypotheses = [dict(root_cause, evidence=reasons)] + [_hypothesis(h) for h in candidates]
        hypotheses[0].pop("summary")
    patch, pr = values.get("patch"), values.get("pr")
    tokens = values.get("tokens") or {}
    return redact_value({
        "incident_id": values["incident_id"],
        "service": alert.service,
        "window": {"start": window.start.isoformat(), "end": window.end.isoformat()} if window else None,
        "outcome": outcome,
        "is_incident": detection.is_incident if detection else False,
        "severity": detection.severity if detection else None,
        "root_cause": root_cause,
        "hypotheses": hypotheses,
        "code_regression": bool(detection and detection.code_regression),
        "suggestions": [
            {"action": s.action, "risk": s.risk, **({"command": s.command} if s.command else {}),
             **({"blocked_reason": s.blocked_reason} if s.blocked_reason else {})}
            for s in values.get("suggestions") or []
        ],
        "patch": patch.model_dump(mode="json", exclude={"repo"}) if patch is not None else None,
        "pr": pr.model_dump(mode="json") if pr is not None else None,
        "tokens": {"input": sum(t.input for t in tokens.values()), "output": sum(t.output for t in tokens.values())},
        "errors": [{"node": e.node, "message": e.message, "source": e.source} for e in values.get("errors") or []],
    })
