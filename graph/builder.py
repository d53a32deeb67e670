"""The incident graph: topology, routers and compilation."""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph

from graph.context import Context
from nodes.analyze_code import analyze_code
from nodes.approve import approve, route_after_approve
from nodes.brief import brief
from nodes.check_patch import check_patch
from nodes.collect import collect, route_collectors
from nodes.correlate import correlate
from nodes.create_pr import create_pr
from nodes.deploys import deploys
from nodes.detect import detect, route_after_detect
from nodes.fan_out import fan_out, route_branches
from nodes.ingest import ingest
from nodes.join import join, route_after_join
from nodes.logs import logs
from nodes.metrics import metrics
from nodes.notify import notify
from nodes.propose_fix import propose_fix
from nodes.rca import rca
from nodes.suggest import suggest
from nodes.traces import traces
from state import SOURCES, GraphInput, IncidentState

NODE_NAMES = (
    "ingest", "collect", *SOURCES, "correlate", "detect", "analyze_code", "fan_out", "rca", "suggest", "join",
    "propose_fix", "check_patch", "approve", "create_pr", "brief", "notify",
)


def build_graph(checkpointer=None, context_schema: type = Context, **compile_kwargs):
    """Compile the incident graph; pass a checkpointer to make runs durable and replayable.

    A run's input is the alert, its telemetry and (optionally) the incident id, nothing else of the state: no
    caller can hand the graph a decision, a patch or a repository. `context_schema` is what builds the run's
    Context from what a caller passes (service/studio.py: only what a LangGraph Server caller may choose)."""
    builder = StateGraph(IncidentState, input_schema=GraphInput, context_schema=context_schema)
    builder.add_node("ingest", ingest)
    builder.add_node("collect", collect)
    builder.add_node("logs", logs)
    builder.add_node("metrics", metrics)
    builder.add_node("traces", traces)
    builder.add_node("deploys", deploys)
    builder.add_node("correlate", correlate)
    builder.add_node("detect", detect)
    builder.add_node("analyze_code", analyze_code)
    builder.add_node("fan_out", fan_out)
    builder.add_node("rca", rca)
    builder.add_node("suggest", suggest)
    builder.add_node("join", join)
    builder.add_node("propose_fix", propose_fix)
    builder.add_node("check_patch", check_patch)
    builder.add_node("approve", approve)
    builder.add_node("create_pr", create_pr)
    builder.add_node("brief", brief)
    builder.add_node("notify", notify)

    builder.add_edge(START, "ingest")
    builder.add_edge("ingest", "collect")
    builder.add_conditional_edges("collect", route_collectors, list(SOURCES))
    builder.add_edge(list(SOURCES), "correlate")
    builder.add_edge("correlate", "detect")
    builder.add_conditional_edges("detect", route_after_detect)
    builder.add_edge("analyze_code", "fan_out")
    builder.add_conditional_edges("fan_out", route_branches, ["rca", "suggest"])
    builder.add_edge(["rca", "suggest"], "join")
    builder.add_conditional_edges("join", route_after_join)
    builder.add_edge("propose_fix", "check_patch")
    builder.add_edge("check_patch", "approve")
    builder.add_conditional_edges("approve", route_after_approve)
    builder.add_edge("create_pr", "brief")
    builder.add_edge("brief", "notify")
    builder.add_edge("notify", END)
    return builder.compile(checkpointer=checkpointer, name="incident-copilot", **compile_kwargs)


