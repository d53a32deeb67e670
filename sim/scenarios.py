"""The simulated incident scenarios: which fault, where, when, and the alert it raises."""

from __future__ import annotations

import hashlib
import random
import zlib
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from sim.names import HARD_SCENARIOS, SCENARIOS
from sim.topology import INTERNAL, error_impact, upstream_distances
from state import Alert

STEP_SECONDS = 15
DATA_SPAN = timedelta(minutes=45)
INCIDENT_SPAN = timedelta(minutes=15)



@dataclass(frozen=True)
class _Spec:
    fault_type: str
    roots: tuple[str, ...]
    root_alerts: tuple[str, ...]  # signals that can alert on the root itself (empty: never the root)
    upstream_alerts: tuple[str, ...]  # signals that alert on a caller of the root
    magnitude: tuple[float, float]  # meaning per scenario, see Scenario.magnitude


_BACKENDS = ("catalog", "cart", "checkout", "payments", "inventory")
_SPECS: dict[str, _Spec] = {
    "memory_leak": _Spec(
        "memory_leak",
        (*_BACKENDS, "web-frontend", "mobile-bff"),
        ("memory_bytes", "latency_p99"),
        ("latency_p99",),
        (3.0, 5.0),
    ),
    "deployment_regression": _Spec(
        "deployment_regression", _BACKENDS, ("error_ratio",), ("error_ratio",), (0.15, 0.45)
    ),
    "db_connection_exhaustion": _Spec(
        "db_connection_exhaustion",
        ("payments-db-proxy", "catalog-db-proxy"),
        ("latency_p99",),
        ("latency_p99", "error_ratio"),
        (1.5, 4.0),
    ),
    "network_partition": _Spec(
        "network_partition",
        ("cart", "inventory", "payments", "catalog"),
        ("up",),
        ("error_ratio",),
        (0.85, 1.0),
    ),
    "cpu_saturation": _Spec(
        "cpu_saturation",
        ("catalog", "checkout", "payments", "inventory", "cart"),
        ("latency_p99", "cpu_usage"),
        ("latency_p99",),
        (5.0, 9.0),
    ),
    "config_error": _Spec("config_error", _BACKENDS, ("error_ratio",), ("error_ratio",), (0.4, 0.9)),
    "dependency_outage": _Spec(
        "dependency_outage", ("payment-provider", "redis-cache"), ("up",), ("error_ratio",), (0.6, 1.0)
    ),
    "disk_full": _Spec(
        "disk_full",
        ("payments-db-proxy", "catalog-db-proxy", "catalog", "inventory"),
        ("error_ratio", "disk_free_bytes"),
        ("error_ratio",),
        (0.2, 0.6),
    ),
    "certificate_expired": _Spec(
        "certificate_expired",
        ("payments", "inventory", "catalog", "checkout"),
        (),
        ("error_ratio",),
        (1.0, 1.0),
    ),
    "traffic_surge": _Spec("traffic_surge", ("gateway",), ("request_rate", "latency_p99"), (), (4.0, 6.0)),
    "false_alarm": _Spec("none", (), (), (), (3.0, 8.0)),
}

ALERT_NAMES: dict[str, str] = {
    "error_ratio": "HighErrorRate",
    "latency_p99": "HighLatency",
    "memory_bytes": "HighMemoryUsage",
    "cpu_usage": "CPUThrottlingHigh",
    "up": "TargetDown",
    "disk_free_bytes": "DiskSpaceLow",
    "request_rate": "HighRequestRate",
}
_CRITICAL = frozenset({"error_ratio", "up"})


@dataclass(frozen=True)
class Scenario:
    """One seeded incident. `magnitude` means: memory growth factor (memory_leak), error ratio at the root
    (deployment_regression, config_error, disk_full), pool wait in seconds (db_connection_exhaustion), failed
    connect fraction (network_partition, dependency_outage, certificate_expired), p99 factor (cpu_saturation),
    traffic factor (traffic_surge), blip factor (false_alarm)."""

    name: str
    seed: int
    fault_type: str
    root_service: str | None
    alerted_service: str
    alert_signal: str
    onset: datetime
    start: datetime
    end: datetime
    alert: Alert
    magnitude: float
    innocent_deploy_at: datetime | None  # a harmless code deploy of another service, or None
    innocent_deploy_service: str | None  # deployment_regression takes it from the sample repo instead
    noisy_service: str | None  # an unrelated service with a new low-rate error template, or None
    noisy_start: datetime | None
    blip_steps: int  # false_alarm: length of the blip ending before `end`; 0 otherwise
    variant: str | None = None  # the hard suite's name of this case (sim/names.py HARD_SCENARIOS), else None
    twists: tuple[str, ...] = ()  # the hard suite's twists (sim/hard.py)

    @property
    def incident_start(self) -> datetime:
        """Start of the incident window."""
        return self.end - INCIDENT_SPAN


def scenario_rng(name: str, seed: int, purpose: str) -> random.Random:
    """A generator seeded from (name, seed, purpose), independent of PYTHONHASHSEED."""
    return random.Random((seed * 1_000_003) ^ zlib.crc32(f"{name}/{purpose}".encode()))


def alert_fingerprint(alertname: str, labels: dict[str, str]) -> str:
    """Stable fingerprint of an alert: a hash of its name and sorted labels."""
    text = alertname + "|" + ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def spec_of(fault_scenario: str) -> _Spec:
    """The roots, alert signals and magnitude range of a classic scenario."""
    return _SPECS[fault_scenario]


def build_scenario(name: str, seed: int, end: datetime) -> Scenario:
    """The scenario `name` for this seed, with data over [end - 45 min, end] and the alert firing at `end`; a hard
    suite name gives its classic scenario (same seed, same truth) with the variant's twists."""
    if name in HARD_SCENARIOS:
        classic, twists = HARD_SCENARIOS[name]
        return replace(build_scenario(classic, seed, end), variant=name, twists=twists)
    if name not in _SPECS:
        raise ValueError(f"unknown scenario {name!r}; valid: {', '.join((*SCENARIOS, *HARD_SCENARIOS))}")
    spec = _SPECS[name]
    rng = scenario_rng(name, seed, "scenario")
    end = end if end.tzinfo else end.replace(tzinfo=UTC)
    start = end - DATA_SPAN
    onset = end - timedelta(seconds=STEP_SECONDS * rng.randint(16, 48))
    magnitude = round(rng.uniform(*spec.magnitude), 3)

    root = rng.choice(spec.roots) if spec.roots else None
    alerted, signal = _choose_alert(rng, spec, root)
    blip_steps = rng.randint(1, 2) if root is None else 0

    on_path = set(upstream_distances(root)) if root else {alerted}
    innocent_at = innocent_service = None
    if name == "deployment_regression" or rng.random() < 0.5:
        innocent_at = onset - timedelta(seconds=STEP_SECONDS * rng.randint(20, 80))
        if name != "deployment_regression":
            innocent_service = rng.choice([s for s in INTERNAL if s not in on_path and s != alerted])
    noisy_service = noisy_start = None
    if rng.random() < 0.4:
        noisy_service = rng.choice([s for s in INTERNAL if s not in on_path and s != alerted])
        noisy_start = end - timedelta(seconds=STEP_SECONDS * rng.randint(4, 56))

    labels = {
        "service": alerted,
        "severity": "critical" if signal in _CRITICAL else "warning",
    }
    alertname = ALERT_NAMES[signal]
    alert = Alert(
        source="sim",
        alertname=alertname,
        service=alerted,
        severity=labels["severity"],
        summary=f"{alertname} on {alerted}",
        starts_at=end,
        fingerprint=alert_fingerprint(alertname, labels),
        labels=labels,
        annotations={"summary": f"{alertname} on {alerted}", "signal": signal},
    )
    return Scenario(
        name=name,
        seed=seed,
        fault_type=spec.fault_type,
        root_service=root,
        alerted_service=alerted,
        alert_signal=signal,
        onset=onset,
        start=start,
        end=end,
        alert=alert,
        magnitude=magnitude,
        innocent_deploy_at=innocent_at,
        innocent_deploy_service=innocent_service,
        noisy_service=noisy_service,
        noisy_start=noisy_start,
        blip_steps=blip_steps,
    )


def _choose_alert(rng: random.Random, spec: _Spec, root: str | None) -> tuple[str, str]:
    """The alerted service (the root a third of the time when it can alert, else a caller) and signal."""
    if root is None:
        service = rng.choice([s for s in INTERNAL if s != "redis-cache"])
        return service, rng.choice(("error_ratio", "latency_p99"))
    callers = [s for s in upstream_distances(root) if s != root]
    alertable = bool(spec.root_alerts) and root in INTERNAL
    if alertable and (not callers or not spec.upstream_alerts or rng.random() < 0.35):
        return root, rng.choice(spec.root_alerts)
    signal = rng.choice(spec.upstream_alerts)
    if signal == "error_ratio":
        # An error-ratio alert fires only where a good part of the traffic depends on the root.
        impact = error_impact(root)
        strong = [s for s in callers if impact[s] >= 0.5]
        callers = strong or [max(callers, key=lambda s: impact[s])]
    return rng.choice(callers), signal
