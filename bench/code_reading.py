"""Code reading over MCP on the simulated regression's repository: what one run's analysis costs, and what one
session per run saves over a server process per tool call.

    python -m bench.code_reading --runs 5 [--json]

Each run opens the MCP session (mcp-server-git and tools.mcp_repo_server over stdio), ranks the deployed commits
and reads the top one (nodes.analyze_code.locate_change) on the deployment_regression scenario (seed 1). Reported:
medians of the session start and of the analysis with the session open, the tool calls per run, and the ratio of
a process per call (calls x session start + the analysis) to one session per run (session start + the analysis).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from datetime import UTC, datetime, timedelta

from nodes.analyze_code import locate_change
from sim.sample_repo import ensure_sample_repo
from sim.scenarios import build_scenario
from sim.source import SimTelemetry
from state import CodeRepository, Detection, Evidence, TelemetrySpec
from tools.mcp_code import open_code_reader

END = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


async def evidence_of_the_regression() -> tuple[Evidence, Detection, CodeRepository]:
    """The regression's evidence as the collectors would summarise it (deploys, stack frames, templates)."""
    from analysis.deploys import summarize_deploys
    from analysis.logs import summarize_logs
    from state import Window

    scenario = build_scenario("deployment_regression", 1, END)
    source = SimTelemetry(TelemetrySpec(kind="sim", scenario="deployment_regression", seed=1, end=END))
    window = Window(start=END - timedelta(minutes=15), end=END, baseline_start=END - timedelta(minutes=45))
    root = scenario.root_service
    records = [r async for r in source.logs([root], window.baseline_start, window.end)]
    logs = summarize_logs(records, window)
    deploys = summarize_deploys(await source.deploys([root], window.baseline_start, window.end), window).deploys
    evidence = Evidence(alerted_service=scenario.alert.service, window=window, services=[root], dependencies=[],
                        logs=logs, deploys=deploys)
    repository = CodeRepository(service=root, checkout=str(ensure_sample_repo(root).path), path=f"services/{root}")
    commit = next(d.commit for d in deploys if d.service == root and d.commit)
    detection = Detection(is_incident=True, severity="P1", code_regression=True, suspect_service=root,
                          suspect_commit=commit, repository=repository)
    return evidence, detection, repository


async def measure(runs: int) -> dict:
    evidence, detection, repository = await evidence_of_the_regression()
    opens, analyses, calls, top = [], [], [], ""
    for _ in range(runs):
        began = time.perf_counter()
        async with open_code_reader(repository) as reader:
            opened = time.perf_counter()
            findings = await locate_change(reader, detection, evidence)
            done = time.perf_counter()
            calls.append(reader.calls)
        opens.append(opened - began)
        analyses.append(done - opened)
        top = findings.commit
    start, analysis, per_run = statistics.median(opens), statistics.median(analyses), statistics.median(calls)
    return {
        "runs": runs, "session_start_seconds": round(start, 3), "analysis_seconds": round(analysis, 3),
        "tool_calls_per_run": per_run, "suspects": len(findings.suspects), "top_is_the_bad_commit":
        top == detection.suspect_commit,
        "process_per_call_over_one_session": round((per_run * start + analysis) / (start + analysis), 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs to take medians over (default 5)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    result = asyncio.run(measure(args.runs))
    if args.json:
        print(json.dumps(result))
        return
    print(f"session start (2 MCP servers over stdio): {result['session_start_seconds']:.2f} s (median of "
          f"{result['runs']})")
    print(f"analysis with the session open: {result['analysis_seconds']:.2f} s, {result['tool_calls_per_run']} "
          f"tool calls, {result['suspects']} deployed commits ranked")
    print(f"a server process per call would take {result['process_per_call_over_one_session']}x as long")


if __name__ == "__main__":
    main()
