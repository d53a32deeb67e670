"""The dashboard in headless Chromium: sign in, watch an incident reach the gate without reloading, read its card,
charts, links and coloured diff, approve it, see who approved at the top; at desktop and phone widths.

Drives Debian's chromium with Debian's chromedriver (scripts/install-system-deps.sh). Selenium is given the
driver's path, so Selenium Manager never looks for (or downloads) a browser or driver. Screenshots go to
$SCREENSHOT_DIR when set (to look at them), else to the test's temporary directory.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg
import pytest

from tests.conftest import REPO_ROOT
from tests.live_server import API_KEY, LiveServer, start_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# Headless as root in a container; the background flags keep Chromium from calling home on a closed network.
CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
    "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1280,1000", "--hide-scrollbars",
)
DESKTOP, PHONE = 1280, 390
# Markup in a label must reach the page as text: an element with this id means the pages are injectable.
ALERTNAME = 'HighErrorRate <b id="injected">bold</b>'
GRAFANA = "https://grafana.example.test"
PROMETHEUS = "http://prometheus.example.test:9090"
GENERATOR_URL = "http://prometheus.example.test:9090/graph?g0.expr=job_errors"
RUNBOOK_URL = "https://wiki.example.test/runbooks/high-error-rate"
LINK_SETTINGS = {
    "GRAFANA_URL": GRAFANA, "GRAFANA_PROMETHEUS_UID": "prom-uid", "GRAFANA_LOKI_UID": "loki-uid",
    "PROMETHEUS_URL": PROMETHEUS, "RUNBOOKS_DIR": str(REPO_ROOT / "sim" / "runbooks"),
}
T = TypeVar("T")


def _require_browser() -> None:
    """Skip when Chromium, its driver or Selenium is missing; fail instead under CI, which installs them."""
    problem = next((f"{p} not found" for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()), None)
    try:
        import selenium  # noqa: F401
    except ImportError:
        problem = problem or "selenium is not installed (pip install -e '.[test]')"
    if problem is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"the browser test needs Chromium under CI: {problem} (scripts/install-system-deps.sh)")
    pytest.skip(problem)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """A headless Chromium with a fresh profile in tmp_path."""
    _require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    service = Service(str(CHROMEDRIVER), log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where screenshots go."""
    folder = Path(os.environ.get("SCREENSHOT_DIR") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    """The real service on a fresh database, with simulated telemetry and deep-link settings."""
    live = start_server(database_url, tmp_path / "server", extra_env=LINK_SETTINGS)
    try:
        yield live
    finally:
        live.stop()


def alertmanager_webhook(alertname: str, service: str, scenario: str, seed: int = 1) -> dict[str, Any]:
    """An Alertmanager v4 webhook whose labels pick a simulated scenario, with a generatorURL and a runbook_url."""
    labels = {"alertname": alertname, "service": service, "severity": "critical", "scenario": scenario,
              "seed": str(seed)}
    return {
        "version": "4", "status": "firing", "receiver": "incident-copilot", "groupKey": "{}:{alertname}",
        "groupLabels": {"alertname": alertname}, "commonLabels": labels, "commonAnnotations": {},
        "externalURL": "http://alertmanager.example.test:9093",
        "alerts": [{"status": "firing", "labels": labels, "generatorURL": GENERATOR_URL,
                    "annotations": {"summary": "5xx ratio above 5%", "runbook_url": RUNBOOK_URL},
                    "startsAt": "2026-11-21T12:00:00Z", "endsAt": "0001-01-01T00:00:00Z"}],
    }


def post_alert(server: LiveServer, body: dict[str, Any]) -> str:
    accepted = httpx.post(f"{server.url}/alerts", json=body, headers=server.headers, timeout=10)
    assert accepted.status_code == 202, f"{accepted.status_code} {accepted.text}\n{server.log()[-3000:]}"
    return accepted.json()["incident_id"]


def wait_for(driver: Any, server: LiveServer, what: str, probe: Callable[[], T | None], timeout: float) -> T:
    """Poll `probe` (never reloading the page: it must update by itself) until it returns something truthy."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    deadline = time.monotonic() + timeout
    while True:
        try:
            found = probe()
        except (NoSuchElementException, StaleElementReferenceException):  # not rendered yet, or being replaced
            found = None
        if found:
            return found
        if time.monotonic() > deadline:
            page = driver.find_element("tag name", "body").text[:1500]
            pytest.fail(f"no {what} after {timeout:.0f}s on {driver.current_url}\n--- page text ---\n{page}\n"
                        f"--- server log tail ---\n{server.log()[-3000:]}")
        time.sleep(0.1)


def sign_in(driver: Any, server: LiveServer) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{server.url}/")
    assert driver.current_url == f"{server.url}/ui/login"
    driver.find_element(By.NAME, "api_key").send_keys(API_KEY)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait_for(driver, server, "the incidents list", lambda: driver.find_element(By.ID, "incidents"), 10)


def overflow(driver: Any) -> int:
    """Pixels the page is wider than the window (0: nothing scrolls sideways)."""
    return driver.execute_script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth")


def screenshot(driver: Any, folder: Path, name: str, width: int) -> Path:
    """A full-page screenshot at `width`; asserts nothing overflows sideways at that width."""
    driver.set_window_size(width, 900)
    time.sleep(0.2)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, min(height + 120, 8000))
    time.sleep(0.2)
    path = folder / f"{name}-{width}.png"
    assert driver.save_screenshot(str(path)), f"no screenshot {path}"
    assert overflow(driver) <= 0, f"{name} at {width}px: the page is {overflow(driver)}px wider than the window"
    wide = driver.execute_script("""
        const limit = document.documentElement.clientWidth;
        return [...document.querySelectorAll('main *')].filter(e => e.getBoundingClientRect().right > limit + 1
            && !e.closest('pre, .cmd')).slice(0, 5).map(e => e.tagName + '.' + e.className + ': ' +
            e.textContent.slice(0, 60));""")
    assert not wide, f"{name} at {width}px: elements wider than the window: {wide}"
    driver.set_window_size(DESKTOP, 1000)
    return path


def assert_card(driver: Any, outcome: str) -> None:
    """The card is the first thing under the title, and says what is broken, the cause and what to do."""
    from selenium.webdriver.common.by import By

    card = driver.find_element(By.ID, "card")
    assert outcome in card.get_attribute("class").split(), card.get_attribute("class")
    assert driver.find_element(By.ID, "broken").text
    for section in ("root-cause", "proof", "actions"):
        assert card.find_elements(By.ID, section), f"no #{section} in the card:\n{card.text}"
    charts = driver.find_element(By.ID, "charts")
    assert card.location["y"] < charts.location["y"], "the card must come before the charts"


def assert_charts(driver: Any) -> None:
    """Sparklines with their baseline band and an onset marker, each with deep links."""
    from selenium.webdriver.common.by import By

    charts = driver.find_elements(By.CSS_SELECTOR, "#charts .chart")
    assert charts, "no charts"
    for chart in charts:
        svg = chart.find_element(By.CSS_SELECTOR, "svg.spark")
        assert svg.find_elements(By.CSS_SELECTOR, "polyline.series") and svg.find_elements(By.CSS_SELECTOR, "rect.band")
        assert svg.find_elements(By.CSS_SELECTOR, "line.onset"), f"no onset marker on {chart.text}"
        assert svg.size["width"] > 100 and svg.size["height"] >= 40, svg.size
        hrefs = [a.get_attribute("href") for a in chart.find_elements(By.CSS_SELECTOR, ".links a")]
        assert any(h.startswith(f"{GRAFANA}/explore?") and "prom-uid" in h for h in hrefs), hrefs
        assert any(h.startswith(f"{PROMETHEUS}/graph?g0.expr=") for h in hrefs), hrefs


def test_approve_an_incident_from_the_dashboard(
    server: LiveServer, browser: Any, database_url: str, shots: Path
) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    incident_id = post_alert(server, alertmanager_webhook(ALERTNAME, "web-frontend", "deployment_regression"))

    # signed out, the dashboard sends you to the login form, which refuses a wrong key
    driver.get(f"{server.url}/")
    assert driver.current_url == f"{server.url}/ui/login"
    driver.find_element(By.NAME, "api_key").send_keys("not-the-key-at-all-0000")
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    error = wait_for(driver, server, "login error", lambda: driver.find_element(By.CLASS_NAME, "fail").text, 10)
    assert "invalid key" in error
    sign_in(driver, server)
    assert not driver.find_elements(By.CSS_SELECTOR, "meta[http-equiv=refresh]"), "pages must not meta-refresh"
    assert driver.find_element(By.CSS_SELECTOR, "meta[name=viewport]")

    # the list shows the incident; once it waits at the gate it is pinned on top, without reloading the page
    driver.execute_script("window.notReloaded = true")
    pinned = wait_for(driver, server, "the incident pinned as waiting for approval",
                      lambda: driver.find_element(By.CSS_SELECTOR, f'#awaiting a[href="/ui/incidents/{incident_id}"]'),
                      timeout=40)
    assert driver.execute_script("return window.notReloaded === true"), "the index reloaded instead of updating"
    assert "web-frontend" in pinned.text and ALERTNAME in pinned.text, pinned.text
    assert not driver.find_elements(By.ID, "injected"), "a label's markup was rendered as HTML in the list"
    # filters are proper controls with the known values
    statuses = [o.get_attribute("value") for o in driver.find_elements(By.CSS_SELECTOR, "#filter-status option")]
    assert "awaiting_approval" in statuses and "completed" in statuses
    services = [o.get_attribute("value") for o in driver.find_elements(By.CSS_SELECTOR, "#filter-service option")]
    assert "web-frontend" in services
    for width in (DESKTOP, PHONE):
        screenshot(driver, shots, "index", width)
    pinned = driver.find_element(By.CSS_SELECTOR, f'#awaiting a[href="/ui/incidents/{incident_id}"]')
    pinned.click()
    assert driver.current_url == f"{server.url}/ui/incidents/{incident_id}"

    wait_for(driver, server, "approval gate", lambda: driver.find_element(By.ID, "approve"), timeout=30)
    assert driver.find_element(By.ID, "status").text == "awaiting approval"
    assert driver.find_element(By.TAG_NAME, "h1").text == f"{ALERTNAME} on web-frontend"
    assert not driver.find_elements(By.ID, "injected"), "a label's markup was rendered as HTML on the page"
    assert_card(driver, "incident")
    assert driver.find_element(By.ID, "cause-text").text.startswith("deployment regression in ")
    first_action = driver.find_element(By.CSS_SELECTOR, "#actions ol.actions li")
    assert first_action.text.startswith("Roll back "), f"a rollback must come first: {first_action.text}"
    assert_charts(driver)
    # the alert's own links and the runbooks: the alert's runbook_url and the matching team runbook
    alert_links = [a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, "#alert-links a")]
    assert GENERATOR_URL in alert_links, alert_links
    runbooks = driver.find_element(By.ID, "runbooks")
    hrefs = [a.get_attribute("href") for a in runbooks.find_elements(By.TAG_NAME, "a")]
    assert RUNBOOK_URL in hrefs and f"{server.url}/ui/runbooks/bad-deploy.md" in hrefs, hrefs
    log_links = [a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, "#log-templates a")]
    assert any("loki-uid" in h for h in log_links), log_links
    # the diff is coloured: added and removed lines each have their own background
    colour = "return getComputedStyle(arguments[0]).backgroundColor"
    added = driver.find_element(By.CSS_SELECTOR, "#diff span.add")
    removed = driver.find_element(By.CSS_SELECTOR, "#diff span.del")
    context = driver.find_element(By.CSS_SELECTOR, "#diff span.ctx")
    backgrounds = {driver.execute_script(colour, e) for e in (added, removed, context)}
    assert len(backgrounds) == 3, f"added, removed and context lines share colours: {backgrounds}"
    assert "diff --git" in driver.find_element(By.ID, "diff").text
    assert [li.text[0] for li in driver.find_elements(By.CSS_SELECTOR, "#checks li")].count("✔") >= 5
    # the button and the question say what approving does here: a local branch, no pull request
    assert driver.find_element(By.ID, "approve").text == "Approve: create the local branch (no pull request)"
    assert "no pull request is opened" in driver.find_element(By.ID, "gate").text
    for width in (DESKTOP, PHONE):
        screenshot(driver, shots, "deployment-regression-at-gate", width)

    driver.execute_script("window.notReloaded = true")
    driver.find_element(By.NAME, "comment").send_keys("approved from the browser test")
    driver.find_element(By.ID, "approve").click()

    # after the decision: who approved, at the top, and the page follows the run to its end by itself
    decision = wait_for(driver, server, "the decision banner", lambda: driver.find_element(By.ID, "decision"), 10)
    assert decision.text.startswith("Approved by webhook"), decision.text
    assert "approved from the browser test" in decision.text
    assert decision.location["y"] < driver.find_element(By.ID, "card").location["y"], "the approver must be on top"
    assert not driver.find_elements(By.ID, "approve"), "the gate is offered again after the decision"
    driver.execute_script("window.notReloaded = true")

    def completed() -> str | None:
        status = driver.find_element(By.ID, "status").text
        assert status != "failed", f"the run failed after approval\n{server.log()[-3000:]}"
        return status if status == "completed" else None

    wait_for(driver, server, "status completed", completed, timeout=30)
    assert driver.execute_script("return window.notReloaded === true"), "the page reloaded instead of updating"
    pr = driver.find_element(By.ID, "pr").text
    assert f"incident-copilot/{incident_id}" in pr and "created" in pr, pr
    assert driver.find_element(By.ID, "decision").text.startswith("Approved by webhook")
    for width in (DESKTOP, PHONE):
        screenshot(driver, shots, "deployment-regression-approved", width)

    with psycopg.connect(database_url) as conn:
        approvals = conn.execute(
            "SELECT decision, approver, comment FROM approvals WHERE incident_id = %s", (incident_id,)
        ).fetchall()
    assert approvals == [("approve", "webhook", "approved from the browser test")]


def test_memory_leak_page(server: LiveServer, browser: Any, shots: Path) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    incident_id = post_alert(server, alertmanager_webhook("HighLatency", "mobile-bff", "memory_leak"))
    sign_in(driver, server)
    driver.get(f"{server.url}/ui/incidents/{incident_id}")
    wait_for(driver, server, "the completed run", lambda: driver.find_element(By.ID, "status").text == "completed",
             timeout=40)
    assert_card(driver, "incident")
    assert driver.find_element(By.ID, "cause-text").text.startswith("memory leak in ")
    assert_charts(driver)
    titles = [h.text for h in driver.find_elements(By.CSS_SELECTOR, "#charts .chart h3")]
    assert titles[0].startswith("memory (RSS) of "), f"the root cause's memory chart must lead: {titles}"
    runbooks = driver.find_element(By.ID, "runbooks").text
    assert "A service leaks memory" in runbooks and "A deploy or config change" not in runbooks, runbooks
    assert "runbook" in driver.find_element(By.ID, "actions").text, "the runbook's steps feed the actions"
    for width in (DESKTOP, PHONE):
        screenshot(driver, shots, "memory-leak", width)


async def inconclusive_state(tmp_path: Path) -> dict[str, Any]:
    """A real run whose every source failed (Loki and Prometheus on a closed port), with the verdict `engine`'s
    inconclusive outcome gives such a run (state `outcome`, `is_incident` None) applied on top."""
    from datetime import UTC, datetime

    from langgraph.checkpoint.memory import InMemorySaver

    from graph.builder import build_graph
    from graph.context import Context
    from service.alert_payloads import fingerprint_of
    from state import Alert, TelemetrySpec
    from tools.database import checkpoint_serializer
    from tools.net import free_port

    closed = f"http://127.0.0.1:{free_port()}"
    at = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    alert = Alert(source="alertmanager", alertname="HighErrorRate", service="checkout", starts_at=at,
                  fingerprint=fingerprint_of("HighErrorRate", "checkout"), summary="5xx ratio above 5%",
                  annotations={"runbook_url": RUNBOOK_URL}, raw={"generatorURL": GENERATOR_URL})
    graph = build_graph(checkpointer=InMemorySaver(serde=checkpoint_serializer()))
    config = {"configurable": {"thread_id": "inconclusive"}}
    context = Context(notify_channels=(), output_dir=str(tmp_path), loki_url=closed, prometheus_url=closed)
    await graph.ainvoke({"incident_id": "inc-20261121-120000-inconc", "alert": alert,
                         "telemetry": TelemetrySpec(kind="live", end=at)}, config, context=context)
    state = dict((await graph.aget_state(config)).values)
    parts = state["evidence_parts"]
    assert all(parts[s].status == "error" for s in ("logs", "metrics", "deploys")), "the sources must have failed"
    if state.get("outcome") != "inconclusive":  # until the engine says so itself
        state["outcome"] = "inconclusive"
        state["detection"] = state["detection"].model_copy(update={"is_incident": None})
    return state


async def test_inconclusive_page(browser: Any, shots: Path, tmp_path: Path) -> None:
    """The page of an inconclusive run, rendered by the dashboard's templates and shown in Chromium: it says so,
    lists what could not be read above the card, and fits a phone."""
    from markupsafe import Markup
    from selenium.webdriver.common.by import By

    from web.dashboard import DashboardViews
    from web.view import incident_page

    state = await inconclusive_state(tmp_path)
    views = DashboardViews()
    page = incident_page(state, status="completed")
    main = views.env.get_template("dashboard/incident_main.html.j2").render(p=page, row=None, steps=[])
    html = views.env.get_template("dashboard/incident.html.j2").render(p=page, main=Markup(main), live="")
    static = REPO_ROOT / "web" / "static"
    html = html.replace('href="/ui/static/', f'href="file://{static}/').replace('src="/ui/static/',
                                                                               f'src="file://{static}/')
    path = tmp_path / "inconclusive.html"
    path.write_text(html)
    driver = browser
    driver.get(f"file://{path}")
    card = driver.find_element(By.ID, "card")
    assert "inconclusive" in card.get_attribute("class").split()
    assert driver.find_element(By.ID, "verdict").text.startswith("INCONCLUSIVE")
    problems = driver.find_element(By.ID, "problems")
    assert problems.location["y"] < card.location["y"], "what could not be read comes before the card"
    for source in ("logs", "metrics", "deploys"):
        assert f"{source}: could not be read" in problems.text, problems.text
    assert not driver.find_elements(By.ID, "charts"), "no chart is drawn from data that was never read"
    runbooks = [a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, "#runbooks a")]
    assert runbooks == [RUNBOOK_URL]
    for width in (DESKTOP, PHONE):
        screenshot(driver, shots, "inconclusive", width)
