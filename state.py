"""Typed graph state of an incident and the pydantic models that flow through it."""

from __future__ import annotations

import operator
import re
import sys
from datetime import datetime
from typing import Annotated, Any, Literal, NotRequired

from pydantic import BaseModel, Field
from typing_extensions import TypedDict

FaultType = Literal[
    "deployment_regression",
    "config_error",
    "memory_leak",
    "cpu_saturation",
    "db_connection_exhaustion",
    "dependency_outage",
    "network_partition",
    "disk_full",
    "certificate_expired",
    "traffic_surge",
    "none",
]
FAULT_TYPES: tuple[str, ...] = FaultType.__args__  # type: ignore[attr-defined]
Severity = Literal["P1", "P2", "P3", "P4"]
SourceName = Literal["logs", "metrics", "traces", "deploys"]
SOURCES: tuple[str, ...] = SourceName.__args__  # type: ignore[attr-defined]
SourceStatus = Literal["ok", "error", "no_data"]
Risk = Literal["low", "medium", "high"]
Outcome = Literal["incident", "not_an_incident", "inconclusive"]


INCIDENT_ID_MAX_LENGTH = 128
# Letters, digits, "-" and "_" only: an incident id names a folder under the output directory and a git branch, so
# it can hold no "/", no ".." and nothing a shell, a URL or a ref name would read differently.
INCIDENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$"
_INCIDENT_ID = re.compile(INCIDENT_ID_PATTERN)


def invalid_incident_id(incident_id: Any) -> str | None:
    """Why `incident_id` cannot be an incident id, or None when it can."""
    if not isinstance(incident_id, str):
        return f"an incident id is a string, not {type(incident_id).__name__}"
    if not _INCIDENT_ID.fullmatch(incident_id):
        return (f"incident id {incident_id[:60]!r} must be 1-{INCIDENT_ID_MAX_LENGTH} letters, digits, '-' or '_', "
                "starting with a letter or digit")
    return None


def check_incident_id(incident_id: Any) -> str:
    """`incident_id` itself when it is a valid incident id; ValueError saying why otherwise."""
    problem = invalid_incident_id(incident_id)
    if problem is not None:
        raise ValueError(problem)
    return incident_id


class Model(BaseModel):
    """Base for state models: forbid unknown fields so bad input fails at the edge."""

    model_config = {"extra": "forbid", "defer_build": True}


# --- input -------------------------------------------------------------------------------------------


class Alert(Model):
    """One normalized alert; `raw` keeps the payload exactly as it arrived."""

    source: Literal["alertmanager", "grafana", "generic", "sim", "cli"]
    alertname: str
    service: str
    status: Literal["firing", "resolved"] = "firing"
    severity: str | None = None
    summary: str = ""
    starts_at: datetime
    fingerprint: str
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    lookup_window_seconds: int | None = None
    raw: dict[str, Any] = Field(default_factory=dict)


class TelemetrySpec(Model):
    """Where the run reads telemetry: the in-process simulator or live backends."""

    kind: Literal["sim", "live"]
    scenario: str | None = None
    seed: int = 0
    end: datetime | None = None


class Window(Model):
    """The incident window [start, end] and the baseline window before it."""

    start: datetime
    end: datetime
    baseline_start: datetime


# --- evidence ------------------------------------------------------------------------------------------


class LogTemplate(Model):
    """A mined log template with its counts in the baseline and incident windows."""

    template_id: str
    service: str
    template: str
    level: Literal["error", "warn", "info", "debug"]
    baseline_count: int
    incident_count: int
    kind: Literal["new", "spiking", "steady", "dropped"]
    first_seen: datetime | None = None
    sample: str = ""
    # incident-window entries whose whole text (first line, exception lines, field values) shows each log cue
    # of analysis/log_cues.py, by cue name; the template and sample above are truncated, this is not
    cues: dict[str, int] = Field(default_factory=dict)


class StackFrame(Model):
    """A frame of a stack trace seen in the incident window."""

    service: str
    file: str
    line: int | None = None
    function: str | None = None
    count: int = 1


class ServiceLogStats(Model):
    """Per-service log volume and error rate (per minute) in both windows."""

    baseline_lines: int = 0
    incident_lines: int = 0
    baseline_errors_per_min: float = 0.0
    incident_errors_per_min: float = 0.0
    error_onset: datetime | None = None


class LogEvidence(Model):
    """Compact summary of the logs of the window."""

    services: dict[str, ServiceLogStats] = Field(default_factory=dict)
    templates: list[LogTemplate] = Field(default_factory=list)
    stack_frames: list[StackFrame] = Field(default_factory=list)
    lines_read: int = 0
    bytes_read: int = 0
    truncated: bool = False


class MetricSignal(Model):
    """One metric signal of one service (or one caller->peer edge) with its anomaly score."""

    service: str
    signal: str
    peer: str | None = None
    baseline: float
    current: float
    peak: float
    score: float
    direction: Literal["up", "down", "flat"]
    onset: datetime | None = None
    active: bool = True  # still deviating at the window's end (an anomaly that recovered belongs to an earlier fault)
    short_baseline: bool = False  # less history than half the baseline window: the score rests on few samples
    trend: float | None = None  # significant steady change over the whole history read, units per second
    resets: int = 0  # times the series fell by half or more at once (a restart of a gauge, a counter reset)


class MetricEvidence(Model):
    """Metric signals of the window; anomalous ones first."""

    signals: list[MetricSignal] = Field(default_factory=list)
    series_read: int = 0
    # the signals read per service (an edge as "signal->peer"): what is not among `signals` was read and found flat
    measured: dict[str, list[str]] = Field(default_factory=dict)
    short_history: int = 0  # series read whose history covers less than half their baseline window
    # callers whose requests stopped making calls they used to make: {caller: {callee: note}} (analysis/metrics.py)
    dropped_calls: dict[str, dict[str, str]] = Field(default_factory=dict)


class TraceEvidence(Model):
    """What traces say: where errors and slowness originate, and which calls were seen."""

    traces_read: int = 0
    error_traces: int = 0
    error_origins: dict[str, int] = Field(default_factory=dict)
    # failing traces whose deepest failing span is the service's own (not a call to a peer that got no answer)
    own_error_origins: dict[str, int] = Field(default_factory=dict)
    slow_origins: dict[str, int] = Field(default_factory=dict)
    # callee -> notes: operations that still call it but stopped making the calls that used to follow it
    cut_after: dict[str, list[str]] = Field(default_factory=dict)
    edges: list[tuple[str, str]] = Field(default_factory=list)
    samples: list[str] = Field(default_factory=list)


class DeployEvent(Model):
    """A deploy or configuration change of a service."""

    at: datetime
    service: str
    version: str
    previous_version: str | None = None
    kind: Literal["code", "config"] = "code"
    commit: str | None = None
    previous_commit: str | None = None
    author: str | None = None
    description: str = ""
    source: str = "metrics"


class DeployEvidence(Model):
    """Deploys and config changes found around the window."""

    deploys: list[DeployEvent] = Field(default_factory=list)


class MetricChart(Model):
    """A kept signal's series, downsampled for a sparkline, with its baseline band; for people, not for reasoning."""

    service: str
    signal: str
    peer: str | None = None
    start: datetime
    step_seconds: float
    values: list[float | None]
    baseline: float
    band_low: float
    band_high: float


class SourceEvidence(Model):
    """What one collector brought back: a status and a compact summary, never raw telemetry."""

    source: SourceName
    status: SourceStatus
    logs: LogEvidence | None = None
    metrics: MetricEvidence | None = None
    traces: TraceEvidence | None = None
    deploys: DeployEvidence | None = None
    charts: list[MetricChart] = Field(default_factory=list)
    queries: int = 0
    error: str | None = None


class Hypothesis(Model):
    """A candidate root cause: service, fault type, confidence and the evidence behind it."""

    service: str
    fault_type: FaultType
    confidence: float
    score: float = 0.0
    summary: str = ""
    evidence: list[str] = Field(default_factory=list)


class Evidence(Model):
    """The correlated evidence of an incident, a few kilobytes: what reasoning (and an LLM) sees."""

    alerted_service: str
    window: Window
    services: list[str]
    dependencies: list[tuple[str, str]]
    onset: datetime | None = None
    logs: LogEvidence | None = None
    metrics: MetricEvidence | None = None
    traces: TraceEvidence | None = None
    deploys: list[DeployEvent] = Field(default_factory=list)
    missing: list[str] = Field(default_factory=list)
    candidates: list[Hypothesis] = Field(default_factory=list)


# --- reasoning results ---------------------------------------------------------------------------------


class CodeRepository(Model):
    """Where a service's code lives, from the telemetry configuration's repository map (or the simulator)."""

    service: str
    checkout: str | None = None  # a local clone: code reading over mcp-server-git, the revert, the tests
    github: str | None = None  # owner/name on GitHub: deployments, releases, tags, remote code reading, PRs
    path: str = ""  # the service's folder in a monorepo; "" = the whole repository
    base_branch: str = "main"
    test_command: list[str] = Field(default_factory=list)

    @property
    def name(self) -> str:
        """How people call the repository: owner/name on GitHub, else the checkout's path."""
        return self.github or self.checkout or ""


class Detection(Model):
    """Whether this is an incident (None: inconclusive, the run could not look), how bad, and whether it looks like a
    code regression."""

    is_incident: bool | None
    severity: Severity
    reasons: list[str] = Field(default_factory=list)
    code_regression: bool = False
    suspect_service: str | None = None
    suspect_commit: str | None = None
    repo: str | None = None
    repository: CodeRepository | None = None
    decided_by: Literal["rules", "llm"] = "rules"

    @property
    def outcome(self) -> Outcome:
        """incident, not_an_incident, or inconclusive when the evidence could not decide."""
        return {True: "incident", False: "not_an_incident"}.get(self.is_incident, "inconclusive")  # type: ignore[return-value]


class FileExcerpt(Model):
    """Lines of a repository file around a suspect line."""

    path: str
    start_line: int
    text: str


class SuspectCommit(Model):
    """A commit deployed in the suspect window, with why it is suspected; ranked best first in CodeFindings."""

    commit: str
    subject: str = ""
    author: str = ""
    at: datetime | None = None
    score: float = 0.0
    files_changed: list[str] = Field(default_factory=list)
    failing_lines: list[str] = Field(default_factory=list)  # path:line of the failure inside its changed hunks
    reasons: list[str] = Field(default_factory=list)


class CodeFindings(Model):
    """What code analysis found in the repository: the suspect commits ranked, and the top one read in full."""

    repo: str
    commit: str
    parent: str | None = None
    subject: str = ""
    author: str = ""
    files_changed: list[str] = Field(default_factory=list)
    diff: str = ""
    excerpts: list[FileExcerpt] = Field(default_factory=list)
    matches_stack_trace: bool = False
    summary: str = ""
    suspects: list[SuspectCommit] = Field(default_factory=list)


class RootCause(Model):
    """The chosen root cause."""

    service: str
    fault_type: FaultType
    summary: str
    confidence: float
    evidence: list[str] = Field(default_factory=list)
    decided_by: Literal["rules", "llm"] = "rules"


class Suggestion(Model):
    """A mitigation the on-call can take, with its risk."""

    action: str
    risk: Risk
    rationale: str = ""
    command: str | None = None
    blocked_reason: str | None = None
    source: str = "engine"


class RunbookMatch(Model):
    """A team runbook that matches the incident (by alert name, service, fault type), or the alert's runbook_url."""

    title: str
    name: str = ""
    url: str = ""
    matched_on: list[str] = Field(default_factory=list)
    steps: int = 0


class PatchCheck(Model):
    """One safety or test check on a proposed patch."""

    name: str
    ok: bool
    detail: str = ""


class FileChange(Model):
    """One file of a patch as a code host takes it: the path, the blob it replaces, the whole new content."""

    path: str
    base_sha: str | None = None
    """The file's blob id at the base commit; None = a new file."""
    content: str | None = None
    """The new content; None = the file is deleted."""
    mode: Literal["100644", "100755", "120000"] = "100644"


class PrTarget(Model):
    """Where an approved fix is written, decided before the gate so that the gate can say exactly that."""

    backend: Literal["local", "github"]
    repository: str
    """owner/name on GitHub, or the local repository's path."""
    branch: str
    base_branch: str

    def action(self) -> str:
        """What approving does, in one phrase."""
        if self.backend == "github":
            return (f"open a GitHub pull request on {self.repository} from a new branch {self.branch} "
                    f"into {self.base_branch}")
        return (f"create the local branch {self.branch} in {self.repository} (on {self.base_branch}); "
                "no pull request is opened and nothing is pushed")


class Patch(Model):
    """A proposed fix as a unified diff against the repository."""

    kind: Literal["revert", "targeted", "edit"]
    repo: str
    base_commit: str
    reverts: str | None = None
    title: str
    description: str = ""
    diff: str
    files: list[str] = Field(default_factory=list)
    files_to_modify: list[FileChange] = Field(default_factory=list)
    target: PrTarget | None = None
    test_command: list[str] = Field(default_factory=list)
    test_dir: str = ""
    """The folder the test command runs in: the service's folder in a monorepo ("" = the repository's root)."""
    checks: list[PatchCheck] = Field(default_factory=list)
    tests_before: Literal["pass", "fail", "not_run"] = "not_run"
    tests_after: Literal["pass", "fail", "not_run"] = "not_run"

    @property
    def ready(self) -> bool:
        """True when every check passed."""
        return bool(self.checks) and all(c.ok for c in self.checks)

    def failed_checks(self) -> str:
        """The checks that failed, with why ("" when none did)."""
        return "; ".join(f"{c.name} — {c.detail}" if c.detail else c.name for c in self.checks if not c.ok)


class Approval(Model):
    """A human decision at the approval gate."""

    decision: Literal["approve", "reject", "edit", "auto"]
    by: str
    comment: str = ""
    at: datetime


class ApprovalRequest(Model):
    """The typed payload of the approval interrupt."""

    incident_id: str
    root_cause: RootCause | None
    patch: Patch
    checks: list[PatchCheck]
    question: str
    """What approving does, asked as a question (the CLI and the dashboard show it as it is)."""
    approve_label: str
    """The approve button's words."""
    suspects: list[SuspectCommit] = Field(default_factory=list)
    """The commits the deploy brought, ranked best first with why (the fix undoes the first), at most three."""


class PullRequest(Model):
    """What create_pr did."""

    backend: Literal["local", "github"]
    status: Literal["created", "skipped", "failed", "exists"]
    branch: str | None = None
    commit: str | None = None
    url: str | None = None
    detail: str = ""


class Brief(Model):
    """The written incident brief."""

    title: str
    summary: str = ""
    markdown: str
    html_path: str | None = None
    markdown_path: str | None = None


class Notification(Model):
    """One delivery of the brief."""

    channel: str
    status: Literal["sent", "written", "queued", "failed", "skipped"]
    target: str = ""
    detail: str = ""


class PastIncident(Model):
    """A similar incident from memory, with what fixed it."""

    incident_id: str
    at: datetime
    service: str
    fault_type: FaultType
    summary: str = ""
    shared_templates: int = 0
    fix: str = ""
    resolved_at: datetime | None = None


class ErrorRecord(Model):
    """An error of one step: recorded, never raised through the graph."""

    node: str
    message: str
    source: str | None = None
    at: datetime


class TokenUsage(Model):
    """LLM tokens used by one node."""

    input: int = 0
    output: int = 0
    calls: int = 0


# --- reducers and the graph state ---------------------------------------------------------------------


def merge_dicts(left: dict | None, right: dict | None) -> dict:
    """Reducer: shallow merge, right wins."""
    return {**(left or {}), **(right or {})}


def add_tokens(left: dict[str, TokenUsage] | None, right: dict[str, TokenUsage] | None) -> dict:
    """Reducer: add token counts per node."""
    merged = dict(left or {})
    for node, usage in (right or {}).items():
        old = merged.get(node) or TokenUsage()
        merged[node] = TokenUsage(
            input=old.input + usage.input, output=old.output + usage.output, calls=old.calls + usage.calls
        )
    return merged


class IncidentState(TypedDict, total=False):
    """The state of one incident run; thread id = incident_id."""

    incident_id: str
    alert: Alert
    telemetry: TelemetrySpec
    window: Window
    services: list[str]
    dependencies: list[tuple[str, str]]
    evidence_parts: Annotated[dict[str, SourceEvidence], merge_dicts]
    evidence: Evidence
    detection: Detection
    code: CodeFindings | None
    digest: str
    root_cause: RootCause
    hypotheses: list[Hypothesis]
    suggestions: list[Suggestion]
    runbooks: list[RunbookMatch]
    patch: Patch | None
    approval: Approval | None
    pr: PullRequest | None
    brief: Brief
    similar_incidents: list[PastIncident]
    notifications: Annotated[list[Notification], operator.add]
    errors: Annotated[list[ErrorRecord], operator.add]
    tokens: Annotated[dict[str, TokenUsage], add_tokens]


class GraphInput(TypedDict, total=False):
    """What starts a run: the alert, where its telemetry is read, and the incident id (default: the thread id)."""

    incident_id: str
    alert: Alert
    telemetry: TelemetrySpec


class CollectTask(TypedDict):
    """The payload `Send` hands to one collector."""

    source: SourceName
    incident_id: str
    telemetry: TelemetrySpec
    window: Window
    services: list[str]
    alerted_service: str
    dependencies: NotRequired[list[tuple[str, str]]]  # the call graph collect read (absent in older checkpoints)


def checkpoint_types() -> list[tuple[str, str]]:
    """(module, class) of every model stored in checkpoints, for the serializer's allowlist."""
    module = sys.modules[__name__]
    return [
        (__name__, name)
        for name, obj in vars(module).items()
        if isinstance(obj, type) and issubclass(obj, BaseModel) and obj.__module__ == __name__
    ]
