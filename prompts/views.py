"""What a model is shown: compact, capped views of the evidence, the code and the conclusions.

A model needs the facts that decide, not every number the engine kept: the top candidates with their evidence, the
notable log templates and metric signals, deploys, where traces fail. Every view has fixed caps, so a prompt's size
does not grow with the fleet or the window (bench/prompt_size.py measures it).
"""

from __future__ import annotations

import json
from typing import Any

from analysis.secrets import redact_value

MAX_CANDIDATES = 5
MAX_TEMPLATES = 6
MAX_SIGNALS = 10
MAX_DEPLOYS = 6
MAX_FRAMES = 5
MAX_DROPPED = 5  # notes of requests that stopped making calls
TEXT = 160  # characters of one free-text item
DIFF_CHARS = 2400
EXCERPT_CHARS = 900


def _cut(text: str | None, limit: int = TEXT) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _time(value: Any) -> str | None:
    return value.strftime("%H:%M:%S") if value is not None else None


def _compact(value: Any) -> str:
    """JSON of a view, every string redacted before it is encoded (escaping would hide quotes from the detector)."""
    return json.dumps(redact_value(value), separators=(",", ":"), ensure_ascii=False)


def alert_view(alert: Any) -> dict[str, Any]:
    """The alert as the on-call saw it: name, service, severity, summary and annotations."""
    view = {"name": alert.alertname, "service": alert.service, "status": alert.status}
    if alert.severity:
        view["severity"] = alert.severity
    if alert.summary:
        view["summary"] = _cut(alert.summary, 300)
    if alert.annotations:
        view["annotations"] = {k: _cut(v, 200) for k, v in list(alert.annotations.items())[:6]}
    return view


def evidence_view(evidence: Any, alert: Any | None = None, code: Any | None = None) -> str:
    """The evidence digest a reasoning node is given (JSON), capped whatever the size of the incident."""
    view: dict[str, Any] = {}
    if alert is not None:
        view["alert"] = alert_view(alert)
    view["window"] = {"start": _time(evidence.window.start), "end": _time(evidence.window.end),
                      "onset": _time(evidence.onset)}
    if evidence.missing:
        view["missing_evidence"] = evidence.missing
    view["candidates"] = [  # the evidence of the first three; the rest by name, for the ranking's shape
        {"service": c.service, "fault_type": c.fault_type, "confidence": round(c.confidence, 2),
         **({"evidence": [_cut(e) for e in c.evidence[:3]]} if i < 3 else {})}
        for i, c in enumerate(evidence.candidates[:MAX_CANDIDATES])
    ]
    near = {evidence.alerted_service, *(c.service for c in evidence.candidates[:MAX_CANDIDATES])}
    view["calls"] = sorted(f"{a}->{b}" for a, b in evidence.dependencies if a in near or b in near)[:30]
    if evidence.logs:
        logs = evidence.logs
        view["log_templates"] = [
            {"service": t.service, "kind": t.kind, "level": t.level, "baseline": t.baseline_count,
             "incident": t.incident_count, "first_seen": _time(t.first_seen), "template": _cut(t.template, 120)}
            for t in logs.templates[:MAX_TEMPLATES]
        ]
        view["stack_frames"] = [
            f"{f.service} {f.file}:{f.line or '?'} {f.function or ''} x{f.count}".strip()
            for f in logs.stack_frames[:MAX_FRAMES]
        ]
        view["errors_per_min"] = {
            s: [round(st.baseline_errors_per_min, 2), round(st.incident_errors_per_min, 2)]
            for s, st in logs.services.items() if st.incident_errors_per_min > st.baseline_errors_per_min
        }
    if evidence.metrics:
        view["metric_signals"] = [
            f"{s.service}{'->' + s.peer if s.peer else ''} {s.signal} {s.direction} {s.baseline:.3g}->{s.current:.3g}"
            f" (peak {s.peak:.3g}, score {s.score:.0f}, onset {_time(s.onset)})"
            for s in evidence.metrics.signals[:MAX_SIGNALS]
        ]
        dropped = [note for callees in evidence.metrics.dropped_calls.values() for note in callees.values()]
        if dropped:  # requests that end before calls they used to make
            view["dropped_calls"] = [_cut(note) for note in dropped[:MAX_DROPPED]]
    if evidence.traces and evidence.traces.traces_read:
        t = evidence.traces
        view["traces"] = {"read": t.traces_read, "with_errors": t.error_traces,
                          "error_origins": dict(sorted(t.error_origins.items(), key=lambda kv: -kv[1])[:5]),
                          "slow_origins": dict(sorted(t.slow_origins.items(), key=lambda kv: -kv[1])[:5]),
                          "samples": [_cut(s, 120) for s in t.samples[:2]]}
    view["deploys"] = [
        {"at": _time(d.at), "service": d.service, "kind": d.kind, "from": d.previous_version, "to": d.version,
         **({"commit": d.commit[:10]} if d.commit else {})}
        for d in evidence.deploys[-MAX_DEPLOYS:]
    ]
    if code is not None:
        view["code"] = {"commit": code.commit[:10], "subject": _cut(code.subject), "files": code.files_changed[:10],
                        "matches_stack_trace": code.matches_stack_trace, "summary": _cut(code.summary, 300)}
    return _compact(view)


def code_view(code: Any) -> str:
    """The suspect commit for code review: subject, files, the diff and the excerpts, capped."""
    excerpts, room = [], EXCERPT_CHARS
    for e in code.excerpts:
        if room <= 0:
            break
        excerpts.append({"path": e.path, "start_line": e.start_line, "text": e.text[:room]})
        room -= len(e.text)
    return _compact({"commit": code.commit[:10], "subject": code.subject, "author": code.author,
                     "files": code.files_changed, "matches_stack_trace": code.matches_stack_trace,
                     "diff": code.diff[:DIFF_CHARS], "excerpts": excerpts})


def fix_view(state: Any, diff: str, files: dict[str, tuple[str, str]] | None = None) -> str:
    """What the pull request is about: the root cause, the code finding, the revert's files and size, and the
    files the model may rewrite whole ({path: (blob id, text)}, shown in full)."""
    code, root = state["code"], state["root_cause"]
    changed = [line[6:] for line in diff.splitlines() if line.startswith("+++ b/")]
    return _compact({
        "incident": state["incident_id"],
        "root_cause": {"service": root.service, "fault_type": root.fault_type, "summary": _cut(root.summary, 300),
                       "evidence": [_cut(e) for e in root.evidence[:4]]},
        "reverted_commit": {"commit": code.commit[:10], "subject": code.subject, "summary": _cut(code.summary, 300)},
        "revert": {"files": changed, "added": sum(line.startswith("+") and not line.startswith("+++")
                                                  for line in diff.splitlines()),
                   "removed": sum(line.startswith("-") and not line.startswith("---") for line in diff.splitlines())},
        "files": [{"path": path, "blob": blob, "text": text} for path, (blob, text) in (files or {}).items()],
    })


def conclusions_view(state: Any) -> str:
    """What the brief summarises: the verdict, the root cause, the first mitigations and the fix."""
    detection, root = state["detection"], state.get("root_cause")
    view: dict[str, Any] = {"alert": alert_view(state["alert"]), "severity": detection.severity,
                            "reasons": [_cut(r) for r in detection.reasons[:4]]}
    if root is not None:
        view["root_cause"] = {"service": root.service, "fault_type": root.fault_type,
                              "confidence": round(root.confidence, 2), "summary": _cut(root.summary, 300),
                              "evidence": [_cut(e) for e in root.evidence[:3]]}
    view["mitigations"] = [
        {"action": _cut(s.action), "risk": s.risk, **({"blocked": True} if s.blocked_reason else {})}
        for s in (state.get("suggestions") or [])[:4]
    ]
    patch, pr = state.get("patch"), state.get("pr")
    if patch is not None:
        view["fix"] = {"title": patch.title, "ready": patch.ready}
    if pr is not None:
        view["pull_request"] = {"status": pr.status, "url": pr.url}
    return _compact(view)
