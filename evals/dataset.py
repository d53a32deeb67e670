"""`incident-copilot eval --dataset DIR`: an eval set of recorded telemetry served over the wire, one investigation
per case, scored (AS@1, AS@3, fault accuracy, missed incidents, calibration).

An eval set is a directory (written by a converter such as evals/nezha.py):
- `dataset.json`: format, name, source and licence, how the telemetry is stored, run settings (window, metrics
  step), and the cases: id, alerted service, alert time, expected root service and fault type (`none` for a false
  alarm), the source's own fault name, notes;
- `metrics.om.gz`: OpenMetrics with timestamps, backfilled into a real Prometheus with promtool;
- `logs.jsonl.gz`: [ns, service, line] rows in time order, served by a Loki API (sim/history.py);
- `spans.jsonl.gz`: [trace, span, parent, service, pod, name, start ns, end ns] rows, served by Tempo's query API
  (sim/tempo.py);
- `telemetry.toml`: the connectors' settings for this data's names (tools/telemetry_config.py).

Each case runs like `incident-copilot investigate --service S --at T --window W --json` against those backends
(TelemetrySpec(kind="live")), with the offline LLM, up to the approval gate.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from analysis.records import LogRecord, Span
from evals.wire import Backends, create_blocks, serve_prometheus
from sim.history import HistoryServer, LogHistory
from sim.tempo import SpanStore

FORMAT = "incident-copilot-evalset/1"


class DatasetError(ValueError):
    """The eval set is missing, unreadable or malformed."""


@dataclass(frozen=True)
class EvalCase:
    """One alert of an eval set and its expected answer (expected_fault "none": a false alarm)."""

    id: str
    service: str
    at: datetime
    alertname: str
    expected_service: str | None
    expected_fault: str
    source_fault: str
    notes: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The case as dataset.json stores it."""
        return {**dataclasses.asdict(self), "at": self.at.isoformat()}

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> EvalCase:
        """A case from dataset.json; DatasetError when malformed."""
        try:
            at = datetime.fromisoformat(row["at"])
            if at.tzinfo is None:
                raise ValueError("the alert time has no timezone")
            case = cls(**{**row, "at": at})
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetError(f"malformed case {str(row)[:200]}: {exc}") from None
        if (case.expected_fault == "none") != (case.expected_service is None):
            raise DatasetError(f"case {case.id}: a false alarm has no expected service, a fault has one")
        return case


@dataclass(frozen=True)
class EvalSet:
    """A loaded eval set: its directory, manifest and cases."""

    path: Path
    manifest: dict[str, Any]
    cases: list[EvalCase]

    def file(self, key: str) -> Path:
        """A telemetry file named by the manifest."""
        return self.path / self.manifest["telemetry"][key]

    @property
    def window_seconds(self) -> int:
        return int(self.manifest.get("run", {}).get("window_seconds", 900))

    @property
    def metrics_step_seconds(self) -> float:
        return float(self.manifest.get("run", {}).get("metrics_step_seconds", 15))

    @property
    def scrape_interval_seconds(self) -> float:
        return float(self.manifest["telemetry"].get("scrape_interval_seconds", 15))


def write_manifest(directory: Path, manifest: dict[str, Any], cases: list[EvalCase]) -> None:
    """Write dataset.json: the manifest with its cases in time order."""
    body = {**manifest, "cases": [c.to_json() for c in sorted(cases, key=lambda c: (c.at, c.id))]}
    (directory / "dataset.json").write_text(json.dumps(body, indent=1) + "\n")


def load_eval_set(path: Path) -> EvalSet:
    """Read and check an eval set directory."""
    manifest_file = Path(path) / "dataset.json"
    try:
        manifest = json.loads(manifest_file.read_text())
    except OSError as exc:
        raise DatasetError(f"{manifest_file}: cannot read: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise DatasetError(f"{manifest_file}: invalid JSON: {exc}") from None
    if manifest.get("format") != FORMAT:
        raise DatasetError(f"{manifest_file}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    cases = [EvalCase.from_json(row) for row in manifest.pop("cases", [])]
    if not cases:
        raise DatasetError(f"{manifest_file}: no cases")
    ids = [c.id for c in cases]
    if len(set(ids)) != len(ids):
        raise DatasetError(f"{manifest_file}: duplicate case ids")
    eval_set = EvalSet(Path(path), manifest, cases)
    for key in ("metrics", "logs", "spans", "config"):
        if key in manifest.get("telemetry", {}) and not eval_set.file(key).is_file():
            raise DatasetError(f"{eval_set.file(key)}: missing (named by dataset.json)")
    return eval_set


# --- serving ---------------------------------------------------------------------------------------------------


def read_rows(path: Path) -> Iterator[list]:
    """The JSON rows of a gzipped JSON-lines file."""
    with gzip.open(path, "rt") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


@contextmanager
def serve_eval_set(eval_set: EvalSet, workdir: Path) -> Iterator[Backends]:
    """The set's metrics in a real Prometheus (promtool backfill), its logs on a Loki API and its spans on Tempo's
    API, until exit."""
    with _prometheus(eval_set, workdir) as prometheus_url, _recorded(eval_set) as (loki_url, tempo_url):
        yield Backends(prometheus_url, loki_url, tempo_url)


@contextmanager
def _prometheus(eval_set: EvalSet, workdir: Path) -> Iterator[str | None]:
    if "metrics" not in eval_set.manifest["telemetry"]:
        yield None
        return
    plain = workdir / "metrics.om"
    with gzip.open(eval_set.file("metrics"), "rb") as source, plain.open("wb") as target:
        shutil.copyfileobj(source, target)
    times = [c.at for c in eval_set.cases]
    span = max(times) - min(times) + timedelta(days=1)
    tsdb = workdir / "tsdb"
    create_blocks(plain, tsdb, span)
    plain.unlink()
    # a gauge holds over two missed scrapes at the set's interval (Prometheus' own default is 5 minutes)
    lookback = f"{max(15, round(2 * eval_set.scrape_interval_seconds))}s"
    with serve_prometheus(tsdb, workdir, lookback) as url:
        yield url


@contextmanager
def _recorded(eval_set: EvalSet) -> Iterator[tuple[str | None, str | None]]:
    """The set's logs on a Loki API and its spans on Tempo's, when it has them: (Loki URL, Tempo URL)."""
    telemetry = eval_set.manifest["telemetry"]
    if "logs" not in telemetry and "spans" not in telemetry:
        yield None, None
        return
    history = LogHistory()
    if "logs" in telemetry:
        history.add(LogRecord(ns / 1e9, service, line) for ns, service, line in read_rows(eval_set.file("logs")))
    spans = None
    if "spans" in telemetry:
        spans = SpanStore(
            Span(trace, span, parent, service, name, start / 1e9, (end - start) / 1e6)
            for trace, span, parent, service, _pod, name, start, end in read_rows(eval_set.file("spans"))
        )
    with HistoryServer(history, spans=spans) as server:
        yield (server.loki_url if "logs" in telemetry else None), (server.tempo_url if spans is not None else None)


# --- running and scoring ---------------------------------------------------------------------------------------


async def evaluate_dataset(
    path: Path, case_ids: list[str] | None = None, workdir: Path | None = None, *, database_url: str | None = None,
    on_case: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Serve the eval set, investigate each case (or the chosen ones) over the wire, in the database at
    `database_url` (else the configured one), and score the answers; `on_case` hears of each scored case."""
    from graph.context import Context
    from graph.summary import incident_report
    from service.alert_payloads import fingerprint_of
    from service.runs import IncidentRunner
    from state import Alert, TelemetrySpec
    from tools.database import open_database

    eval_set = load_eval_set(path)
    cases = eval_set.cases
    if case_ids:
        unknown = sorted(set(case_ids) - {c.id for c in cases})
        if unknown:
            raise DatasetError(f"no such case(s): {', '.join(unknown)}")
        cases = [c for c in cases if c.id in case_ids]
    began = time.monotonic()
    rows = []
    with (
        tempfile.TemporaryDirectory(prefix="dataset-eval-", dir=workdir) as tmp,
        serve_eval_set(eval_set, Path(tmp)) as backends,
    ):
        setup_seconds = time.monotonic() - began
        config = eval_set.file("config") if "config" in eval_set.manifest["telemetry"] else None
        context = backends.context(
            Context(notify_channels=(), llm_provider="offline"),
            telemetry_config=str(config) if config else None,
            window_seconds=eval_set.window_seconds,
            metrics_step_seconds=eval_set.metrics_step_seconds,
        )
        async with open_database(database_url) as db:
            runner = IncidentRunner(db, context)
            for case in cases:
                alert = Alert(
                    source="cli",  # as `investigate --service` raises it
                    alertname=case.alertname,
                    service=case.service,
                    starts_at=case.at,
                    fingerprint=fingerprint_of(case.alertname, case.service),
                    summary=f"{case.alertname} on {case.service}",
                )
                result = await runner.start(alert, TelemetrySpec(kind="live", end=case.at))
                row = score_answer(case, incident_report(result.values), result.seconds)
                parts = result.values.get("evidence_parts") or {}
                row["sources"] = {name: part.status for name, part in sorted(parts.items())}
                traces = parts.get("traces")
                row["traces_read"] = traces.traces.traces_read if traces and traces.traces else 0
                rows.append(row)
                if on_case is not None:
                    on_case(row)
    from evals.scoring import summarize_dataset

    scores = summarize_dataset(rows)
    scores["dataset"] = eval_set.manifest.get("name", str(path))
    scores["setup_seconds"] = round(setup_seconds, 1)
    scores["total_seconds"] = round(time.monotonic() - began, 1)
    return scores


def score_answer(case: EvalCase, report: dict[str, Any], seconds: float) -> dict[str, Any]:
    """One case's row: the answer, its correctness (evals/scoring.score_case) and the confidence it was given."""
    from evals.scoring import score_case

    ranked = [(h["service"], h["fault_type"]) for h in report["hypotheses"]]
    score = score_case(case.expected_fault, case.expected_service, bool(report["is_incident"]), ranked)
    root = report.get("root_cause") or {}
    return {
        "id": case.id,
        "source_fault": case.source_fault,
        "expected": [case.expected_service, case.expected_fault],
        "outcome": report.get("outcome") or ("incident" if report["is_incident"] else "not_an_incident"),
        "answer": [root.get("service"), root.get("fault_type")],
        "ranked": ranked[:3],
        "confidence": float(root.get("confidence") or 0.0),
        # a "none" hypothesis is the placeholder of a dismissed alert (the alerted service), not a ranked cause
        "ranked_top1_service": bool(ranked) and ranked[0][1] != "none" and ranked[0][0] == case.expected_service,
        "seconds": round(seconds, 3),
        "errors": [f"{e.get('source') or e.get('node')}: {e.get('message')}" for e in report.get("errors", [])],
        **score,
    }
