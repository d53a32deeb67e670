"""Start the real HTTP service in a subprocess on a free loopback port (for tests and benchmarks), and the example
alerting stack of deploy/ (the simulated fleet, Prometheus, Alertmanager) beside it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

from tools.net import free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
API_KEY = "test-key-0123456789abcdef"  # the operator's: role admin
OPERATOR = "operator"
INTAKE_KEY = "intake-key-0123456789abcdef"  # WEBHOOK_API_KEY: what Alertmanager holds, role intake


@dataclass
class LiveServer:
    """A running `incident-copilot serve` process."""

    url: str
    process: subprocess.Popen
    log_path: Path

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {API_KEY}"}

    def stop(self, kill: bool = False) -> int | None:
        """SIGKILL (a crash) or SIGTERM (a clean stop), then wait; the exit code, or None when a clean stop hung for
        30 s and the process had to be killed."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
                return None
        return self.process.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def start_server(
    database_url: str, workdir: Path, *, workers: int = 2, run_workers: bool = True, telemetry: str = "sim",
    extra_env: dict[str, str] | None = None, timeout: float = 60.0, port: int | None = None,
    processes: int = 1,
) -> LiveServer:
    """Spawn the service (on `port`, else a free one) and wait until /readyz answers."""
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"server-{port}.log"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "WEBHOOK_API_KEY": INTAKE_KEY,
        "INCIDENT_COPILOT_API_KEYS": f"{OPERATOR}:admin={API_KEY}",
        "INCIDENT_COPILOT_WORKERS": str(workers),
        "INCIDENT_COPILOT_RUN_WORKERS": "true" if run_workers else "false",
        "INCIDENT_COPILOT_TELEMETRY": telemetry,
        "OUTPUT_DIR": str(workdir / "output"),
        "LANGSMITH_TRACING": "false",
        **(extra_env or {}),
    }
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(REPO_ROOT / "cli.py"), "serve", "--port", str(port), "--log-level", "warning",
             "--processes", str(processes)],
            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=workdir,
        )
    server = LiveServer(f"http://127.0.0.1:{port}", process, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{server.log()[-3000:]}")
        try:
            if httpx.get(f"{server.url}/readyz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.stop(kill=True)
    raise RuntimeError(f"server not ready in {timeout}s:\n{server.log()[-3000:]}")


def start_worker(
    database_url: str, workdir: Path, *, concurrency: int = 2, telemetry: str = "sim",
    extra_env: dict[str, str] | None = None, nice: int = 0, metrics_port: int | None = None,
) -> subprocess.Popen:
    """Spawn `incident-copilot worker` (runs only; with `metrics_port`, its /metrics there) on the database; its log
    goes to workdir."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DATABASE_URL": database_url, "INCIDENT_COPILOT_TELEMETRY": telemetry,
           "OUTPUT_DIR": str(workdir / "output"), "LANGSMITH_TRACING": "false", **(extra_env or {})}
    log = open(workdir / f"worker-{time.monotonic_ns()}.log", "wb")  # noqa: SIM115 - the child keeps it open
    argv = [sys.executable, str(REPO_ROOT / "cli.py"), "worker", "--concurrency", str(concurrency)]
    if metrics_port:
        argv += ["--metrics-port", str(metrics_port)]
    return subprocess.Popen(["nice", "-n", str(nice), *argv] if nice else argv, env=env, stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=workdir)


# --- the example alerting stack: the simulated fleet, Prometheus and Alertmanager (deploy/) -----------------

DEPLOY = REPO_ROOT / "deploy"
PROMETHEUS = "/usr/bin/prometheus"
ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
_DURATION = re.compile(r"(\[|for: |offset )(\d+)([smh])\b")
_UNIT = {"s": 1, "m": 60, "h": 3600}


@dataclass
class Process:
    """A started helper process with its output in a log file."""

    name: str
    process: subprocess.Popen
    log_path: Path

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit within 10 s."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def log(self, tail: int = 3000) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return f"--- {self.name} (exit {self.process.poll()}) ---\n{text[-tail:]}"


def spawn(name: str, argv: list[str], workdir: Path) -> Process:
    """Start `argv` with stdout and stderr in workdir/<name>.log."""
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"{name}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=workdir
        )
    return Process(name, process, log_path)


def wait_for(what: str, check: Callable[[], Any], timeout: float, logs: Callable[[], str]) -> Any:
    """Poll `check` until it returns something truthy; AssertionError with `logs()` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except httpx.HTTPError:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s\n{logs()}")
        time.sleep(0.2)


def compress_durations(text: str, speed: float) -> str:
    """Alert rules for a fleet running `speed` times faster: each range, `for:` and offset divided by speed
    (in whole seconds, at least 1 s); thresholds stay as they are (rates are per simulated second)."""

    def scaled(match: re.Match[str]) -> str:
        seconds = int(match.group(2)) * _UNIT[match.group(3)]
        return f"{match.group(1)}{max(1, round(seconds / speed))}s"

    return _DURATION.sub(scaled, text)


@dataclass
class AlertingStack:
    """The fleet (`sim serve`), Prometheus with deploy/alert_rules.yml and Alertmanager with
    deploy/alertmanager.yml, all on free loopback ports, the alerts posted to `alerts_url`."""

    fleet: Process
    prometheus: Process
    alertmanager: Process
    loki_url: str
    prometheus_url: str
    alertmanager_url: str

    @property
    def processes(self) -> list[Process]:
        return [self.fleet, self.prometheus, self.alertmanager]

    def state(self) -> dict[str, Any]:
        """The fleet's /state: scenario, root_service, fault_type, inject_at, injected_at, targets."""
        return httpx.get(f"{self.loki_url}/state", timeout=5).json()

    def stop(self) -> None:
        """Stop Alertmanager, Prometheus, then the fleet."""
        for process in reversed(self.processes):
            process.stop()


def alerting_binaries_missing() -> str | None:
    """Which of Debian's prometheus / prometheus-alertmanager binaries is missing, if any."""
    missing = [path for path in (PROMETHEUS, ALERTMANAGER) if not os.access(path, os.X_OK)]
    return ", ".join(missing) or None


def start_alerting_stack(
    workdir: Path, *, scenario: str, seed: int, speed: float, inject_after: float, alerts_url: str,
    api_key: str = INTAKE_KEY, group_wait: str = "1s", timeout: float = 60.0,
) -> AlertingStack:
    """Start the fleet, then Prometheus scraping it with the rules compressed to its speed, then Alertmanager
    posting to `alerts_url` with bearer `api_key`; wait until all three are ready. Everything stops on failure."""
    workdir.mkdir(parents=True, exist_ok=True)
    started: list[Process] = []

    def logs() -> str:
        return "\n".join(p.log() for p in started)

    try:
        loki_port = free_port()
        fleet_config = workdir / "fleet-prometheus.yml"
        started.append(spawn("fleet", [
            sys.executable, str(REPO_ROOT / "cli.py"), "sim", "serve", "--scenario", scenario, "--seed", str(seed),
            "--speed", f"{speed:g}", "--inject-after", f"{inject_after:g}", "--loki-port", str(loki_port),
            "--prometheus-config", str(fleet_config),
        ], workdir))
        loki_url = f"http://127.0.0.1:{loki_port}"

        def fleet_ready() -> bool:  # serving, and done writing its scrape config (it starts serving first)
            targets = httpx.get(f"{loki_url}/state", timeout=2).json()["targets"]
            return fleet_config.exists() and fleet_config.read_text().count("- targets:") == len(targets)

        wait_for("the fleet's /state and scrape config", fleet_ready, timeout, logs)
        # chosen once the fleet holds its own ports: a port free before it started may be one it took since
        prom_port, am_port = free_port(), free_port()

        (workdir / "alert_rules.yml").write_text(compress_durations((DEPLOY / "alert_rules.yml").read_text(), speed))
        am_url = f"http://127.0.0.1:{am_port}"
        config_path = workdir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(prometheus_config(fleet_config.read_text(), f"127.0.0.1:{am_port}")))
        started.append(spawn("prometheus", [
            PROMETHEUS, f"--config.file={config_path}", f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ], workdir))

        key_file = workdir / "incident-copilot.key"
        key_file.write_text(api_key)
        am_config = workdir / "alertmanager.yml"
        am_config.write_text(yaml.safe_dump(alertmanager_config(alerts_url, key_file, group_wait)))
        started.append(spawn("alertmanager", [
            ALERTMANAGER, f"--config.file={am_config}", f"--storage.path={workdir / 'alertmanager'}",
            f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address=",
        ], workdir))
        prom_url = f"http://127.0.0.1:{prom_port}"
        for url in (prom_url, am_url):
            wait_for(f"{url}/-/ready", lambda u=url: httpx.get(f"{u}/-/ready", timeout=2).status_code == 200,
                     timeout, logs)
        return AlertingStack(*started, loki_url=loki_url, prometheus_url=prom_url, alertmanager_url=am_url)
    except BaseException:
        for process in reversed(started):
            process.stop()
        raise


def prometheus_config(fleet_config: str, alertmanager: str) -> dict[str, Any]:
    """deploy/prometheus.yml with the fleet's intervals and scrape targets, the compressed rules beside it and
    `alertmanager` (host:port) as its Alertmanager; its services must be exactly the fleet's."""
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    fleet = yaml.safe_load(fleet_config)
    ours, theirs = config["scrape_configs"][0], fleet["scrape_configs"][0]
    services = {t["labels"]["service"] for t in ours["static_configs"]}
    fleet_services = {t["labels"]["service"] for t in theirs["static_configs"]}
    if services != fleet_services:
        raise ValueError(f"deploy/prometheus.yml scrapes {sorted(services)}, the fleet has {sorted(fleet_services)}")
    config["global"] = fleet["global"]
    ours["static_configs"] = theirs["static_configs"]
    ours["scrape_interval"], ours["scrape_timeout"] = theirs["scrape_interval"], theirs["scrape_timeout"]
    config["alerting"]["alertmanagers"][0]["static_configs"] = [{"targets": [alertmanager]}]
    return config


def alertmanager_config(alerts_url: str, key_file: Path, group_wait: str) -> dict[str, Any]:
    """deploy/alertmanager.yml posting to `alerts_url` with the key in `key_file`, groups waiting `group_wait`."""
    config = yaml.safe_load((DEPLOY / "alertmanager.yml").read_text())
    config["route"]["group_wait"] = group_wait
    webhook = config["receivers"][0]["webhook_configs"][0]
    webhook["url"] = alerts_url
    webhook["http_config"]["authorization"]["credentials_file"] = str(key_file)
    return config


@dataclass
class AlertRun:
    """One scenario from fault to brief (or to the approval gate, which comes first when a fix is proposed): the
    fleet's /state, the first incident (GET /incidents/{id}), its history, every incident opened by then, the wall
    seconds it all took and the logs of every process."""

    state: dict[str, Any]
    incident: dict[str, Any]
    history: list[dict[str, Any]]
    incidents: list[dict[str, Any]]
    elapsed: float
    logs: str

    def timings(self) -> dict[str, float]:
        """Seconds from the injection to the alert's startsAt, from startsAt to our 202 (the incident row) and
        from there to the brief's checkpoint (or the gate's, the last one, when the run waits there)."""
        at = datetime.fromisoformat
        starts_at = at(self.incident["report"]["window"]["end"]).timestamp()
        accepted = at(self.incident["created_at"]).timestamp()
        ends = [c for c in self.history if "brief" in c["ran"]] or self.history[-1:]
        brief = at(ends[0]["created_at"]).timestamp()
        return {
            "fault_to_alert": starts_at - at(self.state["injected_at"]).timestamp(),
            "alert_to_202": accepted - starts_at,
            "202_to_brief": brief - accepted,
            "alert_to_brief": brief - starts_at,
        }


def run_alert_to_brief(
    workdir: Path, database_url: str, scenario: str, seed: int, *, speed: float = 15.0,
    inject_after: float = 45.0, window_seconds: int = 30, baseline_seconds: int = 30, timeout: float = 100.0,
) -> AlertRun:
    """The fleet, Prometheus, Alertmanager and the service (live telemetry) on one scenario, until the first
    incident Alertmanager opened has its brief (or waits at the gate, or its run failed); every process stopped
    on return. AssertionError, with every process' log, when no alert comes within `timeout` seconds.

    Time is compressed `speed` times: one simulated 15 s step is 15/speed wall seconds, and the run reads
    metrics at that step (no finer than the fleet's scrape interval, 1 s) with the connectors' rate window of
    four steps (1m at 15 s); the incident window and its baseline are `window_seconds` and `baseline_seconds`
    of wall time before the alert's startsAt.
    """
    step = max(1.0, 15.0 / speed)
    server_port = free_port()
    stack = server = None
    began = time.monotonic()

    def logs() -> str:
        parts = [p.log() for p in stack.processes] if stack else []
        return "\n".join(parts + ([f"--- server ---\n{server.log()[-4000:]}"] if server else []))

    try:
        stack = start_alerting_stack(
            workdir / "stack", scenario=scenario, seed=seed, speed=speed, inject_after=inject_after,
            alerts_url=f"http://127.0.0.1:{server_port}/alerts",
        )
        telemetry = workdir / "telemetry.toml"
        telemetry.write_text(f'[prometheus]\nrange_window = "{round(4 * step * 1000)}ms"\nstep_seconds = {step}\n')
        server = start_server(database_url, workdir / "server", telemetry="live", port=server_port, extra_env={
            "LOKI_URL": stack.loki_url,
            "PROMETHEUS_URL": stack.prometheus_url,
            "TELEMETRY_CONFIG": str(telemetry),
            "INCIDENT_WINDOW_SECONDS": str(window_seconds),
            "INCIDENT_BASELINE_SECONDS": str(baseline_seconds),
            "INCIDENT_METRICS_STEP_SECONDS": str(step),
        })
        with httpx.Client(base_url=server.url, headers=server.headers, timeout=5) as api:

            def first_incident() -> dict[str, Any] | None:
                items = api.get("/incidents").json()["items"]
                return min(items, key=lambda i: i["created_at"]) if items else None

            def finished(incident_id: str) -> dict[str, Any] | None:
                body = api.get(f"/incidents/{incident_id}").json()
                # the run is over (brief delivered, run row done), waits at the gate, or failed; a written
                # brief alone is not the end: notify and the run's own bookkeeping come after it
                done = body["run_status"] in ("completed", "not_an_incident", "awaiting_approval", "failed")
                return body if done else None

            first = wait_for("an incident opened by Alertmanager", first_incident, timeout, logs)
            incident = wait_for(f"the brief of incident {first['id']}", lambda: finished(first["id"]), 60, logs)
            history = api.get(f"/incidents/{first['id']}/history").json()["checkpoints"]
            incidents = api.get("/incidents").json()["items"]
        return AlertRun(stack.state(), incident, history, incidents, time.monotonic() - began, logs())
    finally:
        if server:
            server.stop()
        if stack:
            stack.stop()
