"""How evidence extraction scales with the log window: throughput, peak memory and evidence size.

Usage (from the repository root): python -m bench.evidence_scaling [--sizes 10000 100000 1000000] [--json]
Each size runs in its own process, so ru_maxrss is that size's own peak.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator

from analysis.records import LogRecord

# A variable field: a number not glued to a word ("v2" stays), or a 0x hex id; ISO timestamps stay as written.
_FIELD = re.compile(r"(\d{4}-\d{2}-\d{2}T[\d:.]+Z)|0x([0-9a-f]+)|(?<![A-Za-z_])(\d+)")


def _pieces(line: str) -> list[tuple[str, int, int]]:
    """A line's first line as (literal text, field kind, width) pieces; kind 0: none, 1: decimal, 2: hex.

    The stack trace after the first line is kept as it is, so frames stay the same frames.
    """
    head, newline, tail = line.partition("\n")
    pieces: list[tuple[str, int, int]] = []
    at = 0
    for match in _FIELD.finditer(head):
        if match.group(1):
            continue
        hex_digits = match.group(2)
        start = match.start(2) if hex_digits else match.start(3)
        pieces.append((head[at:start], 2 if hex_digits else 1, match.end() - start))
        at = match.end()
    pieces.append((head[at:] + newline + tail, 0, 0))
    return pieces


def _draw(rng: random.Random, kind: int, width: int) -> str:
    if kind == 2:
        return f"{rng.getrandbits(4 * width):0{width}x}"
    if width == 1:
        return str(int(rng.random() * 10))
    low = 10 ** (width - 1)
    return str(low + int(rng.random() * 9 * low))


def synthetic_records(base: list[LogRecord], lines: int, *, seed: int = 0) -> Iterator[LogRecord]:
    """`lines` records over the same window as `base`, in time order, made one at a time.

    Each base entry is replayed as many times as it takes (none, for fewer lines than the base), each replica
    with its numbers and hex ids drawn anew at their width: the fleet's template mix and timing, at any volume.
    """
    rng = random.Random(seed)
    emitted = 0
    for index, record in enumerate(base):
        upto = (index + 1) * lines // len(base)
        if upto == emitted:
            continue
        pieces = _pieces(record.line)
        while emitted < upto:
            text = "".join(literal + (_draw(rng, kind, width) if kind else "") for literal, kind, width in pieces)
            yield LogRecord(record.ts, record.service, text)
            emitted += 1
