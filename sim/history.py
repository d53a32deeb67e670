"""Recorded telemetry on the wire: sim/wire.py's Loki query API over the logs of past cases and Tempo's query API
over their traces, so finished cases can be replayed through the live connectors (`incident-copilot eval --wire`,
`eval --dataset`)."""

from __future__ import annotations

import bisect
import itertools
import threading
import time
from collections.abc import Callable, Iterable, Mapping

from analysis.records import LogRecord
from sim.fleet import StreamLabels, stream_entries
from sim.tempo import SpanStore
from sim.wire import FleetServer, _LokiHandler, _Server, _TempoHandler


class LogHistory:
    """Log entries of any number of cases on one time axis, read the way a Fleet's are (sim/wire.py calls
    `log_entries`, `clock`, `state` and `inject`). Entries are kept in time order, whatever order they come in."""

    def __init__(self) -> None:
        self._ns: list[int] = []
        self._stream: list[Mapping[str, str]] = []
        self._line: list[str] = []
        self._streams = StreamLabels()
        self._cases = 0

    def add(self, logs: Iterable[LogRecord]) -> None:
        """Add one case's log entries."""
        since = max(len(self._ns) - 1, 0)
        for record in logs:
            self._ns.append(round(record.ts * 1e9))
            self._stream.append(self._streams.of(record))
            self._line.append(record.line)
        if any(a > b for a, b in itertools.pairwise(self._ns[since:])):
            order = sorted(range(len(self._ns)), key=self._ns.__getitem__)
            self._ns = [self._ns[j] for j in order]
            self._stream = [self._stream[j] for j in order]
            self._line = [self._line[j] for j in order]
        self._cases += 1

    def clock(self) -> float:
        """The wall clock: a record is in the past, all of it is served."""
        return time.time()

    def log_entries(
        self,
        selects: Callable[[Mapping[str, str]], bool],
        start_ns: int,
        end_ns: int,
        keep: Callable[[str], bool],
        limit: int,
        forward: bool,
    ) -> list[tuple[int, Mapping[str, str], str]]:
        """Up to `limit` (ns, stream labels, line) in [start_ns, end_ns) of the streams `selects` accepts, that
        `keep` accepts: the oldest first when `forward`, else the newest first."""
        first, last = bisect.bisect_left(self._ns, start_ns), bisect.bisect_left(self._ns, end_ns)
        return stream_entries(self._ns, self._stream, self._line, first, last, selects, keep, limit, forward)

    def state(self) -> dict:
        """What is served: the number of cases and entries."""
        return {"cases": self._cases, "entries": len(self._ns)}

    def inject(self) -> bool:
        """A record has no fault left to start (POST /inject answers 409)."""
        return False


class HistoryServer(FleetServer):
    """The Loki API (query_range, labels, ready, state) over a LogHistory on one port and, given spans, Tempo's
    query API over them on another, until close(); no /metrics endpoints: a recorded case's metrics are backfilled
    into a real Prometheus instead."""

    def __init__(
        self, history: LogHistory, host: str = "127.0.0.1", port: int | None = None, spans: SpanStore | None = None
    ) -> None:
        self.fleet, self.host = history, host  # type: ignore[assignment]  # the Fleet reading interface
        self.traces = spans  # type: ignore[assignment]
        self._servers = [_Server((host, port or 0), _LokiHandler, self)]
        if spans is not None:
            self._servers.append(_Server((host, 0), _TempoHandler, self))
        self._threads = [
            threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True) for s in self._servers
        ]
        for thread in self._threads:
            thread.start()
