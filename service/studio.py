"""What langgraph.json serves to LangGraph Server and `langgraph dev`: the graph and our checkpointer.

A caller of LangGraph Server (Studio, the SDK, the HTTP API) chooses the alert, its telemetry and the incident
window, nothing else: the approval requirement, the repositories, the output folder, the model provider and every
other setting are the operator's, read from the one configuration (service/settings.py) in the server's process.
Each thread is one incident (incident id = thread id) and appears in the incidents table, so the dashboard and the
HTTP API show runs started here like those started by an alert.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.constants import INTERRUPT
from pydantic import ValidationError

from graph.builder import build_graph
from graph.context import Context
from nodes.notify import status_notices
from service import incidents
from state import Alert, TelemetrySpec, invalid_incident_id
from tools.database import Database, checkpoint_serializer, open_database

# what a caller may choose for one run, with the bounds the configuration puts on the same settings
CHOICE_BOUNDS = {"window_seconds": (1, 86_400), "baseline_seconds": (1, 7 * 86_400)}


@lru_cache(maxsize=1)
def operator_context() -> Context:
    """The run settings of the configuration this process was started with (the operator's)."""
    from service.settings import load_settings

    return replace(load_settings().run_context(), incident_is_thread=True)


@dataclass
class RunChoices:
    """What a LangGraph Server caller may choose for one run: the incident window and its baseline, in seconds.

    LangGraph builds the run's context from the caller's values with this class (its fields are the context
    schema Studio shows; anything else a caller sends is dropped); building it yields the operator's Context with
    these choices applied."""

    window_seconds: int | None = None
    baseline_seconds: int | None = None

    def __new__(cls, **chosen: Any) -> Context:  # type: ignore[misc]
        return served_context(**chosen)


def served_context(**chosen: Any) -> Context:
    """The operator's Context with a caller's choices applied; ValueError for a choice out of bounds or unknown."""
    changes = {}
    for name, value in chosen.items():
        if name not in CHOICE_BOUNDS:
            raise ValueError(f"{name} is an operator setting; a run can choose only {', '.join(CHOICE_BOUNDS)}")
        if value is None:
            continue
        low, high = CHOICE_BOUNDS[name]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"{name} must be a whole number of seconds in {low}..{high}, got {value!r}")
        changes[name] = value
    return replace(operator_context(), **changes)


class IncidentRecordingSaver(AsyncPostgresSaver):
    """The Postgres checkpointer that also keeps the incidents table in step with the threads it saves: a thread
    with an alert is an incident (id = thread id), its status follows its checkpoints and its gate."""

    def __init__(self, database: Database):
        super().__init__(database.pool, serde=checkpoint_serializer())  # type: ignore[arg-type]
        self.database = database
        self.latest: dict[str, dict[str, Any]] = {}  # thread -> values of its latest checkpoint (for the gate)

    async def aput(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        saved = await super().aput(config, checkpoint, metadata, new_versions)
        if not config["configurable"].get("checkpoint_ns"):  # the graph's own checkpoints, not a subgraph's
            await self.record(str(config["configurable"]["thread_id"]), checkpoint["channel_values"])
        return saved

    async def aput_writes(self, config: Any, writes: Any, task_id: str, task_path: str = "") -> None:
        await super().aput_writes(config, writes, task_id, task_path)
        thread_id = str(config["configurable"]["thread_id"])
        if any(channel == INTERRUPT for channel, _ in writes) and invalid_incident_id(thread_id) is None:
            values = self.latest.get(thread_id, {})
            await incidents.update_incident(self.database.pool, thread_id, "awaiting_approval",
                                            notices=status_notices(values, "awaiting_approval", operator_context()))

    async def record(self, thread_id: str, values: dict[str, Any]) -> None:
        """Create the incident row of the thread (once) and set its status from the state."""
        if invalid_incident_id(thread_id) is not None or "alert" not in values:
            return
        try:
            alert = Alert.model_validate(values["alert"])
            telemetry = TelemetrySpec.model_validate(values.get("telemetry") or {"kind": "live"})
        except ValidationError:
            return  # ingest refuses such input with its own error; there is no incident to show
        pool = self.database.pool
        self.latest[thread_id] = values
        await incidents.create_incident(pool, thread_id, alert, telemetry)
        detection, root = values.get("detection"), values.get("root_cause")
        if values.get("brief") is None:
            await incidents.update_incident(pool, thread_id, "investigating")
            return
        confirmed = detection is not None and detection.is_incident is not False
        status = "completed" if confirmed else "not_an_incident"
        self.latest.pop(thread_id, None)  # the run is over
        await incidents.update_incident(
            pool, thread_id, status,
            severity=detection.severity if confirmed and detection.is_incident else None,
            root_cause=root if confirmed and detection.is_incident else None,
            notices=status_notices(values, status, operator_context()),  # as the service's runner does
        )


# compiled without a checkpointer: the server injects the one `checkpointer` below yields
graph = build_graph(context_schema=RunChoices)


@asynccontextmanager
async def checkpointer() -> AsyncIterator[AsyncPostgresSaver]:
    """The Postgres checkpointer on DATABASE_URL (else the embedded server), with our serde and migrations, which
    records each thread as an incident."""
    async with open_database() as database:
        yield IncidentRecordingSaver(database)
