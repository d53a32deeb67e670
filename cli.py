"""The `incident-copilot` command: demo, investigate, incidents, eval, db."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from graph.context import Context
from graph.summary import incident_report
from nodes.approve import ApprovalDecision
from service import incidents
from service.runs import IncidentRunner, RunError, RunResult
from state import Alert, TelemetrySpec
from tools.database import open_database

# --- output helpers -------------------------------------------------------------------------------------


def _step_detail(node: str, update: dict[str, Any]) -> str:
    """A few words on what a node found, for the live progress lines."""
    if node == "ingest" and "window" in update:
        w = update["window"]
        return f"window {w.start:%H:%M}-{w.end:%H:%M} UTC"
    if node == "collect":
        return f"{len(update.get('services', []))} services, {len(update.get('dependencies', []))} dependencies"
    if node in ("logs", "metrics", "traces", "deploys"):
        part = update.get("evidence_parts", {}).get(node)
        if part is None:
            return ""
        if part.status == "error":
            return f"error: {part.error}"
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
        if not d.is_incident:
            return "not an incident"
        return f"incident {d.severity}" + (
            f", code regression suspected in {d.suspect_service}" if d.code_regression else ""
        )
    if node == "analyze_code" and update.get("code"):
        code = update["code"]
        return f'commit {code.commit[:10]} "{code.subject}"' + (
            " matches the stack traces" if code.matches_stack_trace else ""
        )
    if node == "rca" and "root_cause" in update:
        rc = update["root_cause"]
        return f"{rc.fault_type} in {rc.service} ({rc.confidence:.0%})"
    if node == "suggest":
        return f"{len(update.get('suggestions', []))} mitigations"
    if node == "propose_fix" and update.get("patch"):
        return update["patch"].title
    if node == "check_patch" and update.get("patch"):
        checks = update["patch"].checks
        return f"{sum(c.ok for c in checks)}/{len(checks)} checks passed"
    if node == "approve" and update.get("approval"):
        a = update["approval"]
        return f"{a.decision} by {a.by}"
    if node == "create_pr" and update.get("pr"):
        pr = update["pr"]
        return f"{pr.status}: branch {pr.branch}" if pr.branch else f"{pr.status} {pr.detail}"
    if node == "notify":
        return ", ".join(f"{n.channel}: {n.target or n.status}" for n in update.get("notifications", []))
    return ""


def print_step(node: str, update: dict[str, Any], seconds: float) -> None:
    """One progress line per finished node."""
    print(f"  ✓ {node:<13} {seconds * 1000:7.0f} ms  {_step_detail(node, update)}", flush=True)


def approver() -> str:
    """Who approves from this terminal."""
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:
        return "cli:unknown"


def print_gate(result: RunResult) -> None:
    """Show what the gate asks about."""
    request = result.interrupt or {}
    patch = request.get("patch", {})
    print(f"\n  ⏸  approval needed for incident {result.incident_id}")
    print(f"     {patch.get('title', '')}")
    for check in request.get("checks", []):
        print(f"     {'✔' if check['ok'] else '✘'} {check['name']}")
    diff_lines = patch.get("diff", "").splitlines()
    print("     " + "\n     ".join(diff_lines[:30]))
    if len(diff_lines) > 30:
        print(f"     ... ({len(diff_lines) - 30} more lines)")


def print_outcome(result: RunResult) -> None:
    """Where the run ended."""
    values = result.values
    report = incident_report(values)
    rc = report["root_cause"]
    print(f"\n  incident {result.incident_id}: {result.status} in {result.seconds:.2f} s")
    if report["is_incident"]:
        cause = f"{rc['fault_type']} in {rc['service']} ({rc['confidence']:.0%})"
        print(f"  root cause: {cause}, severity {report['severity']}")
    else:
        print("  verdict: not an incident")
    brief = values.get("brief")
    if brief is not None and brief.html_path:
        print(f"  brief: {brief.html_path}")


# --- commands ------------------------------------------------------------------------------------------


def _sim_context(**overrides: Any) -> Context:
    """Run settings for simulated incidents: the simulated fleet's own runbooks unless RUNBOOKS_DIR names others."""
    from sim import RUNBOOKS_DIR

    context = Context.from_env(**overrides)
    if context.runbooks_dir is None:
        context.runbooks_dir = str(RUNBOOKS_DIR)
    return context


def _sim_case(name: str, seed: int, at: datetime | None):
    from sim.scenarios import build_scenario

    end = (at or datetime.now(UTC)).replace(second=0, microsecond=0)
    scenario = build_scenario(name, seed, end)
    return scenario, TelemetrySpec(kind="sim", scenario=name, seed=seed, end=end)


async def cmd_demo(args: argparse.Namespace) -> int:
    from sim.scenarios import SCENARIOS

    names = list(SCENARIOS) if args.all else [args.scenario]
    context = _sim_context(notify_channels=("file",))
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    durations = []
    async with open_database() as db:
        runner = IncidentRunner(db, context, on_step=print_step)
        for name in names:
            scenario, telemetry = _sim_case(name, args.seed, None)
            print(
                f"\n▶ scenario {name} (seed {args.seed}): alert {scenario.alert.alertname} on {scenario.alert.service}"
            )
            result = await runner.start(scenario.alert, telemetry)
            seconds = result.seconds
            if result.status == "awaiting_approval":
                print_gate(result)
                decision = None
                if args.yes:
                    decision = ApprovalDecision(decision="approve", by=approver(), comment="approved with --yes")
                elif interactive:
                    answer = input("\n  open the pull request? [y/N] ").strip().lower()
                    verdict = "approve" if answer in ("y", "yes") else "reject"
                    decision = ApprovalDecision(decision=verdict, by=approver())
                if decision is None:
                    print(
                        f"\n  waiting for approval. To approve: incident-copilot incidents approve {result.incident_id}"
                    )
                    print(f"  to reject:  incident-copilot incidents reject {result.incident_id}")
                else:
                    result = await runner.resume(result.incident_id, decision)
                    seconds += result.seconds
            print_outcome(result)
            durations.append(seconds)
    if len(durations) > 1:
        print(f"\nmedian time per incident: {statistics.median(durations):.2f} s over {len(durations)} incidents")
    return 0


def parse_time(text: str | None) -> datetime | None:
    """An ISO 8601 time (naive = UTC), or None."""
    if not text:
        return None
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise SystemExit(f"error: bad time {text!r} (use ISO 8601, e.g. 2026-11-21T12:00:00Z)") from exc
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _live_case(service: str, at: datetime | None):
    from service.alert_payloads import fingerprint_of

    end = at or datetime.now(UTC)
    alert = Alert(source="cli", alertname="ManualInvestigation", service=service, starts_at=end,
                  fingerprint=fingerprint_of("ManualInvestigation", service),
                  summary=f"investigation of {service} requested from the command line")
    return alert, TelemetrySpec(kind="live", end=end)


async def cmd_investigate(args: argparse.Namespace) -> int:
    if bool(args.scenario) == bool(args.service):
        print("error: give either --service S (live telemetry) or --scenario NAME (simulated)", file=sys.stderr)
        return 2
    at = parse_time(args.at)
    make_context = _sim_context if args.scenario else Context.from_env
    context = make_context(notify_channels=("file",) if args.brief else (), window_seconds=parse_duration(args.window))
    if args.service:
        if not (context.loki_url or context.prometheus_url):
            print("error: live telemetry needs LOKI_URL and/or PROMETHEUS_URL", file=sys.stderr)
            return 2
        alert, telemetry = _live_case(args.service, at)
    else:
        scenario, telemetry = _sim_case(args.scenario, args.seed, at)
        alert = scenario.alert
    async with open_database() as db:
        runner = IncidentRunner(db, context, on_step=None if args.json else print_step)
        result = await runner.start(alert, telemetry)
    report = incident_report(result.values)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_outcome(result)
    return 0


def parse_duration(text: str) -> int:
    """'15m' -> 900; accepts s, m, h suffixes or plain seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    text = text.strip().lower()
    try:
        seconds = int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)
    except (ValueError, IndexError) as exc:
        raise SystemExit(f"error: bad duration {text!r} (use e.g. 900, 15m, 1h)") from exc
    if not 60 <= seconds <= 86400:
        raise SystemExit("error: the window must be between 1m and 24h")
    return seconds


def _parse_decision(kind: str, args: argparse.Namespace) -> ApprovalDecision:
    return ApprovalDecision(decision=kind, by=args.by or approver(), comment=args.comment or "")


async def cmd_incidents(args: argparse.Namespace) -> int:
    context = Context.from_env(notify_channels=("file",))
    async with open_database() as db:
        runner = IncidentRunner(db, context, on_step=print_step)
        try:
            if args.action == "list":
                rows = await incidents.list_incidents(
                    db.pool, status=args.status, service=args.service, limit=args.limit
                )
                print(f"{'id':<32} {'status':<18} {'sev':<4} {'service':<16} root cause")
                for row in rows:
                    rc = row["root_cause"] or {}
                    cause = f"{rc.get('fault_type', '')} in {rc.get('service', '')}" if rc else "-"
                    print(
                        f"{row['id']:<32} {row['status']:<18} {row['severity'] or '-':<4} {row['service']:<16} {cause}"
                    )
                return 0
            if args.action == "show":
                snapshot = await runner.snapshot(args.id)
                report = incident_report(snapshot.values)
                if args.json:
                    print(json.dumps(report, indent=2))
                else:
                    brief = snapshot.values.get("brief")
                    print(brief.markdown if brief else json.dumps(report, indent=2))
                return 0
            if args.action == "history":
                print(f"{'step':>4}  {'checkpoint_id':<38} {'created_at':<33} {'ran':<28} next")
                for e in await runner.history(args.id):
                    print(
                        f"{e.step:>4}  {e.checkpoint_id:<38} {e.created_at:<33} {','.join(e.ran) or '-':<28} "
                        f"{','.join(e.next) or '-'}"
                    )
                return 0
            if args.action in ("approve", "reject"):
                result = await runner.resume(args.id, _parse_decision(args.action, args))
            elif args.action == "replay":
                result = await runner.replay(args.id, args.from_checkpoint)
            else:
                raise AssertionError(args.action)
            if result.status == "awaiting_approval":
                print_gate(result)
                print(f"\n  waiting for approval: incident-copilot incidents approve {result.incident_id}")
            print_outcome(result)
            return 0
        except RunError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1


async def cmd_eval(args: argparse.Namespace) -> int:
    from evals.simulator import evaluate_graph, format_table
    from evals.wire import WireSetupError

    if args.dataset:
        from evals.dataset import DatasetError, evaluate_dataset
        from evals.scoring import format_dataset_table

        try:
            scores = await evaluate_dataset(args.dataset, case_ids=args.case)
        except (DatasetError, WireSetupError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(json.dumps(scores, indent=2) if args.json else format_dataset_table(scores))
        return 0
    if args.wire:
        from evals.wire import evaluate_wire

        try:
            scores = await evaluate_wire(args.seeds, scenarios=args.scenario or None)
        except WireSetupError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    else:
        scores = await evaluate_graph(args.seeds, scenarios=args.scenario or None)
    print(json.dumps(scores, indent=2) if args.json else format_table(scores))
    if args.wire and not args.json:
        print(f"over the wire: setup {scores['setup_seconds']:.0f} s, total {scores['total_seconds']:.0f} s")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from service.settings import ServerSettings, SettingsError

    try:
        ServerSettings.from_env().validate()  # refuse bad settings here, before any process starts
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # several processes share nothing but PostgreSQL, where dedup, the run queue and approvals are decided
    uvicorn.run("server:create_app", factory=True, host=args.host, port=args.port, workers=args.processes,
                log_level=args.log_level, access_log=args.access_log)
    return 0


async def cmd_db(args: argparse.Namespace) -> int:
    async with open_database() as db:
        print(f"database ready: checkpointer tables and migrations applied ({db.url.split('@')[-1]})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    from sim.scenarios import SCENARIOS

    parser = argparse.ArgumentParser(prog="incident-copilot", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run simulated incidents end to end on the embedded database")
    which = demo.add_mutually_exclusive_group()
    which.add_argument("--scenario", choices=SCENARIOS, default="deployment_regression")
    which.add_argument("--all", action="store_true", help="every scenario, one after the other")
    demo.add_argument("--seed", type=int, default=1)
    demo.add_argument("--yes", action="store_true", help="approve the pull request without asking")
    demo.set_defaults(func=cmd_demo)

    inv = sub.add_parser("investigate", help="investigate one alert and print the result")
    inv.add_argument("--scenario", choices=SCENARIOS)
    inv.add_argument("--service", help="live telemetry (LOKI_URL / PROMETHEUS_URL): the alerted service")
    inv.add_argument("--seed", type=int, default=1)
    inv.add_argument("--at", help="alert time, ISO 8601 (default: now)")
    inv.add_argument("--window", default="15m", help="incident window (default 15m)")
    inv.add_argument("--json", action="store_true", help="print the JSON contract")
    inv.add_argument("--brief", action="store_true", help="also write the brief under output/")
    inv.set_defaults(func=cmd_investigate)

    inc = sub.add_parser("incidents", help="list, inspect, approve, reject or replay incidents")
    isub = inc.add_subparsers(dest="action", required=True)
    lst = isub.add_parser("list")
    lst.add_argument("--status")
    lst.add_argument("--service")
    lst.add_argument("--limit", type=int, default=50)
    show = isub.add_parser("show")
    show.add_argument("id")
    show.add_argument("--json", action="store_true")
    isub.add_parser("history").add_argument("id")
    for action in ("approve", "reject"):
        p = isub.add_parser(action)
        p.add_argument("id")
        p.add_argument("--by", help="approver identity (default: cli:<user>)")
        p.add_argument("--comment")
    rep = isub.add_parser("replay")
    rep.add_argument("id")
    rep.add_argument("--from", dest="from_checkpoint", required=True, metavar="CHECKPOINT_ID")
    inc.set_defaults(func=cmd_incidents)

    ev = sub.add_parser("eval", help="accuracy over every scenario and N seeds")
    ev.add_argument("--seeds", type=int, default=10)
    ev.add_argument("--scenario", action="append", choices=SCENARIOS)
    ev.add_argument("--json", action="store_true")
    ev.add_argument("--wire", action="store_true",
                    help="read every case over the wire: a real Prometheus backfilled with promtool and a Loki API "
                         "over the recorded logs")
    ev.add_argument("--dataset", type=Path, metavar="DIR",
                    help="an eval set of recorded telemetry (e.g. from python -m evals.nezha), served over the wire")
    ev.add_argument("--case", action="append", metavar="ID", help="with --dataset: only these case ids")
    ev.set_defaults(func=cmd_eval)

    serve = sub.add_parser("serve", help="run the HTTP service (alert intake, API, dashboard)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--log-level", default="info")
    serve.add_argument("--access-log", action="store_true")
    serve.add_argument("--processes", type=int, default=1, help="server processes on this port (default 1)")
    serve.set_defaults(func=cmd_serve)

    db = sub.add_parser("db", help="database maintenance")
    db.add_argument("action", choices=["migrate"])
    db.set_defaults(func=cmd_db)

    from sim.cli_commands import add_sim_commands

    add_sim_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    os.environ.setdefault("LANGSMITH_TRACING", "false")
    args = build_parser().parse_args(argv)
    if args.func is cmd_serve:
        return cmd_serve(args)
    return asyncio.run(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
