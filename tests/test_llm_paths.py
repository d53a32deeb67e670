"""Every LLM path with scripted fake models: accepted answers, rejected answers, failures, tokens."""

from __future__ import annotations

from datetime import UTC, datetime

from langgraph.checkpoint.memory import InMemorySaver

from graph.builder import build_graph
from graph.context import Context
from nodes.detect import DetectVerdict, merge_verdict
from sim.scenarios import build_scenario
from state import Detection, TelemetrySpec
from tests.fakes import ScriptedChatModel, tool_reply

END = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


async def run(name: str, seed: int, script: dict, tmp_path, **context):
    scenario = build_scenario(name, seed, END)
    model = ScriptedChatModel(script=script, calls=[])
    ctx = Context(llm_provider="google", chat_models={"reasoning": model, "fast": model},
                  output_dir=str(tmp_path), **context)
    graph = build_graph(checkpointer=InMemorySaver())
    values = await graph.ainvoke(
        {"incident_id": f"t-{name}-{seed}", "alert": scenario.alert,
         "telemetry": TelemetrySpec(kind="sim", scenario=name, seed=seed, end=END)},
        {"configurable": {"thread_id": f"t-{name}-{seed}"}}, context=ctx,
    )
    return scenario, values, model


async def test_model_answers_are_validated_against_the_evidence(tmp_path):
    script = {
        "detect": tool_reply("DetectVerdict", {"is_incident": True, "severity": "P1", "code_regression": True,
                                               "reasons": ["latency up"]}),
        "rca": tool_reply("RcaVerdict", {"service": "evil-service", "fault_type": "disk_full",
                                         "summary": "ignore the evidence", "confidence": 0.99}),
        "suggest": tool_reply("SuggestVerdict", {"suggestions": [
            {"kind": "capacity", "action": "Wipe the data directory", "risk": "low",
             "command": "rm -rf /var/lib/postgresql"},
            {"kind": "investigate", "action": "Check the heap dump", "risk": "low"}]}),
        "brief": tool_reply("BriefText", {"summary": "Memory grows until the service is killed."}),
    }
    scenario, values, model = await run("memory_leak", 3, script, tmp_path)
    root = values["root_cause"]
    assert (root.service, root.fault_type) == (scenario.root_service, "memory_leak")
    assert root.decided_by == "rules"  # a service without evidence is refused
    # no code deploy of the suspect exists, so the model cannot declare a code regression
    assert values["detection"].code_regression is False
    blocked = [s for s in values["suggestions"] if s.blocked_reason]
    assert [s.command for s in blocked] == ["rm -rf /var/lib/postgresql"] and blocked[0].risk == "high"
    assert any(s.action == "Check the heap dump" for s in values["suggestions"])
    assert values["brief"].summary == "Memory grows until the service is killed."
    assert set(values["tokens"]) == {"detect", "rca", "suggest", "brief"}
    assert sum(t.input for t in values["tokens"].values()) == 400
    assert values["errors"] == []


async def test_model_pick_among_top_candidates_is_taken(tmp_path):
    scenario = build_scenario("db_connection_exhaustion", 2, END)
    script = {
        "detect": tool_reply("DetectVerdict", {"is_incident": True, "severity": "P2", "code_regression": False}),
        "rca": tool_reply("RcaVerdict", {"service": scenario.root_service, "fault_type": "db_connection_exhaustion",
                                         "summary": "The pool of the proxy is pinned at its maximum.",
                                         "confidence": 0.9}),
        "suggest": tool_reply("SuggestVerdict", {"suggestions": []}),
        "brief": tool_reply("BriefText", {"summary": "Pool exhausted."}),
    }
    _, values, _ = await run("db_connection_exhaustion", 2, script, tmp_path)
    assert values["root_cause"].decided_by == "llm"
    assert values["root_cause"].summary == "The pool of the proxy is pinned at its maximum."
    assert values["detection"].decided_by == "llm"


async def test_failed_model_calls_fall_back_and_are_recorded(tmp_path):
    boom = RuntimeError("503 model overloaded")
    script = {"detect": boom, "rca": boom, "suggest": boom, "brief": boom, "analyze_code": boom,
              "propose_fix": boom}
    scenario, values, model = await run("deployment_regression", 1, script, tmp_path)
    assert values["root_cause"].service == scenario.root_service
    assert values["patch"] is not None and values["patch"].ready  # the deterministic revert is still proposed
    failed = {e.node for e in values["errors"] if e.source == "llm"}
    assert failed == {"detect", "analyze_code", "rca", "suggest", "propose_fix"}
    assert "503 model overloaded" in values["errors"][0].message


def test_merge_verdict_keeps_hard_evidence():
    rules = Detection(is_incident=True, severity="P2", suspect_commit=None)
    verdict = DetectVerdict(is_incident=False, severity="P4", code_regression=True)
    merged = merge_verdict(rules, verdict, top_confidence=0.9)
    assert merged.is_incident is True  # confident engine result is not overruled
    assert merged.severity == "P3"  # at most one level away
    assert merged.code_regression is False
    ambiguous = merge_verdict(rules, verdict, top_confidence=0.4)
    assert ambiguous.is_incident is False


async def test_an_unavailable_provider_is_recorded_and_the_rules_answer(tmp_path):
    scenario = build_scenario("disk_full", 1, END)
    graph = build_graph(checkpointer=InMemorySaver())
    values = await graph.ainvoke(
        {"incident_id": "t-provider", "alert": scenario.alert,
         "telemetry": TelemetrySpec(kind="sim", scenario="disk_full", seed=1, end=END)},
        {"configurable": {"thread_id": "t-provider"}},
        context=Context(llm_provider="openai", output_dir=str(tmp_path)),
    )
    assert (values["root_cause"].service, values["root_cause"].fault_type) == (scenario.root_service, "disk_full")
    assert {e.node for e in values["errors"]} >= {"detect", "rca", "suggest", "brief"}
    assert all("LLM unavailable" in e.message for e in values["errors"] if e.source == "llm")
