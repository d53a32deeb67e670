"""Team runbooks: parsing, matching by alert name, service and fault type, and their steps in the suggestions."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from graph.builder import build_graph
from graph.context import Context
from sim.scenarios import build_scenario
from state import Alert, RootCause, TelemetrySpec
from tools.database import checkpoint_serializer
from tools.runbooks import RunbookError, alert_runbook, load_runbooks, match_runbooks, parse_runbook
from web.view import incident_page

END = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)

CATALOG_DEPLOYS = """---
title: Catalog deploys gone wrong
services: [catalog]
fault_types: [deployment_regression]
---
# Catalog

Some words before the steps.

## Steps
1. Check the catalog deploy dashboard for the new version [risk: low]
2. Drain the bad pods:
   `kubectl -n shop delete pod -l app=catalog,version=new`
3. Clear the local cache the hard way: `rm -rf /var/lib/catalog` [risk: low]

## Afterwards
1. Not a step: a later list
"""
CATALOG_MEMORY = """---
title: Catalog memory
services: [catalog]
fault_types: [memory_leak]
---
1. Restart catalog: `kubectl rollout restart deployment/catalog`
"""


def alert(name: str = "HighErrorRate", service: str = "gateway", **annotations: str) -> Alert:
    return Alert(source="alertmanager", alertname=name, service=service, starts_at=END, fingerprint="f",
                 annotations=annotations)


def cause(service: str, fault: str) -> RootCause:
    return RootCause(service=service, fault_type=fault, summary="", confidence=0.9)


def test_front_matter_and_steps_are_read():
    runbook = parse_runbook("catalog.md", CATALOG_DEPLOYS)
    assert runbook.title == "Catalog deploys gone wrong"
    assert runbook.services == {"catalog"} and runbook.fault_types == {"deployment_regression"}
    steps = runbook.steps
    assert [s.action for s in steps] == [
        "Check the catalog deploy dashboard for the new version", "Drain the bad pods",
        "Clear the local cache the hard way"]
    assert [s.risk for s in steps] == ["low", "medium", "low"]  # untagged steps are not assumed safe
    assert steps[1].command == "kubectl -n shop delete pod -l app=catalog,version=new"
    assert {s.source for s in steps} == {"runbook"}


@pytest.mark.parametrize(("text", "problem"), [
    ("# no front matter\n1. step\n", "no front matter"),
    ("---\ntitle: x\n---\n1. step\n", "would match every incident"),
    ("---\nfault_types: [memroy_leak]\n---\n", "unknown fault type 'memroy_leak'"),
    ("---\nservice: [catalog]\n---\n", "unknown front matter key 'service'"),
    ("---\nservices: catalog: x\n---\n", "not valid YAML"),
    ("---\nservices: [1, 2]\n---\n", "must be a list of names"),
])
def test_bad_runbooks_are_refused_with_the_reason(text, problem):
    with pytest.raises(RunbookError, match=problem):
        parse_runbook("bad.md", text)


def test_a_folder_loads_what_it_can_and_names_what_it_cannot(tmp_path):
    (tmp_path / "team").mkdir()
    (tmp_path / "team" / "catalog.md").write_text(CATALOG_DEPLOYS)
    (tmp_path / "broken.md").write_text("no front matter")
    (tmp_path / "notes.txt").write_text("not a runbook")
    runbooks, problems = load_runbooks(tmp_path, base_url="https://git.example/runbooks/")
    assert [r.name for r in runbooks] == ["team/catalog.md"]
    assert runbooks[0].url == "https://git.example/runbooks/team/catalog.md"
    assert problems == ["broken.md: no front matter (a --- block with services, fault_types or alertnames)"]
    assert load_runbooks(tmp_path / "missing")[1] == [f"runbooks folder {tmp_path / 'missing'} does not exist"]


def test_matching_needs_every_named_criterion_and_ranks_the_specific_first():
    by_fault = parse_runbook("any-deploy.md", "---\nfault_types: [deployment_regression]\n---\n1. x\n")
    by_alert = parse_runbook("alert.md", "---\nalertnames: [HighErrorRate]\nservices: [catalog]\n"
                                         "fault_types: [deployment_regression]\n---\n1. x\n")
    catalog = parse_runbook("catalog.md", CATALOG_DEPLOYS)
    memory = parse_runbook("memory.md", CATALOG_MEMORY)
    found = match_runbooks([by_fault, memory, catalog, by_alert], alert(), cause("catalog", "deployment_regression"))
    assert [(r.name, met) for r, met in found] == [
        ("alert.md", ["alertname HighErrorRate", "service catalog", "fault type deployment_regression"]),
        ("catalog.md", ["service catalog", "fault type deployment_regression"]),
        ("any-deploy.md", ["fault type deployment_regression"]),
    ]
    # the same service with another fault, or the same fault in another service: no match
    assert match_runbooks([catalog], alert(), cause("catalog", "memory_leak")) == []
    assert match_runbooks([catalog], alert(), cause("checkout", "deployment_regression")) == []
    assert match_runbooks([by_alert], alert("HighLatency"), cause("catalog", "deployment_regression")) == []


def test_the_alerts_runbook_url_is_linked_when_it_is_a_web_link():
    assert alert_runbook(alert(runbook_url="https://wiki.example/rb")).url == "https://wiki.example/rb"
    assert alert_runbook(alert(runbook_url="javascript:alert(1)")) is None
    assert alert_runbook(alert()) is None


async def test_a_matching_runbook_feeds_the_suggestions_and_the_card(tmp_path):
    """Two runbooks for the service at fault; only the one for this fault type applies."""
    folder = tmp_path / "runbooks"
    folder.mkdir()
    (folder / "catalog-deploys.md").write_text(CATALOG_DEPLOYS)
    (folder / "catalog-memory.md").write_text(CATALOG_MEMORY)
    scenario = build_scenario("deployment_regression", 1, END)
    assert scenario.root_service == "catalog"
    context = Context(runbooks_dir=str(folder), notify_channels=(), output_dir=str(tmp_path))
    graph = build_graph(checkpointer=InMemorySaver(serde=checkpoint_serializer()))
    values = await graph.ainvoke(
        {"incident_id": "t-runbooks", "alert": scenario.alert,
         "telemetry": TelemetrySpec(kind="sim", scenario=scenario.name, seed=1, end=END)},
        {"configurable": {"thread_id": "t-runbooks"}}, context=context,
    )
    assert [(r.name, r.matched_on) for r in values["runbooks"]] == [
        ("catalog-deploys.md", ["service catalog", "fault type deployment_regression"])]
    suggestions = values["suggestions"]
    # the engine's rollback stays first; the runbook's steps follow, ranked, its destructive command blocked
    assert suggestions[0].action.startswith("Roll back catalog") and suggestions[0].source == "engine"
    from_runbook = {s.action: s for s in suggestions if s.source == "runbook"}
    assert set(from_runbook) == {"Check the catalog deploy dashboard for the new version", "Drain the bad pods",
                                 "Clear the local cache the hard way"}
    assert from_runbook["Clear the local cache the hard way"].blocked_reason
    assert from_runbook["Clear the local cache the hard way"].risk == "high"
    assert suggestions[-1].blocked_reason, "a blocked command ranks last"
    assert not any("Restart catalog" in s.action for s in suggestions)
    card = incident_page(values, context).card
    assert [link.label for link in card.runbooks] == [
        "Catalog deploys gone wrong (matched on service catalog, fault type deployment_regression)"]
    assert card.runbooks[0].url == "/ui/runbooks/catalog-deploys.md"
    assert all(not a.blocked_reason for a in card.actions)


def test_unreadable_runbooks_are_reported_not_fatal(tmp_path):
    (tmp_path / "bad.md").write_text("---\nfault_types: [nope]\n---\n")
    runbooks, problems = load_runbooks(tmp_path)
    assert runbooks == [] and "unknown fault type 'nope'" in problems[0]


def test_the_sim_fleets_runbooks_parse():
    runbooks, problems = load_runbooks(Path(__file__).resolve().parent.parent / "sim" / "runbooks")
    assert problems == [] and len(runbooks) >= 3
