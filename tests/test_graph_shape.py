"""The graph's shape is pinned by snapshots; routers are checked on their own."""

from __future__ import annotations

import json

import pytest

from graph.builder import NODE_NAMES, build_graph


@pytest.fixture(scope="module")
def drawable():
    return build_graph().get_graph()


def test_mermaid_snapshot(drawable, snapshot):
    assert drawable.draw_mermaid(with_styles=False) == snapshot


def test_json_snapshot(drawable, snapshot):
    assert json.dumps(drawable.to_json(), indent=1, sort_keys=True, default=str) == snapshot


def test_every_node_is_in_the_graph(drawable):
    assert set(NODE_NAMES) <= set(drawable.nodes)


def test_conditional_edges_of_the_guard(drawable):
    edges = {(e.source, e.target, e.conditional) for e in drawable.edges}
    for target in ("brief", "analyze_code", "fan_out"):
        assert ("detect", target, True) in edges
    for target in ("rca", "suggest"):
        assert ("fan_out", target, True) in edges
    for source in ("logs", "metrics", "traces", "deploys"):
        assert ("collect", source, True) in edges
    assert ("approve", "create_pr", True) in edges
    assert ("join", "propose_fix", True) in edges
