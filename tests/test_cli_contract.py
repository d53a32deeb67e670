"""The command line's contract: exit codes, --json output checked against schemas, help, version, fast start, the
configuration's errors, the approval question, true durations, and an eval that leaves the store alone."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time

import click
import jsonschema
import psycopg
import pytest

from tests.conftest import REPO_ROOT
from tools.net import free_port

HEAVY = ("langgraph", "langchain", "psycopg", "fastapi", "starlette", "uvicorn", "pydantic", "httpx", "jinja2",
         "PIL", "github", "rich", "state", "graph", "nodes", "tools", "web", "evals", "analysis")
NULLABLE_STR = {"type": ["string", "null"]}
HYPOTHESIS = {"type": "object", "required": ["service", "fault_type", "confidence", "evidence"],
              "properties": {"service": {"type": "string"}, "fault_type": {"type": "string"},
                             "confidence": {"type": "number", "minimum": 0, "maximum": 1},
                             "evidence": {"type": "array", "items": {"type": "string"}}}}
REPORT = {  # DESIGN.md 4.2, the investigate --json contract
    "type": "object",
    "required": ["incident_id", "service", "window", "outcome", "is_incident", "severity", "root_cause",
                 "hypotheses", "code_regression", "suggestions", "patch", "pr", "tokens", "errors"],
    "properties": {
        "incident_id": {"type": "string"}, "service": {"type": "string"},
        "outcome": {"enum": ["incident", "not_an_incident", "inconclusive"]},
        "window": {"type": "object", "required": ["start", "end"]},
        "is_incident": {"type": ["boolean", "null"]}, "severity": NULLABLE_STR,
        "root_cause": {**HYPOTHESIS, "required": [*HYPOTHESIS["required"], "summary"]},
        "hypotheses": {"type": "array", "items": HYPOTHESIS, "minItems": 1},
        "code_regression": {"type": "boolean"},
        "suggestions": {"type": "array", "items": {"type": "object", "required": ["action", "risk"],
                                                   "properties": {"risk": {"enum": ["low", "medium", "high"]}}}},
        "patch": {"type": ["object", "null"]}, "pr": {"type": ["object", "null"]},
        "tokens": {"type": "object", "required": ["input", "output"]},
        "errors": {"type": "array", "items": {"type": "object", "required": ["node", "message", "source"]}},
    },
}
RUN = {"type": "object", "required": ["incident_id", "status", "seconds", "report", "awaiting_approval"],
       "properties": {"status": {"type": "string"}, "seconds": {"type": "number", "exclusiveMinimum": 0},
                      "report": REPORT, "awaiting_approval": {"type": ["object", "null"]}}}
SCHEMAS = {
    "report": REPORT,
    "run": RUN,
    "demo": {"type": "object", "required": ["incidents", "median_seconds"],
             "properties": {"incidents": {"type": "array", "items": RUN, "minItems": 1}}},
    "list": {"type": "object", "required": ["items"], "properties": {"items": {"type": "array", "items": {
        "type": "object", "required": ["id", "service", "alertname", "status", "severity", "root_cause", "created_at"],
        "properties": {"status": {"enum": ["queued", "investigating", "awaiting_approval", "completed",
                                           "not_an_incident", "failed", "resolved"]}}}}}},
    "history": {"type": "object", "required": ["incident_id", "checkpoints"], "properties": {"checkpoints": {
        "type": "array", "minItems": 1, "items": {"type": "object", "required": [
            "checkpoint_id", "step", "created_at", "source", "ran", "next"]}}}},
    "migrate": {"type": "object", "required": ["database", "applied"], "properties": {
        "applied": {"type": "array", "items": {"type": "string", "pattern": r"^\d{4}_.*\.sql$"}}}},
    "config": {"type": "object", "required": ["settings", "sources"], "properties": {
        "settings": {"type": "object",
                     "additionalProperties": {"type": "object", "required": ["value", "source", "env"]}},
        "sources": {"type": "array", "items": {"type": "object", "required": ["name", "state", "detail"],
                                               "properties": {"state": {"enum": ["ok", "down", "off"]}}}}}},
    "eval": {"type": "object", "required": ["cases", "top1_service", "top3_service", "top1_fault", "false_alarms_ok",
                                            "median_seconds", "per_scenario", "store"]},
}


def cli(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO_ROOT / "cli.py"), *args], capture_output=True, text=True,
                          env=env, stdin=subprocess.DEVNULL, timeout=timeout, cwd=REPO_ROOT)


def parsed(done: subprocess.CompletedProcess, schema: str) -> dict:
    """The command's stdout as JSON, validated against its schema."""
    value = json.loads(done.stdout)
    jsonschema.validate(value, SCHEMAS[schema])
    return value


def environment(database_url: str, tmp_path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LOKI_URL", "PROMETHEUS_URL", "LLM_PROVIDER",
                                                            "GOOGLE_API_KEY", "TELEMETRY_CONFIG")}
    return {**env, "DATABASE_URL": database_url, "OUTPUT_DIR": str(tmp_path / "out"), **extra}


def test_help_imports_nothing_heavy():
    """`--help` answers from click alone: no graph, database driver, web framework or pydantic is imported."""
    paths = [[], ["demo"], ["investigate"], ["incidents"], ["incidents", "list"], ["incidents", "approve"],
             ["eval"], ["serve"], ["db", "migrate"], ["config", "check"], ["sim", "serve"], ["sim", "export"]]
    probe = ("import json, sys, cli\n"
             f"for path in {paths!r}:\n"
             "    assert cli.main([*path, '--help']) == 0, path\n"
             "print(json.dumps(sorted(sys.modules)), file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stderr.strip().splitlines()[-1])
    heavy = sorted(m for m in loaded if m.split(".")[0] in HEAVY)
    assert heavy == [], f"--help imported {heavy[:20]}"
    assert "Exit codes: 0 done" in done.stdout


def walk(command: click.Command, path: tuple[str, ...] = ()):
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from walk(sub, (*path, name))


def test_every_flag_has_help_with_an_example_and_every_command_an_example():
    from cli import cli as root

    missing = []
    for path, command in walk(root):
        for param in command.params:
            if isinstance(param, click.Option) and param.name != "help" and "e.g." not in (param.help or ""):
                missing.append(f"{' '.join(path) or 'incident-copilot'} {param.opts[0]}")
        if not isinstance(command, click.Group) and "Example" not in (command.epilog or ""):
            missing.append(f"{' '.join(path)}: no example")
    assert missing == [], f"options without an example in their help: {missing}"


def test_version():
    done = cli("--version", env=dict(os.environ))
    assert done.returncode == 0 and re.fullmatch(r"incident-copilot \d+\.\d+\.\d+\S*\n", done.stdout), done.stdout


def test_exit_codes_of_several_results():
    from cli import Exit, exit_code_of, most_pressing

    assert exit_code_of("completed", {"is_incident": True}) == Exit.OK
    assert exit_code_of("not_an_incident", {"is_incident": False}) == Exit.OK
    assert exit_code_of("completed", {"is_incident": None}) == Exit.INCONCLUSIVE
    assert exit_code_of("completed", {"outcome": "inconclusive", "is_incident": None}) == Exit.INCONCLUSIVE
    assert exit_code_of("awaiting_approval", {"is_incident": True}) == Exit.AWAITING_APPROVAL
    assert exit_code_of("failed", None) == Exit.ERROR
    assert most_pressing([Exit.OK, Exit.INCONCLUSIVE, Exit.AWAITING_APPROVAL]) == Exit.AWAITING_APPROVAL
    assert most_pressing([Exit.AWAITING_APPROVAL, Exit.ERROR]) == Exit.ERROR and most_pressing([]) == Exit.OK


def test_commands_exit_with_their_documented_codes_and_print_json_by_schema(database_url, tmp_path):
    env = environment(database_url, tmp_path)
    at = "2026-11-21T12:00:00Z"
    waiting = cli("investigate", "--scenario", "deployment_regression", "--at", at, "--json", env=env)
    assert waiting.returncode == 4, waiting.stderr
    report = parsed(waiting, "report")
    assert report["patch"] is not None and report["pr"] is None
    incident_id = report["incident_id"]

    quiet = cli("investigate", "--scenario", "false_alarm", "--at", at, "--json", env=env)
    assert quiet.returncode == 0, quiet.stderr
    assert parsed(quiet, "report")["is_incident"] is False

    listed = parsed(cli("incidents", "list", "--json", env=env), "list")
    assert [i["status"] for i in listed["items"]] == ["not_an_incident", "awaiting_approval"]
    only = parsed(cli("incidents", "list", "--status", "awaiting_approval", "--json", env=env), "list")
    assert [i["id"] for i in only["items"]] == [incident_id]
    bogus = cli("incidents", "list", "--status", "bogus", env=env)
    assert bogus.returncode == 2 and "'bogus' is not one of" in bogus.stderr

    shown = cli("incidents", "show", incident_id, "--json", env=env)
    assert shown.returncode == 4 and parsed(shown, "report")["incident_id"] == incident_id
    unknown = cli("incidents", "show", "inc-unknown", "--json", env=env)
    assert unknown.returncode == 1 and "unknown incident" in unknown.stderr and unknown.stdout == ""
    assert parsed(cli("incidents", "history", incident_id, "--json", env=env), "history")["incident_id"] == incident_id

    rejected = cli("incidents", "reject", incident_id, "--by", "dana", "--json", env=env)
    assert rejected.returncode == 0, rejected.stderr
    run = parsed(rejected, "run")
    assert run["status"] == "completed" and run["report"]["pr"] is None and "diff --git" in rejected.stderr

    migrated = parsed(cli("db", "migrate", "--json", env=env), "migrate")
    assert migrated["applied"] == [], "the migrations ran when the first command opened the database"

    usage = cli("investigate", "--scenario", "memory_leak", "--service", "x", env=env)
    assert usage.returncode == 2 and "either --service" in usage.stderr
    no_command = cli("nonsense", env=env)
    assert no_command.returncode == 2


def test_demo_reports_true_durations_and_its_json(database_url, tmp_path):
    env = environment(database_url, tmp_path)
    done = cli("demo", "--scenario", "deployment_regression", "--yes", env=env)
    assert done.returncode == 0, done.stderr
    steps_ms = [int(m) for m in re.findall(r"^  \S \S+\s+(\d+) ms", done.stdout, re.M)]
    total = float(re.search(r"completed, ([\d.]+) s of graph runs", done.stdout).group(1))
    # the graph's steps, before and after the gate, all count: the total is never just the part after approval
    assert len(steps_ms) >= 15 and total >= 0.9 * sum(steps_ms) / 1000, (total, sum(steps_ms))
    as_json = cli("demo", "--scenario", "disk_full", "--json", env=env)
    assert as_json.returncode == 0, as_json.stderr
    (incident,) = parsed(as_json, "demo")["incidents"]
    assert incident["report"]["root_cause"]["fault_type"] == "disk_full"


def test_failed_sources_are_marked_as_failed(database_url, tmp_path):
    closed = f"http://127.0.0.1:{free_port()}"
    env = environment(database_url, tmp_path, LOKI_URL=closed, PROMETHEUS_URL=closed)
    done = cli("investigate", "--service", "checkout", "--window", "15m", env=env)
    for source in ("logs", "metrics", "deploys"):
        assert re.search(rf"^  ✗ {source}\s+\d+ ms  failed: ", done.stdout, re.M), done.stdout
    assert not re.search(r"^  ✓ (logs|metrics|deploys) ", done.stdout, re.M)
    assert done.returncode == 3 and "inconclusive" in done.stdout, done.stdout + done.stderr  # nothing was read


def test_a_bad_configuration_is_refused_with_one_message_per_value(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENT_COPILOT_") or k == "INCIDENT_COPILOT_HOME"}
    typo = cli("config", "check", env={**env, "INCIDENT_COPILOT_WORKRS": "3"})
    assert typo.returncode == 2
    assert ("INCIDENT_COPILOT_WORKRS (environment): not a setting (did you mean INCIDENT_COPILOT_WORKERS?)"
            in typo.stderr)
    config = tmp_path / "incident-copilot.toml"
    config.write_text('[server]\nworkers = 0\n[run]\nwindow_seconds = "soon"\n[telemetry.loki]\nlabl = "app"\n')
    bad = cli("--config", str(config), "config", "check", env={**env, "LOKI_URL": "loki:3100",
                                                                  "GOOGLE_API_KEY": "AIza-secret-value-123"})
    assert bad.returncode == 2
    lines = bad.stderr.splitlines()
    assert any(line.strip().startswith(f"server.workers ({config} [server] workers) = 0:") for line in lines), lines
    assert any("run.window_seconds" in line and "'soon'" in line for line in lines), lines
    assert any("telemetry.loki_url (environment LOKI_URL)" in line and "http://" in line for line in lines), lines
    assert any("unknown key 'telemetry.loki.labl'" in line for line in lines), lines
    assert "AIza-secret-value-123" not in bad.stderr + bad.stdout


def test_config_check_prints_the_effective_configuration_masked_and_which_sources_answer(database_url, tmp_path):
    key = "webhook-key-0123456789abcdef"
    closed = f"http://127.0.0.1:{free_port()}"
    env = environment(database_url, tmp_path, WEBHOOK_API_KEY=key, PROMETHEUS_URL=closed)
    (tmp_path / ".env").write_text("RUNBOOKS_DIR=" + str(REPO_ROOT / "sim" / "runbooks") + "\n")
    done = subprocess.run([sys.executable, str(REPO_ROOT / "cli.py"), "config", "check", "--json"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr  # Prometheus is down
    report = parsed(done, "config")
    settings, sources = report["settings"], {s["name"]: s for s in report["sources"]}
    assert key not in done.stdout and settings["server.webhook_api_key"]["value"] == "********"
    assert settings["server.webhook_api_key"]["source"] == "environment WEBHOOK_API_KEY"
    assert settings["runbooks.dir"]["source"] == f"{tmp_path / '.env'} RUNBOOKS_DIR".replace(f"{tmp_path}/", "")
    assert settings["server.workers"] == {"value": "2", "source": "default", "env": "INCIDENT_COPILOT_WORKERS"}
    assert sources["database"]["state"] == "ok" and sources["prometheus"]["state"] == "down"
    assert sources["runbooks"]["state"] == "ok" and sources["loki"]["state"] == "off"
    human = subprocess.run([sys.executable, str(REPO_ROOT / "cli.py"), "config", "check"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)
    assert "✗ down" in human.stdout and key not in human.stdout


def tables(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        query = "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        return conn.execute(query).fetchone()[0]


def test_eval_leaves_the_configured_store_untouched(database_url, tmp_path):
    env = environment(database_url, tmp_path)
    assert tables(database_url) == 0
    done = cli("eval", "--seeds", "1", "--scenario", "false_alarm", "--scenario", "disk_full", "--json", env=env)
    assert done.returncode == 0, done.stderr
    scores = parsed(done, "eval")
    assert scores["cases"] == 2 and scores["top1_service"] == 1.0
    assert tables(database_url) == 0, "eval wrote into the configured database"
    throwaway = scores["store"]["database"]
    assert throwaway.startswith("ic_eval_") and scores["store"]["kept"] is False, scores["store"]
    with psycopg.connect(database_url) as conn:  # and the throwaway one is gone (other evals may run beside this one)
        left = conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (throwaway,)).fetchone()[0]
    assert left == 0, f"the eval's throwaway database {throwaway} was not dropped"
    kept = cli("eval", "--seeds", "1", "--scenario", "false_alarm", "--into-store", "--json", env=env)
    assert kept.returncode == 0 and tables(database_url) > 0, "--into-store writes into the configured database"


def in_terminal(args: list[str], env: dict[str, str], answer: bytes, prompt: bytes, timeout: float = 120) -> tuple[
        int, str]:
    """Run the command on a pseudo-terminal, answer `answer` to `prompt`; (exit code, everything it wrote)."""
    primary, secondary = pty.openpty()
    process = subprocess.Popen([sys.executable, str(REPO_ROOT / "cli.py"), *args], stdin=secondary, stdout=secondary,
                               stderr=secondary, env=env, cwd=REPO_ROOT, close_fds=True)
    os.close(secondary)
    output, answered, deadline = b"", False, time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([primary], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # the command exited and closed the terminal
                break
            if not chunk:
                break
            output += chunk
            if not answered and prompt in output:
                os.write(primary, answer + b"\n")
                answered = True
        elif process.poll() is not None:
            break
    os.close(primary)
    return process.wait(timeout=30), re.sub(r"\x1b\[[0-9;]*m", "", output.decode(errors="replace"))


@pytest.mark.skipif(not hasattr(pty, "openpty"), reason="needs a pseudo-terminal")
def test_approve_shows_the_gate_and_asks_on_a_terminal(database_url, tmp_path):
    env = environment(database_url, tmp_path, TERM="dumb")
    waiting = cli("investigate", "--scenario", "deployment_regression", "--json", env=env)
    incident_id = json.loads(waiting.stdout)["incident_id"]
    question = b"Approve this fix? Approving will create the local branch incident-copilot/"
    code, output = in_terminal(["incidents", "approve", incident_id, "--by", "erin"], env, b"n", question)
    assert code == 4, output
    assert "diff --git" in output and "✔ tests_pass" in output and "still waits at the gate" in output
    assert "no pull request is opened and nothing is pushed" in output
    code, output = in_terminal(["incidents", "approve", incident_id, "--by", "erin"], env, b"y", question)
    assert code == 0, output
    assert "created: branch incident-copilot/" in output
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT decision, approver FROM approvals").fetchall() == [("approve", "erin")]


def test_heavy_imports_pause_the_collector_and_leave_it_on():
    import gc

    from cli import loading

    try:
        with loading():
            assert not gc.isenabled()
        assert gc.isenabled() and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


@pytest.mark.skipif(not hasattr(pty, "openpty"), reason="needs a pseudo-terminal")
def test_eval_shows_a_progress_bar_on_a_terminal(database_url, tmp_path):
    env = environment(database_url, tmp_path, TERM="xterm", COLUMNS="100")
    code, output = in_terminal(["eval", "--seeds", "1", "--scenario", "false_alarm", "--scenario", "disk_full"], env,
                               b"", b"\x00no question")
    assert code == 0, output
    assert re.search(r"cases\s.*\b0/2\b", output) and re.search(r"cases\s.*\b2/2\b", output), output
