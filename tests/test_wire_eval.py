"""The eval suite through the wire (backfilled real Prometheus + Loki API over recorded logs) gives the same
answers as in process."""

from __future__ import annotations

import os
import shutil
from datetime import timedelta

import httpx
import pytest

from analysis.records import LogRecord
from evals.wire import SPACING, evaluate_wire, plan_cases, run_case
from graph.context import Context
from service.runs import IncidentRunner
from sim.history import HistoryServer, LogHistory
from sim.scenarios import build_scenario
from sim.source import SimTelemetry, sim_data
from state import TelemetrySpec
from tools.database import open_database
from tools.live import LiveTelemetry

# a config change seen only in logs, a partitioned root whose /metrics does not answer, a blip that is no incident
SCENARIOS = ["config_error", "network_partition", "false_alarm"]
# the hard suite: log levels only in Loki's stream labels, ratios of a few whole requests, a blip among bursts
HARD = ["hard_config_error_low_traffic", "hard_false_alarm_bursty_low_traffic"]


def _require_prometheus() -> None:
    if not (shutil.which("promtool") and shutil.which("prometheus")):
        if os.environ.get("CI") == "true":
            pytest.fail("promtool and prometheus are required under CI (Debian package prometheus)")
        pytest.skip("promtool/prometheus not installed")


def test_plan_gives_each_case_its_own_time_range() -> None:
    cases = plan_cases(["memory_leak", "disk_full"], 2)
    assert [(c.scenario, c.seed) for c in cases] == [("memory_leak", 0), ("memory_leak", 1), ("disk_full", 0),
                                                     ("disk_full", 1)]
    assert [b.end - a.end for a, b in zip(cases, cases[1:], strict=False)] == [SPACING] * 3


async def test_recorded_logs_over_the_loki_api_are_the_in_process_logs() -> None:
    cases = plan_cases(["config_error"], 2)
    history = LogHistory()
    for case in reversed(cases):  # out of order on purpose: the history keeps time order
        history.add(sim_data(case.scenario, case.seed, case.end).logs)
    case = cases[1]
    spec = TelemetrySpec(kind="sim", scenario=case.scenario, seed=case.seed, end=case.end)
    local = SimTelemetry(spec)
    services = ["cart", "checkout", "inventory"]
    start = case.end - timedelta(minutes=45)
    expected = [r async for r in local.logs(services, start, case.end)]
    with HistoryServer(history) as loki:
        live = LiveTelemetry(Context(loki_url=loki.loki_url))
        received = [r async for r in live.logs(services, start, case.end)]
    assert len(received) > 5000  # more than one page
    assert [(r.service, r.line) for r in received] == [(r.service, r.line) for r in expected]
    assert max(abs(a.ts - b.ts) for a, b in zip(received, expected, strict=True)) < 1e-6  # ns on the wire
    assert live.log_stats.pages >= 2 and not live.log_stats.truncated


async def test_stream_labels_over_the_loki_api_are_the_in_process_ones() -> None:
    case = plan_cases(["hard_config_error_low_traffic"], 2)[1]
    logs = sim_data(case.scenario, case.seed, case.end).logs
    services = sorted({r.service for r in logs if r.labels})  # bare lines: the level is only Loki's detected_level
    history = LogHistory()
    history.add(logs)
    history.add([LogRecord(case.end.timestamp() - 60, "frontend", "a service the simulator does not run")])
    start = case.end - timedelta(minutes=45)
    with HistoryServer(history) as loki:
        live = LiveTelemetry(Context(loki_url=loki.loki_url))
        received = [r async for r in live.logs([*services, "frontend"], start, case.end)]
        errors = httpx.get(f"{loki.loki_url}/loki/api/v1/query_range", params={
            "query": f'{{service_name="{services[0]}", detected_level="error"}}', "limit": "5000",
            "start": str(start.timestamp()), "end": str(case.end.timestamp())}).json()["data"]["result"]
    expected = [(r.service, r.line, {"service_name": r.service, **(r.labels or {})})
                for r in logs if r.service in services]
    assert [(r.service, r.line, dict(r.labels or {})) for r in received if r.service != "frontend"] == expected
    assert [r.line for r in received if r.service == "frontend"] == ["a service the simulator does not run"]
    # one stream per label set, selectable by any of its labels
    assert [e["stream"] for e in errors] == [{"service_name": services[0], "detected_level": "error"}]
    assert len(errors[0]["values"]) == sum(1 for service, _, labels in expected
                                           if service == services[0] and labels.get("detected_level") == "error")


async def test_wire_eval_answers_as_in_process(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _require_prometheus()
    monkeypatch.setenv("DATABASE_URL", database_url)
    for name in ("LOKI_URL", "PROMETHEUS_URL", "TELEMETRY_CONFIG", "LLM_PROVIDER", "GOOGLE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    scores = await evaluate_wire(1, SCENARIOS + HARD)
    wire = {(c["scenario"], c["seed"]): c for c in scores["cases_detail"]}
    assert scores["cases"] == len(SCENARIOS + HARD) and scores["setup_seconds"] > 0

    async with open_database(database_url) as db:
        runner = IncidentRunner(db, Context(notify_channels=(), llm_provider="offline"))
        for case in plan_cases(SCENARIOS + HARD, 1):
            scenario = build_scenario(case.scenario, case.seed, case.end)
            spec = TelemetrySpec(kind="sim", scenario=case.scenario, seed=case.seed, end=case.end)
            local = await run_case(runner, scenario, spec)
            remote = wire[(case.scenario, case.seed)]
            assert local["top1_service"] and local["top1_fault"], case
            assert (remote["is_incident"], remote["ranked"][0]) == (local["is_incident"], local["ranked"][0]), case
    assert scores["top1_service"] == scores["top1_fault"] == scores["false_alarms_ok"] == 1.0
