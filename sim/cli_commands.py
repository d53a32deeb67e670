"""`incident-copilot sim serve` and `incident-copilot sim export`: the simulated fleet over the wire."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import click

from sim.names import SCENARIOS


@click.group(help="The simulated fleet over the wire: Prometheus /metrics per service, the Loki API and Tempo's API.")
def sim() -> None:
    """The `sim` command group."""


@sim.command(epilog="Example: incident-copilot sim serve --scenario db_connection_exhaustion --seed 3 "
                    "--inject-after 600 --prometheus-config /tmp/prometheus-sim.yml")
@click.option("--scenario", type=click.Choice(SCENARIOS), required=True,
              help="the fault to inject, e.g. --scenario memory_leak")
@click.option("--seed", type=int, default=1, show_default=True, help="variant of the scenario, e.g. --seed 3")
@click.option("--inject-after", type=float, default=60.0, show_default=True, metavar="SECONDS",
              help="inject the fault after this many wall seconds, e.g. --inject-after 600")
@click.option("--manual", is_flag=True, help="inject only on POST /inject, e.g. --manual")
@click.option("--speed", type=float, default=1.0, show_default=True,
              help="simulated seconds per wall second, e.g. --speed 15")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on, e.g. --host 0.0.0.0")
@click.option("--base-port", type=int, help="first /metrics port, one per service (default: free ports), "
                                            "e.g. --base-port 9101")
@click.option("--loki-port", type=int, help="port of the Loki API, /inject and /state (default: free), "
                                            "e.g. --loki-port 3100")
@click.option("--tempo-port", type=int, help="port of Tempo's query API (default: free), e.g. --tempo-port 3200")
@click.option("--prometheus-config", type=click.Path(path_type=Path), metavar="PATH",
              help="write a scrape config for the fleet, e.g. --prometheus-config /tmp/prometheus-sim.yml")
def serve(scenario: str, seed: int, inject_after: float, manual: bool, speed: float, host: str,
          base_port: int | None, loki_port: int | None, tempo_port: int | None, prometheus_config: Path | None) -> int:
    """Run a scenario live: /metrics per service, a Loki and a Tempo endpoint, POST /inject, GET /state."""
    import asyncio

    return asyncio.run(_serve(scenario, seed, None if manual else inject_after, speed, host, base_port, loki_port,
                              tempo_port, prometheus_config))


async def _serve(scenario: str, seed: int, inject_after: float | None, speed: float, host: str,
                 base_port: int | None, loki_port: int | None, tempo_port: int | None,
                 prometheus_config: Path | None) -> int:
    import asyncio
    import signal

    from sim.fleet import Fleet
    from sim.wire import FleetServer

    fleet = await asyncio.to_thread(Fleet, scenario, seed, inject_after=inject_after, speed=speed)
    with FleetServer(fleet, host, base_port, loki_port, tempo_port) as server:
        if prometheus_config:
            prometheus_config.write_text(server.prometheus_config())
        state = server.state()
        print(f"▶ scenario {scenario} (seed {seed}), speed x{speed:g}")
        print(f"  fault {state['fault_type']} in {state['root_service']}, alert on {state['alerted_service']}")
        print(f"  inject at {state['inject_at']}" if state["inject_at"] else "  inject with POST /inject")
        for service, target in server.targets.items():
            print(f"  {service:<18} http://{target}/metrics")
        print(f"  loki               {server.loki_url}  (POST /inject, GET /state)")
        print(f"  tempo              {server.tempo_url}")
        if prometheus_config:
            print(f"  prometheus config  {prometheus_config}")
        print(flush=True, end="")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    return 0


@sim.command(epilog="Example: incident-copilot sim export --scenario memory_leak --seed 1 "
                    "--end 2026-11-21T12:00:00Z --out history.om")
@click.option("--scenario", type=click.Choice(SCENARIOS), required=True,
              help="the scenario whose history to write, e.g. --scenario memory_leak")
@click.option("--seed", type=int, default=1, show_default=True, help="variant of the scenario, e.g. --seed 3")
@click.option("--end", help="alert time, ISO 8601 (default: now, to the minute), e.g. --end 2026-11-21T12:00:00Z")
@click.option("--out", type=click.Path(path_type=Path), required=True, metavar="FILE",
              help="the OpenMetrics file to write, e.g. --out history.om")
@click.option("--json", "as_json", is_flag=True, help="print what was written as JSON, e.g. --json")
def export(scenario: str, seed: int, end: str | None, out: Path, as_json: bool) -> int:
    """Write a scenario's metric history as OpenMetrics, for promtool backfill."""
    from sim.export import export_openmetrics

    try:
        at = datetime.fromisoformat(end.replace("Z", "+00:00")) if end else None
    except ValueError as exc:
        raise click.BadParameter(f"{end!r} is not ISO 8601, e.g. 2026-11-21T12:00:00Z", param_hint="--end") from exc
    at = (at or datetime.now(UTC).replace(second=0, microsecond=0))
    at = at if at.tzinfo else at.replace(tzinfo=UTC)
    count = export_openmetrics(scenario, seed, at, out)
    if as_json:
        click.echo(json.dumps({"scenario": scenario, "seed": seed, "end": at.isoformat(), "file": str(out),
                               "samples": count}))
    else:
        click.echo(f"wrote {count} samples of {scenario} (seed {seed}) up to {at.isoformat()} to {out}")
        click.echo(f"backfill: promtool tsdb create-blocks-from openmetrics {out} <prometheus data dir>")
    return 0
