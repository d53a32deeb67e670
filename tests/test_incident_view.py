"""The incident as people read it: the card, the sparklines, the deep links, the diff, the brief and its mail form."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

from langgraph.checkpoint.memory import InMemorySaver

from graph.builder import build_graph
from graph.context import Context
from nodes.notify import write_brief
from sim.scenarios import build_scenario
from state import Brief, ErrorRecord, MetricChart, SourceEvidence, TelemetrySpec
from tools.database import checkpoint_serializer
from web.charts import geometry, sparkline_png, sparkline_svg
from web.render import render_brief_email, render_brief_html, render_brief_markdown
from web.view import diff_lines, format_value, incident_page

END = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
LINKS = {"grafana_url": "https://grafana.example", "grafana_prometheus_uid": "prom", "grafana_loki_uid": "loki",
         "prometheus_url": "http://prometheus.example:9090", "loki_url": "http://loki.example:3100"}
PNG = b"\x89PNG\r\n\x1a\n"


async def run(name: str, seed: int, **context) -> dict:
    """The state of a simulated incident after the graph ran (to the gate, or to the end)."""
    scenario = build_scenario(name, seed, END)
    graph = build_graph(checkpointer=InMemorySaver(serde=checkpoint_serializer()))
    await graph.ainvoke(
        {"incident_id": f"t-{name}", "alert": scenario.alert,
         "telemetry": TelemetrySpec(kind="sim", scenario=name, seed=seed, end=END)},
        {"configurable": {"thread_id": f"t-{name}"}}, context=Context(notify_channels=(), **context),
    )
    return dict((await graph.aget_state({"configurable": {"thread_id": f"t-{name}"}})).values)


async def test_the_card_of_a_deployment_regression_says_what_is_broken_why_and_what_to_do():
    state = await run("deployment_regression", 1)
    page = incident_page(state, Context(**LINKS))
    card = page.card
    assert (card.outcome, card.verdict, card.severity) == ("incident", "P1 incident", "P1")
    alerted = state["alert"].service
    assert card.broken.startswith(f"{alerted} fails ") and "of requests (normally " in card.broken
    assert any(line.startswith("calls to catalog fail from ") for line in card.impact), card.impact
    assert (card.cause.fault, card.cause.service) == ("deployment regression", "catalog")
    assert card.cause.proof.startswith("deploy catalog 1.8.0") and card.cause.confidence > 0.5
    assert card.actions[0].text == "Roll back catalog to 1.7.0"
    assert card.actions[0].command == "kubectl rollout undo deployment/catalog"
    # charts: the root cause's service first, each with its onset
    assert page.charts[0].title == "error rate of catalog" and page.charts[0].onset
    assert all(c.onset and 'class="onset"' in c.svg for c in page.charts)
    # the gate's diff, classified for colour
    kinds = {line.kind for line in page.gate.diff}
    assert {"meta", "hunk", "add", "del", "ctx"} <= kinds and page.gate.open is False
    assert [t.service for t in page.log_templates][:1] == ["catalog"] and page.log_templates[0].incident_count > 100


async def test_the_card_of_a_memory_leak_leads_with_its_memory_chart():
    state = await run("memory_leak", 1)
    page = incident_page(state)
    assert page.card.cause.fault == "memory leak"
    assert page.charts[0].title == f"memory (RSS) of {page.card.cause.service}"
    assert page.charts[0].current.endswith("MiB") and page.charts[0].links == []  # no link settings, no links


def test_values_read_in_their_units():
    assert format_value("error_ratio", 0.2324) == "23.2%"
    assert format_value("latency_p99", 0.2412) == "241 ms" and format_value("latency_p99", 2.5) == "2.5 s"
    assert format_value("memory_bytes", 474088404) == "452 MiB"
    assert format_value("request_rate", 12.345) == "12.3/s" and format_value("cpu_usage", 0.37) == "0.37 cores"


def chart(values: list[float | None]) -> MetricChart:
    return MetricChart(service="api", signal="error_ratio", start=END - timedelta(minutes=45), step_seconds=60,
                       values=values, baseline=0.01, band_low=-0.02, band_high=0.04)


def test_a_sparkline_marks_the_band_the_window_and_the_onset():
    values = [0.01] * 40 + [None] + [0.5] * 5
    c = chart(values)
    window_start, onset = END - timedelta(minutes=15), END - timedelta(minutes=5)
    g = geometry(c, window_start, onset)
    assert len(g.segments) == 2, "a gap in the data splits the line"
    assert g.window_x < g.onset_x  # the onset lies inside the incident window
    assert g.band[0] <= g.baseline_y <= g.band[1], "the baseline lies inside its band"
    assert g.band[1] == 64 - 3, "the band is cut at zero (the bottom) for a quantity that never is negative"
    svg = sparkline_svg(c, window_start, onset, 'error rate <of> "api"')
    for part in ('class="band"', 'class="window"', 'class="series"', 'class="onset"', 'role="img"'):
        assert part in svg
    assert "&lt;of&gt;" in svg and "<of>" not in svg, "the label is escaped"
    assert 'class="onset"' not in sparkline_svg(c, window_start, None, "no onset")
    png = sparkline_png(c, window_start, onset)
    assert png.startswith(PNG) and len(png) > 500


def test_deep_links_open_the_signals_query_over_the_incident():
    from state import MetricSignal, Window
    from web.view import log_links, metric_links

    window = Window(start=END - timedelta(minutes=15), end=END, baseline_start=END - timedelta(minutes=45))
    signal = MetricSignal(service="catalog", signal="error_ratio", baseline=0.001, current=0.3, peak=0.4, score=30,
                          direction="up", onset=END - timedelta(minutes=5))
    grafana, prometheus = metric_links(signal, window, Context(**LINKS))
    assert grafana.url.startswith("https://grafana.example/explore?")
    pane = json.loads(parse_qs(urlsplit(grafana.url).query)["panes"][0])["ic"]
    assert pane["datasource"] == "prom" and 'service=~"catalog"' in pane["queries"][0]["expr"]
    assert pane["range"] == {"from": str(int(window.baseline_start.timestamp() * 1000)),
                             "to": str(int(END.timestamp() * 1000))}
    query = parse_qs(urlsplit(prometheus.url).query)
    assert prometheus.url.startswith("http://prometheus.example:9090/graph?")
    assert 'code=~"5.."' in query["g0.expr"][0] and query["g0.range_input"] == ["2700s"]
    assert metric_links(signal, window, Context()) == []
    grafana, loki = log_links("catalog", "[http] unhandled exception in <*> <*> KeyError: 'currency'", window,
                              Context(**LINKS))
    expr = json.loads(parse_qs(urlsplit(grafana.url).query)["panes"][0])["ic"]["queries"][0]["expr"]
    assert expr == '{service_name=~"catalog"} |= "[http] unhandled exception in"'
    assert parse_qs(urlsplit(loki.url).query)["query"] == [expr]


async def test_the_alerts_own_links_are_kept_and_only_web_links():
    state = await run("cpu_saturation", 1)
    raw = {"generatorURL": "http://prom.example/graph?g0.expr=x", "silenceURL": "javascript:alert(1)",
           "dashboardURL": "https://grafana.example/d/abc"}
    state["alert"] = state["alert"].model_copy(update={"raw": raw, "annotations": {"runbook_url": "data:text/html,x"}})
    page = incident_page(state)
    assert [(link.label, link.url) for link in page.alert_links] == [
        ("Alert source", "http://prom.example/graph?g0.expr=x"), ("Dashboard", "https://grafana.example/d/abc")]
    assert all(not link.url.startswith("data:") for link in page.card.runbooks)


def test_diff_lines_are_classified_for_colour():
    diff = "diff --git a/x b/x\nindex 1..2\n--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n ctx\n-old\n+new\n"
    assert [line.kind for line in diff_lines(diff)] == ["meta", "meta", "meta", "meta", "hunk", "ctx", "del", "add"]
    assert diff_lines("+a\n+b\n+c", limit=2)[-1].text == "... 1 more lines"


async def test_an_inconclusive_run_says_so_and_gives_its_best_guess():
    state = await run("disk_full", 1)
    state["outcome"] = "inconclusive"
    state["detection"] = state["detection"].model_copy(update={"is_incident": None})
    state["evidence_parts"] = {**state["evidence_parts"], "logs": SourceEvidence(
        source="logs", status="error", error="loki query failed: connection refused")}
    state["errors"] = [ErrorRecord(node="logs", source="logs", message="loki query failed", at=END)]
    page = incident_page(state)
    assert (page.card.outcome, page.card.verdict) == ("inconclusive", "Inconclusive")
    assert page.card.cause.best_guess and page.card.problems == [
        "logs: could not be read (loki query failed: connection refused)"]
    assert page.title.startswith("Inconclusive: ")


async def test_a_false_alarm_has_no_actions():
    state = await run("false_alarm", 1)
    card = incident_page(state).card
    assert card.outcome == "not_an_incident" and card.actions == [] and card.cause is None
    assert card.broken.startswith("No action needed")
    assert render_brief_markdown(state).startswith("# No incident: ")


async def test_the_brief_leads_with_the_card_and_its_mail_form_carries_the_charts(tmp_path):
    state = await run("memory_leak", 1, **LINKS)
    markdown = render_brief_markdown(state, None, Context(**LINKS))
    card_end, timeline = markdown.index("**What to do now:**"), markdown.index("## Timeline")
    assert markdown.index("**Root cause:** memory leak in") < card_end < timeline
    state["brief"] = Brief(title="t", markdown=markdown)
    html, images = render_brief_email(state, Context(**LINKS))
    assert images and all(png.startswith(PNG) for png in images.values())
    for cid in images:
        assert f'src="cid:{cid}"' in html
    assert "<svg" not in html and "<style" not in html, "mail clients show neither SVG nor, reliably, <style>"
    assert "https://grafana.example/explore?" in html
    # on disk: brief.html with its PNG charts beside it
    context = Context(output_dir=str(tmp_path), **LINKS)
    md_path, html_path = write_brief(state, context)
    written = html_path.read_text()
    pngs = sorted(p.name for p in (html_path.parent / "charts").iterdir())
    assert pngs and all(f'src="charts/{name}"' in written for name in pngs)
    assert render_brief_html(state, context).count("<img") == 0  # no image source given, no broken images


def test_brief_templates_compile_once_per_machine_not_once_per_process(tmp_path):
    """Each `investigate` is a new process: the templates' compiled code is kept in Jinja's bytecode cache (a
    per-user directory, keyed by the template's source), so a second process loads instead of compiling."""
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    probe = ("import jinja2.environment as e, web.render as r\n"
             "compiled = []\n"
             "real = e.Environment._compile\n"
             "e.Environment._compile = lambda self, *a: compiled.append(a[1]) or real(self, *a)\n"
             "r.template_env(True).get_template('brief.html.j2')\n"
             "print(len(compiled))\n")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TMPDIR": str(tmp_path)}
    runs = [subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO_ROOT, env=env,
                           timeout=60) for _ in range(2)]
    assert [r.returncode for r in runs] == [0, 0], runs[0].stderr
    assert [int(r.stdout) for r in runs] == [1, 0]
