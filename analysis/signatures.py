"""Fault signatures as data: one row per fault type, the facts it needs, the facts that rule it out, and weights.

analysis/ranking.py establishes facts per service (FACTS names each and says what establishes it), each with a
strength in (0, 1] and the evidence behind it; a signature applies to a service when all facts of one of its `needs`
sets are present and none of its `excludes` is, and scores the weighted sum of the strengths of the facts it weighs.
Weights are priors on how specific a fact is to the fault (a full pool names pool exhaustion; rising errors name
nothing by themselves), on a 0..~12 scale; none is fitted to a data set.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# What ranking establishes per service, and how.
FACTS: dict[str, str] = {
    "memory_growth": "resident memory up at least 1.5x over its baseline and still up",
    "memory_trend": "memory rising steadily over the whole history read (Mann-Kendall), through restarts",
    "restarts": "the process restarted in the window: `up` dipped below 0.5 or memory fell by half at once",
    "oom_cue": "its own logs name memory exhaustion",
    "cpu_high": "CPU up at least 1.8x, more than its request rate explains (load-normalised)",
    "cpu_cue": "its own logs show missed deadlines or full work queues",
    "latency_up": "its own p99 latency up",
    "pool_busy": "connections in use up, more than its request rate explains (load-normalised)",
    "pool_full": "connections in use at 90% or more of the pool's maximum",
    "pool_cue": "its own logs name an exhausted connection pool",
    "peer_pool_cue": "its callers' logs name its exhausted connection pool",
    "disk_low": "free disk down to 10% of its baseline or less",
    "disk_exhaustion": "free disk falling fast enough to run out within the hour",
    "disk_cue": "its own logs say no space left",
    "cert_expired": "its TLS certificate expired inside the window",
    "peer_cert_cue": "its callers' logs name certificate failures",
    "inbound_errors": "calls to it fail, and its own server side or another caller agrees (or it has no telemetry)",
    "outbound_errors": "its calls to a callee fail while the callee's server side and other callers are fine",
    "inbound_latency": "calls to it got slow, its server p99 did not, and its other callers agree (or none measured)",
    "outbound_latency": "its calls to a callee got slow while the callee's other callers see no delay",
    "peer_net_cue": "its callers' logs name timeouts or unreachable hosts towards it",
    "peer_refused_cue": "its callers' logs name refused connections or unavailability towards it",
    "down": "`up` down and staying down",
    "rate_down": "its request rate fell",
    "no_telemetry": "it has no telemetry of its own (an external dependency)",
    "quiet": "it logs no new errors and its own error ratio is flat",
    "latency_origin": "its p99 rose first and no callee's did, with no resource saturation of its own",
    "surge": "its request rate up at least 2x and its callers' are not (a surge enters here)",
    "surge_spread": "request rates also up downstream of it",
    "load_saturation": "a pool or CPU downstream filled in proportion to the load it sends",
    "ratelimit_cue": "its logs name rate limiting or throttling",
    "code_deploy": "a code deploy of it near its onset",
    "config_change": "a configuration change of it near its onset",
    "config_cue": "its own logs name invalid or missing configuration",
    "error_ratio_up": "its own server error ratio up, or, where no metric measures it, new error log templates of "
    "its own",
    "new_errors": "new or spiking error log templates of its own",
    "stack_frames": "stack traces in its own logs",
    "cuts_requests": "its callers' requests now end right after calling it, skipping the calls that used to follow "
    "(traces), while it answers as fast as before and no change of configuration nor a resource running out explains "
    "the bad answers",
    "stops_calling": "its requests no longer make calls they used to make (calls per request fell to under half while "
    "it still serves its requests), and no slow or failing callee, change of configuration nor a resource running "
    "out explains it",
    "errors_start_here": "failing traces end in its own spans (not in calls it got no answer to), and no change of "
    "configuration nor a resource running out explains them",
    "own_fault": "it shows a fault of its own (errors, new error templates, a change, a resource trend)",
}


@dataclass(frozen=True)
class Signature:
    """A fault rule: `needs` is a list of alternative fact sets (all of one set must hold), `excludes` facts that rule
    it out, `weights` per fact, and `fact` the general fact the rule relies on."""

    fault: str
    needs: tuple[tuple[str, ...], ...]
    weights: dict[str, float]
    fact: str
    excludes: tuple[str, ...] = field(default=())

    def score(self, strengths: dict[str, float]) -> float:
        """Weighted sum of the present facts' strengths, 0 when no `needs` set holds or an excluding fact is present."""
        if any(strengths.get(f) for f in self.excludes):
            return 0.0
        if not any(all(strengths.get(f) for f in group) for group in self.needs):
            return 0.0
        return sum(w * strengths.get(f, 0.0) for f, w in self.weights.items())


SIGNATURES: tuple[Signature, ...] = (
    Signature(
        "memory_leak",
        # a trend alone is a slow fault of its own, kept apart from the alerted one until it hurts: restarts,
        # slowness or errors where it grows
        needs=(
            ("memory_growth",),
            ("memory_trend", "restarts"),
            ("memory_trend", "latency_up"),
            ("memory_trend", "error_ratio_up"),
            ("oom_cue",),
        ),
        weights={"memory_growth": 5, "memory_trend": 5, "restarts": 1.5, "oom_cue": 3},
        fact="a leak grows resident memory until the runtime or the OOM killer ends the process, which restarts",
    ),
    Signature(
        "cpu_saturation",
        # a neighbour's contention or a throttled quota starves the process without raising its own CPU use: time
        # spent inside a server whose callees are all fast is compute, and a starved CPU is its commonest cause
        needs=(("cpu_high",), ("latency_origin",)),
        weights={"cpu_high": 5, "latency_origin": 3, "latency_up": 1, "cpu_cue": 2},
        fact="a starved CPU (contention or a hot loop) slows every request the process serves, inside the process",
    ),
    Signature(
        "db_connection_exhaustion",
        needs=(("pool_busy",), ("peer_pool_cue", "inbound_errors")),
        weights={"pool_busy": 3, "pool_full": 3, "pool_cue": 2, "peer_pool_cue": 1.5},
        fact="a pool at its maximum makes every further caller wait for a connection or fail",
    ),
    Signature(
        "disk_full",
        needs=(("disk_low",), ("disk_exhaustion",), ("disk_cue", "error_ratio_up")),
        weights={"disk_low": 6, "disk_exhaustion": 4, "disk_cue": 3, "error_ratio_up": 1},
        fact="writes fail with ENOSPC once free space runs out",
    ),
    Signature(
        "certificate_expired",
        needs=(("cert_expired",), ("peer_cert_cue", "inbound_errors")),
        weights={"cert_expired": 7, "peer_cert_cue": 3},
        fact="TLS handshakes fail from the moment a certificate's notAfter passes",
    ),
    Signature(
        "network_partition",
        needs=(
            ("inbound_errors",),
            ("outbound_errors",),
            ("inbound_latency",),
            ("outbound_latency",),
        ),
        weights={
            "inbound_errors": 2,
            "outbound_errors": 4,
            "inbound_latency": 4,
            "outbound_latency": 3,
            "peer_net_cue": 4,
            "down": 1.5,
            "rate_down": 1,
            "quiet": 0.5,
        },
        fact="a lossy or slow network shows as timeouts and delay on the calls that cross it, not as errors or "
        "slowness the server measures itself (its own p99 ends before the network)",
    ),
    Signature(
        "dependency_outage",
        needs=(("inbound_errors",),),
        excludes=("own_fault",),
        weights={"inbound_errors": 2, "peer_refused_cue": 4, "no_telemetry": 2, "down": 1},
        fact="a dependency that is down refuses or drops every call; blamed only when it shows no fault of its own, "
        "which would name the cause better",
    ),
    Signature(
        "traffic_surge",
        needs=(("surge",),),
        weights={"surge": 3, "surge_spread": 1.5, "load_saturation": 2, "ratelimit_cue": 2},
        fact="load enters at the edge and flows downstream, filling pools and CPUs on its way",
    ),
    Signature(
        "deployment_regression",
        # a fault in its code shows where it is called even with no deploy recorded: callers fail fast on its answers
        needs=(
            ("code_deploy", "error_ratio_up"),
            ("code_deploy", "new_errors"),
            ("stack_frames", "error_ratio_up"),
            ("cuts_requests",),
            ("stops_calling",),
            # a share of a few failing traces proves nothing alone: its own error ratio must agree
            ("errors_start_here", "error_ratio_up"),
        ),
        weights={
            "code_deploy": 4,
            "error_ratio_up": 2,
            "stack_frames": 2,
            "new_errors": 1,
            "cuts_requests": 4,
            "stops_calling": 4,
            "errors_start_here": 2,
        },
        fact="a bad change fails from its rollout on, with new errors (often stack traces) where the code runs; its "
        "callers give up on its answers (fail fast), and its own requests end before the calls that used to follow",
    ),
    Signature(
        "config_error",
        needs=(
            ("config_change", "error_ratio_up"),
            ("config_change", "new_errors"),
            ("config_change", "config_cue"),
            ("config_cue", "error_ratio_up"),
        ),
        weights={"config_change": 4, "config_cue": 2},
        fact="a bad configuration fails from the reload on, and the service usually says which setting",
    ),
)
