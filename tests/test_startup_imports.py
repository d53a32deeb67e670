"""What `incident-copilot investigate` imports: the libraries of paths an investigation does not take (reading code
over MCP, opening a GitHub pull request, parsing runbooks, installing the run queue's schema) are imported where
they are used, so every investigation does not pay for them at start-up; and the library code that would be imported
whole for one submodule is deferred (tools/deferred_imports.py). No wall-clock limit is asserted here:
bench/investigate_speed.py measures the time."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import REPO_ROOT

# Top-level packages an investigation that reads no code, opens no pull request, has no runbooks folder and finds
# the database's schema up to date never uses.
NOT_ON_THE_PATH = {"mcp", "langchain_mcp_adapters", "github", "jwt", "yaml", "procrastinate", "sse_starlette",
                   "uvicorn"}

LOADED = f"""
import atexit, json, sys
atexit.register(lambda: print("MODULES " + json.dumps(sorted({{m.split('.')[0] for m in sys.modules}}
                                                           & set({sorted(NOT_ON_THE_PATH)!r}))), file=sys.stderr))
atexit.register(lambda: print("DEFERRED " + json.dumps({{
    "langsmith_api_types": sum(m.startswith("langsmith.types.") for m in sys.modules),
    "langgraph_sdk_client": "langgraph_sdk.client" in sys.modules,
    "httpx_command_line": sys.modules.get("httpx._main") is not None,
    "rich": "rich" in sys.modules}}), file=sys.stderr))
"""


def python(code: str, *, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, timeout=300,
                          env=env, stdin=subprocess.DEVNULL)


def loaded(done: subprocess.CompletedProcess) -> set[str]:
    line = next(line for line in done.stderr.splitlines() if line.startswith("MODULES "))
    return set(json.loads(line.removeprefix("MODULES ")))


def deferred(done: subprocess.CompletedProcess) -> dict:
    line = next(line for line in done.stderr.splitlines() if line.startswith("DEFERRED "))
    return json.loads(line.removeprefix("DEFERRED "))


def test_the_investigate_modules_import_none_of_the_other_paths_libraries():
    """Everything cli._investigate and settings_of import, the graph compiled, the connectors and the notices."""
    done = python(LOADED + """
import cli
from graph.context import ConfigError
from service.settings import load_settings
from graph.summary import incident_report
from service.runs import IncidentRunner
from tools.database import open_database
import tools.llm, tools.live, tools.telemetry, tools.notify.outbox, web.charts, nodes.notify
from graph.builder import build_graph
build_graph()
""")
    assert done.returncode == 0, done.stderr
    assert loaded(done) == set()


def test_an_investigation_end_to_end_imports_none_of_them(database_url, tmp_path):
    """A whole `investigate --json` run (a disk filling up: no deploy, so no code to read) on a database whose
    schema is already up to date. A simulated incident reads the simulated fleet's runbooks, so PyYAML is used."""
    env = {**os.environ, "DATABASE_URL": database_url, "OUTPUT_DIR": str(tmp_path / "out"), "LLM_PROVIDER": "offline",
           "INCIDENT_COPILOT_HOME": str(tmp_path / "home")}
    migrated = subprocess.run([sys.executable, str(REPO_ROOT / "cli.py"), "db", "migrate"], capture_output=True,
                              text=True, cwd=REPO_ROOT, env=env, timeout=300, stdin=subprocess.DEVNULL)
    assert migrated.returncode == 0, migrated.stderr
    done = python(LOADED + """
import runpy
sys.argv = ["cli.py", "investigate", "--scenario", "disk_full", "--seed", "1", "--json"]
try:
    runpy.run_path("cli.py", run_name="__main__")
except SystemExit as exit:
    print("EXIT", exit.code, file=sys.stderr)
""", env=env)
    assert "EXIT 0" in done.stderr, done.stderr
    assert json.loads(done.stdout)["root_cause"]["fault_type"] == "disk_full"
    assert loaded(done) <= {"yaml"}
    # LangSmith's run trees read one generated type (run_select_field); the other ~160 stay unread, as do the
    # LangGraph SDK's server clients and httpx's command line with rich
    assert deferred(done) == {"langsmith_api_types": 1, "langgraph_sdk_client": False, "httpx_command_line": False,
                              "rich": False}
