"""CPU per POST /alerts inside the service's ASGI app: no HTTP server, no client, one request at a time.

Usage (from the repository root):
    python -m bench.intake_cpu [--requests 2000] [--rounds 3] [--admin-url URL] [--json]

The app (server.create_app, sim telemetry, run workers off) runs on a fresh database on the local PostgreSQL
(admin URL from --admin-url, else $BENCH_POSTGRES_URL, else postgresql://postgres@127.0.0.1:5432/postgres); each
round sends `requests` one-alert Alertmanager webhooks of bench.intake's storm straight into the ASGI app and
reads this process's CPU time around them. The figure is the app's CPU per request (routing, auth, parsing,
psycopg, the response), without uvicorn's HTTP parsing and socket writes. It is CPU time of one process, so a busy
machine moves it much less than the rates bench.intake measures: compare two versions of the code by running both
alternately and reading the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from typing import Any

from bench.intake import DEFAULT_ADMIN_URL, storm
from tests.live_server import API_KEY
from tools.database import throwaway_database

WARM_UP = 200  # requests before the first round: prepared statements, pool connections, first-use validators


async def post(app: Any, body: bytes) -> int:
    """One POST /alerts through the ASGI app; the response's status code."""
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict] = []

    async def receive() -> dict:
        return messages.pop() if messages else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    headers = [(b"host", b"bench"), (b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode()), (b"authorization", f"Bearer {API_KEY}".encode())]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/alerts", "raw_path": b"/alerts", "query_string": b"", "root_path": "", "headers": headers,
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "state": {}}
    await app(scope, receive, send)
    return sent[0]["status"]


async def measure(database_url: str, requests: int, rounds: int) -> list[float]:
    """CPU microseconds per request, one figure per round."""
    from graph.context import Context
    from server import create_app
    from service.settings import ServerSettings

    output = tempfile.mkdtemp(prefix="intake-cpu-")
    settings = ServerSettings(database_url=database_url, api_keys={API_KEY: "bench"}, run_workers=False,
                              output_dir=output, telemetry="sim")
    app = create_app(settings, Context(output_dir=output))
    bodies = storm(WARM_UP + requests * rounds, groups=50, batch=1)
    per_round = []
    async with app.router.lifespan_context(app):
        for body in bodies[:WARM_UP]:
            assert await post(app, body) == 202
        gc.collect()
        gc.freeze()  # as `serve` does after start-up
        for r in range(rounds):
            chunk = bodies[WARM_UP + r * requests:WARM_UP + (r + 1) * requests]
            began = time.process_time()
            statuses = [await post(app, body) for body in chunk]
            per_round.append((time.process_time() - began) / requests * 1e6)
            if set(statuses) != {202}:
                raise RuntimeError(f"not every request was accepted: {sorted(set(statuses))}")
    return per_round


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--admin-url", default=os.environ.get("BENCH_POSTGRES_URL", DEFAULT_ADMIN_URL))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with throwaway_database(args.admin_url, prefix="ic_bench") as database_url:
        rounds = asyncio.run(measure(database_url, args.requests, args.rounds))
    median = statistics.median(rounds)
    if args.json:
        print(json.dumps({"requests": args.requests, "rounds_us": [round(r, 1) for r in rounds],
                          "median_us": round(median, 1)}))
    else:
        print(f"CPU per request in the app: median {median:.0f} us over {args.rounds} rounds of {args.requests} "
              f"({', '.join(f'{r:.0f}' for r in rounds)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
