"""`incident-copilot eval --wire`: the eval suite through real backends, scored as evals/simulator.py scores it.

Every (scenario, seed) case gets its own time range (ends 2 h apart, so no series or rate window spans two cases).
All cases' metric histories go into one OpenMetrics file, backfilled with `promtool tsdb create-blocks-from
openmetrics` into one TSDB that one real Prometheus serves; all their logs are served by one Loki-API server
(sim/history.py). Each case's graph then runs on live telemetry (TelemetrySpec(kind="live", end=...)) with the
offline LLM, up to the approval gate. Their traces are served by Tempo's query API (sim/tempo.py) and read with
the connector's caps; deploys come only from app_build_info version changes, and `up` is the backfilled series.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from multiprocessing import get_context
from pathlib import Path
from typing import Any, TextIO

import httpx

from analysis.records import LogRecord, Span
from evals.scoring import aggregate, score_case
from evals.simulator import EVAL_END
from graph.context import Context
from graph.summary import incident_report
from service.runs import IncidentRunner
from sim.history import HistoryServer, LogHistory
from sim.tempo import SpanStore
from state import TelemetrySpec
from tools.database import open_database
from tools.net import free_port

SPACING = timedelta(hours=2)  # between two cases' ends: more than a case's 45 min of data and any lookback
LOOKBACK_DELTA = "15s"  # one scrape interval: a gauge holds over at most one missed scrape
READY_SECONDS = 60.0


class WireSetupError(RuntimeError):
    """promtool or Prometheus is missing or failed."""


@dataclass(frozen=True)
class WireCase:
    """One (scenario, seed) at its own alert time on the shared time axis."""

    scenario: str
    seed: int
    end: datetime


def plan_cases(scenarios: list[str], seeds: int, last_end: datetime = EVAL_END) -> list[WireCase]:
    """Every scenario x seed, in order, the last one ending at `last_end` and each one SPACING before the next."""
    pairs = [(name, seed) for name in scenarios for seed in range(seeds)]
    return [
        WireCase(name, seed, last_end - (len(pairs) - 1 - i) * SPACING) for i, (name, seed) in enumerate(pairs)
    ]


# --- the recorded telemetry --------------------------------------------------------------------------------


def _export_case(case: WireCase, directory: Path) -> tuple[list[LogRecord], list[Span]]:
    """Write the case's OpenMetrics sample lines into one file per metric family under `directory`; return
    its logs and spans. Runs in a worker process."""
    from sim.export import openmetrics
    from sim.source import sim_data

    data = sim_data(case.scenario, case.seed, case.end)
    directory.mkdir(parents=True)
    handles: dict[str, TextIO] = {}
    try:
        current = None
        for line in openmetrics(data):
            if line.startswith("# TYPE "):
                family = line.split()[2]
                current = handles[family] = (directory / family).open("w")
            elif not line.startswith("#") and current is not None:
                current.write(line + "\n")
    finally:
        for handle in handles.values():
            handle.close()
    return data.logs, data.spans


def record_history(
    cases: list[WireCase], workdir: Path, workers: int | None = None
) -> tuple[Path, LogHistory, SpanStore]:
    """Generate every case (in time order): one OpenMetrics file of all their metrics (each family's samples
    together, each series' samples in time order), a LogHistory of all their logs and a SpanStore of their
    traces."""
    from sim.fleet import FAMILIES

    parts = workdir / "parts"
    history, spans = LogHistory(), SpanStore()
    # fork: the workers need nothing but the simulator, and fork does not re-run the caller's __main__
    workers = min(len(cases), workers or os.cpu_count() or 1)
    with ProcessPoolExecutor(workers, mp_context=get_context("fork")) as pool:
        futures = [pool.submit(_export_case, case, parts / str(i)) for i, case in enumerate(cases)]
        for future in futures:
            logs, case_spans = future.result()
            history.add(logs)
            spans.add(case_spans)
    out = workdir / "history.om"
    with out.open("w") as handle:
        for family, (kind, text) in FAMILIES.items():
            handle.write(f"# TYPE {family} {kind}\n# HELP {family} {text}\n")
            for i in range(len(cases)):
                part = parts / str(i) / family
                if part.exists():
                    with part.open() as lines:
                        shutil.copyfileobj(lines, handle)
        handle.write("# EOF\n")
    shutil.rmtree(parts)
    return out, history, spans


def create_blocks(openmetrics_file: Path, tsdb: Path, span: timedelta) -> None:
    """Backfill the TSDB with promtool; blocks as long as the whole span (promtool reads the input once per
    block range, so 2 h blocks over days of cases would re-read it hundreds of times)."""
    hours = math.ceil(span.total_seconds() / 3600) + 2
    command = [
        _tool("promtool"),
        "tsdb",
        "create-blocks-from",
        "openmetrics",
        f"--max-block-duration={hours}h",
        "--quiet",
        str(openmetrics_file),
        str(tsdb),
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise WireSetupError(f"promtool failed ({done.returncode}): {done.stderr.strip()[-2000:]}")


@contextmanager
def serve_prometheus(tsdb: Path, workdir: Path, lookback_delta: str = LOOKBACK_DELTA) -> Iterator[str]:
    """A real Prometheus on 127.0.0.1 over the backfilled TSDB (no scrape targets), until exit; yields its URL."""
    config = workdir / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 15s\n")
    port = free_port()
    log = (workdir / "prometheus.log").open("w")
    process = subprocess.Popen(
        [
            _tool("prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={tsdb}",
            "--storage.tsdb.retention.time=100y",
            f"--query.lookback-delta={lookback_delta}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(process, f"{url}/-/ready", workdir / "prometheus.log")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _wait_ready(process: subprocess.Popen, ready_url: str, log: Path) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise WireSetupError(f"prometheus exited ({process.returncode}): {log.read_text()[-2000:]}")
        try:
            if httpx.get(ready_url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise WireSetupError(f"prometheus not ready after {READY_SECONDS:.0f} s: {log.read_text()[-2000:]}")


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise WireSetupError(f"{name} not found: install Prometheus (Debian package prometheus)")
    return path


# --- runs ----------------------------------------------------------------------------------------------------


async def run_case(runner: IncidentRunner, scenario, telemetry: TelemetrySpec) -> dict[str, Any]:
    """Run one scenario's alert up to the approval gate on `telemetry` and score it (evals/scoring.py): the
    score_case keys, the verdict, the ranking and the run's seconds."""
    result = await runner.start(scenario.alert, telemetry)
    report = incident_report(result.values)
    ranked = [(h["service"], h["fault_type"]) for h in report["hypotheses"]]
    score = score_case(scenario.fault_type, scenario.root_service, report["is_incident"], ranked)
    confidence = float(report["root_cause"]["confidence"]) if report["root_cause"] else 0.0
    return {"seconds": result.seconds, "is_incident": report["is_incident"], "ranked": ranked,
            "confidence": confidence, **score}


@dataclass(frozen=True)
class Backends:
    """Where recorded telemetry is served (None: that kind is not served)."""

    prometheus_url: str | None
    loki_url: str | None
    tempo_url: str | None

    def context(self, base: Context, **settings: Any) -> Context:
        """`base` reading these backends (no credentials, no other trace backend), with further settings."""
        return dataclasses.replace(
            base, require_approval=True, loki_url=self.loki_url, loki_auth=None, prometheus_url=self.prometheus_url,
            prometheus_auth=None, tempo_url=self.tempo_url, tempo_auth=None, jaeger_url=None, jaeger_auth=None,
            **settings,
        )


@contextmanager
def wire_backends(cases: list[WireCase], workdir: Path) -> Iterator[Backends]:
    """The cases' telemetry on real backends: a backfilled Prometheus, the Loki API and Tempo's API."""
    openmetrics_file, history, spans = record_history(cases, workdir)
    tsdb = workdir / "tsdb"
    create_blocks(openmetrics_file, tsdb, cases[-1].end - cases[0].end + SPACING)
    openmetrics_file.unlink()
    with serve_prometheus(tsdb, workdir) as prometheus_url, HistoryServer(history, spans=spans) as recorded:
        yield Backends(prometheus_url, recorded.loki_url, recorded.tempo_url)


async def evaluate_wire(
    seeds: int, scenarios: list[str] | None = None, workdir: Path | None = None, *, database_url: str | None = None,
    on_case: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """evaluate_graph's table with every case read over the wire (Prometheus backfill, Loki and Tempo APIs); also
    `setup_seconds` (generation, backfill, start) and `cases_detail` (per case: verdict, top-3, score)."""
    from sim.scenarios import SCENARIOS, build_scenario

    cases = plan_cases(list(scenarios or SCENARIOS), seeds)
    began = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="wire-eval-", dir=workdir) as tmp,
        wire_backends(cases, Path(tmp)) as backends,
    ):
        setup_seconds = time.monotonic() - began
        context = backends.context(Context(notify_channels=(), llm_provider="offline"), telemetry_config=None)
        rows = []
        async with open_database(database_url) as db:
            runner = IncidentRunner(db, context)
            for case in cases:
                scenario = build_scenario(case.scenario, case.seed, case.end)
                row = await run_case(runner, scenario, TelemetrySpec(kind="live", end=case.end))
                rows.append({"scenario": case.scenario, "seed": case.seed, **row})
                if on_case is not None:
                    on_case(rows[-1])
    scores = aggregate(rows)
    scores["setup_seconds"] = round(setup_seconds, 1)
    scores["total_seconds"] = round(time.monotonic() - began, 1)
    scores["cases_detail"] = case_details(rows)
    return scores


def case_details(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per case: scenario, seed, verdict, confidence, the top three (service, fault) and the score; no timings."""
    return [{k: (v[:3] if k == "ranked" else v) for k, v in row.items() if k != "seconds"} for row in rows]
