"""The code path on live data: deploys to commits, the repository map, and the regression guard."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta

import pytest
from langgraph.runtime import Runtime

from analysis.deploy_logs import DEPLOY_LINE_FILTER, deploys_from_logs
from analysis.deploys import summarize_deploys
from analysis.records import LogRecord
from graph.context import Context
from nodes.detect import detect, route_after_detect
from state import Evidence, Hypothesis, MetricEvidence, MetricSignal, TelemetrySpec, Window
from tests.conftest import SHARED_DATA
from tests.loopback import FakeLoki, FakePrometheus, ListLogs, LoopbackServer
from tools.live import LiveTelemetry
from tools.loki import to_ns
from tools.prometheus import render_query
from tools.telemetry_config import PrometheusConfig, RepositoryConfig, TelemetryConfig, load_config

START = datetime(2026, 11, 21, 11, 15, tzinfo=UTC)
END = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
ONSET = START + timedelta(minutes=30)
OLD, NEW = "1f" * 20, "2e" * 20


def build_info(query: str, times: list[float]):
    """app_build_info of checkout: 1.4.0 at OLD, then 1.5.0 at NEW from the onset (the build-info convention)."""
    if query != render_query(PrometheusConfig(), "deploys", ["checkout"]):
        return []
    onset = ONSET.timestamp()
    return [
        ({"service": "checkout", "version": "1.4.0", "revision": OLD}, [1 if t < onset + 60 else None for t in times]),
        ({"service": "checkout", "version": "1.5.0", "revision": NEW}, [1 if t >= onset else None for t in times]),
    ]


def test_the_deploys_query_keeps_the_revision_labels() -> None:
    assert render_query(PrometheusConfig(), "deploys", ["checkout"]) == (
        'max by (service, version, revision, commit) (app_build_info{service=~"checkout"})'
    )


async def test_live_deploys_name_the_commit_of_app_build_info() -> None:
    with LoopbackServer(FakePrometheus(build_info)) as server:
        (deploy,) = await LiveTelemetry(Context(prometheus_url=server.url)).deploys(["checkout"], START, END)
    assert (deploy.version, deploy.previous_version) == ("1.5.0", "1.4.0")
    assert (deploy.commit, deploy.previous_commit) == (NEW, OLD)


def test_deploy_log_lines_name_revisions() -> None:
    t0 = ONSET.timestamp()
    records = [
        LogRecord(t0, "cart", "starting cart version=2.0.0 revision=aaaaaaa1"),
        LogRecord(t0 + 1, "cart", "starting cart version=2.0.0 revision=aaaaaaa1"),  # a restart: no deploy
        LogRecord(t0 + 2, "cart", "config reloaded from /etc/cart.yaml revision=7 by admin"),
        LogRecord(t0 + 3, "cart", 'starting cart {"version": "2.1.0", "commit": "bbbbbbb2"}'),
        LogRecord(t0 + 4, "cart", "Deployed cart to prod: sha=cccccccc"),
        LogRecord(t0 + 5, "cart", "GET /healthz 200"),
        LogRecord(t0 + 6, "argo", "Sync operation to 0123abcd4 succeeded"),
        LogRecord(t0 + 7, "web", "request done", {"org_opencontainers_image_revision": "dddddddd"}),
        LogRecord(t0 + 8, "web", "request done", {"org_opencontainers_image_revision": "eeeeeeee"}),
    ]
    events = [(e.service, e.kind, e.version, e.commit, e.previous_commit) for e in deploys_from_logs(records)]
    assert events == [
        ("cart", "config", "7", None, None),
        ("cart", "code", "2.1.0", "bbbbbbb2", "aaaaaaa1"),
        ("cart", "code", "cccccccc", "cccccccc", "bbbbbbb2"),
        ("argo", "code", "0123abcd4", "0123abcd4", None),
        ("web", "code", "eeeeeeee", "eeeeeeee", "dddddddd"),
    ]


async def test_live_deploys_merge_metrics_and_log_lines() -> None:
    lines = [(to_ns(ONSET) + 10**9, "checkout", f"starting checkout version=1.5.0 revision={NEW}"),
             (to_ns(ONSET) + 2 * 10**9, "checkout", "GET /cart 200")]
    with LoopbackServer(FakePrometheus(build_info)) as prom, LoopbackServer(FakeLoki(ListLogs(lines))) as loki:
        live = LiveTelemetry(Context(prometheus_url=prom.url, loki_url=loki.url))
        found = await live.deploys(["checkout"], START, END)
    window = Window(start=END - timedelta(minutes=15), end=END, baseline_start=START)
    assert {e.source for e in found} == {"metrics"}  # a start-up line alone names no change
    (deploy,) = summarize_deploys(found, window).deploys
    assert deploy.commit == NEW and deploy.previous_commit == OLD


def test_repository_map_is_read_and_checked(tmp_path) -> None:
    config = load_config(None, {"repositories": {
        "checkout": {"github": "acme/shop", "checkout": "/srv/shop", "path": "services/checkout",
                     "base_branch": "release", "test_command": ["pytest", "-q"]},
        "cart": {"checkout": "/srv/cart"},
    }})
    assert config.repositories["checkout"] == RepositoryConfig(
        github="acme/shop", checkout="/srv/shop", path="services/checkout", base_branch="release",
        test_command=("pytest", "-q"),
    )
    assert config.repositories["cart"].base_branch == "main"
    assert TelemetryConfig().repositories == {}
    bad = {
        "neither": ({"path": "x"}, "needs 'github'"),
        "name": ({"github": "not a repo"}, "must be owner/name"),
        "escape": ({"checkout": "/x", "path": "../y"}, "inside the repository"),
        "argv": ({"checkout": "/x", "test_command": "make test"}, "list of non-empty strings"),
        "typo": ({"checkout": "/x", "branch": "main"}, "unknown key 'telemetry.repositories.typo.branch'"),
    }
    for service, (table, message) in bad.items():
        with pytest.raises((TypeError, ValueError), match=message):
            load_config(None, {"repositories": {service: table}})
    path = tmp_path / "telemetry.toml"
    path.write_text('[repositories.checkout]\ngithub = "acme/shop"\ntest_command = ["make", "test"]\n')
    assert load_config(str(path)).repositories["checkout"].test_command == ("make", "test")


def regression_evidence(deploys) -> Evidence:
    """A live incident whose top candidate is a deployment regression of checkout."""
    window = Window(start=END - timedelta(minutes=15), end=END, baseline_start=START)
    signals = [
        MetricSignal(service="checkout", signal="error_ratio", baseline=0.0, current=0.3, peak=0.4, score=20.0,
                     direction="up", onset=ONSET),
        MetricSignal(service="checkout", signal="latency_p99", baseline=0.1, current=0.9, peak=1.2, score=12.0,
                     direction="up", onset=ONSET),
    ]
    return Evidence(
        alerted_service="checkout", window=window, services=["checkout"], dependencies=[], onset=ONSET,
        metrics=MetricEvidence(signals=signals), deploys=summarize_deploys(deploys, window).deploys,
        candidates=[Hypothesis(service="checkout", fault_type="deployment_regression", confidence=0.9, score=15.0)],
    )


async def test_the_guard_routes_a_live_regression_to_analyze_code(tmp_path) -> None:
    """A live incident with app_build_info naming the commit and a mapped repository goes to analyze_code;
    without a repository the run goes on to the mitigations and says why."""
    with LoopbackServer(FakePrometheus(build_info)) as server:
        deploys = await LiveTelemetry(Context(prometheus_url=server.url)).deploys(["checkout"], START, END)
    state = {"evidence": regression_evidence(deploys), "digest": "", "telemetry": TelemetrySpec(kind="live")}
    mapped = Context(telemetry_tables={"repositories": {"checkout": {
        "checkout": str(tmp_path), "github": "acme/shop", "test_command": ["pytest"]}}})
    update = await detect(state, Runtime(context=mapped))
    detection = update["detection"]
    assert (detection.code_regression, detection.suspect_commit) == (True, NEW)
    assert detection.repository.github == "acme/shop" and detection.repository.test_command == ["pytest"]
    assert route_after_detect({**state, **update}) == "analyze_code"

    update = await detect(state, Runtime(context=Context()))
    assert route_after_detect({**state, **update}) == "fan_out"
    assert "no code repository is configured for checkout" in update["errors"][0].message
    assert any("no code repository" in reason for reason in update["detection"].reasons)


async def test_deploys_from_github_deployments_and_releases(tmp_path) -> None:
    from tests.github_loopback import GitHubLoopback
    from tests.shop_repo import build_shop_repo, git

    shop = build_shop_repo(tmp_path / "shop")
    git(shop.path, "tag", "v1.5.0", shop.docs)
    git(shop.path, "tag", "-a", "-m", "hotfix", "v1.4.9", shop.bad)
    tables = {"repositories": {"checkout": {"github": "acme/shop", "environment": "production"}}}
    with LoopbackServer(FakePrometheus(lambda query, times: [])) as prom, GitHubLoopback(token="t0k") as github:
        github.add_repository("acme/shop", shop.path)
        github.add_deployment("acme/shop", shop.base, "v1.4.0", START - timedelta(days=1))
        github.add_deployment("acme/shop", shop.bad, "v1.4.9", ONSET - timedelta(minutes=5), states=("failure",))
        github.add_deployment("acme/shop", shop.feature, "v1.4.1", ONSET, environment="staging")
        github.add_deployment("acme/shop", shop.docs, "v1.5.0", ONSET)
        github.add_release("acme/shop", "v1.5.0", ONSET + timedelta(minutes=1))
        github.add_release("acme/shop", "v1.4.9", ONSET - timedelta(minutes=3))
        github.add_release("acme/shop", "v1.4.0", ONSET, draft=True)

        def live(token: str | None) -> LiveTelemetry:
            return LiveTelemetry(Context(prometheus_url=prom.url, github_token=token, github_api_url=github.url,
                                         telemetry_tables=tables))

        reader = live("t0k")
        found = await reader.deploys(["checkout", "cart"], START, END)
        refused, missing = live("wrong"), live(None)
        assert await refused.deploys(["checkout"], START, END) == []
        assert await missing.deploys(["checkout"], START, END) == []
    (deployment,) = [e for e in found if e.description.startswith("GitHub deployment")]
    assert (deployment.commit, deployment.previous_commit, deployment.version) == (shop.docs, shop.base, "v1.5.0")
    assert deployment.at == ONSET + timedelta(seconds=2) and deployment.source == "github"
    (release,) = [e for e in found if e.description.startswith("GitHub release")]  # v1.5.0 is the deployment's
    assert (release.commit, release.version, release.at) == (shop.bad, "v1.4.9", ONSET - timedelta(minutes=3))
    assert reader.notes == []
    assert any("GitHub refused the token (401" in note for note in refused.notes)
    assert missing.notes == ["deploys: GitHub deployments and releases not read: set GITHUB_TOKEN"]
async def test_the_runs_repo_replaces_the_checkout_and_keeps_the_map(tmp_path) -> None:
    with LoopbackServer(FakePrometheus(build_info)) as server:
        deploys = await LiveTelemetry(Context(prometheus_url=server.url)).deploys(["checkout"], START, END)
    state = {"evidence": regression_evidence(deploys), "digest": "", "telemetry": TelemetrySpec(kind="live")}
    tables = {"repositories": {"checkout": {"github": "acme/shop", "test_command": ["make", "test"]}}}
    update = await detect(state, Runtime(context=Context(repo=str(tmp_path), telemetry_tables=tables)))
    repository = update["detection"].repository
    assert (repository.checkout, repository.github, repository.test_command) == (
        str(tmp_path), "acme/shop", ["make", "test"])
    update = await detect(state, Runtime(context=Context(repo=str(tmp_path))))
    assert update["detection"].repository.checkout == str(tmp_path) and not update.get("errors")


def test_deploy_line_forms_find_no_deploy_in_real_logs() -> None:
    """16,000 lines of eight real systems (Loghub-2k), none of them a deploy: the forms find none."""
    files = sorted((SHARED_DATA / "loghub-2k").glob("*/*_2k.log"))
    if len(files) != 8:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Loghub-2k data is required under CI: {SHARED_DATA / 'loghub-2k'}")
        pytest.skip("Loghub-2k data not found")
    line_filter = re.compile(DEPLOY_LINE_FILTER[1])
    for path in files:
        lines = path.read_text(errors="replace").splitlines()
        records = [LogRecord(float(i), path.parent.name, line) for i, line in enumerate(lines)]
        assert deploys_from_logs(r for r in records if line_filter.search(r.line)) == [], path.parent.name
