"""Mitigation playbooks per fault type: what an on-call engineer does first, with the risk of each step."""

from __future__ import annotations

import re

from state import DeployEvent, Evidence, Hypothesis, Suggestion

# (action, risk, rationale, command) per fault type; {service}, {version}, {previous} are filled in.
PLAYBOOKS: dict[str, list[tuple[str, str, str, str | None]]] = {
    "deployment_regression": [
        ("Roll back {service} to {previous}", "low", "errors started with the deploy of {version}",
         "kubectl rollout undo deployment/{service}"),
        ("Pause further deploys of {service} until the fix is merged", "low", "avoid re-shipping the bug", None),
        ("Review and merge the revert pull request", "medium", "removes the faulty change from main", None),
    ],
    "config_error": [
        ("Revert the configuration change of {service} to the previous version", "low",
         "errors started right after the config change", "kubectl rollout undo deployment/{service}"),
        ("Validate the config with the service's schema before the next rollout", "low",
         "the new config failed to parse or misses a key", None),
    ],
    "memory_leak": [
        ("Restart {service} pods in a rolling fashion to reclaim memory", "low",
         "buys time: memory grows steadily until the OOM killer restarts it",
         "kubectl rollout restart deployment/{service}"),
        ("Raise the memory limit of {service} temporarily", "medium", "fewer OOM kills while the leak is found", None),
        ("Take a heap profile of {service} before the next restart", "low", "find what holds the memory", None),
    ],
    "cpu_saturation": [
        ("Scale out {service}", "low", "CPU is pinned at its limit and latency follows",
         "kubectl scale deployment/{service} --replicas=<current+2>"),
        ("Profile {service} for hot paths (e.g. py-spy / pprof)", "low", "find what burns the CPU", None),
        ("Shed or rate-limit non-critical traffic to {service}", "medium", "protect the critical paths", None),
    ],
    "db_connection_exhaustion": [
        ("Find and kill long-running or idle-in-transaction sessions behind {service}", "medium",
         "the pool is pinned at its maximum",
         "psql -c \"SELECT pid, state, now()-xact_start FROM pg_stat_activity ORDER BY 3 DESC LIMIT 20\""),
        ("Raise the pool size of {service} within the database's max_connections", "medium",
         "more headroom while the leak of connections is found", None),
        ("Lower client timeouts and add backoff in the callers of {service}", "low",
         "retries pile onto an exhausted pool", None),
    ],
    "dependency_outage": [
        ("Fail over or degrade gracefully around {service}", "medium",
         "calls to the dependency fail; callers should not", None),
        ("Open a ticket with the owner/provider of {service} and watch its status page", "low",
         "the fault is outside our services", None),
        ("Enable circuit breaking for calls to {service}", "low", "stop retry storms and keep latency down", None),
    ],
    "network_partition": [
        ("Check network policies, security groups and DNS for {service}", "low",
         "callers time out connecting and the scraper cannot reach it either",
         "kubectl get networkpolicy -A"),
        ("Reschedule {service} onto healthy nodes/zones", "medium", "the instances are cut off from their callers",
         "kubectl rollout restart deployment/{service}"),
    ],
    "disk_full": [
        ("Free disk space on {service}: rotate/compress logs, remove old temp files", "medium",
         "writes fail with ENOSPC", None),
        ("Expand the volume of {service}", "medium", "lasting headroom", None),
        ("Alert on disk_free_bytes before it reaches zero", "low", "catch the trend hours earlier", None),
    ],
    "certificate_expired": [
        ("Renew and deploy the TLS certificate of {service}", "low", "handshakes fail since it expired",
         "kubectl -n cert-manager get certificates"),
        ("Alert on tls_cert_expiry_timestamp_seconds 14 days ahead", "low", "so this never pages again", None),
    ],
    "traffic_surge": [
        ("Scale out {service} and its busiest dependencies", "low", "request rate is several times the baseline",
         "kubectl scale deployment/{service} --replicas=<current*2>"),
        ("Enable or tighten rate limits per client at {service}", "medium", "protect the fleet from the surge",
         None),
        ("Find the source of the surge (client, campaign, bot) in the access logs", "low",
         "decide whether to block or to serve it", None),
    ],
}
GENERIC = [
    ("Look at the recent changes and dashboards of {service}", "low", "no fault signature matched clearly", None),
]


def _last_deploy(evidence: Evidence, service: str) -> DeployEvent | None:
    deploys = [d for d in evidence.deploys if d.service == service]
    return deploys[-1] if deploys else None


def playbook(hypothesis: Hypothesis, evidence: Evidence) -> list[Suggestion]:
    """The suggestions for one hypothesis, filled with its service and deploy versions."""
    deploy = _last_deploy(evidence, hypothesis.service)
    values = {
        "service": hypothesis.service,
        "version": deploy.version if deploy else "the new version",
        "previous": (deploy.previous_version if deploy and deploy.previous_version else "the previous version"),
    }
    steps = PLAYBOOKS.get(hypothesis.fault_type, GENERIC)
    return [
        Suggestion(
            action=action.format(**values),
            risk=risk,  # type: ignore[arg-type]
            rationale=rationale.format(**values),
            command=command.format(**values) if command else None,
        )
        for action, risk, rationale, command in steps
    ]


# When a change caused it, undoing the change is the fastest mitigation: it goes first, whoever proposed it.
ROLLBACK_FAULTS = frozenset({"deployment_regression", "config_error"})
_ROLLBACK = re.compile(r"\b(roll ?back|rollout undo)\b", re.I)
RISK_ORDER = {"low": 0, "medium": 1, "high": 2}
# At equal risk the team's own runbook comes before the generic playbook, and both before a model's additions.
SOURCE_ORDER = {"runbook": 0, "engine": 1, "llm": 2}


def rank_suggestions(suggestions: list[Suggestion], hypothesis: Hypothesis, evidence: Evidence) -> list[Suggestion]:
    """Blocked commands last; a rollback first when a deploy or config change is the cause; then by risk and
    source; the order within one source is kept. A repeat (the same action, case-insensitive, or the same command)
    is dropped: the first one given stays."""
    rollback_first = hypothesis.fault_type in ROLLBACK_FAULTS and _last_deploy(evidence, hypothesis.service)

    def key(s: Suggestion) -> tuple[bool, bool, int, int]:
        is_rollback = bool(_ROLLBACK.search(f"{s.action} {s.command or ''}"))
        return (s.blocked_reason is not None, not (rollback_first and is_rollback), RISK_ORDER[s.risk],
                SOURCE_ORDER.get(s.source, len(SOURCE_ORDER)))

    seen: set[str] = set()
    unique = []
    for s in suggestions:
        keys = {s.action.lower(), *([" ".join(s.command.split())] if s.command else [])}
        if not keys & seen:
            seen |= keys
            unique.append(s)
    return sorted(unique, key=key)
