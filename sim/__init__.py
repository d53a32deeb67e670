"""The simulated fleet: topology, scenarios, telemetry generators, and the fleet's own runbooks."""

from pathlib import Path

RUNBOOKS_DIR = Path(__file__).resolve().parent / "runbooks"
