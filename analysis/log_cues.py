"""Log cues: what a log message says about the fault, as one table of named phrases matched on whole messages.

The log summary (analysis/logs.py) matches every entry's whole text (its first line, the exception lines of its
stack trace and its fields' values) against this table while streaming, and records the hits per template on
`LogTemplate.cues`; ranking reads them from there. No row may depend on the value of a digit (no digit and no
`\\d` in a pattern): entries that differ only in their digits then hit the same cues, which lets the summary cache
hits by a line's shape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Cue:
    """One cue: its name (what ranking asks for), the phrases that show it, and the fact it relies on."""

    name: str
    pattern: re.Pattern[str]
    fact: str


def _phrases(text: str) -> re.Pattern[str]:
    return re.compile(text, re.I)


CUES: tuple[Cue, ...] = (
    Cue(
        "oom",
        _phrases(r"OutOfMemory|MemoryError|GC overhead|heap space|OOM|out of memory|memory limit"),
        "runtimes and kernels name memory exhaustion in these words (JVM, Python, Go, the OOM killer)",
    ),
    Cue(
        "restart",
        _phrases(r"restart|killed|exited with|back-?off|crash"),
        "supervisors (systemd, Kubernetes, runit) log restarts, kills and crash loops",
    ),
    Cue(
        "cpu",
        _phrases(r"deadline|saturat|queue (length|full)|worker pool|thread pool|cpu throttl"),
        "a starved CPU shows as missed deadlines and full work queues",
    ),
    Cue(
        "pool",
        _phrases(
            r"max_client_conn|pool exhausted|too many (clients|connections)|connection slots|"
            r"waiting for connection"
        ),
        "database drivers, poolers (PgBouncer, HikariCP) and servers name an exhausted connection pool",
    ),
    Cue(
        "disk",
        _phrases(r"no space left|ENOSPC|disk (is )?full|disk quota"),
        "the kernel's ENOSPC reads 'No space left on device'",
    ),
    Cue(
        "cert",
        _phrases(r"certificate|CERTIFICATE_VERIFY_FAILED|ssl|tls handshake"),
        "TLS libraries name certificate failures ('x509: certificate ...', CERTIFICATE_VERIFY_FAILED, handshakes)",
    ),
    Cue(
        "net",
        _phrases(
            r"i/o timeout|no route to host|network is unreachable|connection timed out|"
            r"connect timeout|host unreachable"
        ),
        "socket errors of an unreachable peer (EHOSTUNREACH, ENETUNREACH, ETIMEDOUT) read like this",
    ),
    Cue(
        "refused",
        _phrases(r"connection refused|ECONNREFUSED|service unavailable|connection reset|unavailable"),
        "a peer that is down refuses or resets connections, or answers 'service unavailable'",
    ),
    Cue(
        "config",
        _phrases(r"config|failed to parse|missing required|unknown (key|option|setting)"),
        "a bad configuration is reported while loading or parsing it",
    ),
    Cue(
        "ratelimit",
        _phrases(r"rate limit|too many requests|throttl|load shed"),
        "overload protection names itself: rate limits, 'Too Many Requests', throttling, load shedding",
    ),
)
CUE_NAMES: tuple[str, ...] = tuple(cue.name for cue in CUES)


def cue_hits(text: str) -> tuple[str, ...]:
    """Names of the cues the text shows, in table order."""
    return tuple(cue.name for cue in CUES if cue.pattern.search(text))
