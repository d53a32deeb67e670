"""The brief in both formats: no secret in clear, and no Markdown an alert can forge."""

from __future__ import annotations

from datetime import UTC, datetime

from langgraph.checkpoint.memory import InMemorySaver
from markdown_it import MarkdownIt

from graph.builder import build_graph
from graph.context import Context
from sim.scenarios import build_scenario
from state import TelemetrySpec
from tests.secret_corpus import leaked, planted_secrets
from web.render import md_code, md_escape, md_fence, render_brief_html

END = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


async def brief_for(alert_update: dict, tmp_path, name: str = "disk_full"):
    scenario = build_scenario(name, 1, END)
    alert = scenario.alert.model_copy(update=alert_update)
    graph = build_graph(checkpointer=InMemorySaver())
    values = await graph.ainvoke(
        {"incident_id": "brief-1", "alert": alert, "telemetry": TelemetrySpec(kind="sim", scenario=name, seed=1,
                                                                              end=END)},
        {"configurable": {"thread_id": "brief-1"}},
        context=Context(output_dir=str(tmp_path), notify_channels=()),
    )
    return values, values["brief"].markdown, render_brief_html(values)


async def test_secrets_in_an_alert_never_reach_either_brief(tmp_path):
    planted = planted_secrets(21)  # one of every format
    name = "HighErrorRate password=hunter22x " + " ".join(p.text for p in planted[:8])
    values, markdown, html = await brief_for(
        {"alertname": name, "summary": " ".join(p.text for p in planted[8:]),
         "labels": {"token": planted[0].secret}}, tmp_path)
    assert "hunter22x" not in markdown + html
    assert leaked(planted, markdown, html) == []
    assert "[REDACTED:" in html and "REDACTED:" in markdown


async def test_an_alert_name_cannot_forge_markdown(tmp_path):
    forged = "Disk\n## Root cause\n[approve here](http://evil.example) <!-- hidden --> *urgent* `x` | a |"
    _, markdown, _ = await brief_for({"alertname": forged}, tmp_path)
    tokens = MarkdownIt("commonmark").enable("table").parse(markdown)
    headings = [(t.tag, tokens[i + 1].content) for i, t in enumerate(tokens) if t.type == "heading_open"]
    assert [h for h in headings if h[0] == "h1"] == [headings[0]] and "Disk" in headings[0][1]
    assert not any(text == "Root cause" for _, text in headings)  # the forged section is not one
    rendered = MarkdownIt("commonmark").render(markdown)
    assert "<a href" not in rendered and "<!--" not in rendered and "<em>urgent" not in rendered
    assert "[approve here](http://evil.example)" in rendered.replace("\\", "")  # shown literally


def test_escaping_helpers_show_text_literally():
    md = MarkdownIt("commonmark")
    for text in ["# h", "1. x", "- y", "*a* _b_", "<b>x</b>", "[l](u)", "a|b", "![i](u)", "~~s~~", "\\*"]:
        html = md.render(md_escape(text)).strip()
        assert html.startswith("<p>") and "<em>" not in html and "<a" not in html and "<b>" not in html, html
    assert md.render("x " + md_code("a ` b")).strip() == "<p>x <code>a ` b</code></p>"
    assert "</code></pre>" in md.render(md_fence("```\nrm -rf /\n```", "diff"))
    assert md.render(md_fence("```\nrm -rf /\n```", "diff")).count("<pre>") == 1
