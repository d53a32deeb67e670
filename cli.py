"""The `incident-copilot` command: demo, investigate, incidents, eval, serve, db, config, sim.

Exit codes (stable; the README lists them):
  0  done: investigated (and decided, when a fix was proposed), or not an incident
  1  error: a run, the database or a source failed; an unknown incident; `config check` found a source down
  2  usage: bad arguments or a bad configuration
  3  inconclusive: the investigation could not decide (sources missing or unreadable)
  4  waiting for approval: a fix waits at the gate
A command that handles several incidents exits with the most pressing code among them: 1, then 4, then 3, then 0.

Only click and the standard library are imported up front, so `--help` answers at once; everything else is
imported by the command that needs it.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import statistics
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from service.statuses import STATUSES
from sim.cli_commands import sim
from sim.names import HARD_SCENARIOS, SCENARIOS

if TYPE_CHECKING:  # for annotations only: importing these takes seconds
    from graph.context import Context
    from service.runs import RunResult
    from service.settings import Settings


class Exit(IntEnum):
    """The command's exit codes."""

    OK = 0
    ERROR = 1
    USAGE = 2
    INCONCLUSIVE = 3
    AWAITING_APPROVAL = 4


PRESSING = (Exit.ERROR, Exit.AWAITING_APPROVAL, Exit.INCONCLUSIVE, Exit.OK)
MARKS = {"ok": ("✓", "green"), "degraded": ("⚠", "yellow"), "error": ("✗", "red")}
SOURCE_NODES = ("logs", "metrics", "traces", "deploys")


class ConfigProblem(click.ClickException):
    """The configuration is unusable (exit 2): every problem on its own line."""

    exit_code = Exit.USAGE

    def format_message(self) -> str:
        return "bad configuration:\n  " + self.message.replace("\n", "\n  ")


class Failure(click.ClickException):
    """Something failed (exit 1)."""

    exit_code = Exit.ERROR


@contextmanager
def loading() -> Iterator[None]:
    """Import a command's heavy modules: their hundreds of thousands of long-lived objects would make the cyclic
    collector run full passes that free nothing, so it pauses while they load and skips them afterwards (frozen);
    about a sixth of the import time of an investigation. Library code no command here uses is imported when first
    read, or not at all (tools/deferred_imports.py)."""
    from tools.deferred_imports import defer_heavy_imports

    defer_heavy_imports()
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def run(coroutine: Any) -> Any:
    """Run a command's async work (asyncio is imported here: the help never needs it)."""
    import asyncio

    return asyncio.run(coroutine)


# --- settings and output ----------------------------------------------------------------------------------


def settings_of(ctx: click.Context) -> Settings:
    """The configuration, loaded once per command from --config, the environment, .env and the TOML file."""
    root = ctx.find_root()
    root.ensure_object(dict)
    if "settings" not in root.obj:
        # checking the settings imports what they name (the LLM adapter, with LangChain's messages; psycopg's
        # conninfo; the notification routes), so they load with the collector paused too
        with loading():
            from graph.context import ConfigError
            from service.settings import SettingsError, load_settings

            try:
                root.obj["settings"] = load_settings(root.obj.get("config_file"))
                root.obj["settings"].run_context()  # run settings that cannot work (LLM provider, notification routes)
            except (SettingsError, ConfigError) as exc:
                raise ConfigProblem(str(exc)) from None
        home = root.obj["settings"].database.home
        if home is not None:  # the adapters and child processes read the data directory from the environment
            os.environ.setdefault("INCIDENT_COPILOT_HOME", str(home))
    return root.obj["settings"]


async def deliver_notifications(db: Any, context: Context) -> None:
    """Send what the run queued in the outbox (the service's dispatcher would otherwise); what a sink does not
    take now stays queued and is retried by the service."""
    from tools.notify.config import notify_config_of
    from tools.notify.outbox import deliver_now, pending_messages

    config = notify_config_of(context)
    if not config.routes:
        return
    sent = await deliver_now(db.pool, config)
    left = await pending_messages(db.pool)
    click.echo(f"  notifications: {sent} sent" + (f", {left} still queued" if left else ""), err=True)


def database_url(settings: Settings) -> str | None:
    return settings.database.url.get_secret_value() if settings.database.url else None


def emit_json(value: Any) -> None:
    """The one JSON document a --json command prints on stdout."""
    click.echo(json.dumps(value, indent=2, default=str))


def say(text: str = "", *, err: bool = False, **style: Any) -> None:
    """A line for people (colours only on a terminal)."""
    click.echo(click.style(text, **style) if style else text, err=err)


def most_pressing(codes: Iterable[Exit]) -> Exit:
    """The exit code of several results: an error first, then a gate waiting, then inconclusive, else done."""
    codes = set(codes)
    return next((code for code in PRESSING if code in codes), Exit.OK)


def exit_code_of(status: str, report: dict[str, Any] | None) -> Exit:
    """The exit code of one incident's run."""
    if status == "awaiting_approval":
        return Exit.AWAITING_APPROVAL
    if status in ("failed", "investigating", "queued"):
        return Exit.ERROR
    if report is not None and outcome_of(report) == "inconclusive":
        return Exit.INCONCLUSIVE
    return Exit.OK


def outcome_of(report: dict[str, Any]) -> str:
    """incident, not_an_incident or inconclusive (from the report's outcome, else from is_incident)."""
    if report.get("outcome"):
        return report["outcome"]
    return {True: "incident", False: "not_an_incident"}.get(report["is_incident"], "inconclusive")


def step_mark(node: str, update: dict[str, Any]) -> str:
    """ok, degraded (a source without data, or errors noted on the way) or error (a source that failed)."""
    part = (update.get("evidence_parts") or {}).get(node)
    if part is not None and part.status == "error":
        return "error"
    if update.get("errors") or (part is not None and part.status == "no_data"):
        return "degraded"
    return "ok"


def step_detail(node: str, update: dict[str, Any]) -> str:
    """A few words on what a node found, for the live progress lines."""
    if node == "ingest" and "window" in update:
        w = update["window"]
        return f"window {w.start:%H:%M}-{w.end:%H:%M} UTC"
    if node == "collect":
        return f"{len(update.get('services', []))} services, {len(update.get('dependencies', []))} dependencies"
    if node in SOURCE_NODES:
        part = update.get("evidence_parts", {}).get(node)
        if part is None:
            return ""
        if part.status == "error":
            return f"failed: {part.error}"
        if part.status == "no_data":
            return f"no data{': ' + part.error if part.error else ''}"
        if part.logs:
            return f"{part.logs.lines_read} lines, {len(part.logs.templates)} notable templates"
        if part.metrics:
            return f"{part.metrics.series_read} series, {len(part.metrics.signals)} signals kept"
        if part.traces:
            return f"{part.traces.traces_read} traces, {part.traces.error_traces} with errors"
        if part.deploys:
            return f"{len(part.deploys.deploys)} deploys/config changes"
        return part.status
    if node == "correlate" and "evidence" in update:
        c = update["evidence"].candidates
        return f"top candidate {c[0].service} / {c[0].fault_type} ({c[0].confidence:.0%})" if c else "no candidate"
    if node == "detect" and "detection" in update:
        d = update["detection"]
        if d.is_incident is None:
            return "inconclusive"
        if not d.is_incident:
            return "not an incident"
        return f"incident {d.severity}" + (
            f", code regression suspected in {d.suspect_service}" if d.code_regression else ""
        )
    if node == "analyze_code" and update.get("code"):
        code = update["code"]
        return f'commit {code.commit[:10]} "{code.subject}"' + (
            " matches the stack traces" if code.matches_stack_trace else ""
        ) + (f", first of {len(code.suspects)} deployed commits" if len(code.suspects) > 1 else "")
    if node == "rca" and "root_cause" in update:
        rc = update["root_cause"]
        return f"{rc.fault_type} in {rc.service} ({rc.confidence:.0%})"
    if node == "suggest":
        return f"{len(update.get('suggestions', []))} mitigations" + (
            f", runbooks: {', '.join(r.title for r in update['runbooks'])}" if update.get("runbooks") else "")
    if node == "propose_fix" and update.get("patch"):
        return update["patch"].title
    if node == "check_patch" and update.get("patch"):
        checks = update["patch"].checks
        failed = [c.name for c in checks if not c.ok]
        return f"{len(checks) - len(failed)}/{len(checks)} checks passed" + (
            f"; not offered for approval: {', '.join(failed)} failed" if failed else "")
    if node == "approve" and update.get("approval"):
        a = update["approval"]
        return f"{a.decision} by {a.by}"
    if node == "create_pr" and update.get("pr"):
        pr = update["pr"]
        if pr.status == "failed":
            return f"failed: {pr.detail}"
        return f"{pr.status}: " + (f"pull request {pr.url}" if pr.url else f"branch {pr.branch}")
    if node == "notify":
        return ", ".join(f"{n.channel}: {n.target or n.status}" for n in update.get("notifications", []))
    return ""


def step_printer(err: bool) -> Callable[[str, dict[str, Any], float], None]:
    """One line per finished node, marked ✓ (ok), ⚠ (degraded) or ✗ (failed)."""

    def print_step(node: str, update: dict[str, Any], seconds: float) -> None:
        symbol, colour = MARKS[step_mark(node, update)]
        detail = step_detail(node, update)
        for error in update.get("errors") or []:
            if error.message not in detail:
                detail += f"{'; ' if detail else ''}{error.message[:160]}"
        say(f"  {click.style(symbol, fg=colour)} {node:<13} {seconds * 1000:7.0f} ms  {detail}", err=err)

    return print_step


def show_gate(request: dict[str, Any], incident_id: str, *, err: bool = False) -> None:
    """What the gate asks about: the fix, its checks and the diff, coloured."""
    patch = request.get("patch", {})
    say(f"\n  ⏸  approval needed for incident {incident_id}", err=err, bold=True)
    say(f"     {patch.get('title', '')}", err=err)
    for rank, suspect in enumerate(request.get("suspects", []), start=1):
        say(f"     suspect {rank}: {suspect['commit'][:10]} \"{suspect['subject']}\": "
            + "; ".join(suspect["reasons"][:2]), err=err)
    say(f"     tests before: {patch.get('tests_before', 'not_run')}, after: {patch.get('tests_after', 'not_run')}",
        err=err)
    for check in request.get("checks", []):
        mark = click.style("✔", fg="green") if check["ok"] else click.style("✘", fg="red")
        say(f"     {mark} {check['name']}" + (f": {check['detail'][:200]}" if not check["ok"] and check.get("detail")
                                               else ""), err=err)
    say("", err=err)
    for line in patch.get("diff", "").splitlines():
        style: dict[str, Any] = {}
        if line.startswith(("diff --git", "index ", "--- ", "+++ ")):
            style = {"bold": True}
        elif line.startswith("@@"):
            style = {"fg": "cyan"}
        elif line.startswith("+"):
            style = {"fg": "green"}
        elif line.startswith("-"):
            style = {"fg": "red"}
        say(f"     {line}", err=err, **style)


def describe(result: RunResult, seconds: float, *, err: bool = False) -> None:
    """Where a run ended, how long the runs of this command took, and where the brief is."""
    from graph.summary import incident_report

    report = incident_report(result.values)
    outcome = outcome_of(report)
    rc = report["root_cause"]
    say(f"\n  incident {result.incident_id}: {result.status}, {seconds:.2f} s of graph runs", err=err, bold=True)
    if outcome == "incident":
        say(f"  root cause: {rc['fault_type']} in {rc['service']} ({rc['confidence']:.0%}), severity "
            f"{report['severity']}", err=err)
    elif outcome == "inconclusive":
        guess = (f"best guess: {rc['fault_type']} in {rc['service']} ({rc['confidence']:.0%})"
                 if rc["fault_type"] != "none" else "no candidate")
        say(f"  inconclusive, severity {report['severity']} (the alert's); {guess}", err=err, fg="yellow")
        for error in report["errors"][:4]:
            say(f"    could not: {error['message'][:160]}", err=err, fg="yellow")
    else:
        say("  verdict: not an incident", err=err)
    brief = result.values.get("brief")
    if brief is not None and brief.html_path:
        say(f"  brief: {brief.html_path}", err=err)


def result_json(result: RunResult, seconds: float) -> dict[str, Any]:
    """One run's outcome for --json: its status, the seconds of graph runs, the report, the open gate."""
    from graph.summary import incident_report

    return {"incident_id": result.incident_id, "status": result.status, "seconds": round(seconds, 3),
            "report": incident_report(result.values), "awaiting_approval": result.interrupt}


def approver() -> str:
    """Who approves from this terminal."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except Exception:
        return "cli:unknown"


def print_table(columns: list[str], rows: list[list[str]], styled: tuple[int, ...] = ()) -> None:
    """A table for people (rich); on a pipe every value whole, one row per line. Values are text, not markup,
    except in the `styled` columns."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console() if sys.stdout.isatty() else Console(width=400, no_color=True)
    table = Table(*columns, box=None, header_style="bold")
    for column in table.columns[:1]:
        column.no_wrap = True
    for row in rows:
        table.add_row(*(value if i in styled else escape(value) for i, value in enumerate(row)))
    console.print(table)


def interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def parse_time(text: str | None) -> datetime | None:
    """An ISO 8601 time (naive = UTC), or None."""
    if not text:
        return None
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not ISO 8601, e.g. 2026-11-21T12:00:00Z", param_hint="--at") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def parse_duration(text: str) -> int:
    """'15m' -> 900; accepts s, m, h suffixes or plain seconds, between 1m and 24h."""
    units = {"s": 1, "m": 60, "h": 3600}
    clean = text.strip().lower()
    try:
        seconds = int(clean[:-1]) * units[clean[-1]] if clean[-1:] in units else int(clean)
    except (ValueError, IndexError):
        raise click.BadParameter(f"{text!r}: use e.g. 900, 15m or 1h", param_hint="--window") from None
    if not 60 <= seconds <= 86400:
        raise click.BadParameter("the window must be between 1m and 24h", param_hint="--window")
    return seconds


def sim_context(settings: Settings, **overrides: Any) -> Context:
    """Run settings for simulated incidents: the simulated fleet's own runbooks unless RUNBOOKS_DIR names others."""
    from sim import RUNBOOKS_DIR

    context = settings.run_context(**overrides)
    if context.runbooks_dir is None:
        context.runbooks_dir = str(RUNBOOKS_DIR)
    return context


def sim_case(name: str, seed: int, at: datetime | None) -> tuple[Any, Any]:
    from sim.scenarios import build_scenario
    from state import TelemetrySpec

    end = (at or datetime.now(UTC)).replace(second=0, microsecond=0)
    return build_scenario(name, seed, end), TelemetrySpec(kind="sim", scenario=name, seed=seed, end=end)


def live_case(service: str, at: datetime | None) -> tuple[Any, Any]:
    from service.alert_payloads import fingerprint_of
    from state import Alert, TelemetrySpec

    end = at or datetime.now(UTC)
    alert = Alert(source="cli", alertname="ManualInvestigation", service=service, starts_at=end,
                  fingerprint=fingerprint_of("ManualInvestigation", service),
                  summary=f"investigation of {service} requested from the command line")
    return alert, TelemetrySpec(kind="live", end=end)


# --- the commands -----------------------------------------------------------------------------------------

JSON_HELP = "print one JSON document instead of text, e.g. --json | jq ."


def incident_id_argument(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """An incident id argument: a name, never a path (usage error, exit 2, otherwise)."""
    from state import invalid_incident_id

    problem = invalid_incident_id(value)
    if problem:
        raise click.BadParameter(problem)
    return value


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
             epilog="Exit codes: 0 done or no incident, 1 error, 2 usage or configuration, 3 inconclusive, "
                    "4 waiting for approval. Example: incident-copilot demo --yes")
@click.version_option(None, "--version", package_name="incident-copilot", prog_name="incident-copilot",
                      message="%(prog)s %(version)s", help="print the version and exit, e.g. --version")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="the TOML configuration file (default: $INCIDENT_COPILOT_CONFIG, else ./incident-copilot.toml), "
                   "e.g. --config /etc/incident-copilot.toml")
@click.pass_context
def cli(ctx: click.Context, config_file: Path | None) -> None:
    """Incident CoPilot: an alert in; root cause, mitigations, an approved fix and a brief out."""
    ctx.ensure_object(dict)
    ctx.obj["config_file"] = config_file
    if config_file is not None:
        os.environ["INCIDENT_COPILOT_CONFIG"] = str(config_file)  # server processes read the same file


@cli.command(epilog="Examples: incident-copilot demo --yes; incident-copilot demo --all --yes; "
                    "incident-copilot demo --scenario memory_leak --seed 3")
@click.option("--scenario", type=click.Choice(SCENARIOS), help="the simulated fault (default deployment_regression), "
                                                                "e.g. --scenario memory_leak")
@click.option("--all", "every", is_flag=True, help="every scenario, one after the other, with a progress bar, "
                                                    "e.g. --all --yes")
@click.option("--seed", type=int, default=1, show_default=True,
              help="which variant: service at fault, onset, noise, e.g. --seed 3")
@click.option("--yes", is_flag=True, help="approve proposed fixes without asking, e.g. --yes")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@click.pass_context
def demo(ctx: click.Context, scenario: str | None, every: bool, seed: int, yes: bool, as_json: bool) -> int:
    """Run simulated incidents end to end on the configured (default: embedded) database."""
    if scenario and every:
        raise click.UsageError("give --scenario NAME or --all, not both")
    settings = settings_of(ctx)
    names = list(SCENARIOS) if every else [scenario or "deployment_regression"]
    return run(_demo(settings, names, seed, yes, as_json))


async def _demo(settings: Settings, names: list[str], seed: int, yes: bool, as_json: bool) -> int:
    from nodes.approve import ApprovalDecision
    from service.runs import IncidentRunner
    from tools.database import open_database

    context = sim_context(settings, notify_channels=("file",))
    ask = interactive() and not as_json and not yes
    codes, durations, outputs = [], [], []
    quiet = as_json or len(names) > 1  # several incidents: a progress bar and one line each, not every step
    async with open_database(database_url(settings)) as db:
        runner = IncidentRunner(db, context, on_step=None if quiet else step_printer(err=as_json))
        with progress_bar(len(names), "incidents", enabled=len(names) > 1) as advance:
            for name in names:
                scenario, telemetry = sim_case(name, seed, None)
                if not quiet:
                    say(f"\n▶ scenario {name} (seed {seed}): alert {scenario.alert.alertname} on "
                        f"{scenario.alert.service}", bold=True)
                result = await runner.start(scenario.alert, telemetry)
                seconds = result.seconds
                if result.status == "awaiting_approval":
                    decision = None
                    if yes:
                        decision = ApprovalDecision(decision="approve", by=approver(), comment="approved with --yes")
                    elif ask:
                        show_gate(result.interrupt or {}, result.incident_id)
                        question = (result.interrupt or {}).get("question", "Approve this fix?")
                        verdict = "approve" if click.confirm(f"\n  {question}", default=False) else "reject"
                        decision = ApprovalDecision(decision=verdict, by=approver())
                    if decision is not None:
                        result = await runner.resume(result.incident_id, decision)
                        seconds += result.seconds
                    elif not as_json:
                        say(f"\n  waiting for approval. To approve: incident-copilot incidents approve "
                            f"{result.incident_id}")
                        say(f"  to reject:  incident-copilot incidents reject {result.incident_id}")
                codes.append(exit_code_of(result.status, _report(result)))
                durations.append(seconds)
                outputs.append(result_json(result, seconds))
                if quiet and not as_json:
                    _one_line(name, result, seconds)
                elif not as_json:
                    describe(result, seconds)
                advance()
        await deliver_notifications(db, runner.context)
    if as_json:
        emit_json({"incidents": outputs, "median_seconds": round(statistics.median(durations), 3)})
    elif len(durations) > 1:
        say(f"\nmedian time per incident: {statistics.median(durations):.2f} s over {len(durations)} incidents")
    return most_pressing(codes)


def _report(result: RunResult) -> dict[str, Any] | None:
    from graph.summary import incident_report

    return incident_report(result.values) if result.values.get("alert") else None


def _one_line(name: str, result: RunResult, seconds: float) -> None:
    report = _report(result) or {}
    code = exit_code_of(result.status, report)
    symbol, colour = {Exit.OK: MARKS["ok"], Exit.ERROR: MARKS["error"]}.get(code, MARKS["degraded"])
    rc = report.get("root_cause") or {}
    found = (f"{rc['fault_type']} in {rc['service']} ({rc['confidence']:.0%})" if report.get("is_incident")
             else outcome_of(report).replace("_", " ") if report else "-")
    say(f"  {click.style(symbol, fg=colour)} {name:<26} {found:<50} {result.status:<18} {seconds:6.2f} s")


class progress_bar:  # noqa: N801 (used as a context manager, like open())
    """A progress bar on stderr for long work (rich); `advance()` after each item. Disabled: does nothing."""

    def __init__(self, total: int, unit: str, enabled: bool = True):
        self.total, self.unit, self.enabled, self.progress = total, unit, enabled, None

    def __enter__(self) -> Callable[[], None]:
        if not self.enabled:
            return lambda: None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(TextColumn(f"[bold]{self.unit}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=Console(stderr=True), transient=True)
        self.progress.start()
        task = self.progress.add_task(self.unit, total=self.total)
        return lambda: self.progress.advance(task)

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()


# One investigation drives one graph: its checkpoints are written one step at a time and only its parallel branches
# overlap, so two connections serve it (opening the migration lock and the checkpointer's setup needs both). The pool
# grew to ten when branches overlapped, each connection costing CPU to open: with two, bench.investigate_speed
# measured about 0.08 s less CPU per investigation.
INVESTIGATE_CONNECTIONS = 2


@cli.command(epilog="Examples: incident-copilot investigate --scenario db_connection_exhaustion --json; "
                    "incident-copilot investigate --service checkout --at 2026-11-21T12:00:00Z --window 15m --json")
@click.option("--scenario", type=click.Choice(SCENARIOS), help="investigate a simulated fault, e.g. "
                                                                "--scenario memory_leak")
@click.option("--service", help="investigate a service over live telemetry (LOKI_URL / PROMETHEUS_URL), "
                                "e.g. --service checkout")
@click.option("--seed", type=int, default=1, show_default=True, help="variant of the simulated scenario, e.g. --seed 5")
@click.option("--at", help="the alert time, ISO 8601 (default: now), e.g. --at 2026-11-21T12:00:00Z")
@click.option("--window", default="15m", show_default=True, help="the incident window, e.g. --window 30m")
@click.option("--brief", is_flag=True, help="also write the brief under the output directory, e.g. --brief")
@click.option("--json", "as_json", is_flag=True, help="print the investigation's JSON contract, e.g. --json | jq "
                                                      ".root_cause")
@click.pass_context
def investigate(ctx: click.Context, scenario: str | None, service: str | None, seed: int, at: str | None,
                window: str, brief: bool, as_json: bool) -> int:
    """Investigate one alert: live telemetry of a service, or a simulated scenario; stops at the approval gate."""
    if bool(scenario) == bool(service):
        raise click.UsageError("give either --service S (live telemetry) or --scenario NAME (simulated)")
    when, seconds = parse_time(at), parse_duration(window)
    settings = settings_of(ctx)
    if service and not (settings.telemetry.loki_url or settings.telemetry.prometheus_url):
        raise click.UsageError("live telemetry needs LOKI_URL and/or PROMETHEUS_URL (or [telemetry] in the config)")
    return run(_investigate(settings, scenario, service, seed, when, seconds, brief, as_json))


async def _investigate(settings: Settings, scenario: str | None, service: str | None, seed: int,
                       at: datetime | None, window: int, brief: bool, as_json: bool) -> int:
    with loading():
        from graph.summary import incident_report
        from service.runs import IncidentRunner
        from tools.database import open_database

    overrides = {"notify_channels": ("file",) if brief else (), "window_seconds": window}
    if scenario:
        context = sim_context(settings, **overrides)
        sim, telemetry = sim_case(scenario, seed, at)
        alert = sim.alert
    else:
        context = settings.run_context(**overrides)
        alert, telemetry = live_case(service, at)
    async with open_database(database_url(settings), max_size=INVESTIGATE_CONNECTIONS) as db:
        runner = IncidentRunner(db, context, on_step=None if as_json else step_printer(err=False))
        result = await runner.start(alert, telemetry)
        await deliver_notifications(db, runner.context)
    report = incident_report(result.values)
    if as_json:
        emit_json(report)
    else:
        if result.status == "awaiting_approval":
            say(f"\n  waiting for approval: incident-copilot incidents approve {result.incident_id}")
        describe(result, result.seconds)
    return exit_code_of(result.status, report)


@cli.group()
def incidents() -> None:
    """List, inspect, approve, reject or replay incidents."""


def _runner_command(settings: Settings, work: Callable[[Any], Any], *, steps: bool = False) -> Any:
    """Open the database and a runner, do `work(runner)`; a RunError is exit 1."""
    with loading():
        from service.runs import IncidentRunner, RunError
        from tools.database import open_database

    async def go() -> Any:
        async with open_database(database_url(settings)) as db:
            runner = IncidentRunner(db, settings.run_context(), on_step=step_printer(err=False) if steps else None)
            done = await work(runner)
            await deliver_notifications(db, runner.context)
            return done

    try:
        return run(go())
    except RunError as exc:
        raise Failure(str(exc)) from None


@incidents.command("list", epilog="Examples: incident-copilot incidents list --status awaiting_approval; "
                                  "incident-copilot incidents list --service checkout --json")
@click.option("--status", type=click.Choice(STATUSES), help="only incidents in this status, e.g. "
                                                            "--status awaiting_approval")
@click.option("--service", help="only incidents of this service, e.g. --service checkout")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True,
              help="at most this many, newest first, e.g. --limit 10")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@click.pass_context
def list_incidents(ctx: click.Context, status: str | None, service: str | None, limit: int, as_json: bool) -> int:
    """Incidents, newest first."""
    from service import incidents as store
    from service.routers.incidents import row_json

    rows = _runner_command(settings_of(ctx), lambda runner: store.list_incidents(
        runner.db.pool, status=status, service=service, limit=limit))
    items = [row_json(r) for r in rows]
    if as_json:
        emit_json({"items": items})
        return Exit.OK
    if not items:
        say("no incidents" + (" match these filters" if status or service else ""))
        return Exit.OK
    print_table(["id", "status", "sev", "service", "alert", "root cause", "created (UTC)"], [
        [r["id"], r["status"], r["severity"] or "-", r["service"], r["alertname"],
         f"{r['root_cause']['fault_type']} in {r['root_cause']['service']}" if r["root_cause"] else "-",
         (r["created_at"] or "")[:19]] for r in items])
    return Exit.OK


@incidents.command(epilog="Example: incident-copilot incidents show inc-20261121-120000-ab12cd --json")
@click.argument("incident_id", metavar="ID", callback=incident_id_argument)
@click.option("--json", "as_json", is_flag=True, help="print the JSON contract of investigate --json, e.g. --json")
@click.pass_context
def show(ctx: click.Context, incident_id: str, as_json: bool) -> int:
    """The brief of an incident (or its JSON report)."""
    from graph.summary import incident_report
    from service.runs import derive_status

    snapshot = _runner_command(settings_of(ctx), lambda runner: runner.snapshot(incident_id))
    report = incident_report(snapshot.values)
    if as_json:
        emit_json(report)
    else:
        brief = snapshot.values.get("brief")
        click.echo(brief.markdown if brief else json.dumps(report, indent=2))
    return exit_code_of(derive_status(snapshot), report)


@incidents.command(epilog="Example: incident-copilot incidents history inc-20261121-120000-ab12cd")
@click.argument("incident_id", metavar="ID", callback=incident_id_argument)
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@click.pass_context
def history(ctx: click.Context, incident_id: str, as_json: bool) -> int:
    """Every checkpoint of an incident: step, id, time, the nodes that ran, what runs next."""
    entries = _runner_command(settings_of(ctx), lambda runner: runner.history(incident_id))
    if as_json:
        emit_json({"incident_id": incident_id, "checkpoints": [vars(e) for e in entries]})
        return Exit.OK
    print_table(["step", "checkpoint_id", "created_at", "ran", "next"], [
        [str(e.step), e.checkpoint_id, e.created_at, ",".join(e.ran) or "-", ",".join(e.next) or "-"] for e in entries])
    return Exit.OK


def _decide(ctx: click.Context, incident_id: str, decision: str, by: str | None, comment: str | None, yes: bool,
            as_json: bool) -> int:
    """Show the gate, ask (approvals only, unless --yes), then resume the run from its checkpoint."""
    from nodes.approve import ApprovalDecision

    settings = settings_of(ctx)

    async def work(runner: Any) -> Any:
        snapshot = await runner.snapshot(incident_id)
        if not snapshot.interrupts:
            from service.runs import RunError, derive_status

            raise RunError(f"incident {incident_id} is not waiting for approval (status {derive_status(snapshot)})")
        show_gate(snapshot.interrupts[0].value, incident_id, err=as_json)
        if decision == "approve" and not yes:
            if not interactive():
                raise click.UsageError("approving needs a terminal to confirm on, or --yes")
            if not click.confirm(f"\n  {snapshot.interrupts[0].value.get('question', 'Approve this fix?')}",
                                 default=False):
                return None
        runner.on_step = step_printer(err=as_json)
        return await runner.resume(incident_id, ApprovalDecision(decision=decision, by=by or approver(),
                                                                 comment=comment or ""))

    result = _runner_command(settings, work)
    if result is None:
        say(f"  not approved: incident {incident_id} still waits at the gate")
        return Exit.AWAITING_APPROVAL
    if as_json:
        emit_json(result_json(result, result.seconds))
    else:
        if result.status == "awaiting_approval":
            show_gate(result.interrupt or {}, result.incident_id)
        describe(result, result.seconds)
    return exit_code_of(result.status, _report(result))


@incidents.command(epilog="Examples: incident-copilot incidents approve inc-20261121-120000-ab12cd; "
                          "incident-copilot incidents approve inc-20261121-120000-ab12cd --by carol --yes")
@click.argument("incident_id", metavar="ID", callback=incident_id_argument)
@click.option("--by", help="who approves (default: cli:<user>), e.g. --by carol")
@click.option("--comment", help="why, kept with the decision, e.g. --comment 'revert looks right'")
@click.option("--yes", is_flag=True, help="approve without showing the question first, e.g. --yes in scripts")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@click.pass_context
def approve(ctx: click.Context, incident_id: str, by: str | None, comment: str | None, yes: bool,
            as_json: bool) -> int:
    """Show the gate's checks and diff, ask, approve: the run resumes and writes the fix where the gate says (a
    GitHub pull request, or a local branch for repositories not on GitHub)."""
    return _decide(ctx, incident_id, "approve", by, comment, yes, as_json)


@incidents.command(epilog="Example: incident-copilot incidents reject inc-20261121-120000-ab12cd --comment 'not "
                          "this commit'")
@click.argument("incident_id", metavar="ID", callback=incident_id_argument)
@click.option("--by", help="who rejects (default: cli:<user>), e.g. --by carol")
@click.option("--comment", help="why, kept with the decision, e.g. --comment 'wrong commit'")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@click.pass_context
def reject(ctx: click.Context, incident_id: str, by: str | None, comment: str | None, as_json: bool) -> int:
    """Reject the proposed fix: no branch, no pull request; the run writes its brief."""
    return _decide(ctx, incident_id, "reject", by, comment, True, as_json)


@incidents.command(epilog="Example: incident-copilot incidents replay inc-20261121-120000-ab12cd --from 1f0c6a4e-...")
@click.argument("incident_id", metavar="ID", callback=incident_id_argument)
@click.option("--from", "checkpoint_id", required=True, metavar="CHECKPOINT_ID",
              help="the checkpoint to run again from (see `incidents history`), e.g. --from 1f0c6a4e-...")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@click.pass_context
def replay(ctx: click.Context, incident_id: str, checkpoint_id: str, as_json: bool) -> int:
    """Re-run the graph from a past checkpoint (a fork: the history is kept)."""

    async def work(runner: Any) -> Any:
        runner.on_step = None if as_json else step_printer(err=False)
        return await runner.replay(incident_id, checkpoint_id)

    result = _runner_command(settings_of(ctx), work)
    if as_json:
        emit_json(result_json(result, result.seconds))
    else:
        if result.status == "awaiting_approval":
            show_gate(result.interrupt or {}, result.incident_id)
        describe(result, result.seconds)
    return exit_code_of(result.status, _report(result))


@cli.command("eval", epilog="Examples: incident-copilot eval --seeds 10; incident-copilot eval --seeds 1 "
                            "--scenario disk_full --json; incident-copilot eval --seeds 10 --wire; "
                            "incident-copilot eval --dataset evalsets/nezha-ob; "
                            "incident-copilot eval --hard --seeds 5; incident-copilot eval --hard --wire --seeds 3")
@click.option("--seeds", type=click.IntRange(1, 1000), default=10, show_default=True,
              help="cases per scenario, e.g. --seeds 3")
@click.option("--scenario", "scenarios", type=click.Choice([*SCENARIOS, *HARD_SCENARIOS]), multiple=True,
              help="only these scenarios (repeatable), e.g. --scenario disk_full --scenario false_alarm")
@click.option("--hard", is_flag=True, help="the hard suite instead of the classic scenarios: the same faults with "
                                           "overlapping faults, trends begun before the window, bursty and "
                                           "low-traffic fleets, hard log forms (sim/names.py), e.g. --hard")
@click.option("--wire", is_flag=True, help="read every case over the wire: a real Prometheus backfilled with promtool, "
                                           "a Loki API over the recorded logs (with their stream labels) and "
                                           "Tempo's API over the traces, e.g. --wire")
@click.option("--dataset", type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="an eval set of recorded telemetry (e.g. from python -m evals.nezha), served over the wire, "
                   "e.g. --dataset evalsets/nezha-ob")
@click.option("--case", "case_ids", multiple=True, metavar="ID",
              help="with --dataset: only these case ids (repeatable), e.g. --case ob-2022-08-22-001")
@click.option("--into-store", is_flag=True, help="keep the eval's incidents in the configured database instead of a "
                                                 "throwaway one, e.g. --into-store")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@click.pass_context
def evaluate(ctx: click.Context, seeds: int, scenarios: tuple[str, ...], hard: bool, wire: bool, dataset: Path | None,
             case_ids: tuple[str, ...], into_store: bool, as_json: bool) -> int:
    """Accuracy over every scenario and N seeds (or over an eval set), through the whole graph, in a throwaway
    database."""
    if case_ids and dataset is None:
        raise click.UsageError("--case selects cases of a --dataset")
    if dataset is not None and (wire or scenarios):
        raise click.UsageError("--dataset reads its own cases over the wire: no --wire or --scenario with it")
    if hard and (scenarios or dataset is not None):
        raise click.UsageError("--hard runs the whole hard suite: no --scenario or --dataset with it")
    chosen = list(scenarios) or list(HARD_SCENARIOS if hard else SCENARIOS)
    settings = settings_of(ctx)
    store = eval_database(settings, into_store)
    with store as url:
        scores = run(_evaluate(url, seeds, chosen, wire, dataset, list(case_ids)))
    scores["store"] = store.described()
    if as_json:
        emit_json(scores)
    elif dataset is not None:
        from evals.scoring import format_dataset_table

        click.echo(format_dataset_table(scores))
    else:
        from evals.simulator import format_table

        click.echo(format_table(scores))
        if wire:
            say(f"over the wire: setup {scores['setup_seconds']:.0f} s, total {scores['total_seconds']:.0f} s")
    return Exit.OK


async def _evaluate(url: str | None, seeds: int, scenarios: list[str], wire: bool, dataset: Path | None,
                    case_ids: list[str]) -> dict[str, Any]:
    from evals.wire import WireSetupError

    if dataset is not None:
        from evals.dataset import DatasetError, evaluate_dataset, load_eval_set

        try:
            total = len(case_ids) or len(load_eval_set(dataset).cases)
            with progress_bar(total, "cases") as advance:
                return await evaluate_dataset(dataset, case_ids=case_ids or None, database_url=url,
                                              on_case=lambda _: advance())
        except (DatasetError, WireSetupError) as exc:
            raise click.UsageError(str(exc)) from None
    with progress_bar(seeds * len(scenarios), "cases") as advance:
        if not wire:
            from evals.simulator import evaluate_graph

            return await evaluate_graph(seeds, scenarios, database_url=url, on_case=lambda _: advance())
        from evals.wire import evaluate_wire

        try:
            return await evaluate_wire(seeds, scenarios, database_url=url, on_case=lambda _: advance())
        except WireSetupError as exc:
            raise Failure(str(exc)) from None


class eval_database:  # noqa: N801 (a context manager, like open())
    """The database an eval writes into: a throwaway one on the configured server (or the embedded one), dropped
    afterwards, so the store people read is never filled with eval incidents; the configured one with --into-store."""

    def __init__(self, settings: Settings, into_store: bool):
        self.settings, self.into_store, self.throwaway, self.url = settings, into_store, None, None

    def described(self) -> dict[str, Any]:
        """Where the eval's incidents went: the database's name and whether it was kept."""
        from psycopg.conninfo import conninfo_to_dict

        name = conninfo_to_dict(self.url).get("dbname") if self.url else "embedded"
        return {"database": name, "kept": self.into_store}

    def __enter__(self) -> str | None:
        if self.into_store:
            self.url = database_url(self.settings)
            return self.url
        import psycopg

        from tools.database import embedded_database_url, throwaway_database

        server = database_url(self.settings) or embedded_database_url()
        self.throwaway = throwaway_database(server, prefix="ic_eval")
        try:
            self.url = self.throwaway.__enter__()
            return self.url
        except psycopg.Error as exc:
            raise Failure(f"cannot create a throwaway database for the eval on the configured server ({exc}); "
                          "give --into-store to write the eval's incidents into the configured database") from None

    def __exit__(self, *exc: Any) -> None:
        if self.throwaway is not None:
            self.throwaway.__exit__(*exc)


@cli.command(epilog="Example: incident-copilot serve --host 0.0.0.0 --port 8080 --processes 2")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on, e.g. --host 0.0.0.0")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True, help="e.g. --port 9000")
@click.option("--log-level", type=click.Choice(["critical", "error", "warning", "info", "debug"]), default="info",
              show_default=True, help="uvicorn's log level, e.g. --log-level warning")
@click.option("--access-log", is_flag=True, help="log every request, e.g. --access-log")
@click.option("--processes", type=click.IntRange(1, 64), default=1, show_default=True,
              help="server processes on this port, sharing PostgreSQL, e.g. --processes 2")
@click.pass_context
def serve(ctx: click.Context, host: str, port: int, log_level: str, access_log: bool, processes: int) -> int:
    """Run the HTTP service: alert intake, the incidents API, the dashboard, /metrics."""
    from service.settings import SettingsError

    settings = settings_of(ctx)
    server_settings = settings.server_settings()
    try:  # refuse bad settings here, before any process starts
        server_settings.validate()
        server_settings.check_folders(settings.database.home)
    except SettingsError as exc:
        raise ConfigProblem(str(exc)) from None
    if server_settings.auth_disabled and not is_loopback(host):
        say(f"warning: authentication is disabled (INCIDENT_COPILOT_AUTH=disabled) and the service listens on "
            f"{host}: anyone who can reach this address can read incidents and approve fixes. Use --host 127.0.0.1 "
            "unless this network is yours alone.", err=True, fg="yellow")
    problem = database_unreachable(server_settings.database_url)
    if problem:
        raise Failure(problem)
    import uvicorn

    # several processes share nothing but PostgreSQL, where dedup, the run queue and approvals are decided, and
    # a folder where each writes its metrics, so that /metrics, whichever process answers, counts them all
    with metrics_folder(processes):
        uvicorn.run("server:create_app", factory=True, host=host, port=port, workers=processes,
                    log_level=log_level, access_log=access_log)
    return Exit.OK


@cli.command(epilog="Examples: incident-copilot worker --concurrency 4; "
                    "incident-copilot worker --metrics-port 9464 --metrics-host 0.0.0.0")
@click.option("--concurrency", type=click.IntRange(1, 64), default=None,
              help="graph runs at once in this process (default: INCIDENT_COPILOT_WORKERS), e.g. --concurrency 4")
@click.option("--metrics-port", type=click.IntRange(1, 65535), default=None,
              help="serve this worker's run and node metrics (Prometheus text) on this port, e.g. --metrics-port 9464")
@click.option("--metrics-host", default="127.0.0.1", show_default=True,
              help="the address --metrics-port binds, e.g. --metrics-host 0.0.0.0")
@click.pass_context
def worker(ctx: click.Context, concurrency: int | None, metrics_port: int | None, metrics_host: str) -> int:
    """Execute queued graph runs (and send notifications) in this process, apart from the HTTP intake; stops on
    SIGINT or SIGTERM, handing its in-flight runs back to the queue."""
    from service.worker import serve_workers

    settings = settings_of(ctx)
    server = settings.server_settings()
    context = settings.run_context(output_dir=server.output_dir)
    try:
        run(serve_workers(server, context, concurrency or server.workers,
                          (metrics_host, metrics_port) if metrics_port else None))
    except Exception as exc:  # the driver's own message names the host and the reason
        raise Failure(f"worker: {type(exc).__name__}: {exc}") from None
    return Exit.OK


@contextlib.contextmanager
def metrics_folder(processes: int) -> Iterator[None]:
    """With several processes, a fresh PROMETHEUS_MULTIPROC_DIR for them (removed afterwards); else nothing."""
    from service.metrics import MULTIPROCESS_ENV

    if processes == 1:
        yield
        return
    with tempfile.TemporaryDirectory(prefix="incident-copilot-metrics-") as folder:
        os.environ[MULTIPROCESS_ENV] = folder  # the processes read it when they start
        try:
            yield
        finally:
            os.environ.pop(MULTIPROCESS_ENV, None)


def is_loopback(host: str) -> bool:
    """Whether `host` is a loopback address or name (only this machine can connect)."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def database_unreachable(url: str | None) -> str | None:
    """Why the configured database cannot be reached (one line, no password), or None; the embedded one is
    started by the service itself."""
    if url is None:
        return None
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.Error as exc:
        params = conninfo_to_dict(url)
        where = f"{params.get('host', 'localhost')}:{params.get('port', 5432)}/{params.get('dbname', '')}"
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        return f"cannot reach the database at {where} (DATABASE_URL): {reason}"
    return None


@cli.group()
def db() -> None:
    """Database maintenance."""


@db.command(epilog="Example: DATABASE_URL=postgresql://postgres@db/incident_copilot incident-copilot db migrate")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@click.pass_context
def migrate(ctx: click.Context, as_json: bool) -> int:
    """Create the checkpointer's tables and apply the migrations."""
    from tools.database import open_database

    async def go() -> tuple[str, list[str]]:
        async with open_database(database_url(settings_of(ctx))) as opened:
            return opened.url, opened.applied

    try:
        url, applied = run(go())
    except Exception as exc:  # the driver's own message names the host and the reason
        raise Failure(f"database: {type(exc).__name__}: {exc}") from None
    where = url.split("@")[-1]
    if as_json:
        emit_json({"database": where, "applied": applied})
    else:
        say(f"database ready: checkpointer tables and migrations applied ({where})")
        say(f"  applied now: {', '.join(applied)}" if applied else "  no new migration: the schema is up to date")
    return Exit.OK


@cli.group()
def config() -> None:
    """The configuration: what is in effect and whether its sources answer."""


@config.command(epilog="Example: incident-copilot --config /etc/incident-copilot.toml config check --json")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@click.pass_context
def check(ctx: click.Context, as_json: bool) -> int:
    """Print the effective configuration (secrets masked, where each value comes from) and which sources answer."""
    from service.config_check import check_sources, effective_settings

    settings = settings_of(ctx)
    rows = effective_settings(settings, ctx.find_root().obj.get("config_file"))
    sources = run(check_sources(settings))
    if as_json:
        emit_json({"settings": rows, "sources": [vars(s) for s in sources]})
    else:
        print_table(["setting", "value", "from"], [[name, row["value"], row["source"]] for name, row in rows.items()])
        say()
        print_table(["source", "", "detail"], [
            [s.name, {"ok": "[green]✓ ok", "down": "[red]✗ down", "off": "[dim]- off"}[s.state], s.detail]
            for s in sources], styled=(1,))
    return Exit.ERROR if any(s.state == "down" for s in sources) else Exit.OK


cli.add_command(sim)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the command and return its exit code."""
    os.environ.setdefault("LANGSMITH_TRACING", "false")
    try:
        code = cli.main(args=argv, prog_name="incident-copilot", standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        click.echo("aborted", err=True)
        return Exit.ERROR
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
