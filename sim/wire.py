"""The live fleet on the wire: a Prometheus /metrics endpoint per simulated service, one endpoint that speaks the
Loki query API over the simulated logs (and takes control requests: POST /inject, GET /state), and one that speaks
Tempo's query API over the simulated traces (search and trace by id)."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from sim.export import format_sample
from sim.fleet import FAMILIES, LOKI_LABEL, Fleet, Sample
from sim.generate import STEP
from sim.tempo import TraceQLError, parse_traceql, search_json, trace_json
from sim.topology import INTERNAL

MAX_ENTRIES = 5000  # Loki's default max_entries_limit_per_query
JOB_NAME = "incident-copilot-sim"


def exposition(samples: list[Sample]) -> str:
    """Samples in the Prometheus text format 0.0.4, grouped by family with # HELP and # TYPE."""
    families: dict[str, list[Sample]] = {}
    for sample in samples:
        families.setdefault(sample.family, []).append(sample)
    out = []
    for family, members in families.items():
        kind, text = FAMILIES[family]
        name = {"counter": f"{family}_total", "info": f"{family}_info"}.get(kind, family)
        out.append(f"# HELP {name} {text}\n# TYPE {name} {'gauge' if kind == 'info' else kind}\n")
        out.extend(format_sample(sample) + "\n" for sample in members)
    return "".join(out)


# --- LogQL: a stream selector and line filters ----------------------------------------------------------------

_TOKEN = re.compile(
    r'\s*(?:(?P<op>\|=|\|~|!=|!~|=~|=)|(?P<string>"(?:[^"\\]|\\.)*"|`[^`]*`)'
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<punct>[{},]))"
)
_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|x[0-9a-fA-F]{2}|.)", re.DOTALL)
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


def _unquote(text: str) -> str:
    """The value of a double-quoted LogQL string (Go escapes)."""

    def one(match: re.Match[str]) -> str:
        code = match.group(1)
        if len(code) > 1:
            return chr(int(code[1:], 16))
        return _ESCAPES.get(code, code)

    return _ESCAPE.sub(one, text)


def _tokens(query: str) -> list[tuple[str, str]]:
    tokens, at = [], 0
    while at < len(query.rstrip()):
        match = _TOKEN.match(query, at)
        if not match:
            raise ValueError(f"parse error at position {at}: unexpected {query[at : at + 10]!r}")
        kind = match.lastgroup or ""
        text = match.group(kind)
        if kind == "string":
            raw = text[1:-1]
            text = raw if text[0] == "`" else _unquote(raw)
        tokens.append((kind, text))
        at = match.end()
    return tokens


def _compile(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regex {pattern!r}: {exc}") from None


def parse_logql(query: str) -> tuple[Callable[[Mapping[str, str]], bool], Callable[[str], bool]]:
    """A log query `{label op "value", ...} |= "a" != "b" |~ "re" !~ "re"` -> (stream matcher over labels,
    line filter). Label matchers are =, !=, =~, !~ (regexes anchored, as in Loki); ValueError if malformed."""
    tokens = _tokens(query)
    if tokens[:1] != [("punct", "{")]:
        raise ValueError("parse error: a log query starts with a stream selector {...}")
    matchers: list[tuple[str, str, str]] = []
    at = 1
    while tokens[at : at + 1] != [("punct", "}")]:
        triple = tokens[at : at + 3]
        if len(triple) < 3 or [k for k, _ in triple] != ["name", "op", "string"] or triple[1][1] in ("|=", "|~"):
            raise ValueError('parse error: expected label matchers like name="value"')
        matchers.append((triple[0][1], triple[1][1], triple[2][1]))
        at += 3
        if tokens[at : at + 1] == [("punct", ",")]:
            at += 1
    at += 1
    filters: list[tuple[str, str]] = []
    while at < len(tokens):
        pair = tokens[at : at + 2]
        if len(pair) < 2 or pair[0][0] != "op" or pair[0][1] in ("=", "=~") or pair[1][0] != "string":
            raise ValueError('parse error: only line filters (|= != |~ !~ "text") may follow the selector')
        filters.append((pair[0][1], pair[1][1]))
        at += 2

    label_tests = []
    for name, op, value in matchers:
        if op in ("=~", "!~"):
            regex = _compile(value)
            label_tests.append((name, lambda v, r=regex, neg=op == "!~": bool(r.fullmatch(v)) != neg))
        else:
            label_tests.append((name, lambda v, x=value, neg=op == "!=": (v == x) != neg))
    if all(test("") for _, test in label_tests):
        raise ValueError(
            "queries require at least one regexp or equality matcher that does not have an empty-compatible value"
        )
    line_tests = []
    for op, value in filters:
        if op in ("|~", "!~"):
            regex = _compile(value)
            line_tests.append(lambda line, r=regex, neg=op == "!~": bool(r.search(line)) != neg)
        else:
            line_tests.append(lambda line, x=value, neg=op == "!=": (x in line) != neg)

    def streams(labels: Mapping[str, str]) -> bool:
        return all(test(labels.get(name, "")) for name, test in label_tests)

    def lines(line: str) -> bool:
        return all(test(line) for test in line_tests)

    return streams, lines


def parse_time_ns(value: str) -> int:
    """A Loki time parameter in ns: unix seconds with a fraction, ns (or s when 10 digits or fewer), RFC 3339."""
    if "." in value:
        try:
            return round(float(value) * 1e9)
        except ValueError:
            pass
    try:
        number = int(value)
    except ValueError:
        try:
            return round(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1e9)
        except ValueError:
            raise ValueError(f"cannot parse {value!r} to a valid timestamp") from None
    return number * 1_000_000_000 if len(value) <= 10 else number


# --- HTTP ---------------------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type, fleet_server: FleetServer, service: str = ""):
        super().__init__(address, handler)
        self.fleet_server = fleet_server
        self.service = service


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: a scraped fleet would log every request."""

    def reply(self, status: int, body: str, content_type: str = "application/json") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _MetricsHandler(_Handler):
    def do_GET(self) -> None:
        if urlsplit(self.path).path != "/metrics":
            self.reply(404, "not found\n", "text/plain")
            return
        samples = self.server.fleet_server.fleet.samples(self.server.service)
        if samples is None:
            self.close_connection = True  # partitioned, killed or down: no answer at all, so up = 0
            return
        self.reply(200, exposition(samples), "text/plain; version=0.0.4; charset=utf-8")


class _LokiHandler(_Handler):
    def do_GET(self) -> None:
        url = urlsplit(self.path)
        params = {k: v[-1] for k, v in parse_qs(url.query).items()}
        fleet_server = self.server.fleet_server
        if url.path == "/ready":
            self.reply(200, "ready\n", "text/plain")
        elif url.path == "/state":
            self.reply(200, json.dumps(fleet_server.state()))
        elif url.path == "/loki/api/v1/labels":
            self.reply(200, json.dumps({"status": "success", "data": [LOKI_LABEL]}))
        elif url.path == f"/loki/api/v1/label/{LOKI_LABEL}/values":
            self.reply(200, json.dumps({"status": "success", "data": sorted(INTERNAL)}))
        elif url.path == "/loki/api/v1/query_range":
            try:
                self.reply(200, json.dumps(fleet_server.query_range(params)))
            except ValueError as exc:
                self.reply(400, f"{exc}\n", "text/plain")
        else:
            self.reply(404, "404 page not found\n", "text/plain")

    def do_POST(self) -> None:
        if urlsplit(self.path).path != "/inject":
            self.reply(404, "404 page not found\n", "text/plain")
            return
        fleet_server = self.server.fleet_server
        injected = fleet_server.fleet.inject()
        self.reply(200 if injected else 409, json.dumps({"injected": injected, **fleet_server.state()}))


class _TempoHandler(_Handler):
    def do_GET(self) -> None:
        url = urlsplit(self.path)
        params = {k: v[-1] for k, v in parse_qs(url.query).items()}
        traces = self.server.fleet_server.traces
        if url.path in ("/ready", "/api/echo"):
            self.reply(200, "ready\n" if url.path == "/ready" else "echo", "text/plain")
        elif url.path == "/api/search":
            try:
                matches = parse_traceql(params.get("q", "{}"))
                end = int(params.get("end") or self.server.fleet_server.fleet.clock())
                start = int(params.get("start") or end - 3600)
                limit = int(params.get("limit", "20"))
            except (TraceQLError, ValueError) as exc:
                self.reply(400, f"invalid TraceQL query: {exc}\n" if isinstance(exc, TraceQLError) else f"{exc}\n",
                           "text/plain")
                return
            hits = traces.search(matches, start * 10**9, end * 10**9, limit)
            self.reply(200, json.dumps(search_json(hits, len(traces))))
        elif url.path.startswith(("/api/traces/", "/api/v2/traces/")):
            spans = traces.trace(url.path.rsplit("/", 1)[1])
            if spans is None:
                self.reply(404, "trace not found\n", "text/plain")
            elif url.path.startswith("/api/v2/"):
                self.reply(200, json.dumps({"trace": {"resourceSpans": trace_json(spans)["batches"]}}))
            else:
                self.reply(200, json.dumps(trace_json(spans)))
        else:
            self.reply(404, "404 page not found\n", "text/plain")


class FleetServer:
    """The fleet on the wire, serving from construction until close(): /metrics of each simulated service on its
    own port (base_port + its index, or free ports), the Loki API with /inject and /state on `loki_port`, and
    Tempo's query API on `tempo_port`."""

    def __init__(
        self,
        fleet: Fleet,
        host: str = "127.0.0.1",
        base_port: int | None = None,
        loki_port: int | None = None,
        tempo_port: int | None = None,
    ) -> None:
        self.fleet, self.host = fleet, host
        self.traces = fleet  # what Tempo's API searches: the fleet's traces finished by now
        self._servers: list[_Server] = []
        try:
            for k, service in enumerate(INTERNAL):
                port = 0 if base_port is None else base_port + k
                self._servers.append(_Server((host, port), _MetricsHandler, self, service))
            self._servers.append(_Server((host, tempo_port or 0), _TempoHandler, self))
            self._servers.append(_Server((host, loki_port or 0), _LokiHandler, self))
        except OSError:
            for server in self._servers:
                server.server_close()
            raise
        self._threads = [
            threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True) for s in self._servers
        ]
        for thread in self._threads:
            thread.start()

    @property
    def targets(self) -> dict[str, str]:
        """Scrape target (host:port) of each simulated service."""
        return {s.service: f"{self.host}:{s.server_address[1]}" for s in self._servers if s.service}

    @property
    def loki_url(self) -> str:
        """Base URL of the Loki API (and of /inject, /state)."""
        return self._url(_LokiHandler)

    @property
    def tempo_url(self) -> str:
        """Base URL of Tempo's query API."""
        return self._url(_TempoHandler)

    def _url(self, handler: type) -> str:
        server = next(s for s in self._servers if s.RequestHandlerClass is handler)
        return f"http://{self.host}:{server.server_address[1]}"

    def state(self) -> dict:
        """The fleet's state with its scrape targets and the Loki and Tempo URLs."""
        return {**self.fleet.state(), "targets": self.targets, "loki_url": self.loki_url, "tempo_url": self.tempo_url}

    def query_range(self, params: dict[str, str]) -> dict:
        """Answer /loki/api/v1/query_range (log queries) with Loki's JSON: streams of [ns, line] values."""
        if "query" not in params:
            raise ValueError("query parameter is required")
        streams, lines = parse_logql(params["query"])
        now_ns = round(self.fleet.clock() * 1e9)
        end_ns = parse_time_ns(params["end"]) if "end" in params else now_ns
        start_ns = parse_time_ns(params["start"]) if "start" in params else end_ns - 3600 * 1_000_000_000
        if end_ns <= start_ns:
            raise ValueError("end timestamp must not be before or equal to start time")
        limit = int(params.get("limit", "100"))
        if not 0 < limit <= MAX_ENTRIES:
            raise ValueError(
                f"max entries limit per query exceeded, limit > max_entries_limit ({limit} > {MAX_ENTRIES})"
            )
        direction = params.get("direction", "backward").lower()
        if direction not in ("forward", "backward"):
            raise ValueError(f"invalid direction {direction!r}")
        entries = self.fleet.log_entries(streams, start_ns, end_ns, lines, limit, direction == "forward")
        grouped: dict[int, tuple[Mapping[str, str], list[list[str]]]] = {}  # Loki's streams: one per label set
        for ns, labels, line in entries:
            grouped.setdefault(id(labels), (labels, []))[1].append([str(ns), line])
        return {
            "status": "success",
            "data": {
                "resultType": "streams",
                "result": [{"stream": dict(labels), "values": values} for labels, values in grouped.values()],
                "stats": {"summary": {"totalEntriesReturned": len(entries)}},
            },
        }

    def prometheus_config(self) -> str:
        """A Prometheus configuration scraping the fleet once per simulated step (at least once a second), each
        target labelled service=<name>; honor_labels keeps the service label the metrics carry."""
        interval_ms = max(1000, round(STEP / self.fleet.speed * 1000))
        lines = [
            f"# incident-copilot sim serve: scenario {self.fleet.name}, seed {self.fleet.seed}",
            "global:",
            f"  scrape_interval: {interval_ms}ms",
            f"  evaluation_interval: {interval_ms}ms",
            "scrape_configs:",
            f"  - job_name: {JOB_NAME}",
            "    honor_labels: true",
            f"    scrape_interval: {interval_ms}ms",
            f"    scrape_timeout: {interval_ms}ms",
            "    static_configs:",
        ]
        for service, target in self.targets.items():
            lines += [f'      - targets: ["{target}"]', "        labels:", f"          service: {service}"]
        return "\n".join(lines) + "\n"

    def close(self) -> None:
        """Stop serving and free the ports."""
        stopping = [threading.Thread(target=server.shutdown) for server in self._servers]
        for thread in stopping:
            thread.start()
        for thread, server in zip(stopping, self._servers, strict=True):
            thread.join()
            server.server_close()

    def __enter__(self) -> FleetServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
