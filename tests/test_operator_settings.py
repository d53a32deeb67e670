"""Issue 10: settings only the operator sets. Incident ids are names, never paths, whoever starts the run;
bad settings stop `serve` with a message (exit 2, or 1 for an unreachable database), never a traceback; a
service without authentication on a non-loopback address says so."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from graph.context import Context
from tests.conftest import REPO_ROOT
from tools.net import free_port

KEY = "operator-key-0123456789abcdef"


def serve(tmp_path: Path, env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """`incident-copilot serve` expected to stop at start."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(("INCIDENT_COPILOT_", "WEBHOOK_"))}
    full |= {"WEBHOOK_API_KEY": KEY, "OUTPUT_DIR": str(tmp_path / "out"), "INCIDENT_COPILOT_HOME": str(tmp_path),
             "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/nothing", **env}
    return subprocess.run([sys.executable, str(REPO_ROOT / "cli.py"), "serve", "--port", str(free_port()), *args],
                          env=full, cwd=tmp_path, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


@pytest.mark.parametrize(("env", "code", "names"), [
    ({"OUTPUT_DIR": "/proc/no-such-folder"}, 2, "OUTPUT_DIR"),
    ({"INCIDENT_COPILOT_HOME": "/proc/no-such-folder"}, 2, "INCIDENT_COPILOT_HOME"),
    ({"DATABASE_URL": "this is not a url"}, 2, "DATABASE_URL"),
    ({"DATABASE_URL": "postgresql://postgres:hunter2-secret@127.0.0.1:1/x"}, 1, "DATABASE_URL"),
    ({"INCIDENT_COPILOT_WORKERS": "many"}, 2, "INCIDENT_COPILOT_WORKERS"),
])
def test_bad_settings_stop_serve_with_a_message_not_a_traceback(tmp_path, env, code, names):
    done = serve(tmp_path, env)
    output = done.stdout + done.stderr
    assert done.returncode == code, output
    assert "Traceback" not in output and names in output, output
    assert "hunter2" not in output


def test_auth_disabled_on_a_public_address_warns(tmp_path):
    env = {"INCIDENT_COPILOT_AUTH": "disabled", "INCIDENT_COPILOT_LOCAL": "true"}
    public = serve(tmp_path, env, "--host", "0.0.0.0")  # stops at the unreachable database, after the warning
    assert "warning: authentication is disabled" in public.stderr and "0.0.0.0" in public.stderr, public.stderr
    loopback = serve(tmp_path, env, "--host", "127.0.0.1")
    assert "authentication is disabled" not in loopback.stderr, loopback.stderr


@pytest.mark.parametrize("incident_id", ["../../escaped", "/tmp/abs", "a/b", "..", "x" * 200])
async def test_the_graph_refuses_an_incident_id_that_is_a_path(tmp_path, incident_id):
    from langgraph.checkpoint.memory import InMemorySaver

    from graph.builder import build_graph
    from sim.scenarios import build_scenario
    from state import TelemetrySpec
    from tools.database import checkpoint_serializer

    output = tmp_path / "a" / "b" / "output"
    end = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    scenario = build_scenario("memory_leak", 1, end)
    graph = build_graph(checkpointer=InMemorySaver(serde=checkpoint_serializer()))
    with pytest.raises(ValueError, match="incident id"):
        await graph.ainvoke(
            {"incident_id": incident_id, "alert": scenario.alert,
             "telemetry": TelemetrySpec(kind="sim", scenario="memory_leak", seed=1, end=end)},
            {"configurable": {"thread_id": "t1"}},
            context=Context(output_dir=str(output), notify_channels=("file",)),
        )
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written == [], written


@pytest.mark.parametrize("command", [["incidents", "show"], ["incidents", "history"], ["incidents", "approve"],
                                     ["incidents", "reject"]])
def test_the_cli_refuses_an_incident_id_that_is_a_path(tmp_path, command):
    env = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENT_COPILOT_")}
    env |= {"INCIDENT_COPILOT_HOME": str(tmp_path), "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/x"}
    done = subprocess.run([sys.executable, str(REPO_ROOT / "cli.py"), *command, "../../x"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "incident id '../../x'" in done.stderr and "Traceback" not in done.stderr
