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
