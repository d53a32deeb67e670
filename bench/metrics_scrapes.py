"""What scraping /metrics costs alert intake: the same storm with no scraper and with N scrapers polling /metrics
without pause, on the real service (a subprocess, run workers off) and a fresh database each time.

Usage (from the repository root):
    python -m bench.metrics_scrapes [--alerts 5000] [--scrapers 32] [--interval 0.1] [--concurrency 32]
                                    [--processes 1] [--json]

Prints alerts/s of both storms, their ratio (with scrapers / without: 1.0 = scraping costs intake nothing), the
scrapes answered per second, and the p99 acknowledgement latency of both. Each scraper waits --interval seconds
between scrapes (Prometheus scrapes every 15 s; 32 scrapers every 0.1 s is a harsh load); with --interval 0 they
scrape back to back, and a service that answers scrapes faster then gets more of them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from bench.intake import DEFAULT_ADMIN_URL, _exchange, percentile, send_storm, storm
from tests.live_server import start_server
from tools.database import throwaway_database


async def storm_with_scrapers(url: str, bodies: list[bytes], concurrency: int, scrapers: int,
                              interval: float) -> dict[str, float]:
    """Send the storm while `scrapers` clients GET /metrics, each waiting `interval` seconds between its scrapes (0:
    back to back); the figures."""
    done = asyncio.Event()
    scrapes = 0

    parts = urlsplit(url)
    request = f"GET /metrics HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode()

    async def scrape() -> None:  # the bench's own minimal client: the load generator must not be what is measured
        nonlocal scrapes
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        try:
            while not done.is_set():
                assert await _exchange(reader, writer, request) == 200
                scrapes += 1
                await asyncio.sleep(interval)
        finally:
            writer.close()

    tasks = [asyncio.create_task(scrape()) for _ in range(scrapers)]
    latencies, statuses, seconds = await send_storm(url, bodies, concurrency)
    done.set()
    await asyncio.gather(*tasks)
    return {"alerts_per_s": round(len(bodies) / seconds, 1),  # one alert per webhook
            "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
            "scrapes_per_s": round(scrapes / seconds, 1), "all_202": all(s == 202 for s in statuses)}


def run(admin_url: str, workdir: Path, *, alerts: int, scrapers: int, concurrency: int, processes: int,
        interval: float) -> dict:
    """One storm without scrapers and one with them, each on a fresh server and database."""
    bodies = storm(alerts, 50, 1)
    rows = {}
    for label, count in (("without", 0), ("with", scrapers)):
        with throwaway_database(admin_url, prefix="bench_scrapes") as database_url:
            server = start_server(database_url, workdir / label, run_workers=False, telemetry="sim",
                                  processes=processes)
            try:
                rows[label] = asyncio.run(storm_with_scrapers(server.url, bodies, concurrency, count, interval))
            finally:
                server.stop()
    figures = {f"{key}_{label}": value for label, row in rows.items() for key, value in row.items()}
    return {"scrapers": scrapers, "interval": interval, "processes": processes, **figures,
            "ratio": round(rows["with"]["alerts_per_s"] / rows["without"]["alerts_per_s"], 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=5000)
    parser.add_argument("--scrapers", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--interval", type=float, default=0.1, help="seconds each scraper waits between scrapes "
                        "(0: back to back)")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--admin-url", default=os.environ.get("BENCH_POSTGRES_URL", DEFAULT_ADMIN_URL))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-scrapes-") as tmp:
        os.environ["INCIDENT_COPILOT_HOME"] = tmp
        started = time.monotonic()
        result = run(args.admin_url, Path(tmp), alerts=args.alerts, scrapers=args.scrapers,
                     concurrency=args.concurrency, processes=args.processes, interval=args.interval)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"intake without scrapers: {result['alerts_per_s_without']:.0f} alerts/s, "
              f"p99 {result['p99_ms_without']:.1f} ms")
        print(f"intake with {args.scrapers} scrapers: {result['alerts_per_s_with']:.0f} alerts/s, "
              f"p99 {result['p99_ms_with']:.1f} ms, {result['scrapes_per_s_with']:.0f} scrapes/s")
        print(f"ratio (with / without): {result['ratio']:.2f}   ({time.monotonic() - started:.0f} s)")
    return 0 if result["all_202_without"] and result["all_202_with"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
