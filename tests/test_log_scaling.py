"""The streaming log summarizer: its caches change nothing, memory stays bounded, the logs node feeds it in chunks."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta

import pytest

import analysis.logs as logs_module
import nodes.logs as logs_node
from analysis.log_cues import cue_hits
from analysis.logparse import cue_text, parse_line
from analysis.logs import LogSummarizer, summarize_logs
from analysis.records import LogRecord
from analysis.templates import TemplateMiner, shape_key
from bench.evidence_scaling import synthetic_records
from sim.generate import generate
from sim.scenarios import build_scenario
from state import Window
from tools.loki import LogReadStats

END = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
WINDOW = Window(start=END - timedelta(minutes=15), end=END, baseline_start=END - timedelta(minutes=45))
T0 = WINDOW.baseline_start.timestamp()

# Message shapes built to trip a digit- or hex-blind cache: "0x" vs "5x", glued digits, ids the masks keep or
# not by length, JSON numbers, timestamps and durations.
_SHAPES = (
    "connect to {ip}:{n} failed after {n}ms",
    "ptr 0x{hex} and {d}x{hex} and 0X{HEX} done",
    "deprecated API v{d} called by client ios-{d}.{d}.{d}",
    "job {hex} took {n}d {n}h, wrote {n}b of {n}kb",
    "trace req_{hex}{hex} node-{n} c{n}d",
    "order {uuid} paid {n},{n} at {ts}",
    "user{d} logged in from [fe80::{d}:{hex}]:{n}{d}ab",
    'mail bob{d}@ex{d}.com url https://x.io/{n}?q={n} key="{n} {n}"',
    "retry {d} of {d}: 0x{d}{d} 1x{d} {d}X",
    "api v{d} returned {n}ab errors in {n}ms",
    "write of {n}b failed: No space left on device; peer {ip}:{n} connection refused, retry {d}",
    "node{d}.rack{n}.prod.example.com:{n} read /var/lib/db{d}/seg-{n}.log v{d}.{n}.{d}-rc{d} app{d}.jar {ip}, {ip}",
    "Resolved MSRA-SA-{n}.fareast.corp.microsoft.com to /default-rack at Sat Jul {d} 0{d}:{d}{d}:{d}{d} 20{d}{d}",
)


def _fill(shape: str, rng: random.Random) -> str:
    def digits(k: int) -> str:
        return "".join(rng.choice("0123456789") for _ in range(k))

    out = shape
    while "{" in out:
        kind = out[out.index("{") + 1 : out.index("}")]
        value = {
            "ip": lambda: f"{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(0, 9)}.{rng.randint(0, 255)}",
            "n": lambda: digits(rng.randint(1, 4)),
            "d": lambda: digits(1),
            "hex": lambda: "".join(rng.choice("0123456789abcdef") for _ in range(rng.choice((3, 8, 10)))),
            "HEX": lambda: "".join(rng.choice("0123456789ABCDEF") for _ in range(4)),
            "uuid": lambda: "-".join(digits(k) for k in (8, 4, 4, 4, 12)),
            "ts": lambda: f"2026-{digits(2)}-{digits(2)}T{digits(2)}:{digits(2)}:{digits(2)}.{digits(3)}Z",
        }[kind]()
        out = out.replace("{" + kind + "}", value, 1)
    return out


def _line(shape: str, rng: random.Random) -> str:
    message = _fill(shape, rng)
    level = rng.choice(("info", "warn", "error", "debug"))
    fmt = rng.randrange(5)
    if fmt == 4:  # a stack trace behind escapes: its line numbers must reach the frames
        trace = f'Traceback (most recent call last):\\n  File \\"app.py\\", line {rng.randint(1, 99)}, in run'
        return f'ts=2026-11-21T11:15:00Z level={level} msg="{message}" stack="{trace}\\nValueError: bad"'
    if fmt == 0:
        return f'ts=2026-11-21T11:{rng.randint(10, 59)}:00.{rng.randint(0, 999):03d}Z level={level} msg="{message}"'
    if fmt == 1:
        return f"2026-11-21T11:15:0{rng.randint(0, 9)}.{rng.randint(0, 999):03d}Z {level.upper()} [x] {message}"
    number = rng.choice(("", f', "status": {rng.choice(("0", "1", "01", "10", "5e3"))}'))
    return f'{{"ts": "2026-11-21T11:15:0{rng.randint(0, 9)}Z", "level": "{level}", "msg": "{message}"{number}}}'


class _NoCache:
    def get(self, key):
        return None

    def put(self, key, value):
        pass


def _uncached(max_templates: int) -> TemplateMiner:
    """The miner with its caches taken out: what the cached miner must answer."""
    miner = TemplateMiner(max_templates=max_templates)
    miner._masked = miner._matched = _NoCache()
    return miner


@pytest.mark.parametrize("max_templates", [2000, 6])
def test_cached_miner_answers_as_the_uncached_one_does(max_templates):
    rng = random.Random(3)
    messages = [_fill(rng.choice(_SHAPES), rng) for _ in range(3000)]
    miner, reference = TemplateMiner(max_templates=max_templates), _uncached(max_templates)
    for message in messages:
        assert miner.mask(message) == reference.mask(message)
        assert miner.add(message) == reference.add(message)
    assert miner.templates() == reference.templates()


def test_shape_key_tells_apart_what_masks_tell_apart():
    assert shape_key("took 12ms") == shape_key("took 97ms") != shape_key("took 9ms")
    assert shape_key("ptr 0x1f end") == shape_key("ptr 0xab end") != shape_key("ptr 0x1fa end")
    assert shape_key("ptr 5x1f end") is None and shape_key("v0x") is None
    assert shape_key("apple ff") != shape_key("apple 00")


def test_summarizer_sees_each_line_as_an_uncached_parse_would():
    rng = random.Random(5)
    lines = [_line(rng.choice(_SHAPES), rng) for _ in range(4000)]
    summarizer = LogSummarizer(WINDOW)
    reference = TemplateMiner(extra_masks=[(r"(?!)", "NEVER")])  # a mask of its own turns shape caching off
    for line in lines:
        level, template_id, got, cues = summarizer._mine(line)
        parsed = parse_line(line)
        assert (level, template_id) == (parsed.level, reference.add(parsed.message)[0]), line
        assert cues == cue_hits(cue_text(parsed)), line
        assert (got.frames if got else []) == parsed.frames, line
    assert summarizer._miner.templates() == reference.templates()


# JSON entries with numbers outside their strings: numeric levels on each scale and out of them, numbers inside
# strings, nested objects and lists, a number as the message, floats, exponents, leading zeros, hex, escapes.
_JSON_NUMBER_SHAPES = (
    '{{"level": {lvl}, "time": {ms}, "pid": {d}, "hostname": "web-{d}", "msg": "request {n} took {n}ms"}}',
    '{{"level":{lvl},"time":{ms},"msg":"api v{d} returned {n} errors"}}',
    '{{"severity_number": {lvl}, "body": "disk {d} full: No space left on device"}}',
    '{{"levelno": {lvl}, "msg": "retry {d} of {d}"}}',
    '{{"ctx": {{"level": {lvl}, "ids": [{n}, {d}, {ms}]}}, "level": "info", "msg": "batch {n} done"}}',
    '{{"level": {lvl}, "msg": "level {lvl} and code {n} inside a string", "code": {n}}}',
    '{{"level": {lvl}, "msg": "said \\"level {d}\\" twice", "n": {n}}}',
    '{{"msg": {ms}, "level": {lvl}}}',
    '{{"level": {lvl}, "Level": {lvl}, "msg": "two level keys"}}',
    '{{"level": {lvl}, "elapsed": {d}.{n}, "msg": "a float"}}',
    '{{"level": {lvl}, "size": {d}e{d}, "msg": "an exponent"}}',
    '{{"level": {lvl}, "t": {t}, "msg": "maybe a leading zero"}}',
    '{{"level": 0{d}, "msg": "a leading zero"}}',
    '{{"level": {lvl}, "ptr": 0x{d}f, "msg": "hex"}}',
    '{{"level": -{lvl}, "delta": -{ms}, "msg": "negative"}}',
)
_LEVEL_NUMBERS = ("0", "3", "7", "10", "20", "30", "40", "50", "60", "69", "70", "100", "300", "600", "699", "700",
                  "999", "1000", "9999", "30.0", "3e1", "50.9", "1000e-2", "5000e-2", "699.90000000000000000",
                  "699.99999999999999999")  # the last two: 699.0 and 700.0 as floats


def _json_number_line(rng: random.Random) -> str:
    shape = rng.choice(_JSON_NUMBER_SHAPES)
    lvl = rng.choice(_LEVEL_NUMBERS)
    out = shape.format(lvl=lvl, ms="{ms}", d="{d}", n="{n}", t="{t}")
    draws = {"{ms}": lambda: rng.randint(10**12, 10**13 - 1), "{d}": lambda: rng.randint(0, 9),
             "{n}": lambda: rng.randint(0, 99999), "{t}": lambda: f"{rng.randint(0, 1)}{rng.randint(0, 99999):05d}"}
    for kind, draw in draws.items():
        while kind in out:
            out = out.replace(kind, str(draw()), 1)
    return out


def test_json_numbers_are_keyed_as_an_uncached_parse_reads_them():
    rng = random.Random(11)
    lines = [_json_number_line(rng) for _ in range(6000)]
    summarizer = LogSummarizer(WINDOW)
    reference = TemplateMiner(extra_masks=[(r"(?!)", "NEVER")])
    for line in lines:
        for label_level in (None, "warn"):
            level, template_id, got, cues = summarizer._mine(line, label_level)
            parsed = parse_line(line, label_level)
            assert (level, template_id) == (parsed.level, reference.add(parsed.message)[0]), line
            assert cues == cue_hits(cue_text(parsed)), line
            assert (got.frames if got else []) == parsed.frames, line
    assert summarizer._miner.templates() == reference.templates()


def test_json_integers_key_the_line_and_keep_the_level():
    pino = '{{"level": {}, "time": 1795245300012, "pid": 1, "msg": "request completed status=200"}}'
    assert logs_module._line_shape(pino.format(30)) is not None
    assert logs_module._line_shape(pino.format(30)) != logs_module._line_shape(pino.format(50))
    assert logs_module._line_shape(pino.format(30)) == logs_module._line_shape(pino.format(30).replace("1795", "1895"))
    assert logs_module._line_shape(pino.format(30)) != logs_module._line_shape(pino.format(30).replace("1795", "0795"))
    assert logs_module._line_shape(pino.format("30.5")) is None and logs_module._line_shape(pino.format("3e1")) is None
    assert logs_module._line_shape(pino.format("0x1e")) is None


def test_digits_kept_by_masking_stay_apart():
    summarizer = LogSummarizer(WINDOW)
    lines = [f'ts=2026-11-21T11:15:0{i}Z level=warn msg="api v7 returned {i}ab errors"' for i in (6, 3, 6)]
    assert [summarizer._mine(line)[1] for line in lines] == ["T1"] * 3
    assert summarizer._miner.templates() == {"T1": "api v7 returned <*> errors"}
    glued = LogSummarizer(WINDOW)
    for i in (1, 2, 1):
        glued._mine(f"2026-11-21T11:15:0{i}Z INFO [x] served by node{i} in {i}ms")
    assert glued._miner.templates() == {"T1": "[x] served by <*> in <DUR>"}


def test_chunked_feeding_gives_the_same_evidence():
    data = generate(build_scenario("deployment_regression", 1, END))
    records = list(synthetic_records(data.logs, 30_000, seed=1))
    whole = summarize_logs(records, WINDOW)
    summarizer = LogSummarizer(WINDOW)
    for start in range(0, len(records), 777):
        summarizer.add_many(records[start : start + 777])
    assert summarizer.finish() == whole
    assert whole.lines_read == 30_000 and whole.templates


def test_synthetic_records_are_streamed_in_time_order_with_fresh_fields():
    data = generate(build_scenario("memory_leak", 0, END))
    records = list(synthetic_records(data.logs, 3 * len(data.logs)))
    assert len(records) == 3 * len(data.logs)
    assert all(a.ts <= b.ts for a, b in zip(records, records[1:], strict=False))
    assert len({r.line for r in records}) > 2 * len(data.logs)


def test_template_counters_stay_bounded(monkeypatch):
    monkeypatch.setattr(logs_module, "PRUNE_AT", 50)
    monkeypatch.setattr(logs_module, "TemplateMiner", lambda: TemplateMiner(max_templates=20))
    summarizer = LogSummarizer(WINDOW)
    words = ["".join(random.Random(i).choices("abcdefghijklmnopqrstuvwxyz", k=12)) for i in range(1000)]
    for i, word in enumerate(words):
        summarizer.add(LogRecord(T0 + i, "svc", f"{word} happened"))
    assert len(summarizer._templates) <= 100
    assert summarizer.finish().services["svc"].baseline_lines == 1000


class _Source:
    def __init__(self, records: list[LogRecord], truncated: bool = False) -> None:
        self.records = records
        self.log_stats = LogReadStats(truncated=truncated)

    async def logs(self, services, start, end):
        for record in self.records:
            yield record


async def test_logs_node_feeds_chunks_off_the_event_loop(monkeypatch):
    data = generate(build_scenario("config_error", 0, END))
    records = data.logs[:2345]
    calls: list[tuple[int, bool]] = []
    add_many = LogSummarizer.add_many

    def spy(self, chunk):
        calls.append((len(chunk), threading.current_thread() is threading.main_thread()))
        add_many(self, chunk)

    monkeypatch.setattr(logs_node, "CHUNK", 500)
    monkeypatch.setattr(LogSummarizer, "add_many", spy)
    task = {"window": WINDOW, "services": ["cart"]}
    evidence = await logs_node._read(_Source(records), task)
    assert [n for n, _ in calls] == [500, 500, 500, 500, 345]
    assert not any(on_loop for _, on_loop in calls)
    assert evidence.status == "ok" and evidence.logs == summarize_logs(records, WINDOW)
    assert not evidence.logs.truncated
    capped = await logs_node._read(_Source(records, truncated=True), task)
    assert capped.logs.truncated and capped.logs.lines_read == len(records)
