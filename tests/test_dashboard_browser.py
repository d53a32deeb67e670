"""The dashboard in headless Chromium: sign in, open the incident at the gate, approve it, see it complete.

Drives Debian's chromium with Debian's chromedriver (scripts/install-system-deps.sh). Selenium is given the
driver's path, so Selenium Manager never looks for (or downloads) a browser or driver.
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

from tests.live_server import API_KEY, LiveServer, start_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# Headless as root in a container; the background flags keep Chromium from calling home on a closed network.
CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
    "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1280,1400",
)
# Markup in a label must reach the page as text: an element with this id means the pages are injectable.
ALERTNAME = 'HighErrorRate <b id="injected">bold</b>'
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
def server(database_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    """The real service on a fresh database, with simulated telemetry."""
    live = start_server(database_url, tmp_path / "server")
    try:
        yield live
    finally:
        live.stop()


def _alert(alertname: str) -> dict[str, Any]:
    """An Alertmanager v4 webhook for a simulated deployment regression (its run stops at the gate)."""
    labels = {"alertname": alertname, "service": "web-frontend", "severity": "critical",
              "scenario": "deployment_regression", "seed": "1"}
    return {
        "version": "4", "status": "firing", "receiver": "incident-copilot", "groupKey": "{}:{alertname}",
        "groupLabels": {"alertname": alertname}, "commonLabels": labels, "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": [{"status": "firing", "labels": labels, "annotations": {"summary": "5xx ratio above 5%"},
                    "startsAt": "2026-11-21T12:00:00Z", "endsAt": "0001-01-01T00:00:00Z"}],
    }


def _wait(driver: Any, server: LiveServer, what: str, probe: Callable[[], T | None], timeout: float,
          reload_after: float | None = None) -> T:
    """Poll `probe` until it returns something truthy; reload the page if `reload_after` s pass without.

    The pages refresh themselves while a run goes on; the reload is the fallback that bounds the wait."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    deadline = time.monotonic() + timeout
    last_reload = time.monotonic()
    while True:
        try:
            found = probe()
        except (NoSuchElementException, StaleElementReferenceException):  # not rendered yet, or refreshing
            found = None
        if found:
            return found
        if time.monotonic() > deadline:
            page = driver.find_element("tag name", "body").text[:1500]
            pytest.fail(f"no {what} after {timeout:.0f}s on {driver.current_url}\n--- page text ---\n{page}\n"
                        f"--- server log tail ---\n{server.log()[-3000:]}")
        if reload_after is not None and time.monotonic() - last_reload > reload_after:
            driver.refresh()
            last_reload = time.monotonic()
        time.sleep(0.1)


def test_approve_an_incident_from_the_dashboard(
    server: LiveServer, browser: Any, database_url: str, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    accepted = httpx.post(f"{server.url}/alerts", json=_alert(ALERTNAME), headers=server.headers, timeout=10)
    assert accepted.status_code == 202, f"{accepted.status_code} {accepted.text}\n{server.log()[-3000:]}"
    incident_id = accepted.json()["incident_id"]

    # signed out, the dashboard sends you to the login form, which refuses a wrong key
    driver.get(f"{server.url}/")
    assert driver.current_url == f"{server.url}/ui/login"
    driver.find_element(By.NAME, "api_key").send_keys("not-the-key-at-all-0000")
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    error = _wait(driver, server, "login error", lambda: driver.find_element(By.CLASS_NAME, "fail").text, 10)
    assert "invalid key" in error
    driver.find_element(By.NAME, "api_key").send_keys(API_KEY)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()

    # the list shows the incident, and its link leads to the incident's page
    link = _wait(driver, server, f"incident {incident_id} in the list",
                 lambda: driver.find_element(By.LINK_TEXT, incident_id), timeout=15, reload_after=3)
    row_text = link.find_element(By.XPATH, "./ancestor::tr").text
    assert "web-frontend" in row_text and ALERTNAME in row_text, row_text
    assert not driver.find_elements(By.ID, "injected"), "a label's markup was rendered as HTML in the list"
    link.click()
    assert driver.current_url == f"{server.url}/ui/incidents/{incident_id}"

    # the page refreshes itself until the run stops at the gate
    approve = _wait(driver, server, "approval gate", lambda: driver.find_element(By.ID, "approve"),
                    timeout=30, reload_after=8)
    assert driver.find_element(By.ID, "status").text == "awaiting_approval"
    assert driver.find_element(By.TAG_NAME, "h1").text == f"{ALERTNAME} on web-frontend"
    assert not driver.find_elements(By.ID, "injected"), "a label's markup was rendered as HTML on the page"
    assert driver.find_element(By.ID, "root-cause").text.startswith("deployment_regression in ")
    assert "diff --git" in driver.find_element(By.CSS_SELECTOR, "#gate pre").text
    assert driver.save_screenshot(str(tmp_path / "incident-at-gate.png")), "no screenshot of the gate"

    driver.find_element(By.NAME, "comment").send_keys("approved from the browser test")
    approve.click()

    # the page after the decision does not offer the gate again, and follows the run to its end
    status = _wait(driver, server, "page after approving", lambda: driver.find_element(By.ID, "status").text,
                   timeout=10)
    assert status in ("resuming", "investigating", "completed"), status
    assert not driver.find_elements(By.ID, "approve"), "the gate is offered again after the decision"

    def completed() -> str | None:
        status = driver.find_element(By.ID, "status").text
        assert status != "failed", f"the run failed after approval\n{server.log()[-3000:]}"
        return status if status == "completed" else None

    _wait(driver, server, "status completed", completed, timeout=30, reload_after=8)
    pr = driver.find_element(By.ID, "pr").text
    assert f"incident-copilot/{incident_id}" in pr and "created" in pr, pr
    assert not driver.find_elements(By.ID, "approve")

    with psycopg.connect(database_url) as conn:
        approvals = conn.execute(
            "SELECT decision, approver, comment FROM approvals WHERE incident_id = %s", (incident_id,)
        ).fetchall()
    assert approvals == [("approve", "webhook", "approved from the browser test")]
