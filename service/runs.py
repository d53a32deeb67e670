"""Starting, resuming, replaying and inspecting incident runs: what the CLI and the server share."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from langgraph.types import Command
from psycopg.errors import UniqueViolation

from graph.builder import build_graph
from graph.context import Context
from nodes.approve import ApprovalDecision
from nodes.notify import status_notices
from service import incidents
from state import Alert, TelemetrySpec
from tools.database import Database
from tools.redact import redact_value

StepCallback = Callable[[str, dict[str, Any], float], None]


class RunError(Exception):
    """A run cannot do what was asked (unknown incident, not waiting for approval, ...)."""


@dataclass
class RunResult:
    """Where a run stopped."""

    incident_id: str
    status: str
    values: dict[str, Any]
    interrupt: dict[str, Any] | None
    seconds: float


@dataclass
class HistoryEntry:
    """One checkpoint of an incident's thread."""

    checkpoint_id: str
    step: int
    created_at: str
    source: str
    ran: list[str]
    next: list[str]


def new_incident_id(now: datetime | None = None) -> str:
    """inc-YYYYMMDD-HHMMSS-xxxxxx: sortable by time, unique."""
    now = now or datetime.now(UTC)
    return f"inc-{now:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def thread_config(incident_id: str, checkpoint_id: str | None = None) -> dict[str, Any]:
    """The run config for an incident's thread (thread id = incident id)."""
    configurable: dict[str, Any] = {"thread_id": incident_id}
    if checkpoint_id:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable}


def derive_status(snapshot: Any) -> str:
    """Incident status from the latest checkpoint."""
    if snapshot.interrupts:
        return "awaiting_approval"
    if snapshot.next:
        return "investigating"
    values = snapshot.values
    if values.get("brief") is None:  # `next` can be empty between a step's end and its checkpoint
        return "investigating"
    detection = values.get("detection")
    return "not_an_incident" if detection is not None and detection.is_incident is False else "completed"


@dataclass
class IncidentView:
    """What an incident looks like now: its status, and the gate's question if one is open and undecided."""

    status: str
    gate: dict[str, Any] | None
    decision: dict[str, Any] | None


async def incident_view(pool: Any, snapshot: Any, row_status: str) -> IncidentView:
    """Status from the checkpoint, corrected by what the database knows that the checkpoint cannot yet:
    a decision taken at the gate whose resume is queued, and a run that failed."""
    status = derive_status(snapshot) if snapshot.values else row_status
    if status != "awaiting_approval" and await incidents.has_active_run(pool, snapshot.values.get("incident_id")):
        status = "investigating"  # a queued or running run is not finished, whatever the last checkpoint says
    gate = decision = None
    if snapshot.interrupts:
        decision = await incidents.gate_decision(pool, snapshot.values["incident_id"], snapshot.interrupts[0].id)
        if decision is None:
            gate = snapshot.interrupts[0].value
        else:
            status = "resuming"
    if row_status == "failed":  # a failed run's last checkpoint still looks mid-run
        status = "failed"
    return IncidentView(status, gate, decision)


class IncidentRunner:
    """Runs the graph on the durable checkpointer and keeps the incidents table in step."""

    def __init__(self, db: Database, context: Context, on_step: StepCallback | None = None, *,
                 fail_incidents: bool = True):
        """fail_incidents=False: a run that raises leaves its incident's status alone (the run queue retries it
        and fails the incident only when the run has had its attempts)."""
        self.db = db
        self.fail_incidents = fail_incidents
        self.context = replace(context, database=db)  # nodes reach the outbox and the memory through it
        self.on_step = on_step
        self.graph = build_graph(checkpointer=db.checkpointer)

    async def start(
        self, alert: Alert, telemetry: TelemetrySpec, incident_id: str | None = None, *, record: bool = True
    ) -> RunResult:
        """Run a new incident's graph until it ends or waits at the gate (record=False: the row exists already)."""
        incident_id = incident_id or new_incident_id()
        if record:
            await incidents.create_incident(self.db.pool, incident_id, alert, telemetry)
        # the graph's copy of the alert is redacted before its first checkpoint; the incidents row keeps it as sent
        graph_input = {"incident_id": incident_id, "alert": redact_value(alert), "telemetry": telemetry}
        return await self._drive(incident_id, graph_input, thread_config(incident_id))

    async def resume(self, incident_id: str, decision: ApprovalDecision, *, record: bool = True) -> RunResult:
        """Answer the approval gate and run on; refuses when the incident is not waiting there.

        record=False when the decision was stored already (the HTTP API stores it with the queued resume)."""
        snapshot = await self.graph.aget_state(thread_config(incident_id))
        if not snapshot.values:
            raise RunError(f"unknown incident {incident_id}")
        if not snapshot.interrupts:
            raise RunError(f"incident {incident_id} is not waiting for approval (status {derive_status(snapshot)})")
        if record:
            gate = snapshot.interrupts[0]
            try:
                async with self.db.pool.connection() as conn:
                    await incidents.record_approval(
                        conn, incident_id, gate.id, decision.model_dump(), incidents.patch_digest(gate.value)
                    )
            except UniqueViolation as exc:
                raise RunError(f"incident {incident_id}: this approval gate was already decided") from exc
            except incidents.DecisionStands as exc:
                raise RunError(f"incident {incident_id}: {exc}") from exc
        command = Command(resume=decision.model_dump())
        return await self._drive(incident_id, command, thread_config(incident_id))

    async def continue_run(self, incident_id: str) -> RunResult:
        """Run an interrupted-by-crash incident on from its last checkpoint."""
        return await self._drive(incident_id, None, thread_config(incident_id))

    async def replay(self, incident_id: str, checkpoint_id: str) -> RunResult:
        """Re-run the graph from a past checkpoint of the incident (a fork: history is kept)."""
        past = await self.graph.aget_state(thread_config(incident_id, checkpoint_id))
        if not past.values and not past.next:
            raise RunError(f"no checkpoint {checkpoint_id} in incident {incident_id}")
        return await self._drive(incident_id, None, thread_config(incident_id, checkpoint_id))

    async def snapshot(self, incident_id: str) -> Any:
        """The latest state snapshot (raises RunError for an unknown incident)."""
        snapshot = await self.graph.aget_state(thread_config(incident_id))
        if not snapshot.values:
            raise RunError(f"unknown incident {incident_id}")
        return snapshot

    async def history(self, incident_id: str) -> list[HistoryEntry]:
        """Every checkpoint of the incident, oldest first, with the nodes that produced it."""
        snapshots = [s async for s in self.graph.aget_state_history(thread_config(incident_id))]
        if not snapshots:
            raise RunError(f"unknown incident {incident_id}")
        snapshots.reverse()
        entries = []
        by_id = {s.config["configurable"]["checkpoint_id"]: s for s in snapshots}
        for snap in snapshots:
            parent_id = (snap.parent_config or {}).get("configurable", {}).get("checkpoint_id")
            parent = by_id.get(parent_id)
            entries.append(
                HistoryEntry(
                    checkpoint_id=snap.config["configurable"]["checkpoint_id"],
                    step=snap.metadata.get("step", -1),
                    created_at=snap.created_at or "",
                    source=snap.metadata.get("source", ""),
                    ran=[t.name for t in parent.tasks] if parent is not None else [],
                    next=list(snap.next),
                )
            )
        return entries

    async def _drive(self, incident_id: str, graph_input: Any, config: dict[str, Any]) -> RunResult:
        """Run the graph; a gate whose patch was decided before (a replay passing it again) gets that decision."""
        started = time.perf_counter()
        while True:
            result = await self._run_graph(incident_id, graph_input, config)
            standing = await self._standing_decision(incident_id)
            if standing is None:
                return replace(result, seconds=time.perf_counter() - started)
            graph_input, config = Command(resume=standing), thread_config(incident_id)

    async def _standing_decision(self, incident_id: str) -> dict[str, Any] | None:
        """When the run waits at a gate whose patch was decided at an earlier gate, that decision, recorded for
        this gate too; else None. Decisions are never asked twice: a rejection stays a rejection."""
        snapshot = await self.graph.aget_state(thread_config(incident_id))
        if not snapshot.interrupts:
            return None
        gate = snapshot.interrupts[0]
        digest = incidents.patch_digest(gate.value)
        async with self.db.pool.connection() as conn, conn.transaction():
            standing = await incidents.standing_decision(conn, incident_id, digest)
            if standing is None or standing["interrupt_id"] == gate.id:
                return None
            decision = {"decision": standing["decision"], "by": standing["approver"],
                        "comment": f"standing decision of {standing['decided_at']:%Y-%m-%d %H:%M} UTC on this patch"
                                   + (f": {standing['comment']}" if standing["comment"] else "")}
            cur = await conn.execute(
                """INSERT INTO approvals (incident_id, interrupt_id, decision, approver, comment, patch_digest)
                   VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING""",
                (incident_id, gate.id, decision["decision"], decision["by"], decision["comment"], digest),
            )
        return decision if cur.rowcount else None  # else decided meanwhile at this gate: that resume goes on

    async def _run_graph(self, incident_id: str, graph_input: Any, config: dict[str, Any]) -> RunResult:
        started = last = time.perf_counter()
        await incidents.update_incident(self.db.pool, incident_id, "investigating")
        try:
            # durability="sync": each step's checkpoint is written before the next step starts, so a crash
            # re-runs at most the node in flight, never steps that already finished
            async for chunk in self.graph.astream(
                graph_input, config, context=self.context, stream_mode="updates", durability="sync"
            ):
                for node, update in chunk.items():
                    now = time.perf_counter()
                    if self.on_step is not None and node != "__interrupt__":
                        self.on_step(node, update or {}, now - last)
                    last = now
        except Exception:
            if self.fail_incidents:
                await incidents.update_incident(self.db.pool, incident_id, "failed")
            raise
        snapshot = await self.graph.aget_state(thread_config(incident_id))
        status = derive_status(snapshot)
        values = snapshot.values
        detection, root = values.get("detection"), values.get("root_cause")
        await incidents.update_incident(
            self.db.pool, incident_id, status,
            severity=detection.severity if detection is not None and detection.is_incident is not False else None,
            root_cause=root if detection is not None and detection.is_incident else None,
            notices=status_notices(values, status, self.context),
        )
        interrupt = snapshot.interrupts[0].value if snapshot.interrupts else None
        return RunResult(incident_id, status, values, interrupt, time.perf_counter() - started)
