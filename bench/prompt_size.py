"""Prompt size per incident: input tokens the six reasoning nodes would send, with the real templates and views.

Usage (from the repository root):
    python -m bench.prompt_size [--seeds 0,1,2] [--scenarios disk_full,...] [--json]

Every scenario and seed runs the whole graph (approval gate off, so the code path reaches propose_fix and the
brief) with a chat model that records each rendered prompt (system + user message) and then fails, so the
deterministic answers flow on exactly as they do when a provider is down. Tokens are counted with OpenAI's
o200k_base encoding (bpe-openai, offline); Gemini's tokenizer differs by a few percent on such text. Reported:
median and maximum input tokens per incident, and per node.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
from datetime import UTC, datetime
from typing import Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langgraph.checkpoint.memory import InMemorySaver

from graph.builder import build_graph
from graph.context import Context
from sim.scenarios import SCENARIOS, build_scenario
from state import TelemetrySpec

END = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
NODES = ("detect", "analyze_code", "rca", "suggest", "propose_fix", "brief")
PHRASES = {"incident triage step": "detect", "senior engineer reviewing": "analyze_code",
           "root-cause analysis step": "rca", "mitigation step": "suggest", "pull request that reverts": "propose_fix",
           "opening of an incident brief": "brief"}


class RecordingModel(GenericFakeChatModel):
    """Records the prompts it is given, then fails like an unreachable provider."""

    prompts: list[tuple[str, str]] = []

    def bind_tools(self, tools: Any, **kwargs: Any) -> RecordingModel:
        return self

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        system = str(messages[0].content)
        node = next(n for phrase, n in PHRASES.items() if phrase in system)
        self.prompts.append((node, "\n".join(str(m.content) for m in messages)))
        raise ConnectionError("recording only")


async def measure(scenario: str, seed: int, count) -> dict[str, Any]:
    model = RecordingModel(messages=iter(()), prompts=[])
    context = Context(llm_provider="google", chat_models={"reasoning": model, "fast": model},
                      require_approval=False, notify_channels=(), token_budget=0, llm_max_attempts=1)
    alert = build_scenario(scenario, seed, END).alert
    await build_graph(checkpointer=InMemorySaver()).ainvoke(
        {"incident_id": f"b-{scenario}-{seed}", "alert": alert,
         "telemetry": TelemetrySpec(kind="sim", scenario=scenario, seed=seed, end=END)},
        {"configurable": {"thread_id": f"b-{scenario}-{seed}"}}, context=context)
    per_node: dict[str, int] = {}
    for node, text in model.prompts:
        per_node[node] = per_node.get(node, 0) + count(text)
    return {"scenario": scenario, "seed": seed, "calls": len(model.prompts), "total": sum(per_node.values()),
            "nodes": per_node}


async def run(scenarios: list[str], seeds: list[int]) -> dict[str, Any]:
    from bpe_openai import get_encoding

    encoding = get_encoding("o200k_base")
    rows = [await measure(s, seed, lambda t: len(encoding.encode(t))) for s in scenarios for seed in seeds]
    totals = [r["total"] for r in rows]
    by_node = {n: [r["nodes"][n] for r in rows if n in r["nodes"]] for n in NODES}
    return {
        "incidents": len(rows), "median_total": statistics.median(totals), "max_total": max(totals),
        "nodes": {n: {"median": statistics.median(v), "max": max(v), "incidents": len(v)} for n, v in by_node.items()
                  if v},
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args.scenarios.split(","), [int(s) for s in args.seeds.split(",")]))
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['incidents']} incidents: input tokens per incident median {result['median_total']:.0f}, "
          f"max {result['max_total']}")
    print("| node | median | max | incidents |\n|---|---|---|---|")
    for node, stats in result["nodes"].items():
        print(f"| {node} | {stats['median']:.0f} | {stats['max']} | {stats['incidents']} |")
    worst = max(result["rows"], key=lambda r: r["total"])
    print(f"largest: {worst['scenario']} seed {worst['seed']}: {worst['total']} tokens in {worst['calls']} calls")


if __name__ == "__main__":
    main()
