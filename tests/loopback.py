"""Loopback fakes of Prometheus and Loki: real HTTP servers on 127.0.0.1, scriptable per test.

A LoopbackServer answers from a handler (FakePrometheus, FakeLoki) unless a test scripted replies for a path;
scripted replies are served first, in order. Every request is recorded with its parameters and headers.
"""

from __future__ import annotations

import bisect
import json
import math
import multiprocessing
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit


@dataclass
class Reply:
    """One HTTP answer; a dict or list body is sent as JSON, str/bytes as they are; `delay` seconds first."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0

    def encode(self) -> tuple[bytes, str]:
        if isinstance(self.body, bytes):
            return self.body, "application/json"
        if isinstance(self.body, str):
            return self.body.encode(), "text/plain; charset=utf-8"
        return json.dumps(self.body).encode(), "application/json"


@dataclass(frozen=True)
class Request:
    """A request as the server saw it (header names lower-cased)."""

    path: str
    params: dict[str, str]
    headers: dict[str, str]
    method: str = "GET"
    body: bytes = b""

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)


Handler = Callable[[Request], Reply]


class LoopbackServer:
    """An HTTP/1.1 server on a free 127.0.0.1 port, serving from a thread until stopped."""

    def __init__(self, handler: Handler | None = None) -> None:
        self.handler = handler or (lambda request: Reply(404, f"no route for {request.path}"))
        self.requests: list[Request] = []
        self._scripts: dict[str, list[Reply]] = {}
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _request_handler(self))
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def script(self, path: str, *replies: Reply) -> None:
        """Serve these replies, in order, to the next requests for `path`; then the handler answers again."""
        with self._lock:
            self._scripts.setdefault(path, []).extend(replies)

    def requests_to(self, path: str) -> list[Request]:
        """The recorded requests for `path`."""
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def start(self) -> LoopbackServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def answer(self, request: Request) -> Reply:
        with self._lock:
            self.requests.append(request)
            queued = self._scripts.get(request.path)
            if queued:
                return queued.pop(0)
        return self.handler(request)


def _request_handler(server: LoopbackServer) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            # headers and body go out in two writes: Nagle plus delayed ACKs would stall each reply 40 ms
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self._serve("GET", b"")

        def do_POST(self) -> None:  # noqa: N802
            self._serve("POST", self.rfile.read(int(self.headers.get("Content-Length") or 0)))

        def _serve(self, method: str, body: bytes) -> None:
            parts = urlsplit(self.path)
            request = Request(
                parts.path,
                dict(parse_qsl(parts.query, keep_blank_values=True)),
                {k.lower(): v for k, v in self.headers.items()},
                method,
                body,
            )
            reply = server.answer(request)
            if reply.delay:
                time.sleep(reply.delay)
            body, content_type = reply.encode()
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (base class signature)
            pass

    return _Handler


# ---- Prometheus --------------------------------------------------------------------------------------------

SeriesValues = list[tuple[dict[str, str], list[float | str | None]]]


def prom_value(value: float | str) -> str:
    """A sample value as Prometheus writes it: "NaN", "+Inf", "-Inf" or the number."""
    if isinstance(value, str):
        return value
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def prom_matrix(series: list[tuple[dict[str, str], list[tuple[float, float | str]]]], warnings=None) -> dict:
    """A successful range-query answer."""
    result = [
        {"metric": labels, "values": [[t, prom_value(v)] for t, v in points]} for labels, points in series
    ]
    return _prom_success("matrix", result, warnings)


def prom_vector(series: list[tuple[dict[str, str], tuple[float, float | str]]], warnings=None) -> dict:
    """A successful instant-query answer."""
    result = [{"metric": labels, "value": [t, prom_value(v)]} for labels, (t, v) in series]
    return _prom_success("vector", result, warnings)


def prom_error(error_type: str, message: str) -> dict:
    """The error envelope Prometheus sends with 400, 422 and 503."""
    return {"status": "error", "errorType": error_type, "error": message}


def _prom_success(kind: str, result: list, warnings: list[str] | None) -> dict:
    body: dict[str, Any] = {"status": "success", "data": {"resultType": kind, "result": result}}
    if warnings:
        body["warnings"] = warnings
    return body


class FakePrometheus:
    """Answers /api/v1/query_range and /api/v1/query from `series(query, times)`.

    `series` returns [(labels, [value per time or None for no sample]), ...] (an unknown query may return []),
    or a Reply to answer that query with, e.g. an error.
    """

    def __init__(self, series: Callable[[str, list[float]], SeriesValues | Reply]) -> None:
        self.series = series

    def __call__(self, request: Request) -> Reply:
        params = request.params
        if request.path == "/api/v1/query_range":
            start, end, step = float(params["start"]), float(params["end"]), float(params["step"])
            times = [start + k * step for k in range(int((end - start) / step + 1e-9) + 1)]
            found = self.series(params["query"], times)
            if isinstance(found, Reply):
                return found
            return Reply(
                body=prom_matrix(
                    [
                        (labels, [(t, v) for t, v in zip(times, values, strict=True) if v is not None])
                        for labels, values in found
                    ]
                )
            )
        if request.path == "/api/v1/query":
            at = float(params["time"])
            found = self.series(params["query"], [at])
            if isinstance(found, Reply):
                return found
            return Reply(
                body=prom_vector(
                    [(labels, (at, values[0])) for labels, values in found if values[0] is not None]
                )
            )
        return Reply(404, "404 page not found\n")


# ---- Loki --------------------------------------------------------------------------------------------------

Entry = tuple[int, str, str]  # (ts ns, service, line)
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_SELECTOR = re.compile(r"\{(\w+)=~(" + _QUOTED + r")\}")
_FILTER = re.compile(r"(\|=|!=|\|~|!~)\s*(" + _QUOTED + ")")


class LogSource(Protocol):
    def page(self, wanted: Callable[[str, str], bool], start_ns: int, end_ns: int, limit: int) -> list[Entry]:
        """Up to `limit` wanted entries with start_ns <= ts < end_ns, oldest first."""
        ...


class ListLogs:
    """Entries held in a list (small tests)."""

    def __init__(self, entries: list[Entry]) -> None:
        self.entries = sorted(entries, key=lambda e: e[0])
        self._ts = [e[0] for e in self.entries]

    def page(self, wanted: Callable[[str, str], bool], start_ns: int, end_ns: int, limit: int) -> list[Entry]:
        out = []
        for entry in self.entries[bisect.bisect_left(self._ts, start_ns) :]:
            if entry[0] >= end_ns or len(out) >= limit:
                break
            if wanted(entry[1], entry[2]):
                out.append(entry)
        return out


class GeneratedLogs:
    """`total` entries computed on demand, never held: entry i is at t0 + (i // per_ts) * spacing ns.

    `per_ts` > 1 puts several entries on one nanosecond so that pages end in the middle of a timestamp.
    Lines end with "seq=<i>" so a reader can check that it saw each entry once.
    """

    def __init__(self, total: int, t0_ns: int, spacing_ns: int, per_ts: int, services: list[str]) -> None:
        self.total, self.t0, self.spacing, self.per_ts, self.services = (
            total,
            t0_ns,
            spacing_ns,
            per_ts,
            services,
        )

    def page(self, wanted: Callable[[str, str], bool], start_ns: int, end_ns: int, limit: int) -> list[Entry]:
        first = self._first_at_or_after(start_ns)
        stop = min(self.total, self._first_at_or_after(end_ns))
        out = []
        for i in range(first, stop):
            if len(out) >= limit:
                break
            entry = self.entry(i)
            if wanted(entry[1], entry[2]):
                out.append(entry)
        return out

    def entry(self, i: int) -> Entry:
        ts = self.t0 + (i // self.per_ts) * self.spacing
        service = self.services[i % len(self.services)]
        line = f'ts={ts} level=info logger=http msg="request completed path=/api/items status=200" seq={i}'
        return ts, service, line

    def _first_at_or_after(self, ts_ns: int) -> int:
        if ts_ns <= self.t0:
            return 0
        return -(-(ts_ns - self.t0) // self.spacing) * self.per_ts


class FakeLoki:
    """Answers /loki/api/v1/query_range like Loki: {label=~"re"} plus line filters, forward, `limit` entries
    in total, grouped into one stream per service."""

    def __init__(self, source: LogSource, label: str = "service_name") -> None:
        self.source, self.label = source, label

    def __call__(self, request: Request) -> Reply:
        if request.path != "/loki/api/v1/query_range":
            return Reply(404, "404 page not found\n")
        params = request.params
        query = params["query"]
        match = _SELECTOR.match(query)
        if not match or match.group(1) != self.label or params.get("direction") != "forward":
            return Reply(400, f"parse error : unsupported query {query!r}\n")
        selector = re.compile(json.loads(match.group(2)))
        filters = [(op, json.loads(text)) for op, text in _FILTER.findall(query[match.end() :])]

        selected: dict[str, bool] = {}

        def wanted(service: str, line: str) -> bool:
            if service not in selected:
                selected[service] = bool(selector.fullmatch(service))
            return selected[service] and (not filters or all(_line_matches(op, a, line) for op, a in filters))

        entries = self.source.page(wanted, int(params["start"]), int(params["end"]), int(params["limit"]))
        streams: dict[str, list[list[str]]] = {}
        for ts, service, line in entries:
            streams.setdefault(service, []).append([str(ts), line])
        result = [{"stream": {self.label: s}, "values": values} for s, values in streams.items()]
        return Reply(
            body={"status": "success", "data": {"resultType": "streams", "result": result, "stats": {}}}
        )


def _line_matches(op: str, arg: str, line: str) -> bool:
    if op == "|=":
        return arg in line
    if op == "!=":
        return arg not in line
    found = re.search(arg, line) is not None
    return found if op == "|~" else not found


@contextmanager
def generated_loki_process(
    total: int, t0_ns: int, spacing_ns: int, per_ts: int, services: list[str]
) -> Iterator[str]:
    """A FakeLoki over GeneratedLogs in another process (its CPU and memory stay out of measurements)."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(
        target=_serve_generated, args=(child, total, t0_ns, spacing_ns, per_ts, services)
    )
    process.start()
    try:
        if not parent.poll(30):
            raise RuntimeError("the loopback Loki process did not start")
        yield parent.recv()
    finally:
        parent.send("stop")
        process.join(10)
        if process.is_alive():
            process.kill()


def _serve_generated(conn, total: int, t0_ns: int, spacing_ns: int, per_ts: int, services: list[str]) -> None:
    with LoopbackServer(FakeLoki(GeneratedLogs(total, t0_ns, spacing_ns, per_ts, services))) as server:
        conn.send(server.url)
        conn.recv()
