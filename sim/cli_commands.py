"""`incident-copilot sim serve` and `incident-copilot sim export`: the simulated fleet over the wire."""

from __future__ import annotations

import argparse
import asyncio
import signal
from datetime import UTC, datetime
from pathlib import Path

from sim.scenarios import SCENARIOS


async def cmd_sim_serve(args: argparse.Namespace) -> int:
    from sim.fleet import Fleet
    from sim.wire import FleetServer

    inject_after = None if args.manual else args.inject_after
    fleet = await asyncio.to_thread(Fleet, args.scenario, args.seed, inject_after=inject_after, speed=args.speed)
    with FleetServer(fleet, args.host, args.base_port, args.loki_port, args.tempo_port) as server:
        if args.prometheus_config:
            args.prometheus_config.write_text(server.prometheus_config())
        state = server.state()
        print(f"▶ scenario {args.scenario} (seed {args.seed}), speed x{args.speed:g}")
        print(f"  fault {state['fault_type']} in {state['root_service']}, alert on {state['alerted_service']}")
        print(f"  inject at {state['inject_at']}" if state["inject_at"] else "  inject with POST /inject")
        for service, target in server.targets.items():
            print(f"  {service:<18} http://{target}/metrics")
        print(f"  loki               {server.loki_url}  (POST /inject, GET /state)")
        print(f"  tempo              {server.tempo_url}")
        if args.prometheus_config:
            print(f"  prometheus config  {args.prometheus_config}")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    return 0


async def cmd_sim_export(args: argparse.Namespace) -> int:
    from sim.export import export_openmetrics

    end = datetime.fromisoformat(args.end) if args.end else datetime.now(UTC).replace(second=0, microsecond=0)
    end = end if end.tzinfo else end.replace(tzinfo=UTC)
    count = await asyncio.to_thread(export_openmetrics, args.scenario, args.seed, end, args.out)
    print(f"wrote {count} samples of {args.scenario} (seed {args.seed}) up to {end.isoformat()} to {args.out}")
    print(f"backfill: promtool tsdb create-blocks-from openmetrics {args.out} <prometheus data dir>")
    return 0


def add_sim_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register `sim serve` and `sim export` on the command line's subparsers."""
    sim = subparsers.add_parser(
        "sim", help="the simulated fleet over the wire: Prometheus /metrics, the Loki API and Tempo's API"
    )
    sub = sim.add_subparsers(dest="sim_command", required=True)

    serve = sub.add_parser(
        "serve", help="run a scenario live: /metrics per service, a Loki endpoint, a Tempo endpoint, /inject"
    )
    serve.add_argument("--scenario", choices=SCENARIOS, required=True)
    serve.add_argument("--seed", type=int, default=1)
    when = serve.add_mutually_exclusive_group()
    when.add_argument(
        "--inject-after", type=float, default=60.0, metavar="SECONDS", help="inject the fault after (default 60)"
    )
    when.add_argument("--manual", action="store_true", help="inject only on POST /inject")
    serve.add_argument("--speed", type=float, default=1.0, help="simulated seconds per wall second (default 1)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--base-port", type=int, help="first /metrics port, one per service (default: free ports)")
    serve.add_argument("--loki-port", type=int, help="port of the Loki API and /inject, /state (default: free)")
    serve.add_argument("--tempo-port", type=int, help="port of Tempo's query API (default: free)")
    serve.add_argument("--prometheus-config", type=Path, metavar="PATH", help="write a scrape config for the fleet")
    serve.set_defaults(func=cmd_sim_serve)

    export = sub.add_parser("export", help="write a scenario's metric history as OpenMetrics for promtool backfill")
    export.add_argument("--scenario", choices=SCENARIOS, required=True)
    export.add_argument("--seed", type=int, default=1)
    export.add_argument("--end", help="alert time, ISO 8601 (default: now, to the minute)")
    export.add_argument("--out", type=Path, required=True, metavar="FILE")
    export.set_defaults(func=cmd_sim_export)
