"""Is it an incident, how bad, is it a code regression: rules over the evidence and the ranked candidates.

Three outcomes: an incident; not an incident, only when logs and metrics were both read and show nothing sustained;
inconclusive, when a primary source could not be read or history is too short to tell abnormal from normal, or when
the alert's own symptom is measured and still standing but no cause stands out: not having looked is never reported
as having looked and seen nothing, and a measured symptom is never called a false alarm.
"""

from __future__ import annotations

import re
from datetime import timedelta

from analysis.deploys import changes_near, new_error_starts
from state import Detection, Evidence, Hypothesis, MetricSignal, Severity

ANOMALY = 4.0
STRONG = 8.0
MIN_CANDIDATE_SCORE = 5.0
TRACE_BONUS_MAX = 1.5  # what trace evidence adds to a candidate's score at most; absent traces must not hide a fault
# A candidate the ranking is this sure of is an incident whatever the corroboration count says: its confidence already
# weighs the evidence (analysis/ranking.py), and a gate that overrules it only turns a found fault into a miss.
CONFIDENT = 0.75
REGRESSION_WINDOW = (timedelta(minutes=10), timedelta(minutes=2))  # deploy before / after the onset
PRIMARY_SOURCES = ("logs", "metrics")  # traces and deploys are optional: many fleets have neither
SYMPTOMS = ("error_ratio", "latency_p99")  # what users of the alerted service feel
# The usual words of alerting rules' `severity` label, by the incident priority they mean.
ALERT_SEVERITY_WORDS: dict[str, Severity] = {
    "critical": "P1", "page": "P1", "emergency": "P1", "fatal": "P1", "disaster": "P1",
    "error": "P2", "high": "P2", "major": "P2",
    "warning": "P3", "warn": "P3", "medium": "P3", "moderate": "P3", "minor": "P3", "average": "P3",
    "info": "P4", "informational": "P4", "low": "P4", "none": "P4", "notice": "P4",
}
UNKNOWN_ALERT_SEVERITY: Severity = "P3"  # an alert fired and said nothing of its weight: neither an outage nor noise
_NUMBERED = re.compile(r"^(?:p|sev|s)[-_ ]?([1-4])$", re.IGNORECASE)


def severity_of_alert(label: str | None) -> Severity:
    """The priority an alert's own severity label means (critical, warning, P2, sev1, ...), P3 when it has none."""
    text = (label or "").strip()
    numbered = _NUMBERED.match(text)
    if numbered:
        return f"P{numbered.group(1)}"  # type: ignore[return-value]
    return ALERT_SEVERITY_WORDS.get(text.lower(), UNKNOWN_ALERT_SEVERITY)


def blind_spots(evidence: Evidence) -> list[str]:
    """Why the evidence cannot rule an incident out: primary sources unread or empty, history too short."""
    gaps = [f"{s} could not be read" for s in PRIMARY_SOURCES if s in evidence.missing]
    empty = [s for s in PRIMARY_SOURCES if f"{s} (no data)" in evidence.missing]
    if len(empty) == len(PRIMARY_SOURCES):
        gaps.append(f"neither logs nor metrics hold anything on {evidence.alerted_service} in the window")
    metrics = evidence.metrics
    if metrics and metrics.series_read and 2 * metrics.short_history >= metrics.series_read:
        gaps.append(f"history too short: {metrics.short_history} of {metrics.series_read} metric series begin too"
                    " close to the window for a baseline")
    return gaps


def standing_symptom(evidence: Evidence, strong: list[MetricSignal]) -> list[str]:
    """The alerted service's own errors or p99, a strong anomaly still deviating at the alert's time: the alert is
    confirmed by measurement even when no cause is named, so the gate cannot dismiss it as a false alarm."""
    return [f"{_fact(m)} and still so at the alert, but no cause stands out" for m in strong
            if m.service == evidence.alerted_service and m.peer is None and m.signal in SYMPTOMS
            and m.direction == "up" and m.active][:1]


def detect(evidence: Evidence, candidates: list[Hypothesis], *, alert_severity: str | None = None) -> Detection:
    """Decide from sustained, corroborated anomalies (a lone short blip is not an incident) or a candidate strong
    enough on its own; without them, not an incident only when the sources were read, else inconclusive at the
    alert's own severity."""
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
    # requests cut short in traces passed a significance test of their own: a second source, like a log template
    cut = sorted(evidence.traces.cut_after) if evidence.traces else []
    if cut:
        reasons.append(f"traces: requests now end right after calling {', '.join(cut)}")
    # so did requests that stopped making calls (calls per request against the callees' own rates)
    stopped = sorted(evidence.metrics.dropped_calls) if evidence.metrics else []
    if stopped:
        reasons.append(f"metrics: requests of {', '.join(stopped)} no longer make calls they used to make")
    top = candidates[0] if candidates else None
    corroborated = (
        len(strong) >= 2 or (strong and (templates or cut or stopped)) or len(signals) >= 3 and len(affected) >= 2
    )
    traced = bool(evidence.traces and evidence.traces.traces_read)
    cutoff = MIN_CANDIDATE_SCORE if traced else MIN_CANDIDATE_SCORE - TRACE_BONUS_MAX
    named = bool(top and top.fault_type != "none")
    confident = named and top.confidence >= CONFIDENT
    is_incident = confident or named and top.score >= cutoff and corroborated
    if not is_incident:
        gaps = blind_spots(evidence) + standing_symptom(evidence, strong)
        if gaps:
            severity = severity_of_alert(alert_severity)
            guess = f"; best guess {top.fault_type} at {top.service} ({top.confidence:.0%})" if named else ""
            reasons += [f"inconclusive: {'; '.join(gaps)}{guess}",
                        f"severity {severity} from the alert's own ({alert_severity or 'none given'})"]
            return Detection(is_incident=None, severity=severity, reasons=reasons)
        reasons.append(
            "no sustained, corroborated anomaly: treated as a false alarm"
            if signals or templates
            else "no anomaly in any source"
        )
        return Detection(is_incident=False, severity="P4", reasons=reasons)

    reasons.append(
        f"top candidate {top.fault_type} at {top.service} (score {top.score:.1f}, confidence {top.confidence:.2f})"
        + ("" if corroborated and top.score >= cutoff else ": strong enough on its own")
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
    """The commit of the top candidate's last code deploy near its onset or the first line of a new error of its own
    (as the ranking ties a deploy), any such deploy when neither is known."""
    if top.fault_type != "deployment_regression":
        return None
    templates = [t for t in evidence.logs.templates if t.service == top.service] if evidence.logs else []
    marks = ([evidence.onset] if evidence.onset else []) + new_error_starts(templates)
    deploys = [d for d in evidence.deploys if d.service == top.service and d.kind == "code" and d.commit]
    if marks:
        deploys = changes_near(deploys, marks, *REGRESSION_WINDOW)
    return deploys[-1].commit if deploys else None
