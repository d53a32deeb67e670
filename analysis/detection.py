"""Is it an incident, how bad, is it a code regression: rules over the evidence and the ranked candidates."""

from __future__ import annotations

from datetime import timedelta

from state import Detection, Evidence, Hypothesis

ANOMALY = 4.0
STRONG = 8.0
MIN_CANDIDATE_SCORE = 5.0
TRACE_BONUS_MAX = 1.5  # what trace evidence adds to a candidate's score at most; absent traces must not hide a fault
# A candidate the ranking is this sure of is an incident whatever the corroboration count says: its confidence already
# weighs the evidence (analysis/ranking.py), and a gate that overrules it only turns a found fault into a miss.
CONFIDENT = 0.75
REGRESSION_WINDOW = (timedelta(minutes=10), timedelta(minutes=2))  # deploy before / after the onset


def detect(evidence: Evidence, candidates: list[Hypothesis]) -> Detection:
    """Decide from sustained, corroborated anomalies; a lone short blip is not an incident."""
    signals = [
        m
        for m in (evidence.metrics.signals if evidence.metrics else [])
        if m.score >= ANOMALY and m.direction != "flat" and m.signal != "db_pool_max"
    ]
    strong = [m for m in signals if m.score >= STRONG]
    templates = [
        t
        for t in (evidence.logs.templates if evidence.logs else [])
        if t.kind in ("new", "spiking") and t.level == "error" and t.incident_count >= 5
    ]
    affected = {m.service for m in signals} | {t.service for t in templates}
    reasons = []
    if strong:
        reasons.append(f"{len(strong)} strong sustained metric anomalies, e.g. {_fact(strong[0])}")
    if templates:
        t = templates[0]
        reasons.append(
            f"{len(templates)} new/spiking error log templates, e.g. '{t.template[:80]}' of {t.service}"
            f" ({t.incident_count} in incident window)"
        )
    top = candidates[0] if candidates else None
    corroborated = len(strong) >= 2 or (strong and templates) or len(signals) >= 3 and len(affected) >= 2
    traced = bool(evidence.traces and evidence.traces.traces_read)
    cutoff = MIN_CANDIDATE_SCORE if traced else MIN_CANDIDATE_SCORE - TRACE_BONUS_MAX
    confident = bool(top and top.fault_type != "none" and top.confidence >= CONFIDENT)
    is_incident = confident or bool(top and top.fault_type != "none" and top.score >= cutoff and corroborated)
    if not is_incident:
        reasons.append(
            "no sustained, corroborated anomaly: treated as a false alarm"
            if signals or templates
            else "no anomaly in any source"
        )
        return Detection(is_incident=False, severity="P4", reasons=reasons)

    reasons.append(
        f"top candidate {top.fault_type} at {top.service} (score {top.score:.1f}, confidence {top.confidence:.2f})"
    )
    severity, why = _severity(evidence, signals)
    reasons.append(why)
    commit = _regression_commit(evidence, top)
    if commit:
        reasons.append(f"code deploy of {top.service} (commit {commit[:7]}) near the onset")
    return Detection(
        is_incident=True,
        severity=severity,
        reasons=reasons,
        code_regression=commit is not None,
        suspect_service=top.service,
        suspect_commit=commit,
    )


def _fact(m) -> str:
    edge = f"->{m.peer}" if m.peer else ""
    return f"{m.signal} of {m.service}{edge} {m.direction} (score {m.score:.0f})"


def _severity(evidence: Evidence, signals) -> tuple[str, str]:
    """P1 when the entry points fail hard or go down, P2 when users see errors or slowness, else P3."""
    callees = {callee for _, callee in evidence.dependencies}
    entries = {caller for caller, _ in evidence.dependencies if caller not in callees} or {evidence.alerted_service}
    at_entry = [m for m in signals if m.service in entries and m.peer is None]
    errors = max((m.current for m in at_entry if m.signal == "error_ratio" and m.direction == "up"), default=0.0)
    down = any(m.signal == "up" and m.direction == "down" for m in at_entry)
    slow = any(m.signal == "latency_p99" and m.direction == "up" for m in at_entry)
    entry = ", ".join(sorted(entries))
    if errors >= 0.2 or down:
        return "P1", f"entry {entry} {'down' if down else f'error ratio {errors:.0%}'}: user-facing outage"
    if errors >= 0.02 or slow:
        return "P2", f"entry {entry} {'error ratio ' + format(errors, '.1%') if errors else 'latency'} up"
    return "P3", f"entry {entry} not visibly affected"


def _regression_commit(evidence: Evidence, top: Hypothesis) -> str | None:
    if top.fault_type != "deployment_regression":
        return None
    onset = evidence.onset
    before, after = REGRESSION_WINDOW
    deploys = [
        d
        for d in evidence.deploys
        if d.service == top.service
        and d.kind == "code"
        and d.commit
        and (onset is None or onset - before <= d.at <= onset + after)
    ]
    return deploys[-1].commit if deploys else None
