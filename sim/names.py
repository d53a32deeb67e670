"""The simulator's scenario names, importable without the simulator (the command line's help lists them)."""

SCENARIOS: tuple[str, ...] = (
    "memory_leak",
    "deployment_regression",
    "db_connection_exhaustion",
    "network_partition",
    "cpu_saturation",
    "config_error",
    "dependency_outage",
    "disk_full",
    "certificate_expired",
    "traffic_surge",
    "false_alarm",
)

# The hard suite: each is a classic scenario (same seed, same fault, same truth) with twists real fleets add.
# Twists (sim/hard.py): early_trend (the leak or the filling disk began an hour before the window: the baseline
# trends, OOM restarts fall in it), overlap (an unrelated fault on a service the alerted one does not call began
# earlier), bursty (short traffic bursts in both windows), low_traffic (a few requests per second: ratios jump in
# whole requests), log_shapes (the root and its callers log numeric pino levels, `HH:mm:ss.SSS ERROR`, plain lines
# with msg=, or bare lines whose level is only Loki's `detected_level` label).
HARD_SCENARIOS: dict[str, tuple[str, tuple[str, ...]]] = {
    "hard_memory_leak_early": ("memory_leak", ("early_trend", "log_shapes")),
    "hard_disk_full_early": ("disk_full", ("early_trend", "log_shapes")),
    "hard_deployment_regression_overlap": ("deployment_regression", ("overlap", "log_shapes")),
    "hard_db_connection_exhaustion_overlap": ("db_connection_exhaustion", ("overlap",)),
    "hard_config_error_low_traffic": ("config_error", ("low_traffic", "log_shapes")),
    "hard_network_partition_low_traffic": ("network_partition", ("low_traffic",)),
    "hard_cpu_saturation_bursty": ("cpu_saturation", ("bursty", "overlap")),
    "hard_traffic_surge_bursty": ("traffic_surge", ("bursty",)),
    "hard_certificate_expired_shapes": ("certificate_expired", ("log_shapes", "bursty")),
    "hard_dependency_outage_low_traffic": ("dependency_outage", ("low_traffic", "log_shapes")),
    "hard_false_alarm_bursty_low_traffic": ("false_alarm", ("bursty", "low_traffic")),
}
