"""The incident as people read it: one view model for the dashboard page, the HTML brief and the mail.

Templates render this and nothing else of the state, so what reaches a page passes through here: text that came
from telemetry is redacted, links are http(s) only, numbers carry their units.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from markupsafe import Markup

from graph.context import Context
from state import MetricChart, MetricSignal, RunbookMatch
from tools.redact import redact
from web.charts import sparkline_svg

# How each signal reads: (name, unit); `{peer}` is the callee of an edge signal.
SIGNAL_DISPLAY: dict[str, tuple[str, str]] = {
    "error_ratio": ("error rate", "ratio"),
    "client_error_ratio": ("errors calling {peer}", "ratio"),
    "latency_p99": ("p99 latency", "seconds"),
    "request_rate": ("requests", "per_second"),
    "client_request_rate": ("calls to {peer}", "per_second"),
    "cpu_usage": ("CPU", "cores"),
    "memory_bytes": ("memory (RSS)", "bytes"),
    "db_pool_in_use": ("DB connections in use", "count"),
    "db_pool_max": ("DB pool size", "count"),
    "disk_free_bytes": ("free disk", "bytes"),
    "cert_expiry_timestamp": ("certificate expiry", "timestamp"),
    "up": ("scrape up", "count"),
}
# Alert fields that are links people follow: (where, key, label).
ALERT_LINKS: tuple[tuple[str, str, str], ...] = (
    ("raw", "generatorURL", "Alert source"),
    ("raw", "dashboardURL", "Dashboard"),
    ("raw", "panelURL", "Panel"),
    ("annotations", "dashboard_url", "Dashboard"),
    ("raw", "silenceURL", "Silence"),
    ("raw", "externalURL", "Alertmanager"),
)
MAX_CHARTS = 8
MAX_ACTIONS_NOW = 3
MAX_LOG_TEMPLATES = 8
_WILDCARD = re.compile(r"<[A-Z*_]+>")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]")  # chart keys are file names and element ids
_HTTP = re.compile(r"https?://[^\s<>\"']+\Z", re.I)


@dataclass
class Link:
    """A link to follow."""

    label: str
    url: str


@dataclass
class Cause:
    """The root cause as the card states it."""

    fault: str
    fault_type: str
    service: str
    confidence: float
    proof: str
    evidence: list[str]
    summary: str
    best_guess: bool


@dataclass
class Action:
    """A mitigation to take, in rank order."""

    text: str
    risk: str
    command: str | None
    blocked_reason: str | None
    rationale: str
    source: str


@dataclass
class Decision:
    """Who decided at the gate, and how."""

    decision: str
    by: str
    comment: str
    at: datetime | None

    @property
    def verb(self) -> str:
        """Approved, rejected, edited, or approved by policy."""
        return {"approve": "Approved", "reject": "Rejected", "edit": "Edited",
                "auto": "Approved automatically"}.get(self.decision, self.decision)


@dataclass
class Card:
    """The top of the page: what is broken, how bad, why, and what to do now."""

    outcome: str  # incident | not_an_incident | inconclusive | investigating
    verdict: str
    severity: str | None
    broken: str
    impact: list[str]
    cause: Cause | None
    actions: list[Action]
    more_actions: list[Action]
    runbooks: list[Link]
    reasons: list[str]
    problems: list[str]


@dataclass
class Chart:
    """One sparkline with its numbers and links."""

    key: str
    title: str
    service: str
    baseline: str
    current: str
    onset: str
    direction: str
    score: float
    svg: Markup
    links: list[Link]
    data: MetricChart
    onset_at: datetime | None
    window_start: datetime


@dataclass
class LogTemplateRow:
    """A new or spiking log template."""

    service: str
    template: str
    kind: str
    level: str
    baseline_count: int
    incident_count: int
    first_seen: datetime | None
    sample: str
    links: list[Link]


@dataclass
class DiffLine:
    """One line of the diff with its kind: add, del, hunk, meta or context."""

    kind: str
    text: str


@dataclass
class Gate:
    """The proposed fix, its checks, and whether the gate is open."""

    title: str
    question: str
    approve_label: str
    kind: str
    checks: list[tuple[str, bool, str]]
    diff: list[DiffLine]
    tests_before: str
    tests_after: str
    open: bool
    suspects: list[tuple[str, str, str]]  # (commit, subject, why) of the deployed commits, best first


@dataclass
class IncidentPage:
    """Everything the page, the brief and the mail show of one incident."""

    incident_id: str
    title: str
    status: str
    alertname: str
    service: str
    alert_source: str
    alert_summary: str
    fired_at: datetime | None
    window: tuple[datetime, datetime] | None
    card: Card
    decision: Decision | None
    charts: list[Chart] = field(default_factory=list)
    log_templates: list[LogTemplateRow] = field(default_factory=list)
    timeline: list[tuple[datetime, str]] = field(default_factory=list)
    hypotheses: list[tuple[str, str, float, str]] = field(default_factory=list)
    gate: Gate | None = None
    pr: str = ""
    pr_url: str = ""
    code: str = ""
    alert_links: list[Link] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


# --- building the view ---------------------------------------------------------------------------------


def incident_page(
    state: dict[str, Any], context: Context | None = None, *, status: str | None = None,
    gate: dict[str, Any] | None = None, decision: dict[str, Any] | None = None, alert_row: dict[str, Any] | None = None,
) -> IncidentPage:
    """The view of an incident from its state (and, on the dashboard, the open gate and a decision the database
    holds before the run has resumed). `alert_row` stands in for the alert while no checkpoint exists yet."""
    context = context or Context()
    alert = state.get("alert")
    evidence = state.get("evidence")
    outcome = _outcome(state)
    window = state.get("window")
    signals = evidence.metrics.signals if evidence is not None and evidence.metrics else []
    charts_data = _charts_data(state)
    root = state.get("root_cause")
    cause = _cause(root, outcome) if root is not None and outcome in ("incident", "inconclusive") else None
    page = IncidentPage(
        incident_id=state.get("incident_id") or (alert_row or {}).get("id", ""),
        title=brief_title(state) if alert is not None and state.get("detection") else "",
        status=status or _status_of(state),
        alertname=alert.alertname if alert else (alert_row or {}).get("alertname", ""),
        service=alert.service if alert else (alert_row or {}).get("service", ""),
        alert_source=alert.source if alert else (alert_row or {}).get("source", ""),
        alert_summary=clean(alert.summary) if alert else "",
        fired_at=alert.starts_at if alert else None,
        window=(window.start, window.end) if window else None,
        card=Card(outcome=outcome, verdict="", severity=None, broken="", impact=[], cause=cause, actions=[],
                  more_actions=[], runbooks=[], reasons=[], problems=[]),
        decision=_decision(state, decision),
    )
    if alert is None:
        page.card.verdict = "Investigating"
        return page
    page.alert_links = _alert_links(alert)
    page.card = _card(state, outcome, cause, signals, page.alert_links)
    if window is not None:
        page.charts = _charts(signals, charts_data, window, root, alert.service, context)
        page.timeline = timeline(state)
    page.log_templates = _log_templates(evidence, window, context)
    page.hypotheses = [(h.service, h.fault_type.replace("_", " "), h.confidence, clean("; ".join(h.evidence[:2])))
                       for h in (state.get("hypotheses") or [])[:5]]
    page.gate = _gate(state, gate)
    page.pr, page.pr_url = _pr(state)
    code = state.get("code")
    if code is not None:
        page.code = clean(f'commit {code.commit[:10]} "{code.subject}" by {code.author}; files: '
                          f'{", ".join(code.files_changed)}' + (
                              "; the stack traces point into this change" if code.matches_stack_trace else ""))
    page.errors = [clean(f"{e.node}{f' ({e.source})' if e.source else ''}: {e.message[:300]}")
                   for e in state.get("errors") or []]
    page.missing = list(evidence.missing) if evidence is not None else []
    return page


def clean(text: str) -> str:
    """Text that came from telemetry, a model or an alert, with secrets replaced by markers."""
    return redact(text)


def brief_title(state: dict[str, Any]) -> str:
    """One line: severity, service, and what happened."""
    alert, outcome = state["alert"], _outcome(state)
    if outcome == "not_an_incident":
        return f"No incident: {alert.alertname} on {alert.service} (false alarm)"
    root = state.get("root_cause")
    cause = f"{root.fault_type.replace('_', ' ')} in {root.service}" if root else "cause unknown"
    if outcome == "inconclusive":
        return f"Inconclusive: {alert.alertname} on {alert.service} (best guess: {cause})"
    return f"[{state['detection'].severity}] {alert.alertname} on {alert.service}: {cause}"


def timeline(state: dict[str, Any]) -> list[tuple[datetime, str]]:
    """What happened when, from the evidence and the run, in time order."""
    evidence, alert = state.get("evidence"), state["alert"]
    events: list[tuple[datetime, str]] = [(alert.starts_at, f"alert {alert.alertname} fired on {alert.service}")]
    if evidence is not None:
        if evidence.onset:
            events.append((evidence.onset, "anomaly onset of the top candidate"))
        for d in evidence.deploys:
            what = "config change" if d.kind == "config" else "deploy"
            commit = f" (commit {d.commit[:10]})" if d.commit else ""
            events.append((d.at, f"{what} of {d.service}: {d.previous_version or '?'} -> {d.version}{commit}"))
        for t in (evidence.logs.templates if evidence.logs else [])[:40]:
            if t.kind == "new" and t.level == "error" and t.first_seen:
                events.append((t.first_seen, f"new error in {t.service}: {t.template[:100]}"))
        for s in (evidence.metrics.signals if evidence.metrics else [])[:40]:
            if s.onset and s.score >= 5:
                events.append((s.onset, f"{signal_title(s.signal, s.service, s.peer)} {s.direction}: "
                                        f"{format_value(s.signal, s.baseline)} -> {format_value(s.signal, s.current)}"))
    approval = state.get("approval")
    if approval is not None:
        events.append((approval.at, f"approval: {approval.decision} by {approval.by}"))
    events.sort(key=lambda e: e[0])
    seen: set[str] = set()
    unique = []
    for at, text in events:
        if text not in seen:
            seen.add(text)
            unique.append((at, clean(text)))
    return unique[:30]


def signal_title(signal: str, service: str, peer: str | None) -> str:
    """"error rate of catalog", "errors calling catalog from web-frontend"."""
    name, _ = SIGNAL_DISPLAY.get(signal, (signal, "count"))
    if peer:
        return f"{name.format(peer=peer)} from {service}"
    return f"{name} of {service}"


def format_value(signal: str, value: float) -> str:
    """A metric value in its unit, three significant digits."""
    unit = SIGNAL_DISPLAY.get(signal, (signal, "count"))[1]
    if unit == "ratio":
        return f"{value * 100:.3g}%"
    if unit == "seconds":
        return f"{value * 1000:.3g} ms" if abs(value) < 1 else f"{value:.3g} s"
    if unit == "bytes":
        for size, name in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
            if abs(value) >= size:
                return f"{value / size:.3g} {name}"
        return f"{value:.0f} B"
    if unit == "per_second":
        return f"{value:.3g}/s"
    if unit == "cores":
        return f"{value:.2g} cores"
    if unit == "timestamp":
        return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"{value:.4g}"


def _outcome(state: dict[str, Any]) -> str:
    """incident, not_an_incident, inconclusive, or investigating while detection has not decided."""
    outcome = state.get("outcome")
    if outcome in ("incident", "not_an_incident", "inconclusive"):
        return outcome
    detection = state.get("detection")
    if detection is None:
        return "investigating"
    if detection.is_incident is None:
        return "inconclusive"
    return "incident" if detection.is_incident else "not_an_incident"


def _status_of(state: dict[str, Any]) -> str:
    if state.get("brief") is not None:
        return "not_an_incident" if _outcome(state) == "not_an_incident" else "completed"
    return "investigating"


def _cause(root: Any, outcome: str) -> Cause:
    evidence = [clean(e) for e in root.evidence]
    return Cause(
        fault=root.fault_type.replace("_", " "), fault_type=root.fault_type, service=root.service,
        confidence=root.confidence, proof=evidence[0] if evidence else clean(root.summary), evidence=evidence[1:],
        summary=clean(root.summary), best_guess=outcome == "inconclusive",
    )


def _card(state: dict[str, Any], outcome: str, cause: Cause | None, signals: list[MetricSignal],
          alert_links: list[Link]) -> Card:
    alert, detection = state["alert"], state.get("detection")
    impact = _impact(signals, alert.service, cause.service if cause else None)
    suggestions = [Action(text=clean(s.action), risk=s.risk, command=s.command, blocked_reason=s.blocked_reason,
                          rationale=clean(s.rationale), source=s.source) for s in state.get("suggestions") or []]
    runnable = [a for a in suggestions if not a.blocked_reason]
    runbooks = list(state.get("runbooks") or [])
    if not any(r.matched_on == ["alert runbook_url"] for r in runbooks):
        from tools.runbooks import alert_runbook

        own = alert_runbook(alert)
        runbooks = ([own] if own else []) + runbooks
    problems = _problems(state)
    severity = detection.severity if detection is not None and outcome == "incident" else None
    verdict = {
        "incident": f"{severity} incident" if severity else "Incident",
        "not_an_incident": "Not an incident",
        "inconclusive": "Inconclusive",
        "investigating": "Investigating",
    }[outcome]
    if outcome == "not_an_incident":
        broken = f"No action needed: nothing on {alert.service} or its dependencies is abnormal enough for an incident"
    else:
        broken = impact[0] if impact else (clean(alert.summary) or f"{alert.alertname} fired on {alert.service}")
    return Card(
        outcome=outcome, verdict=verdict, severity=severity, broken=broken,
        impact=impact[1:] if outcome != "not_an_incident" else [], cause=cause,
        actions=runnable[:MAX_ACTIONS_NOW] if outcome != "not_an_incident" else [],
        more_actions=[a for a in suggestions if a not in runnable[:MAX_ACTIONS_NOW]],
        runbooks=[_runbook_link(r) for r in runbooks],
        reasons=[clean(r) for r in (detection.reasons if detection is not None else [])][:6],
        problems=problems,
    )


def _impact(signals: list[MetricSignal], entry: str, root: str | None) -> list[str]:
    """Sentences on what users feel: errors and latency at the alerted service, who else is failing."""
    def find(service: str, signal: str) -> MetricSignal | None:
        return next((s for s in signals if s.service == service and s.signal == signal and not s.peer), None)

    lines = []
    errors, latency, up = find(entry, "error_ratio"), find(entry, "latency_p99"), find(entry, "up")
    if up is not None and up.peak < 0.5:
        lines.append(f"{entry} is down: its metrics could not be scraped")
    if errors is not None and errors.direction == "up":
        lines.append(f"{entry} fails {format_value('error_ratio', errors.current)} of requests "
                     f"(normally {format_value('error_ratio', errors.baseline)})")
    if latency is not None and latency.direction == "up":
        lines.append(f"{entry} p99 latency is {format_value('latency_p99', latency.current)} "
                     f"(normally {format_value('latency_p99', latency.baseline)})")
    if root:
        callers = sorted({s.service for s in signals
                          if s.signal == "client_error_ratio" and s.peer == root and s.direction == "up"})
        if callers:
            lines.append(f"calls to {root} fail from {', '.join(callers)}")
    others = sorted({s.service for s in signals if s.signal in ("error_ratio", "latency_p99") and not s.peer
                     and s.direction == "up" and s.service not in (entry, root)})
    if others:
        lines.append(f"also degraded: {', '.join(others)}")
    return lines


def _problems(state: dict[str, Any]) -> list[str]:
    """What the run could not read or do, said first and short (the whole messages are under "Errors during the
    run"): a missing source is not a healthy one."""
    problems = []
    parts = state.get("evidence_parts") or {}
    for name, part in sorted(parts.items()):
        if part.status == "error":
            problems.append(clean(f"{name}: could not be read ({_gist(part.error or 'error')})"))
    for e in state.get("errors") or []:
        if e.source not in parts and e.node not in parts:
            problems.append(clean(f"{e.node}: {_gist(e.message)}"))
    return problems


def _gist(message: str) -> str:
    """The reason in an error message, without the source's name, the exception class or the query."""
    text = message.split("; query:")[0]
    text = re.sub(r"^[\w ]+ unavailable: ", "", text)
    text = re.sub(r"^[A-Za-z]+(Error|Exception|Exceeded): ", "", text)
    return text[:160]


def _runbook_link(match: RunbookMatch) -> Link:
    how = f" (matched on {', '.join(match.matched_on)})" if match.matched_on else ""
    url = match.url if _HTTP.match(match.url or "") else (f"/ui/runbooks/{quote(match.name)}" if match.name else "")
    return Link(label=f"{match.title}{how}", url=url)


def _decision(state: dict[str, Any], decided: dict[str, Any] | None) -> Decision | None:
    approval = state.get("approval")
    if approval is not None:
        return Decision(approval.decision, clean(approval.by), clean(approval.comment), approval.at)
    if decided:
        return Decision(decided["decision"], clean(decided["approver"]), clean(decided.get("comment") or ""),
                        decided.get("decided_at"))
    return None


def _charts_data(state: dict[str, Any]) -> dict[tuple[str, str, str | None], MetricChart]:
    part = (state.get("evidence_parts") or {}).get("metrics")
    charts = getattr(part, "charts", None) or []
    return {(c.service, c.signal, c.peer): c for c in charts}


def _charts(signals: list[MetricSignal], data: dict[tuple[str, str, str | None], MetricChart], window: Any,
            root: Any, entry: str, context: Context) -> list[Chart]:
    """Sparklines of the anomalous signals: the root cause's service first, then the alerted one, then by score."""
    root_service = root.service if root is not None else None

    def rank(s: MetricSignal) -> tuple[int, bool, float]:
        return (0 if s.service == root_service else 1 if s.service == entry else 2, s.peer is not None, -s.score)

    charts = []
    for s in sorted(signals, key=rank):
        chart = data.get((s.service, s.signal, s.peer))
        if chart is None or s.direction == "flat":
            continue
        title = signal_title(s.signal, s.service, s.peer)
        onset = s.onset.strftime("%H:%M:%S") if s.onset else ""
        label = (f"{title}: {format_value(s.signal, s.baseline)} before, {format_value(s.signal, s.current)} now"
                 + (f", onset {onset} UTC" if onset else ""))
        charts.append(Chart(
            key=_SAFE_NAME.sub("_", f"{s.service}-{s.signal}" + (f"-{s.peer}" if s.peer else "")), title=title,
            service=s.service,
            baseline=format_value(s.signal, s.baseline), current=format_value(s.signal, s.current), onset=onset,
            direction=s.direction, score=s.score, svg=sparkline_svg(chart, window.start, s.onset, label),
            links=metric_links(s, window, context), data=chart, onset_at=s.onset, window_start=window.start,
        ))
        if len(charts) == MAX_CHARTS:
            break
    return charts


def metric_links(signal: MetricSignal, window: Any, context: Context) -> list[Link]:
    """Grafana Explore and Prometheus graph links for one signal's query over the incident's time range."""
    from tools.prometheus import render_query
    from tools.telemetry_config import load_config

    try:
        config = load_config(context.telemetry_config).prometheus
    except ValueError:
        return []
    if signal.signal not in config.queries:
        return []
    query = render_query(config, signal.signal, [signal.service])
    links = []
    if context.grafana_url and context.grafana_prometheus_uid:
        links.append(Link("Grafana Explore", _explore(context.grafana_url, context.grafana_prometheus_uid,
                                                      "prometheus", query, window)))
    prometheus = context.prometheus_link_url or context.prometheus_url
    if prometheus and _HTTP.match(prometheus):
        seconds = int((window.end - window.baseline_start).total_seconds())
        params = {"g0.expr": query, "g0.tab": "0", "g0.range_input": f"{seconds}s",
                  "g0.end_input": window.end.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")}
        links.append(Link("Prometheus", f"{prometheus.rstrip('/')}/graph?{urlencode(params)}"))
    return links


def log_links(service: str, template: str, window: Any, context: Context) -> list[Link]:
    """Grafana Explore (Loki) and Loki API links for a log template: the service's stream, filtered on the
    template's longest constant text."""
    from tools.loki import logql_query, to_ns
    from tools.telemetry_config import load_config

    try:
        label = load_config(context.telemetry_config).loki.label
    except ValueError:
        return []
    fixed = max((part.strip() for part in _WILDCARD.split(template)), key=len, default="")
    query = logql_query(label, [service], [("|=", fixed)] if fixed else [])
    links = []
    if context.grafana_url and context.grafana_loki_uid:
        links.append(Link("Grafana Explore", _explore(context.grafana_url, context.grafana_loki_uid, "loki", query,
                                                      window)))
    if context.loki_url and _HTTP.match(context.loki_url):
        params = {"query": query, "start": str(to_ns(window.start)), "end": str(to_ns(window.end)), "limit": "100",
                  "direction": "backward"}
        links.append(Link("Loki", f"{context.loki_url.rstrip('/')}/loki/api/v1/query_range?{urlencode(params)}"))
    return links


def _explore(grafana: str, uid: str, kind: str, expr: str, window: Any) -> str:
    """A Grafana (10+) Explore URL with one query over the baseline and incident windows."""
    pane = {"datasource": uid, "queries": [{"refId": "A", "datasource": {"type": kind, "uid": uid}, "expr": expr}],
            "range": {"from": str(int(window.baseline_start.timestamp() * 1000)),
                      "to": str(int(window.end.timestamp() * 1000))}}
    panes = json.dumps({"ic": pane}, separators=(",", ":"))
    return f"{grafana.rstrip('/')}/explore?schemaVersion=1&orgId=1&panes={quote(panes, safe='')}"


def _log_templates(evidence: Any, window: Any, context: Context) -> list[LogTemplateRow]:
    """New and spiking templates, errors first, then by count."""
    if evidence is None or evidence.logs is None:
        return []
    level_rank = {"error": 0, "warn": 1, "info": 2, "debug": 3}
    notable = [t for t in evidence.logs.templates if t.kind in ("new", "spiking")]
    notable.sort(key=lambda t: (level_rank[t.level], -t.incident_count))
    return [
        LogTemplateRow(
            service=t.service, template=clean(t.template), kind=t.kind, level=t.level,
            baseline_count=t.baseline_count, incident_count=t.incident_count, first_seen=t.first_seen,
            sample=clean(t.sample[:300]), links=log_links(t.service, t.template, window, context) if window else [],
        )
        for t in notable[:MAX_LOG_TEMPLATES]
    ]


def _gate(state: dict[str, Any], gate: dict[str, Any] | None) -> Gate | None:
    """The open gate's question (from the interrupt), else the patch the run proposed."""
    if gate is not None:
        patch, checks, question, is_open = gate.get("patch", {}), gate.get("checks", []), gate.get("question", ""), True
    elif state.get("patch") is not None:
        patch, is_open = state["patch"].model_dump(mode="json"), False
        checks, question = patch.get("checks", []), ""
    else:
        return None
    return Gate(
        title=clean(patch.get("title", "")), question=question,
        approve_label=clean((gate or {}).get("approve_label") or "Approve"), kind=patch.get("kind", ""),
        checks=[(c["name"], bool(c["ok"]), clean(c.get("detail", "")[:300])) for c in checks],
        diff=diff_lines(patch.get("diff", "")), tests_before=patch.get("tests_before", "not_run"),
        tests_after=patch.get("tests_after", "not_run"), open=is_open, suspects=_suspects(state, gate),
    )


def _suspects(state: dict[str, Any], gate: dict[str, Any] | None) -> list[tuple[str, str, str]]:
    """The ranked suspect commits the gate shows (the gate's own list, else the code analysis')."""
    if gate is not None:
        found = gate.get("suspects") or []
    else:
        code = state.get("code")
        found = [s.model_dump(mode="json") for s in code.suspects[:3]] if code is not None else []
    return [(s["commit"][:10], clean(s["subject"]), clean("; ".join(s["reasons"][:2]))) for s in found]


def diff_lines(diff: str, limit: int = 600) -> list[DiffLine]:
    """A unified diff split into classified lines (for colour), at most `limit` of them."""
    lines = []
    for text in diff.splitlines()[:limit]:
        if text.startswith(("diff --git", "index ", "--- ", "+++ ", "new file", "deleted file", "similarity",
                            "rename ")):
            kind = "meta"
        elif text.startswith("@@"):
            kind = "hunk"
        elif text.startswith("+"):
            kind = "add"
        elif text.startswith("-"):
            kind = "del"
        else:
            kind = "ctx"
        lines.append(DiffLine(kind, text))
    extra = len(diff.splitlines()) - limit
    if extra > 0:
        lines.append(DiffLine("meta", f"... {extra} more lines"))
    return lines


def _pr(state: dict[str, Any]) -> tuple[str, str]:
    pr, approval, patch = state.get("pr"), state.get("approval"), state.get("patch")
    if pr is not None:
        text = f"{pr.backend}: {pr.status}" + (f", branch {pr.branch}" if pr.branch else "") + (
            f" ({clean(pr.detail)})" if pr.detail else "")
        return text, pr.url if pr.url and _HTTP.match(pr.url) else ""
    if approval is not None and approval.decision == "reject":
        return f"Not opened: rejected by {clean(approval.by)}", ""
    if patch is not None and not patch.ready:
        return clean(f"Not offered for approval: the patch failed its checks ({patch.failed_checks()[:400]})"), ""
    return "", ""


def _alert_links(alert: Any) -> list[Link]:
    """The alert's own links (generatorURL, dashboards, silence, Alertmanager), http(s) only, each once."""
    links, seen = [], set()
    for where, key, label in ALERT_LINKS:
        source = alert.raw if where == "raw" else alert.annotations
        value = source.get(key) if isinstance(source, dict) else None
        if isinstance(value, str) and _HTTP.match(value.strip()) and value not in seen:
            seen.add(value)
            links.append(Link(label, value.strip()))
    return links
