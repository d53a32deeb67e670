"""`langgraph dev` serves langgraph.json: an SDK client runs an incident to the approval gate and resumes."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
from langgraph_sdk import get_client

from tools.net import free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
LANGGRAPH = Path(sys.executable).parent / "langgraph"
OFFLINE_ENV = {
    "LANGGRAPH_CLI_NO_ANALYTICS": "1",
    "LANGGRAPH_NO_VERSION_CHECK": "true",
    "LANGSMITH_TRACING": "false",
}
ALERT = {
    "source": "alertmanager",
    "alertname": "HighErrorRate",
    "service": "web-frontend",
    "severity": "critical",
    "starts_at": "2026-11-21T12:00:00+00:00",
    "fingerprint": "sdk-test-fingerprint",
}
TELEMETRY = {"kind": "sim", "scenario": "deployment_regression", "seed": 1, "end": ALERT["starts_at"]}


def _require_langgraph_cli() -> None:
    missing = not LANGGRAPH.exists() or importlib.util.find_spec("langgraph_api") is None
    if missing:
        message = f"langgraph-cli[inmem] is not installed next to {sys.executable}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; CI must install the test extras")
        pytest.skip(message)


@dataclass
class DevServer:
    """A running `langgraph dev` process."""

    url: str
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


def _scratch_config(tmp_path: Path) -> Path:
    """The repo's langgraph.json with absolute paths, so the server can run in a scratch directory."""
    config = json.loads((REPO_ROOT / "langgraph.json").read_text())

    def absolute(target: str) -> str:
        path, _, attribute = target.partition(":")
        return f"{REPO_ROOT / path}:{attribute}"

    config["graphs"] = {name: absolute(target) for name, target in config["graphs"].items()}
    config["checkpointer"]["path"] = absolute(config["checkpointer"]["path"])
    config["dependencies"] = [str(REPO_ROOT / dependency) for dependency in config["dependencies"]]
    config["env"] = str(REPO_ROOT / config["env"])
    path = tmp_path / "langgraph.json"
    path.write_text(json.dumps(config))
    return path


@pytest.fixture
def dev_server(database_url: str, tmp_path: Path) -> Iterator[DevServer]:
    """`langgraph dev` on a free port, with the Postgres checkpointer on the test database."""
    _require_langgraph_cli()
    # the in-memory runtime keeps its thread and run store in ./.langgraph_api: run it in a scratch directory
    workdir = tmp_path / "work"
    workdir.mkdir()
    config_path = _scratch_config(tmp_path)
    port = free_port()
    env = {
        **os.environ,
        **OFFLINE_ENV,
        "DATABASE_URL": database_url,
        "INCIDENT_COPILOT_HOME": str(tmp_path / "home"),
        "OUTPUT_DIR": str(tmp_path / "output"),
    }
    # dev-only: the nodes do file and git I/O on the event loop, which `langgraph dev` refuses by default
    argv = [str(LANGGRAPH), "dev", "--config", str(config_path), "--port", str(port)]
    argv += ["--no-browser", "--no-reload", "--allow-blocking"]
    log_path = tmp_path / "langgraph-dev.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            argv, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    server = DevServer(f"http://127.0.0.1:{port}", process, log_path)
    try:
        _wait_until_ready(server, timeout=60)
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _wait_until_ready(server: DevServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"langgraph dev exited with {server.process.returncode}:\n{server.log()}")
        try:
            if httpx.get(f"{server.url}/ok", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    pytest.fail(f"langgraph dev did not answer within {timeout} s:\n{server.log()}")


async def test_sdk_runs_to_the_gate_and_resumes(dev_server: DevServer, database_url: str, tmp_path: Path):
    client = get_client(url=dev_server.url)
    [assistant] = await client.assistants.search(graph_id="incident_copilot")
    schemas = await client.assistants.get_schemas(assistant["assistant_id"])
    assert set(schemas["input_schema"]["properties"]) == {"incident_id", "alert", "telemetry"}
    # a caller chooses the window; the gate, the repositories, the output folder are the operator's (issue 10)
    assert set(schemas["context_schema"]["properties"]) == {"window_seconds", "baseline_seconds"}

    thread = await client.threads.create()
    thread_id = incident_id = thread["thread_id"]  # one thread, one incident
    context = {"llm_provider": "offline", "output_dir": str(tmp_path / "briefs"), "require_approval": False,
               "repo": str(tmp_path), "window_seconds": 900}

    run = await client.runs.create(
        thread_id, "incident_copilot",
        input={"incident_id": incident_id, "alert": ALERT, "telemetry": TELEMETRY}, context=context,
    )
    await client.runs.join(thread_id, run["run_id"])
    assert (await client.runs.get(thread_id, run["run_id"]))["status"] == "success", dev_server.log()
    state = await client.threads.get_state(thread_id)
    assert state["next"] == ["approve"], dev_server.log()
    [gate] = state["interrupts"]
    request = gate["value"]
    assert request["incident_id"] == incident_id
    assert request["root_cause"]["fault_type"] == "deployment_regression"
    assert request["patch"]["kind"] == "revert"
    assert request["patch"]["diff"].startswith("diff --git")
    assert request["checks"] and all(check["ok"] for check in request["checks"])
    assert state["values"].get("pr") is None
    assert (await client.threads.get(thread_id))["status"] == "interrupted"
    assert incident_row(database_url, incident_id) == ("awaiting_approval", "web-frontend")  # on the dashboard too

    resume = await client.runs.create(
        thread_id, "incident_copilot",
        command={"resume": {"decision": "approve", "by": "sdk-test"}}, context=context,
    )
    final = await client.runs.join(thread_id, resume["run_id"])
    assert (await client.runs.get(thread_id, resume["run_id"]))["status"] == "success", dev_server.log()
    assert final["approval"]["decision"] == "approve" and final["approval"]["by"] == "sdk-test"
    assert final["pr"]["status"] == "created"
    assert final["pr"]["branch"] == f"incident-copilot/{incident_id}"
    assert final["brief"]["markdown"].startswith("#")
    assert Path(final["brief"]["markdown_path"]).is_file()
    assert Path(final["brief"]["markdown_path"]).is_relative_to(tmp_path / "output")  # the operator's OUTPUT_DIR
    assert not (tmp_path / "briefs").exists()
    assert incident_row(database_url, incident_id) == ("completed", "web-frontend")
    assert (await client.threads.get(thread_id))["status"] == "idle"

    # the thread's checkpoints are the project's Postgres rows, not the dev server's memory
    history = await client.threads.get_history(thread_id, limit=200)
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT checkpoint_id FROM checkpoints WHERE thread_id = %s AND checkpoint_ns = ''", (thread_id,)
        ).fetchall()
    assert rows, dev_server.log()
    assert {row[0] for row in rows} == {item["checkpoint"]["checkpoint_id"] for item in history}


def incident_row(database_url: str, incident_id: str) -> tuple[str, str] | None:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT status, service FROM incidents WHERE id = %s", (incident_id,)).fetchone()


async def test_run_input_cannot_escape_the_output_folder(dev_server: DevServer, database_url: str, tmp_path: Path):
    client = get_client(url=dev_server.url)
    thread = await client.threads.create()
    for incident_id in ("../../escaped", thread["thread_id"] + "-other"):
        run = await client.runs.create(thread["thread_id"], "incident_copilot",
                                       input={"incident_id": incident_id, "alert": ALERT, "telemetry": TELEMETRY})
        await client.runs.join(thread["thread_id"], run["run_id"])
        assert (await client.runs.get(thread["thread_id"], run["run_id"]))["status"] == "error", dev_server.log()
    assert not (tmp_path.parent / "escaped").exists() and not (tmp_path / "output").exists(), "a brief was written"
    # without any context the run has the operator's settings: it stops at the gate
    fresh = await client.threads.create()
    run = await client.runs.create(fresh["thread_id"], "incident_copilot",
                                   input={"alert": ALERT, "telemetry": TELEMETRY})
    await client.runs.join(fresh["thread_id"], run["run_id"])
    assert (await client.runs.get(fresh["thread_id"], run["run_id"]))["status"] == "success", dev_server.log()
    assert (await client.threads.get_state(fresh["thread_id"]))["next"] == ["approve"]
