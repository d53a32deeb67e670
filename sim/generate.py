"""Generate a scenario's telemetry (logs, metrics, spans, deploys) from one physical model of the fleet.

Every service has a per-step state (served error ratio, p99, failed connects, load, CPU, memory, pool,
disk); the fault changes the root's state, and callers derive theirs from their callees one scrape later, so
symptoms travel up the call graph with smaller amplitude and a slightly later onset. Logs, metrics and spans
are all sampled from that state, which keeps them consistent with each other.
"""

from __future__ import annotations

import functools
import json
import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime

from analysis.records import LogRecord, MetricSeries, Span
from sim.scenarios import STEP_SECONDS, Scenario, scenario_rng
from sim.topology import CALLS, EDGES, INTERNAL, SERVICES, TRACED, callees_of, topological_order
from state import DeployEvent

STEP = float(STEP_SECONDS)
CPU_LIMIT = 2.0  # cores
MIB = 1024.0**2
GIB = 1024.0**3
DIAL_TIMEOUT = 1.0  # seconds a caller waits to connect before "i/o timeout"
OWN_LINES = 8.0  # error log lines/s per unit of the root's own error ratio (capped)
EDGE_LINES = 2.0  # error log lines/s per unit of a caller's failed-call ratio (capped)
MAX_ERROR_LINES = 3.0


@dataclass(frozen=True, slots=True)
class SimData:
    """All telemetry of one scenario: logs in time order, metric series, spans and deploys."""

    scenario: Scenario
    logs: list[LogRecord]
    metrics: list[MetricSeries]
    spans: list[Span]
    deploys: list[DeployEvent]
    versions: dict[str, str] = field(default_factory=dict)  # code version of each service at the data start


@dataclass(frozen=True)
class _Profile:
    fmt: str  # logfmt | json | plain | pino | logback | klog | plain_msg | bare (see format_line)
    runtime: str  # python | java | go | node | pgbouncer | redis
    p99: float  # baseline p99 seconds
    cpu: float  # baseline cores
    memory_mb: float
    log_rate: float  # baseline log lines/s


PROFILES: dict[str, _Profile] = {
    "gateway": _Profile("klog", "go", 0.28, 0.4, 180, 0.9),
    "web-frontend": _Profile("logback", "java", 0.24, 0.38, 540, 0.6),
    "mobile-bff": _Profile("pino", "node", 0.2, 0.3, 470, 0.4),
    "catalog": _Profile("plain", "python", 0.12, 0.36, 310, 0.5),
    "cart": _Profile("logfmt", "python", 0.09, 0.28, 240, 0.35),
    "checkout": _Profile("json", "python", 0.22, 0.3, 280, 0.35),
    "payments": _Profile("plain_msg", "python", 0.18, 0.26, 260, 0.3),
    "inventory": _Profile("json", "python", 0.1, 0.27, 230, 0.3),
    "payments-db-proxy": _Profile("plain", "pgbouncer", 0.012, 0.08, 40, 0.12),
    "catalog-db-proxy": _Profile("plain", "pgbouncer", 0.01, 0.1, 40, 0.12),
    "redis-cache": _Profile("plain", "redis", 0.002, 0.12, 600, 0.05),
}


_KIND_SIGNALS = {
    "gateway": (
        "request_rate",
        "error_ratio",
        "latency_p99",
        "cpu_usage",
        "memory_bytes",
        "disk_free_bytes",
        "cert_expiry_timestamp",
        "up",
    ),
    "db_proxy": (
        "request_rate",
        "error_ratio",
        "latency_p99",
        "cpu_usage",
        "memory_bytes",
        "db_pool_in_use",
        "db_pool_max",
        "disk_free_bytes",
        "cert_expiry_timestamp",
        "up",
    ),
    "cache": (
        "request_rate",
        "error_ratio",
        "latency_p99",
        "cpu_usage",
        "memory_bytes",
        "disk_free_bytes",
        "up",
    ),
}
SIGNALS_BY_KIND: dict[str, tuple[str, ...]] = {
    **_KIND_SIGNALS,
    "frontend": _KIND_SIGNALS["gateway"],
    "backend": _KIND_SIGNALS["gateway"],
    "external": (),
}

_ROUTES = {
    "gateway": ("/api/products/{id}", "/api/cart", "/api/checkout", "/api/search", "/m/api/home"),
    "web-frontend": ("/", "/products/{id}", "/cart", "/checkout", "/search"),
    "mobile-bff": ("/v2/home", "/v2/products/{id}", "/v2/checkout"),
    "catalog": ("/products/{id}", "/products/search", "/categories/{id}/products"),
    "cart": ("/cart/{id}", "/cart/{id}/items", "/cart/{id}/coupon"),
    "checkout": ("/checkout", "/orders/{id}"),
    "payments": ("/payments/charge", "/payments/{id}/refund"),
    "inventory": ("/stock/{id}", "/reservations", "/reservations/{id}/release"),
}


def _ri(rng: random.Random, low: int, high: int) -> int:
    # random.randint is several times slower; the template generators draw ~100k numbers per scenario.
    return low + int(rng.random() * (high - low + 1))


def _pick(rng: random.Random, options: tuple[str, ...]) -> str:
    return options[int(rng.random() * len(options))]


_GENERATORS = {
    "ip": lambda r: f"10.0.{_ri(r, 0, 7)}.{_ri(r, 2, 254)}",
    "port": lambda r: str(_ri(r, 30000, 60999)),
    "ms": lambda r: str(_ri(r, 3, 180)),
    "slowms": lambda r: str(_ri(r, 2000, 2600)),
    "id": lambda r: str(_ri(r, 1000, 99999)),
    "n": lambda r: str(_ri(r, 2, 480)),
    "q": lambda r: str(_ri(r, 60, 400)),
    "pid": lambda r: str(_ri(r, 1000, 32000)),
    "hex": lambda r: f"{r.getrandbits(40):010x}",
    "method": lambda r: _pick(r, ("GET", "GET", "GET", "POST")),
    "key": lambda r: f"{_pick(r, ('product', 'price', 'session', 'stock'))}:{_ri(r, 1000, 99999)}",
    "client": lambda r: _pick(r, ("android-4.2.1", "ios-5.0.3", "partner-acme", "web-legacy")),
    "bytes": lambda r: str(_ri(r, 400, 48000)),
}


class _Vars(dict):
    """Template variables: fixed ones given, the rest drawn on demand from the generator."""

    def __init__(self, rng: random.Random, service: str, **fixed: str) -> None:
        super().__init__(fixed)
        self.rng = rng
        self.service = service

    def __missing__(self, key: str) -> str:
        if key == "path":
            routes = _ROUTES.get(self.service, ("/",))
            return _pick(self.rng, routes).replace("{id}", str(_ri(self.rng, 1000, 99999)))
        if key == "peer":
            return _pick(self.rng, tuple(callees_of(self.service)))
        return _GENERATORS[key](self.rng)


@dataclass(frozen=True)
class _Template:
    weight: float
    level: str  # error | warn | info | debug
    logger: str
    text: str
    stack: str | None = None


def _steady_templates(service: str) -> list[_Template]:
    """What a service logs all the time, both windows: traffic lines and a few steady warnings and errors."""
    kind = SERVICES[service]
    if kind == "db_proxy":
        db = service.removesuffix("-db-proxy")
        return [
            _Template(
                30,
                "info",
                "pgbouncer",
                f"C-0x{{hex}}: {db}/app_{db}@{{ip}}:{{port}} login attempt: db={db} user=app_{db} tls=no",
            ),
            _Template(
                25,
                "info",
                "pgbouncer",
                f"C-0x{{hex}}: {db}/app_{db}@{{ip}}:{{port}} closing because: client close request (age={{n}}s)",
            ),
            _Template(
                4,
                "info",
                "pgbouncer",
                "stats: {n} xacts/s, {n} queries/s, in {bytes} B/s, out {bytes} B/s, "
                "xact {n} us, query {n} us, wait 0 us",
            ),
            _Template(
                1.5,
                "warn",
                "pgbouncer",
                f"S-0x{{hex}}: {db}/app_{db}@10.0.9.5:5432 closing because: server idle timeout (age={{n}}s)",
            ),
        ]
    if kind == "cache":
        return [
            _Template(10, "info", "redis", "{n} changes in 60 seconds. Saving..."),
            _Template(10, "info", "redis", "Background saving started by pid {pid}"),
            _Template(10, "info", "redis", "DB saved on disk"),
            _Template(
                2,
                "warn",
                "redis",
                "Client id={n} addr={ip}:{port} closed for overcoming of output buffer limits.",
            ),
        ]
    templates = [
        _Template(40, "info", "http", "request completed method={method} path={path} status=200 duration_ms={ms}"),
        _Template(6, "info", "health", "health check ok"),
        _Template(
            1.2,
            "error",
            "http",
            'request failed method={method} path={path} status=500 error="unexpected EOF"',
        ),
        _Template(1.0, "error", "metrics", "failed to flush metrics batch: context deadline exceeded"),
    ]
    if callees_of(service):
        templates.append(_Template(3, "warn", "client", "retrying request attempt=1 peer={peer}"))
    if kind in ("gateway", "frontend"):
        templates.append(_Template(3, "warn", "api", "deprecated API v1 called by client {client}"))
    # a rare crash in a request handler, recovered by the server, with the runtime's own trace
    runtime = PROFILES[service].runtime
    if runtime in _RECOVERED_CRASHES:
        text, stack = _RECOVERED_CRASHES[runtime]
        templates.append(_Template(0.3, "error", "http", text, stack))
    if service in ("catalog", "cart", "inventory", "web-frontend"):
        templates.append(_Template(10, "debug", "cache", "cache miss for key {key}"))
    return templates


_RECOVERED_CRASHES = {
    "go": (
        "http: panic serving {ip}:{port}: runtime error: index out of range [3] with length 3",
        "goroutine 4127 [running]:\n"
        "net/http.(*conn).serve.func1()\n"
        "\t/usr/local/go/src/net/http/server.go:1868 +0xb9\n"
        "panic({0x8c2e40?, 0xc000a1c030?})\n"
        "\t/usr/local/go/src/runtime/panic.go:920 +0x270\n"
        "github.com/acme/shop/gateway/internal/route.(*Table).match(0xc0001b6000, {0xc000a24000, 0x11})\n"
        "\t/src/internal/route/table.go:88 +0x1d4\n"
        "github.com/acme/shop/gateway/internal/route.(*Table).ServeHTTP(0xc0001b6000, {0xa4e0f8, 0xc000a3a0e0}, "
        "0xc000a2e000)\n"
        "\t/src/internal/route/table.go:41 +0x5a\n"
        "net/http.serverHandler.ServeHTTP({0xc0001c2000?}, {0xa4e0f8?, 0xc000a3a0e0?}, 0x6?)\n"
        "\t/usr/local/go/src/net/http/server.go:2938 +0x8e\n"
        "created by net/http.(*Server).Serve in goroutine 1\n"
        "\t/usr/local/go/src/net/http/server.go:3086 +0x5cb",
    ),
    "node": (
        "unhandled rejection in request handler",
        "TypeError: Cannot read properties of undefined (reading 'sku')\n"
        "    at toCartLine (/app/src/views/cart.js:31:27)\n"
        "    at Array.map (<anonymous>)\n"
        "    at renderCart (/app/src/views/cart.js:12:30)\n"
        "    at /app/node_modules/express/lib/router/route.js:144:13\n"
        "    at process.processTicksAndRejections (node:internal/process/task_queues:95:5)",
    ),
}

_NOISY_TEMPLATES = (
    "failed to refresh feature flags: context deadline exceeded",
    "kafka producer: broker 2 not available, retrying in 500ms",
    "audit log shipper: dropped {n} events, buffer full",
)

_CONFIG_KEYS = {
    "catalog": (
        "search.page_size",
        "must be an integer, got '50 items'",
        "/etc/catalog/config.yaml",
        "line 14: expected int",
    ),
    "cart": (
        "session.ttl",
        "must be a duration, got '3600'",
        "/etc/cart/config.yaml",
        'invalid duration "3600"',
    ),
    "checkout": (
        "tax.rates_url",
        "is required",
        "/etc/checkout/config.yaml",
        "missing required field tax.rates_url",
    ),
    "payments": (
        "provider.timeout",
        "must be a duration, got '30'",
        "/etc/payments/config.yaml",
        'invalid duration "30": missing unit',
    ),
    "inventory": (
        "warehouse.regions",
        "must be a list, got 'eu-west'",
        "/etc/inventory/config.yaml",
        "line 7: cannot unmarshal string into []string",
    ),
}


@functools.lru_cache(maxsize=4096)
def _iso_second(second: int) -> str:
    return datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _iso(ts: float) -> str:
    second = math.floor(ts)
    return f"{_iso_second(second)}.{min(999, int((ts - second) * 1000)):03d}Z"


_PINO_LEVELS = {"debug": 20, "info": 30, "warn": 40, "error": 50}
_KLOG_LETTERS = {"debug": "I", "info": "I", "warn": "W", "error": "E"}


def format_line(
    fmt: str,
    ts: float,
    level: str,
    logger: str,
    msg: str,
    fields: dict[str, str] | None = None,
    stack: str | None = None,
) -> str:
    """One log entry in a service's format; a stack trace follows on its own lines (pino: in `err.stack`).

    json: textual level; pino: Node's pino (numeric level, epoch ms); logfmt; logback: Logback's default pattern,
    time of day without a date; klog: Kubernetes' Go logger (Lmmdd hh:mm:ss.uuuuuu pid file:line]); plain: ISO
    time, level, [logger]; plain_msg: a plain line whose message sits in msg="..." (not logfmt: no level key); bare:
    ISO time and message, no level (the level is only a stream label).
    """
    fields = fields or {}
    if fmt == "json":
        line = json.dumps({"ts": _iso(ts), "level": level, "logger": logger, "msg": msg, **fields})
    elif fmt == "pino":
        err = {"err": {"type": "Error", "stack": stack}} if stack else {}
        record = {"level": _PINO_LEVELS[level], "time": int(ts * 1000), "pid": 1, "name": logger, "msg": msg}
        return json.dumps({**record, **fields, **err})
    elif fmt == "logfmt":
        line = f'ts={_iso(ts)} level={level} logger={logger} msg="{_quoted(msg)}"{_pairs(fields)}'
    elif fmt == "logback":
        clock = _iso(ts)[11:23]
        thread = f"http-nio-8080-exec-{int(ts * 1000) % 16 + 1}"
        line = f"{clock} [{thread}] {level.upper():<5} {logger} - {msg}{_pairs(fields)}"
    elif fmt == "klog":
        iso = _iso(ts)
        stamp = f"{_KLOG_LETTERS[level]}{iso[5:7]}{iso[8:10]} {iso[11:23]}{int(ts * 1e6) % 1000:03d}"
        line = f"{stamp}       1 {logger}.go:{len(logger) * 7 + 20}] {msg}{_pairs(fields)}"
    elif fmt == "bare":  # the level only in the stream's labels (Loki's detected_level), see _Model.logs
        line = f"{_iso(ts)} {msg}{_pairs(fields)}"
    elif fmt == "plain_msg":
        line = f'{_iso(ts)} {level.upper()} {logger}: msg="{_quoted(msg)}"{_pairs(fields)}'
    else:
        extra = "".join(f" {k}={v}" for k, v in fields.items())
        line = f"{_iso(ts)} {level.upper()} [{logger}] {msg}{extra}"
    return f"{line}\n{stack}" if stack else line


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _pairs(fields: dict[str, str]) -> str:
    return "".join(f' {k}="{v}"' if " " in v else f" {k}={v}" for k, v in fields.items())


def _lognormal(rng: random.Random, p99: float) -> float:
    # median = p99/4, so sigma = ln(4)/z(0.99)
    return (p99 / 4.0) * math.exp(rng.gauss(0.0, 0.596))


class _Model:
    """The per-step state of the fleet for one scenario, then the telemetry sampled from it."""

    def __init__(self, sc: Scenario) -> None:
        self.sc = sc
        self.rng = rng = scenario_rng(sc.name, sc.seed, "generate")
        self.t0 = sc.start.timestamp()
        self.n = n = int(round((sc.end - sc.start).total_seconds() / STEP)) + 1
        self.times = [self.t0 + i * STEP for i in range(n)]
        self.onset_i = self.index(sc.onset)
        self.root = sc.root_service

        self.base_p99 = {s: PROFILES[s].p99 * rng.uniform(0.85, 1.15) for s in INTERNAL}
        self.base_err = {s: rng.uniform(0.0005, 0.003) for s in INTERNAL}
        self.base_cpu = {s: PROFILES[s].cpu * rng.uniform(0.85, 1.15) for s in INTERNAL}
        self.base_mem = {s: PROFILES[s].memory_mb * MIB * rng.uniform(0.9, 1.1) for s in INTERNAL}
        self.pool_max = {s: rng.choice((50, 100)) for s in INTERNAL if SERVICES[s] == "db_proxy"}
        self.pool_frac = {s: rng.uniform(0.08, 0.18) for s in self.pool_max}
        self.disk0 = {s: rng.uniform(20, 80) * GIB for s in INTERNAL}
        self.disk_drain = {s: rng.uniform(0.5, 3.0) * MIB for s in INTERNAL}  # bytes per step (logs, temp files)
        self.cert = {s: sc.end.timestamp() + rng.uniform(20, 90) * 86400 for s in INTERNAL}
        self.version = {s: f"{rng.randint(1, 3)}.{rng.randint(0, 30)}.{rng.randint(0, 9)}" for s in INTERNAL}
        self.gateway_rps = rng.uniform(180, 260)
        phase = rng.uniform(0, 2 * math.pi)

        self.load = [1.0 + 0.04 * math.sin(phase + 4.0 * i / n) for i in range(n)]
        self.extra = {e: [1.0] * n for e in EDGES}
        self.reach = {s: [1.0] * n for s in SERVICES}
        self.alive = {s: [True] * n for s in INTERNAL}
        self.own_err = {s: [self.base_err[s]] * n for s in INTERNAL}
        self.slow = {s: [0.0] * n for s in INTERNAL}
        self.conn_fail = {s: [0.0] * n for s in SERVICES}
        self.kind: dict[str, list[str | None]] = {s: [None] * n for s in SERVICES}
        self.p99_mult = {s: [1.0] * n for s in INTERNAL}
        self.p99_add = {s: [0.0] * n for s in INTERNAL}
        self.cpu_mult = {s: [1.0] * n for s in INTERNAL}
        self.cpu_set: dict[str, list[float | None]] = {s: [None] * n for s in INTERNAL}
        self.up = {s: [1.0] * n for s in INTERNAL}
        self.mem: dict[str, list[float | None]] = {s: [None] * n for s in INTERNAL}
        self.pool_set: dict[str, list[float | None]] = {s: [None] * n for s in self.pool_max}
        self.disk = {s: [self.disk0[s] - self.disk_drain[s] * i for i in range(n)] for s in INTERNAL}
        self.own_templates = {
            s: [
                _Template(
                    1,
                    "error",
                    "http",
                    "request failed method={method} path={path} status=503 "
                    'error="upstream connect error or disconnect/reset before headers"',
                )
            ]
            for s in INTERNAL
        }
        self.rate_logs: list[tuple[str, _Template, list[float]]] = []
        self.events: list[tuple[float, str, _Template, dict[str, str]]] = []
        self.deploys: list[DeployEvent] = []
        self.formats = {s: PROFILES[s].fmt for s in INTERNAL}  # the hard suite's log_shapes twist changes some

        self.base_rate = self._base_rates()

    def index(self, at: datetime) -> int:
        """Step index of a time in the data range."""
        return max(0, min(self.n - 1, int(round((at.timestamp() - self.t0) / STEP))))

    def incident_steps(self) -> range:
        return range(self.onset_i, self.n)

    def _base_rates(self) -> dict[str, float]:
        rates = {s: 0.0 for s in SERVICES}
        rates["gateway"] = self.gateway_rps
        for s in topological_order():
            for p in callees_of(s):
                rates[p] += rates[s] * CALLS[(s, p)][0]
        return rates

    def event(self, ts: float, service: str, level: str, logger: str, text: str, stack: str | None = None) -> None:
        self.events.append((ts, service, _Template(1, level, logger, text, stack), {}))

    def deploy(
        self,
        at: datetime,
        service: str,
        version: str,
        previous: str,
        kind: str = "code",
        commit: str | None = None,
        author: str | None = None,
        description: str = "",
    ) -> None:
        """Record a deploy and the start-up (or reload) line the service logs for it."""
        self.deploys.append(
            DeployEvent(
                at=at,
                service=service,
                version=version,
                previous_version=previous,
                kind=kind,
                commit=commit,
                author=author,
                description=description,
                source="sim",
            )
        )
        ts = at.timestamp() + self.rng.uniform(1, 6)
        if kind == "code":
            short = (commit or "")[:7]
            self.event(ts, service, "info", "main", f"starting {service} version={version} commit={short}")
        self.version[service] = version

    # --- faults: each changes the root's state from the onset -------------------------------------------

    def fault_memory_leak(self, root: str, mag: float) -> None:
        rng = self.rng
        base = self.base_mem[root]
        limit = base * mag
        steps_to_oom = rng.randint(8, 14)
        runtime = PROFILES[root].runtime
        gc_rate = [0.0] * self.n
        elapsed, restarted = 0, False
        for i in self.incident_steps():
            ts = self.times[i]
            if elapsed >= steps_to_oom:
                self._oom_kill(root, i, base, runtime, rng)
                elapsed, restarted = 0, True
                continue
            frac = elapsed / steps_to_oom
            self.mem[root][i] = base + (limit - base) * frac
            self.p99_mult[root][i] = 1 + 5 * frac**2 + (1.0 if restarted and elapsed == 0 else 0.0)
            self.own_err[root][i] = self.base_err[root] + 0.12 * frac**3
            self.slow[root][i] = 0.25 * frac**3
            self.cpu_mult[root][i] = 1 + 1.5 * frac**2
            self.kind[root][i] = "timeout"
            gc_rate[i] = 1.2 * frac**2
            if restarted and elapsed == 0:
                self.event(
                    ts + rng.uniform(3, 9),
                    root,
                    "warn",
                    "main",
                    "previous instance terminated: OOMKilled (exit code 137)",
                )
                self.event(
                    ts + rng.uniform(9, 14),
                    root,
                    "info",
                    "main",
                    f"starting {root} version={self.version[root]} pid={rng.randint(1, 60)}",
                )
            elapsed += 1
        gc_text = (
            "GC pause (G1 Evacuation Pause) {slowms}ms, heap nearly full"
            if runtime == "java"
            else "memory usage high: rss above soft limit, gc collected 0 objects in {slowms}ms"
        )
        self.rate_logs.append((root, _Template(1, "warn", "gc", gc_text), gc_rate))
        self.own_templates[root] = [_Template(1, "error", "http", "request timed out after 2000ms path={path}")]

    def _oom_kill(self, root: str, i: int, base: float, runtime: str, rng: random.Random) -> None:
        """Step i of `root` is the OOM kill: down, refusing connections, memory back near its base, the kill logged."""
        self.up[root][i] = 0.0
        self.alive[root][i] = False
        self.mem[root][i] = base * 0.45
        self.conn_fail[root][i] = 1.0
        self.kind[root][i] = "refused"
        self._log_oom(root, self.times[i] - rng.uniform(2, 8), runtime)

    def _log_oom(self, root: str, ts: float, runtime: str) -> None:
        if runtime == "node":
            stack = (
                "RangeError: Array buffer allocation failed\n"
                "    at new ArrayBuffer (<anonymous>)\n"
                "    at SessionCache.put (/app/src/session/cache.js:112:23)\n"
                "    at PageHandler.render (/app/src/handlers/page.js:64:18)\n"
                "    at Layer.handle [as handle_request] (/app/node_modules/express/lib/router/layer.js:95:5)\n"
                "    at process.processTicksAndRejections (node:internal/process/task_queues:95:5)"
            )
            self.event(ts - 5, root, "error", "http", "uncaught exception while rendering page", stack)
            self.event(ts, root, "error", "main", "FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap "
                       "out of memory")
        elif runtime == "java":
            cls = "".join(part.capitalize() for part in root.split("-"))
            stack = (
                f"\tat java.base/java.util.Arrays.copyOf(Arrays.java:3537)\n"
                f"\tat java.base/java.util.ArrayList.grow(ArrayList.java:237)\n"
                f"\tat com.shop.{cls.lower()}.session.SessionCache.put(SessionCache.java:112)\n"
                f"\tat com.shop.{cls.lower()}.handler.PageHandler.render(PageHandler.java:64)"
            )
            if self.rng.random() < 0.5:
                self.event(ts - 20, root, "error", "gc", "java.lang.OutOfMemoryError: GC overhead limit exceeded")
            self.event(ts, root, "error", "main", "java.lang.OutOfMemoryError: Java heap space", stack)
        else:
            stack = (
                f"Traceback (most recent call last):\n"
                f'  File "/app/services/{root}/server.py", line 88, in handle_request\n'
                f"    body = self.render(result)\n"
                f'  File "/app/services/{root}/server.py", line 131, in render\n'
                f"    return json.dumps(payload).encode()\n"
                f"MemoryError"
            )
            self.event(ts, root, "error", "main", "unhandled exception while serving request", stack)

    def fault_deployment_regression(self, root: str, mag: float) -> None:
        from sim.sample_repo import ensure_sample_repo

        repo = ensure_sample_repo(root)
        self.version[root] = repo.previous_version
        self.deploy(
            self.sc.onset,
            root,
            repo.bad_version,
            repo.previous_version,
            commit=repo.bad_commit,
            author="ci-deployer",
            description=f"deploy {root} {repo.bad_version}",
        )
        if self.sc.innocent_deploy_at is not None:
            svc = repo.innocent_service
            self.deploy(
                self.sc.innocent_deploy_at,
                svc,
                repo.innocent_version,
                repo.previous_version,
                commit=repo.innocent_commit,
                author="ci-deployer",
                description=f"deploy {svc} {repo.innocent_version}",
            )
        for i in self.incident_steps():
            self.own_err[root][i] = self.base_err[root] + mag * (0.5 if i == self.onset_i else 1.0)
            self.kind[root][i] = "status500"
        self.own_templates[root] = [
            _Template(
                1,
                "error",
                "http",
                f"unhandled exception in {{method}} {{path}}: {repo.exception}",
                repo.traceback,
            )
        ]

    def fault_db_connection_exhaustion(self, root: str, mag: float) -> None:
        ramp = self.rng.randint(4, 10)
        mx = self.pool_max[root]
        start = self.pool_frac[root] * mx
        db = root.removesuffix("-db-proxy")
        for i in self.incident_steps():
            sat = min(1.0, (i - self.onset_i + 1) / ramp)
            self.pool_set[root][i] = mx if sat >= 1.0 else start + (mx - start) * sat
            self.p99_add[root][i] = mag * sat**2
            self.own_err[root][i] = self.base_err[root] + 0.12 * sat**2
            self.slow[root][i] = 0.25 * sat**2
            self.kind[root][i] = "pool"
        self.own_templates[root] = [
            _Template(
                3,
                "warn",
                "pgbouncer",
                f"C-0x{{hex}}: {db}/app_{db}@{{ip}}:{{port}} closing because: no more "
                "connections allowed (max_client_conn)",
            ),
            _Template(
                2,
                "error",
                "pgbouncer",
                f"C-0x{{hex}}: {db}/app_{db}@{{ip}}:{{port}} pooler error: query_wait_timeout",
            ),
        ]

    def fault_network_partition(self, root: str, mag: float) -> None:
        for i in self.incident_steps():
            self.up[root][i] = 0.0
            self.reach[root][i] = 0.03
            self.conn_fail[root][i] = mag
            self.kind[root][i] = "partition"

    def fault_cpu_saturation(self, root: str, mag: float) -> None:
        ramp = self.rng.randint(2, 4)
        base = self.base_cpu[root]
        for i in self.incident_steps():
            sat = min(1.0, (i - self.onset_i + 1) / ramp)
            self.cpu_set[root][i] = base + (CPU_LIMIT * 1.04 - base) * sat  # throttled: pinned at the limit
            self.p99_mult[root][i] = 1 + (mag - 1) * sat
            self.own_err[root][i] = self.base_err[root] + 0.03 * sat
            self.slow[root][i] = 0.008 * sat
            self.kind[root][i] = "timeout"
        self.own_templates[root] = [
            _Template(3, "error", "http", "request exceeded deadline of 2s path={path} elapsed_ms={slowms}"),
            _Template(1, "warn", "worker", "worker pool saturated, queue length {q}"),
        ]

    def fault_config_error(self, root: str, mag: float) -> None:
        key, problem, path, detail = _CONFIG_KEYS[root]
        rev = self.rng.randint(100, 400)
        self.deploy(
            self.sc.onset,
            root,
            f"config-r{rev + 1}",
            f"config-r{rev}",
            kind="config",
            author="ops-bot",
            description=f"config change: {key} in {path}",
        )
        self.event(
            self.times[self.onset_i] + 2,
            root,
            "info",
            "config",
            f"config reloaded from {path} revision={rev + 1}",
        )
        for i in self.incident_steps():
            self.own_err[root][i] = self.base_err[root] + mag
            self.kind[root][i] = "status500"
        self.own_templates[root] = [
            _Template(3, "error", "config", f"invalid configuration: key '{key}' {problem}"),
            _Template(2, "error", "config", f"failed to parse {path}: {detail}"),
        ]

    def fault_dependency_outage(self, root: str, mag: float) -> None:
        if root == "payment-provider":
            for i in self.incident_steps():
                self.conn_fail[root][i] = mag * min(1.0, (i - self.onset_i + 1) / 2)
                self.kind[root][i] = "provider"
            return
        onset_ts = self.times[self.onset_i]
        self.event(onset_ts - 3, root, "error", "redis", "Redis 7.2.4 crashed by signal: 11, si_code: 1")
        self.event(
            onset_ts - 3,
            root,
            "error",
            "redis",
            "=== REDIS BUG REPORT START: Cut & paste starting from here ===",
        )
        cache_to_db = 1 + CALLS[("catalog", "redis-cache")][0] * 0.75 / CALLS[("catalog", "catalog-db-proxy")][0]
        for i in self.incident_steps():
            self.up[root][i] = 0.0
            self.alive[root][i] = False
            self.reach[root][i] = 0.0
            self.conn_fail[root][i] = 1.0
            self.kind[root][i] = "redis"
            self.cpu_set[root][i] = 0.0
            self.mem[root][i] = 0.0
            self.extra[("catalog", "catalog-db-proxy")][i] = cache_to_db
            self.p99_add["catalog"][i] = 0.06

    def fault_disk_full(self, root: str, mag: float) -> None:
        rng = self.rng
        decline_start = max(1, self.onset_i - rng.randint(24, 80))
        at_start = self.disk[root][decline_start]
        floor = rng.uniform(60, 150) * MIB
        warn_rate = [0.0] * self.n
        for i in range(decline_start, self.n):
            if i < self.onset_i:
                frac = (i - decline_start) / (self.onset_i - decline_start)
                self.disk[root][i] = at_start + (floor - at_start) * frac
                warn_rate[i] = 0.1 if frac > 0.9 else 0.0
            else:
                self.disk[root][i] = rng.uniform(0, 24) * MIB
                self.own_err[root][i] = self.base_err[root] + mag
                self.kind[root][i] = "status500"
        self.rate_logs.append(
            (root, _Template(1, "warn", "storage", f"disk usage above 90% on /var/lib/{root}"), warn_rate)
        )
        if SERVICES[root] == "db_proxy":
            self.own_templates[root] = [
                _Template(
                    2,
                    "error",
                    "postgres",
                    'could not write to file "pg_wal/xlogtemp.{pid}": No space left on device',
                ),
                _Template(
                    2,
                    "error",
                    "postgres",
                    'ERROR: could not extend file "base/16384/{id}": No space left on device',
                ),
            ]
        else:
            self.own_templates[root] = [
                _Template(
                    3,
                    "error",
                    "storage",
                    f"OSError: [Errno 28] No space left on device: '/var/lib/{root}/spool/{{id}}.tmp'",
                ),
                _Template(
                    1,
                    "error",
                    "storage",
                    "failed to write request journal: [Errno 28] No space left on device",
                ),
            ]

    def fault_certificate_expired(self, root: str, mag: float) -> None:
        self.cert[root] = self.sc.onset.timestamp()
        tls_rate = [0.0] * self.n
        for i in self.incident_steps():
            self.conn_fail[root][i] = mag
            self.reach[root][i] = 0.03
            self.kind[root][i] = "x509"
            tls_rate[i] = 0.4
        self.rate_logs.append(
            (
                root,
                _Template(
                    1,
                    "warn",
                    "http",
                    "http: TLS handshake error from {ip}:{port}: remote error: tls: bad certificate",
                ),
                tls_rate,
            )
        )

    def fault_traffic_surge(self, root: str, mag: float) -> None:
        ramp = self.rng.randint(2, 4)
        limited = [0.0] * self.n
        for i in self.incident_steps():
            frac = min(1.0, (i - self.onset_i + 1) / ramp)
            self.load[i] *= 1 + (mag - 1) * frac
            self.own_err[root][i] = self.base_err[root] + 0.02 * frac
            limited[i] = 1.5 * frac
        self.rate_logs.append(
            (
                root,
                _Template(1, "warn", "ratelimit", "rate limit exceeded for client {ip} (limit 100 req/s)"),
                limited,
            )
        )

    def fault_false_alarm(self, alerted: str, mag: float) -> None:
        last = self.index(self.sc.alert.starts_at) - self.rng.randint(1, 8)
        for i in range(last - self.sc.blip_steps + 1, last + 1):
            if self.sc.alert_signal == "error_ratio":
                self.own_err[alerted][i] += 0.02 * mag
            else:
                self.p99_mult[alerted][i] = mag

    # --- noise shared by all scenarios --------------------------------------------------------------------

    def add_noise(self) -> None:
        """Innocent deploy, an unrelated new error template, a missed scrape, a cert expiring in days."""
        rng, sc = self.rng, self.sc
        if sc.innocent_deploy_service and sc.innocent_deploy_at:
            svc = sc.innocent_deploy_service
            major, minor, patch = self.version[svc].split(".")
            self.deploy(
                sc.innocent_deploy_at,
                svc,
                f"{major}.{minor}.{int(patch) + 1}",
                self.version[svc],
                commit=f"{rng.getrandbits(160):040x}",
                author="ci-deployer",
                description=f"deploy {svc}",
            )
        if sc.noisy_service and sc.noisy_start:
            rates = [0.0] * self.n
            for i in range(self.index(sc.noisy_start), self.n):
                rates[i] = 0.08
            text = rng.choice(_NOISY_TEMPLATES)
            self.rate_logs.append((sc.noisy_service, _Template(1, "error", "worker", text), rates))
        bystanders = [s for s in INTERNAL if s not in (self.root, sc.alerted_service)]
        if rng.random() < 0.25:
            self.up[rng.choice(bystanders)][rng.randrange(self.n)] = 0.0
        if rng.random() < 0.3:
            self.cert[rng.choice(bystanders)] = sc.end.timestamp() + rng.uniform(2, 5) * 86400

    # --- propagation ----------------------------------------------------------------------------------------

    def _rates(self, retries: dict[tuple[str, str], list[float]] | None) -> tuple[dict, dict]:
        rate = {s: [0.0] * self.n for s in SERVICES}
        client = {e: [0.0] * self.n for e in EDGES}
        for i in range(self.n):
            rate["gateway"][i] = self.gateway_rps * self.load[i]
        for s in topological_order():
            if s != "gateway":
                rate[s] = [r * reach for r, reach in zip(rate[s], self.reach[s], strict=True)]
            for p in callees_of(s):
                mult = CALLS[(s, p)][0]
                for i in range(self.n):
                    calls = rate[s][i] * mult * self.extra[(s, p)][i]
                    if retries is not None and s != "gateway":  # the edge proxy does not retry
                        calls *= 1 + 0.2 * retries[(s, p)][i]
                    client[(s, p)][i] = calls
                    rate[p][i] += calls
        return rate, client

    def propagate(self) -> None:
        """Derive every service's state from its callees (one step later), callees first."""
        n = self.n
        offered, _ = self._rates(None)
        self.cpu = {}
        for s in INTERNAL:
            cpu = []
            for i in range(n):
                forced = self.cpu_set[s][i]
                if forced is not None:
                    cpu.append(forced)
                    continue
                ratio = offered[s][i] / self.base_rate[s]
                cpu.append(min(CPU_LIMIT, self.base_cpu[s] * (0.2 + 0.8 * ratio) * self.cpu_mult[s][i]))
            self.cpu[s] = cpu
        self.err = {s: [0.0] * n for s in SERVICES}
        self.p99 = {s: [0.0] * n for s in SERVICES}
        self.client_err = {e: [0.0] * n for e in EDGES}
        for s in reversed(topological_order()):
            if s not in self.base_p99:
                continue
            for i in range(n):
                util = min(1.0, self.cpu[s][i] / CPU_LIMIT)
                queueing = 1 + 6 * max(0.0, (util - 0.7) / 0.3) ** 2
                load_ratio = offered[s][i] / self.base_rate[s]
                factor = max(self.p99_mult[s][i], queueing) * (1 + 0.1 * max(0.0, load_ratio - 1))
                p99 = self.base_p99[s] * factor + self.p99_add[s][i]
                self.slow[s][i] += 0.05 * max(0.0, (util - 0.9) / 0.1)
                failing, added = 0.0, 0.0
                j = max(0, i - 1)
                for p in callees_of(s):
                    mult, crit = CALLS[(s, p)]
                    cf = self.conn_fail[p][j]
                    inner = min(1.0, self.err[p][j] + self.slow[p][j]) if p in self.base_p99 else 0.001
                    ce = min(1.0, cf + (1 - cf) * inner)
                    self.client_err[(s, p)][i] = ce
                    share = min(1.0, mult * self.extra[(s, p)][i])
                    failing += share * crit * (1 - (1 - ce) ** max(1.0, mult))
                    timeout = _timeout(p)
                    if p in self.base_p99:
                        added = max(added, 0.8 * min(timeout, max(0.0, self.p99[p][j] - self.base_p99[p])))
                        if share * self.slow[p][j] > 0.01:
                            added = max(added, timeout)
                    if self.kind[p][j] == "partition" and share * cf > 0.01:
                        added = max(added, DIAL_TIMEOUT)
                own = self.own_err[s][i]
                self.err[s][i] = min(1.0, own + (1 - own) * min(1.0, failing))
                self.p99[s][i] = p99 + added
        self.rate, self.client_rate = self._rates(self.client_err)

    # --- telemetry ------------------------------------------------------------------------------------------

    def metrics(self) -> list[MetricSeries]:
        rng, n, times = self.rng, self.n, self.times
        series: list[MetricSeries] = []

        def noisy(values: list[float], rel: float, low: float = 0.0, high: float = math.inf) -> list[tuple]:
            return [(t, min(high, max(low, v * (1 + rng.gauss(0, rel))))) for t, v in zip(times, values, strict=True)]

        for s in INTERNAL:
            signals = SIGNALS_BY_KIND[SERVICES[s]]
            mem_base = [
                self.base_mem[s] * (1 + 0.05 * (self.rate[s][i] / self.base_rate[s] - 1) + 0.02 * i / n)
                for i in range(n)
            ]
            memory = [m if m is not None else b for m, b in zip(self.mem[s], mem_base, strict=True)]
            values = {
                "request_rate": noisy(self.rate[s], 0.03),
                "error_ratio": [
                    (t, min(1.0, max(0.0, e + rng.gauss(0, 0.25 * self.base_err[s]))))
                    for t, e in zip(times, self.err[s], strict=True)
                ],
                "latency_p99": noisy(self.p99[s], 0.05),
                "cpu_usage": noisy(self.cpu[s], 0.04, high=CPU_LIMIT),
                "memory_bytes": noisy(memory, 0.01),
                "disk_free_bytes": noisy(self.disk[s], 0.0005),
                "cert_expiry_timestamp": [(t, round(self.cert[s])) for t in times],
                "up": list(zip(times, self.up[s], strict=True)),
            }
            if s in self.pool_max:
                mx = self.pool_max[s]
                in_use = [
                    forced
                    if forced is not None
                    else min(mx - 2, self.pool_frac[s] * mx * (self.rate[s][i] / self.base_rate[s]) ** 0.7)
                    for i, forced in enumerate(self.pool_set[s])
                ]
                values["db_pool_in_use"] = [
                    (
                        t,
                        float(mx) if v >= mx else float(max(0, min(mx - 1, round(v * (1 + rng.gauss(0, 0.08)))))),
                    )
                    for t, v in zip(times, in_use, strict=True)
                ]
                values["db_pool_max"] = [(t, float(mx)) for t in times]
            series.extend(MetricSeries(signal, s, [(t, float(v)) for t, v in values[signal]]) for signal in signals)
        for edge in EDGES:
            caller, peer = edge
            base_ce = [
                (t, min(1.0, max(0.0, ce + rng.gauss(0, 0.001))))
                for t, ce in zip(times, self.client_err[edge], strict=True)
            ]
            series.append(MetricSeries("client_request_rate", caller, noisy(self.client_rate[edge], 0.03), peer))
            series.append(MetricSeries("client_error_ratio", caller, base_ce, peer))
        return series

    def logs(self) -> list[LogRecord]:
        rng, n = self.rng, self.n
        entries: list[tuple[float, str, _Template, dict[str, str]]] = list(self.events)

        def emit(
            service: str,
            i: int,
            rate: float,
            templates: list[_Template],
            fields: dict[str, str] | None = None,
        ) -> None:
            count = int(rate * STEP + rng.random())
            if not count:
                return
            weights = [t.weight for t in templates]
            for template in rng.choices(templates, weights, k=count):
                entries.append((self.times[i] + rng.random() * STEP, service, template, fields or {}))

        for s in INTERNAL:
            steady = _steady_templates(s)
            profile = PROFILES[s]
            for i in range(n - 1):
                if not self.alive[s][i]:
                    continue
                traffic = self.rate[s][i] / self.base_rate[s]
                emit(s, i, profile.log_rate * (0.25 + 0.75 * min(traffic, 3.0)), steady)
                excess = self.own_err[s][i] - self.base_err[s]
                if excess > 0.002:
                    emit(s, i, min(MAX_ERROR_LINES, OWN_LINES * excess), self.own_templates[s])
        for (caller, peer), ratios in self.client_err.items():
            baseline = sorted(ratios[: self.onset_i or 1])[len(ratios[: self.onset_i or 1]) // 2]
            for i in range(n - 1):
                excess = ratios[i] - baseline - 0.01
                if excess > 0 and self.alive[caller][i]:
                    template = self._failure_template(caller, peer, self.kind[peer][max(0, i - 1)])
                    emit(caller, i, min(MAX_ERROR_LINES, EDGE_LINES * excess), [template], {"peer": peer})
        for service, template, rates in self.rate_logs:
            for i in range(n - 1):
                if rates[i] and self.alive[service][i]:
                    emit(service, i, rates[i], [template])

        end = self.sc.end.timestamp()
        entries = [e for e in entries if self.t0 <= e[0] <= end]
        entries.sort(key=lambda e: e[0])
        records = []
        stream_labels = {level: {"detected_level": level} for level in _PINO_LEVELS}  # one mapping per stream
        for ts, service, template, fields in entries:
            text = template.text.format_map(_Vars(rng, service)) if "{" in template.text else template.text
            fmt = self.formats[service]
            line = format_line(fmt, ts, template.level, template.logger, text, fields, template.stack)
            labels = stream_labels[template.level] if fmt == "bare" else None
            records.append(LogRecord(ts=ts, service=service, line=line, labels=labels))
        return records

    def _failure_template(self, caller: str, peer: str, kind: str | None) -> _Template:
        return _Template(1, "error", "client", failure_message(caller, peer, kind, self.rng))

    def spans(self) -> list[Span]:
        rng = self.rng
        spans: list[Span] = []
        duration = (self.sc.end - self.sc.start).total_seconds()
        # Tail-based sampling, as collectors do: keep every failed or slow trace and a fifth of the rest.
        for _ in range(1200):
            ts = self.t0 + rng.random() * duration
            i = min(self.n - 1, int((ts - self.t0) / STEP))
            trace: list[Span] = []
            took, failed, _ = self._serve("gateway", i, ts, f"{rng.getrandbits(128):032x}", None, trace)
            if failed or took > 1000 or rng.random() < 0.2:
                spans.extend(trace)
        spans.sort(key=lambda sp: sp.start)
        return spans

    def _serve(
        self, service: str, i: int, ts: float, trace_id: str, parent: str | None, spans: list[Span]
    ) -> tuple[float, bool, str]:
        rng = self.rng
        span_id = f"{rng.getrandbits(64):016x}"
        own = (
            _lognormal(rng, self.base_p99[service] * max(self.p99_mult[service][i], 1.0) + self.p99_add[service][i])
            * 0.45
        )
        error = rng.random() < self.own_err[service][i]
        message = self._own_error_message(service) if error else ""
        t = ts + own * 0.3
        for p in callees_of(service):
            mult, crit = CALLS[(service, p)]
            if rng.random() >= min(1.0, mult * self.extra[(service, p)][i]):
                continue
            took, failed, why = self._call(service, p, i, t, trace_id, span_id, spans)
            t += took / 1000
            if failed and not error and rng.random() < crit:
                error, message = True, f"call to {p} failed: {why}"
        took_ms = (t - ts + own * 0.7) * 1000
        route = rng.choice(_ROUTES[service]).replace("{id}", ":id")
        spans.append(
            Span(
                trace_id,
                span_id,
                parent,
                service,
                f"{rng.choice(('GET', 'POST'))} {route}",
                ts,
                round(took_ms, 3),
                error,
                None,
                message,
            )
        )
        return took_ms, error, message

    def _call(
        self, caller: str, peer: str, i: int, ts: float, trace_id: str, parent: str, spans: list[Span]
    ) -> tuple[float, bool, str]:
        rng = self.rng
        span_id = f"{rng.getrandbits(64):016x}"
        kind = self.kind[peer][i]
        timeout_ms = _timeout(peer) * 1000
        if rng.random() < self.conn_fail[peer][i]:
            took = {
                "partition": DIAL_TIMEOUT * 1000 * rng.uniform(1.0, 1.02),
                "x509": rng.uniform(4, 15),
                "provider": rng.uniform(40, 220),
            }.get(kind or "", rng.uniform(0.5, 3))
            failed, why = True, failure_message(caller, peer, kind, rng)
        elif peer in TRACED:
            took, failed, why = self._serve(peer, i, ts + 0.001, trace_id, span_id, spans)
            took += rng.uniform(0.5, 3)
            if took > timeout_ms:
                took, failed, why = timeout_ms, True, "context deadline exceeded"
            elif failed:
                why = "HTTP 500 Internal Server Error" if peer == self.root else "HTTP 502 Bad Gateway"
        elif peer in self.base_p99:
            took = _lognormal(rng, self.p99[peer][i]) * 1000
            failed = rng.random() < min(1.0, self.err[peer][i] + self.slow[peer][i])
            why = failure_message(caller, peer, kind, rng) if failed else ""
            if failed and kind in ("pool", "timeout"):
                took = timeout_ms
        else:
            took, failed, why = rng.uniform(80, 400), rng.random() < 0.002, "HTTP 500 Internal Server Error"
        name = {"db_proxy": "postgres query", "cache": "redis GET", "external": "POST /v1/charges"}.get(
            SERVICES[peer], f"HTTP {rng.choice(('GET', 'POST'))} {peer}"
        )
        spans.append(
            Span(
                trace_id,
                span_id,
                parent,
                caller,
                name,
                ts,
                round(took, 3),
                failed,
                peer,
                why if failed else "",
            )
        )
        return took, failed, why

    def _own_error_message(self, service: str) -> str:
        template = self.own_templates[service][0]
        text = template.text.format_map(_Vars(self.rng, service))
        return text.split(": ", 1)[-1] if template.stack else text


def _timeout(peer: str) -> float:
    """Seconds a caller waits for a call to `peer`."""
    return {"db_proxy": 1.0, "cache": 1.0, "external": 5.0, "frontend": 3.0}.get(SERVICES[peer], 2.0)


def failure_message(caller: str, peer: str, kind: str | None, rng: random.Random) -> str:
    """What a caller logs (and puts on its client span) when a call to `peer` fails in this way."""
    runtime = PROFILES[caller].runtime
    if kind == "partition":
        reason = "i/o timeout" if rng.random() < 0.7 else "connect: no route to host"
        return f"dial tcp {peer}:8080: {reason}"
    if kind == "x509":
        if runtime == "python":
            return (
                f"request to https://{peer}:8443 failed: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify "
                "failed: certificate has expired"
            )
        if runtime == "java":
            return (
                f"javax.net.ssl.SSLHandshakeException: PKIX path validation failed for {peer}: certificate has expired"
            )
        if runtime == "node":
            return f"request to https://{peer}:8443/ failed, reason: certificate has expired"
        return f'Get "https://{peer}:8443/": x509: certificate has expired or is not yet valid'
    if kind == "provider":
        if rng.random() < 0.85:
            return "payment-provider returned 503 Service Unavailable"
        return "dial tcp api.payment-provider.example:443: connect: connection refused"
    if kind == "redis":
        return "redis: connection refused"
    if kind == "pool":
        return "connection pool exhausted: timeout waiting for connection from pool"
    if kind == "timeout":
        return f"request to {peer} timed out after {_timeout(peer):g}s: context deadline exceeded"
    if kind == "refused":
        return f"dial tcp {peer}:8080: connect: connection refused"
    if kind == "status500" and SERVICES[peer] == "db_proxy":
        return (
            f'query via {peer} failed: psycopg.errors.DiskFull: could not extend file "base/16384/2619": '
            "No space left on device"
        )
    if kind == "status500":
        return f"upstream {peer} returned 500 Internal Server Error"
    if SERVICES[peer] == "db_proxy":
        return f"query via {peer} failed: canceling statement due to statement timeout"
    if SERVICES[peer] == "cache":
        return f"redis call to {peer} failed: i/o timeout"
    return f"upstream {peer} returned 502 Bad Gateway"


def generate(scenario: Scenario, *, fault: bool = True) -> SimData:
    """All telemetry of a scenario, deterministic for (name, seed, end); without `fault`, only its baseline
    (the same fleet and noise, no fault)."""
    from sim import hard

    model = _Model(scenario)
    versions = dict(model.version)
    if fault and hard.apply_fault(model):
        pass
    elif fault and scenario.root_service is not None:
        getattr(model, f"fault_{scenario.name}")(scenario.root_service, scenario.magnitude)
    elif fault:
        model.fault_false_alarm(scenario.alerted_service, scenario.magnitude)
    if fault:
        hard.apply_before_propagation(model)
    model.add_noise()
    model.propagate()
    metrics = hard.apply_to_metrics(model, model.metrics())
    logs = model.logs()
    spans = model.spans()
    deploys = sorted(model.deploys, key=lambda d: d.at)
    for deploy in reversed(deploys):
        if deploy.kind == "code":
            versions[deploy.service] = deploy.previous_version or versions[deploy.service]
    return SimData(scenario=scenario, logs=logs, metrics=metrics, spans=spans, deploys=deploys, versions=versions)
