"""Loki connector: page forward through /loki/api/v1/query_range, streaming raw log entries under caps."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from analysis.records import LogRecord
from tools.http_client import BackendClient, BackendError, QueryBudget, QueryBudgetExceeded
from tools.prometheus import any_of, quote
from tools.telemetry_config import LINE_FILTER_OPS, HttpConfig, LokiConfig

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_Entry = tuple[int, str, LogRecord]  # (ts ns, stream key, record)


@dataclass
class LogReadStats:
    """What one read delivered, and why it stopped early when it did."""

    lines: int = 0
    bytes: int = 0
    pages: int = 0
    truncated: bool = False
    reason: str = ""


def logql_query(label: str, services: Iterable[str], line_filters: Iterable[tuple[str, str]] = ()) -> str:
    """{label=~"a|b"} followed by line filters (|= != |~ !~) with safely quoted arguments."""
    parts = ["{" + any_of(label, services) + "}"]
    for op, text in line_filters:
        if op not in LINE_FILTER_OPS:
            raise ValueError(f"line filter operator {op!r} is not one of {', '.join(LINE_FILTER_OPS)}")
        parts.append(f"{op} {quote(text)}")
    return " ".join(parts)


def to_ns(at: datetime) -> int:
    """Unix nanoseconds of `at`, exactly (naive datetimes are UTC)."""
    aware = at if at.tzinfo else at.replace(tzinfo=UTC)
    return (aware - EPOCH) // timedelta(microseconds=1) * 1000


class LokiClient(BackendClient):
    """Reads log entries forward in time, a page or two in memory at a time; failures raise BackendError."""

    name = "loki"

    def __init__(
        self,
        base_url: str,
        credentials: str | None,
        config: LokiConfig,
        http: HttpConfig,
        budget: QueryBudget,
    ) -> None:
        super().__init__(base_url, credentials, config.timeout_seconds, http, budget)
        self._config = config

    async def entries(
        self, services: list[str], start: datetime, end: datetime, stats: LogReadStats | None = None
    ) -> AsyncIterator[LogRecord]:
        """Entries of the services in [start, end] in time order; see `pages`."""
        async with aclosing(self.pages(services, start, end, stats)) as pages:
            async for page in pages:
                for record in page:
                    yield record

    async def pages(
        self, services: list[str], start: datetime, end: datetime, stats: LogReadStats | None = None
    ) -> AsyncIterator[list[LogRecord]]:
        """The entries of [start, end] page by page, in time order, stopping at the line and byte caps.

        `stats` is filled as the read goes. A failure on the first page raises; a later one (or a spent query
        budget) ends the read early, marked truncated, so the lines already read still count. The next page is
        fetched while the consumer works on this one: at most two pages are in memory.
        """
        stats = stats if stats is not None else LogReadStats()
        query = logql_query(self._config.label, services, self._config.line_filters)
        end_ns = to_ns(end) + 1  # Loki's end is exclusive
        # Entries at a page's last timestamp are asked for again (the page limit may have cut through them),
        # so the ones already delivered are remembered and skipped.
        boundary_ts, boundary_seen = -1, set[tuple[str, str]]()
        pending: asyncio.Future[list[_Entry]] | None = asyncio.ensure_future(
            self._page(query, to_ns(start), end_ns)
        )
        try:
            while pending is not None:
                try:
                    page = await pending
                except (BackendError, QueryBudgetExceeded) as exc:
                    if stats.pages == 0:
                        raise
                    stats.truncated, stats.reason = True, str(exc)
                    return
                pending = None
                stats.pages += 1
                fresh = [e for e in page if e[0] != boundary_ts or (e[1], e[2].line) not in boundary_seen]
                if len(page) >= self._config.page_size:
                    last = page[-1][0]
                    if fresh:
                        if last != boundary_ts:
                            boundary_ts, boundary_seen = last, set()
                        boundary_seen.update((key, record.line) for ts, key, record in page if ts == last)
                        cursor = last
                    else:
                        # more than a page of entries on one nanosecond: Loki cannot page inside it
                        stats.truncated = True
                        stats.reason = (
                            f"more than {self._config.page_size} entries at {last} ns; some were skipped"
                        )
                        cursor, boundary_ts, boundary_seen = last + 1, -1, set()
                    pending = asyncio.ensure_future(self._page(query, cursor, end_ns))
                    await asyncio.sleep(0)  # let the request go out before this page is handed over
                records, capped = self._within_caps([r for _, _, r in fresh], stats)
                if records:
                    yield records
                if capped:
                    return
        finally:
            if pending is not None and not pending.cancel() and not pending.cancelled():
                pending.exception()  # a prefetched page nobody will read: its failure is moot

    def _within_caps(self, records: list[LogRecord], stats: LogReadStats) -> tuple[list[LogRecord], bool]:
        """The leading records that fit under the run's caps (counted into `stats`), and whether some did not.

        Reaching a cap exactly is not truncation: the read goes on, and the next entry (if any) is refused.
        """
        config = self._config
        sizes = [len(r.line) if r.line.isascii() else len(r.line.encode()) for r in records]
        room = config.max_lines - stats.lines
        total = sum(sizes)
        if len(records) <= room and stats.bytes + total <= config.max_bytes:
            stats.lines += len(records)
            stats.bytes += total
            return records, False
        taken, used = 0, stats.bytes
        for size in sizes[:room]:
            if used + size > config.max_bytes:
                break
            used += size
            taken += 1
        cap = f"{config.max_lines} lines" if taken == room else f"{config.max_bytes} bytes"
        stats.lines, stats.bytes = stats.lines + taken, used
        stats.truncated, stats.reason = True, f"stopped at the cap of {cap} per run"
        return records[:taken], True

    async def _page(self, query: str, start_ns: int, end_ns: int) -> list[_Entry]:
        """One page as (ts ns, stream key, record), merged across streams in time order."""
        params = {
            "query": query,
            "start": str(start_ns),
            "end": str(end_ns),
            "limit": str(self._config.page_size),
            "direction": "forward",
        }
        body = await self.get_json("/loki/api/v1/query_range", params, query)
        try:
            return _entries(body, self._config.label)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise BackendError(
                self.name, query, 200, f"malformed answer: {type(exc).__name__}: {exc}"
            ) from None


def _entries(body: dict[str, Any], label: str) -> list[_Entry]:
    data = body["data"]
    if data["resultType"] != "streams":
        raise ValueError(f"result type {data['resultType']!r}, expected 'streams'")
    page: list[_Entry] = []
    for stream in data["result"]:
        labels = stream["stream"]
        key = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        service = str(labels.get(label, ""))
        for value in stream["values"]:
            ts = int(value[0])
            entry_labels = _with_metadata(labels, value[2]) if len(value) > 2 else labels
            page.append((ts, key, LogRecord(ts / 1e9, service, str(value[1]), entry_labels)))
    page.sort(key=lambda entry: entry[0])
    return page


def _with_metadata(labels: dict[str, str], extra: Any) -> dict[str, str]:
    """Stream labels plus an entry's own labels: the third element of a value, flat or (with Loki's
    categorize-labels encoding) split into `structuredMetadata` and `parsed`."""
    if not isinstance(extra, dict):
        return labels
    groups = [extra.get("structuredMetadata"), extra.get("parsed")]
    flat = [g for g in groups if isinstance(g, dict)] or [extra]
    merged = dict(labels)
    for group in flat:
        merged.update({str(k): str(v) for k, v in group.items() if not isinstance(v, dict | list)})
    return merged
