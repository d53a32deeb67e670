"""Log cues: what a log message says about the fault, as one table of named phrases matched on whole messages.

The log summary (analysis/logs.py) matches every entry's whole text (its first line, the exception lines of its
stack trace and its fields' values) against this table while streaming, and records the hits per template on
`LogTemplate.cues`; ranking reads them from there. Phrases are plain lowercase text without digits: entries that
differ only in their digits then hit the same cues, which lets the summary cache hits by a line's shape. (So a
bare status code such as 503 is no cue: its words, "service unavailable", are.)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Cue:
    """One cue: its name (what ranking asks for), the phrases that show it (any case), and the fact it relies on."""

    name: str
    phrases: tuple[str, ...]
    fact: str


CUES: tuple[Cue, ...] = (
    Cue(
        "oom",
        ("outofmemory", "memoryerror", "gc overhead", "heap space", "oom", "out of memory", "memory limit"),
        "runtimes and kernels name memory exhaustion in these words (JVM, Python, Go, the OOM killer)",
    ),
    Cue(
        "restart",
        ("restart", "killed", "exited with", "backoff", "back-off", "crash"),
        "supervisors (systemd, Kubernetes, runit) log restarts, kills and crash loops",
    ),
    Cue(
        "cpu",
        ("deadline", "saturat", "queue length", "queue full", "worker pool", "thread pool", "cpu throttl"),
        "a starved CPU shows as missed deadlines and full work queues",
    ),
    Cue(
        "pool",
        (
            "max_client_conn",
            "pool exhausted",
            "too many clients",
            "too many connections",
            "connection slots",
            "waiting for connection",
        ),
        "database drivers, poolers (PgBouncer, HikariCP) and servers name an exhausted connection pool",
    ),
    Cue(
        "disk",
        ("no space left", "enospc", "disk full", "disk is full", "disk quota"),
        "the kernel's ENOSPC reads 'No space left on device'",
    ),
    Cue(
        "cert",
        ("certificate", "ssl", "tls handshake"),
        "TLS libraries name certificate failures ('x509: certificate ...', CERTIFICATE_VERIFY_FAILED, handshakes)",
    ),
    Cue(
        "net",
        (
            "i/o timeout",
            "no route to host",
            "network is unreachable",
            "connection timed out",
            "connect timeout",
            "host unreachable",
        ),
        "socket errors of an unreachable peer (EHOSTUNREACH, ENETUNREACH, ETIMEDOUT) read like this",
    ),
    Cue(
        "refused",
        ("connection refused", "econnrefused", "connection reset", "unavailable"),
        "a peer that is down refuses or resets connections, or answers 'service unavailable'",
    ),
    Cue(
        "config",
        ("config", "failed to parse", "missing required", "unknown key", "unknown option", "unknown setting"),
        "a bad configuration is reported while loading or parsing it",
    ),
    Cue(
        "ratelimit",
        ("rate limit", "too many requests", "throttl", "load shed"),
        "overload protection names itself: rate limits, 'Too Many Requests', throttling, load shedding",
    ),
)
CUE_NAMES: tuple[str, ...] = tuple(cue.name for cue in CUES)


_PHRASES: tuple[tuple[str, str], ...] = tuple((phrase, cue.name) for cue in CUES for phrase in cue.phrases)


def cue_hits(text: str) -> tuple[str, ...]:
    """Names of the cues the text shows (a phrase of the cue occurs in it, in any case), in table order."""
    lowered = text.lower()
    # one flat pass: most texts hit no cue, and a generator per cue costs more than the searches
    found = {name for phrase, name in _PHRASES if phrase in lowered}
    return tuple(name for name in CUE_NAMES if name in found) if found else ()
