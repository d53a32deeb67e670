"""Logs as they come: level forms, stack traces of several runtimes, and cues matched on whole messages."""

from __future__ import annotations

import csv
import json
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from analysis.log_cues import CUES, cue_hits
from analysis.logparse import LEVEL_FORMS, level_of_labels, parse_line
from analysis.logs import summarize_logs
from analysis.metrics import summarize_metrics
from analysis.ranking import rank_candidates
from analysis.records import LogRecord, MetricSeries
from analysis.stacktraces import LIBRARY_FRAMES, Frame, is_application
from bench.loghub_ga import DEFAULT_DATA
from state import Evidence, LogEvidence, LogTemplate, Window

END = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
WINDOW = Window(start=END - timedelta(minutes=15), end=END, baseline_start=END - timedelta(minutes=45))
T0 = WINDOW.baseline_start.timestamp()
ONSET = END.timestamp() - 8 * 60


def _incident(service: str, line: str, every: int = 10) -> list[LogRecord]:
    return [LogRecord(ONSET + i, service, line) for i in range(0, 400, every)]


def _baseline(service: str, line: str = "ts=x level=info msg=ok") -> list[LogRecord]:
    return [LogRecord(T0 + i, service, line) for i in range(0, 1800, 10)]


# --- levels ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", LEVEL_FORMS, ids=lambda form: form.name[:40])
def test_every_level_form_reads_its_example(form):
    if form.where == "label":
        assert level_of_labels(json.loads(form.example)) == form.example_level
    else:
        assert parse_line(form.example).level == form.example_level


@pytest.mark.parametrize(
    ("line", "level", "message"),
    [
        ('{"level":50,"time":1700000000000,"pid":7,"hostname":"h","msg":"db down"}', "error", "db down"),  # pino
        ('{"name":"api","level":40,"msg":"slow","v":0}', "warn", "slow"),  # bunyan
        ('{"level":3,"short_message":"disk","host":"h"}', "error", ""),  # GELF: syslog severity
        ('{"log":{"level":"error","logger":"x"},"message":"boom"}', "error", "boom"),  # ECS, nested
        ('{"log.level":"warn","message":"slow"}', "warn", "slow"),  # ECS, flat
        ('{"severity":"ERROR","message":"quota"}', "error", "quota"),  # GCP
        ('{"lvl":"eror","msg":"x"}', "error", "x"),  # log15
        ('{"level":"50","msg":"x"}', "info", "x"),  # a number in a string is not a level
        ("12:34:56.789 [main] ERROR com.shop.Api - request failed", "error", "com.shop.Api - request failed"),
        ("12:34:56.789 WARN  c.s.Pool - pool 80% used", "warn", "c.s.Pool - pool 80% used"),
        ("E1205 10:00:00.123456       1 controller.go:42] sync failed", "error", "sync failed"),
        ("W1205 10:00:00.123456  7 reflector.go:9] watch closed", "warn", "watch closed"),
        ("<11>Dec  5 10:00:00 host app[12]: write failed", "error", "write failed"),
        ("<14>1 2024-01-01T00:00:00Z host app 12 - - started", "info", "started"),
        ("2024-01-01 12:00:00,123 - myapp.db - ERROR - connection lost", "error", None),
        ("2024-01-01T00:00:00Z ERROR worker: job failed msg=timeout retries=3", "error",
         "worker: job failed msg=timeout retries=3"),
        ("job failed after retry msg=timeout level=x", "info", "job failed after retry msg=timeout level=x"),
        ("[12:00:01 ERR] Unhandled exception", "error", "Unhandled exception"),  # Serilog console
        ("fail: Microsoft.AspNetCore.Server[1]", "error", None),  # .NET console
        ("2024/01/01 12:00:00 [error] 1234#0: connect() failed", "error", "1234#0: connect() failed"),  # nginx
    ],
)
def test_level_forms(line, level, message):
    parsed = parse_line(line)
    assert parsed.level == level
    if message is not None:
        assert parsed.message == message


@pytest.mark.parametrize("number", ["1e999", "-1e999", "NaN", "Infinity"])
def test_a_level_number_past_any_range_is_no_level_not_a_crash(number):
    """Python's JSON decoder reads 1e999 as infinity and takes NaN: neither is a level, and neither may end the
    run (int() of them raised)."""
    for key in ("level", "severity_number", "levelno"):
        parsed = parse_line(f'{{"{key}":{number},"msg":"odd level"}}')
        assert (parsed.level, parsed.message) == ("info", "odd level")


def test_logfmt_is_still_logfmt():
    parsed = parse_line('time="2024-01-01T00:00:00Z" level=error msg="write failed" path=/data')
    assert (parsed.level, parsed.message, parsed.fields) == ("error", "write failed", {"path": "/data"})
    stamped = parse_line("2024-01-01T00:00:00Z level=warn msg=slow")
    assert (stamped.level, stamped.message) == ("warn", "slow")


def loghub_dir() -> Path:
    """The Loghub-2k samples: required under CI, else the test is skipped without them."""
    data = Path(os.environ.get("LOGHUB_2K_DIR") or DEFAULT_DATA)
    if not data.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"Loghub-2k data is required under CI: {data} is missing")
        pytest.skip(f"Loghub-2k data not found at {data}")
    return data


LOGHUB_LEVELS = {"INFO": "info", "WARN": "warn", "WARNING": "warn", "ERROR": "error", "FATAL": "error"}


@pytest.mark.parametrize("system", ["HDFS", "Hadoop", "Spark", "Zookeeper", "BGL"])
def test_levels_of_loghub_raw_lines(system):
    """Raw lines of systems nobody here wrote, against the level column Loghub split off them."""
    base = loghub_dir() / system / f"{system}_2k"
    raw = Path(f"{base}.log").read_text(encoding="utf-8").splitlines()
    with open(f"{base}.log_structured.csv", newline="", encoding="utf-8") as f:
        truth = [LOGHUB_LEVELS.get(row["Level"], "error") for row in csv.DictReader(f)]
    got = [parse_line(line).level for line in raw]
    assert got == truth


def test_loki_label_level_counts_when_the_line_names_none():
    labels = {"service_name": "cart", "detected_level": "error"}
    records = _baseline("cart") + [
        LogRecord(ONSET + i, "cart", "upstream connect error or disconnect/reset before headers", labels)
        for i in range(0, 400, 10)
    ]
    logs = summarize_logs(records, WINDOW)
    template = next(t for t in logs.templates if t.service == "cart")
    assert template.level == "error" and template.kind == "new"
    assert logs.services["cart"].incident_errors_per_min > 0
    own = parse_line('level=info msg="retrying"', level_of_labels({"level": "error"}))
    assert own.level == "info", "the entry's own level comes first"


def test_a_labelled_entry_whose_words_hold_digits_is_read_whole():
    """The shape cache of an entry with a label level (or a syslog <PRI>) indexes the entry itself, not its key: a
    digit glued to a word near the end ("android-4.2.1", "v1") once read past the end of the line."""
    labels = {"detected_level": "warn"}
    lines = [f"2026-11-21T11:{m:02d}:24.131Z deprecated API v1 called by client android-4.2.1" for m in range(16, 20)]
    lines += ["<14>Dec  5 10:00:01 host app[12]: deprecated API v1 called by client ios-5.0.3"] * 2
    records = [LogRecord(ONSET + i, "cart", line, labels) for i, line in enumerate(lines)]
    logs = summarize_logs(records, WINDOW)
    assert {t.level for t in logs.templates if t.service == "cart"} == {"warn"}


def test_shape_cache_keeps_levels_that_digits_or_labels_decide():
    lines = [
        LogRecord(ONSET + 1, "a", "<11>Dec  5 10:00:00 host app[12]: write failed"),
        LogRecord(ONSET + 2, "a", "<14>Dec  5 10:00:01 host app[12]: write failed"),
        LogRecord(ONSET + 3, "b", "plain words here"),
        LogRecord(ONSET + 4, "b", "plain words here", {"level": "error"}),
        LogRecord(ONSET + 5, "c", "plain words here", {"level": "warn"}),
    ]
    logs = summarize_logs(lines, WINDOW)
    assert {(t.service, t.level) for t in logs.templates} == {("a", "error"), ("b", "error"), ("c", "warn")}
    assert logs.services["a"].incident_errors_per_min == round(1 / 15, 3)


# --- cues ---------------------------------------------------------------------------------------------------

LONG_PREFIX = "[storage-writer-thread-pool-7] com.example.platform.persistence.segments.SegmentedJournalWriter "


def test_a_cue_past_a_long_logger_prefix_is_found():
    line = f"2026-11-21T11:55:00.123Z ERROR {LONG_PREFIX * 2}- flush of segment failed: No space left on device"
    assert len(line) > 200
    logs = summarize_logs(_baseline("journal") + _incident("journal", line), WINDOW)
    template = next(t for t in logs.templates if t.service == "journal")
    assert template.cues == {"disk": 40}
    assert "No space" not in template.template + template.sample, "the evidence text itself is truncated"


def test_cues_come_from_fields_and_exception_lines_too():
    records = _incident("api", 'level=error msg="write failed" err="open /data/x: no space left on device"')
    records += _incident(
        "api",
        "2026-11-21T11:55:00Z ERROR request failed\n"
        "java.lang.RuntimeException: request failed\n\tat com.shop.Api.handle(Api.java:12)\n"
        "Caused by: java.io.IOException: Connection refused\n\tat com.shop.Db.connect(Db.java:40)",
        every=20,
    )
    cues = {t.template: t.cues for t in summarize_logs(records, WINDOW).templates}
    assert sorted(cues.values(), key=len) == [{"disk": 40}, {"refused": 20}]


def test_ranking_reads_cues_from_the_evidence_not_from_truncated_text():
    truncated = LogTemplate(
        template_id="T1",
        service="journal",
        template=f"{LONG_PREFIX}- flush of segment failed: ..."[:120],
        level="error",
        baseline_count=0,
        incident_count=40,
        kind="new",
        sample=f"{LONG_PREFIX}..."[:140],
        cues={"disk": 40},
    )
    steps = range(0, 45 * 60 + 1, 15)
    error_ratio = MetricSeries("error_ratio", "journal", [(T0 + s, 0.3 if T0 + s >= ONSET else 0.001) for s in steps])
    evidence = Evidence(
        alerted_service="journal",
        window=WINDOW,
        services=["journal"],
        dependencies=[],
        logs=LogEvidence(templates=[truncated]),
        metrics=summarize_metrics([error_ratio], WINDOW),
    )
    top = rank_candidates(evidence)[0]
    assert (top.service, top.fault_type) == ("journal", "disk_full")


@pytest.mark.parametrize("cue", CUES, ids=lambda cue: cue.name)
def test_every_cue_row_is_plain_lowercase_text_without_digits(cue):
    # Entries differing only in their digits share a cached shape, so no cue may tell one digit from another.
    assert cue.phrases and cue.fact
    for phrase in cue.phrases:
        assert phrase == phrase.lower() and not re.search(r"\d", phrase), phrase
        assert cue.name in cue_hits(f"prefix {phrase.upper()} suffix"), phrase


def test_cue_hits_walks_the_table_in_order():
    assert cue_hits("OOMKilled: container restarted, back-off 10s") == ("oom", "restart")
    assert cue_hits("all good") == ()


async def test_loki_hands_stream_labels_and_structured_metadata_to_the_parser():
    from tests.loopback import LoopbackServer, Reply
    from tools.http_client import HttpConfig, QueryBudget
    from tools.loki import LokiClient
    from tools.telemetry_config import LokiConfig

    at = int(ONSET * 1e9)
    body = {
        "status": "success",
        "data": {
            "resultType": "streams",
            "result": [
                {
                    "stream": {"service_name": "cart", "detected_level": "error"},
                    "values": [[str(at), "upstream reset before headers"]],
                },
                {
                    "stream": {"service_name": "cart"},
                    "values": [
                        [str(at + 1), "cache miss", {"structuredMetadata": {"level": "warn"}, "parsed": {}}],
                        [str(at + 2), "plain words"],
                    ],
                },
            ],
        },
    }
    with LoopbackServer() as server:
        server.script("/loki/api/v1/query_range", Reply(body=body))
        client = LokiClient(server.url, None, LokiConfig(timeout_seconds=1), HttpConfig(retries=0), QueryBudget(5))
        async with client:
            records = [r async for r in client.entries(["cart"], END - timedelta(minutes=15), END)]
    assert [level_of_labels(r.labels) for r in records] == ["error", "warn", None]
    assert records[0].labels["service_name"] == "cart"
    levels = {t.template: t.level for t in summarize_logs(records, WINDOW).templates}
    assert levels == {"upstream reset before headers": "error", "cache miss": "warn", "plain words": "info"}


# --- stack traces -------------------------------------------------------------------------------------------

PYTHON_TRACE = (
    "2026-11-21T11:55:00Z ERROR [api] unhandled exception\n"
    "Traceback (most recent call last):\n"
    '  File "/usr/local/lib/python3.11/site-packages/flask/app.py", line 1455, in wsgi_app\n'
    "    response = self.full_dispatch_request()\n"
    '  File "/app/cart/api.py", line 77, in add_item\n'
    "    order = json.loads(body)\n"
    '  File "/usr/lib/python3.11/json/__init__.py", line 346, in loads\n'
    "    return _default_decoder.decode(s)\n"
    "json.decoder.JSONDecodeError: Expecting value: line 1 column 1 (char 0)"
)
GO_PANIC = (
    "panic: runtime error: invalid memory address or nil pointer dereference\n"
    "[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x6b1f3a]\n\n"
    "goroutine 42 [running]:\n"
    "github.com/acme/shop/internal/cart.(*Cart).Total(0x0)\n"
    "\t/src/internal/cart/cart.go:88 +0x1a\n"
    "net/http.HandlerFunc.ServeHTTP(0xc0001a2000?, {0x7f3a, 0xc0002b4000}, 0xc0002c6000?)\n"
    "\t/usr/local/go/src/net/http/server.go:2136 +0x29\n"
    "created by net/http.(*Server).Serve in goroutine 1\n"
    "\t/usr/local/go/src/net/http/server.go:3086 +0x5cb\n\n"
    "goroutine 1 [IO wait]:\n"
    "main.main()\n"
    "\t/src/cmd/shop/main.go:31 +0x25"
)
NODE_STACK = (
    '{"level":50,"time":1700000000000,"msg":"request failed","err":{"type":"TypeError",'
    '"message":"Cannot read properties of undefined (reading \'id\')","stack":"TypeError: Cannot read properties'
    " of undefined (reading 'id')\\n    at getUser (/app/src/users.js:10:15)\\n    at Layer.handle [as "
    'handle_request] (/app/node_modules/express/lib/router/layer.js:95:5)\\n    at process.processTicksAndRejections'
    ' (node:internal/process/task_queues:95:5)"}}'
)
JAVA_TRACE = (
    "12:34:56.789 [http-nio-8080-exec-3] ERROR c.s.Api - request failed\n"
    "java.lang.RuntimeException: request failed\n"
    "\tat org.springframework.web.servlet.DispatcherServlet.doDispatch(DispatcherServlet.java:1067)\n"
    "\tat com.shop.Api.handle(Api.java:12)\n"
    "Caused by: java.io.IOException: No space left on device\n"
    "\tat java.base/java.io.FileOutputStream.writeBytes(Native Method)\n"
    "\tat com.shop.Journal.flush(Journal.java:40)\n"
    "\t... 12 more"
)


@pytest.mark.parametrize(
    ("entry", "frames"),
    [
        (PYTHON_TRACE, [("/app/cart/api.py", 77, "add_item")]),
        (GO_PANIC, [("/src/internal/cart/cart.go", 88, "github.com/acme/shop/internal/cart.(*Cart).Total")]),
        (NODE_STACK, [("/app/src/users.js", 10, "getUser")]),
        (JAVA_TRACE, [("Journal.java", 40, "com.shop.Journal.flush"), ("Api.java", 12, "com.shop.Api.handle")]),
    ],
    ids=["python", "go", "node", "java"],
)
def test_stack_traces_reduce_to_their_application_frames(entry, frames):
    logs = summarize_logs(_incident("shop", entry, every=40), WINDOW)
    assert [(f.file, f.line, f.function) for f in logs.stack_frames] == frames
    assert all(f.count == 10 and f.service == "shop" for f in logs.stack_frames)
    assert logs.templates[0].level == "error"


def test_go_panic_and_node_error_lines_are_exceptions():
    go = parse_line(GO_PANIC)
    assert go.level == "error" and go.message.startswith("panic: runtime error")
    node = parse_line(NODE_STACK)
    assert node.exception == "TypeError: Cannot read properties of undefined (reading 'id')"
    assert "err" not in node.fields, "the error object holding the trace is read as the trace"
    java = parse_line(JAVA_TRACE)
    assert java.exceptions == (
        "java.lang.RuntimeException: request failed",
        "java.io.IOException: No space left on device",
    )


@pytest.mark.parametrize("rule", LIBRARY_FRAMES, ids=lambda rule: f"{rule.runtime}: {rule.name}")
def test_every_library_rule_recognises_its_example(rule):
    assert not is_application(rule.example)
    own = Frame("/app/shop/handler" + {"java": ".java", "python": ".py", "go": ".go", "node": ".js"}[rule.runtime],
                12, "com.shop.Handler.run" if rule.runtime == "java" else "main.run", rule.runtime)
    assert is_application(own)


def test_each_service_keeps_its_own_frames_however_common_others_are():
    deep = "\n".join(f"\tat com.shop.layer{i}.Step.run(Step.java:{i + 1})" for i in range(15))
    busy = "2026-11-21T11:55:00Z ERROR boom\njava.lang.IllegalStateException: boom\n" + deep
    records = _incident("busy", busy, every=2)
    records += _incident("quiet", PYTHON_TRACE, every=100)
    frames = summarize_logs(sorted(records, key=lambda r: r.ts), WINDOW).stack_frames
    assert {f.service for f in frames} == {"busy", "quiet"}
    assert [f.function for f in frames if f.service == "busy"] == [
        "com.shop.layer0.Step.run", "com.shop.layer1.Step.run", "com.shop.layer2.Step.run"
    ]


def test_container_envelopes_are_taken_off():
    pino = '{"level":50,"time":1700000000000,"msg":"db down"}'
    cri = f"2026-11-21T11:55:00.123456789Z stderr F {pino}"
    docker = json.dumps({"log": pino + "\n", "stream": "stdout", "time": "2026-11-21T11:55:00.1Z"})
    for line in (cri, docker):
        assert (parse_line(line).level, parse_line(line).message) == ("error", "db down")
    logs = summarize_logs([LogRecord(ONSET + i, "api", cri if i % 2 else docker) for i in range(40)], WINDOW)
    assert [(t.level, t.template, t.incident_count) for t in logs.templates] == [("error", "db down", 40)]


NEZHA_LOG = Path(__file__).parent / "fixtures" / "nezha" / "rca_data" / "2022-08-22" / "log" / "05_19_log.csv"


def test_online_boutique_lines_as_docker_wrote_them():
    """Lines of the Nezha OnlineBoutique services (Go, Python, Node, C#, Java) in Docker's json-file envelope:
    level and message of the application's own line."""
    with NEZHA_LOG.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert rows
    plain = 0
    for row in rows:
        text = json.loads(row["Log"])["log"]
        if text.startswith("{"):
            inner = json.loads(text)
            expected = str(inner.get("severity", inner.get("level", "info"))).lower()
            assert parse_line(row["Log"]).message == inner["message"]
        else:  # adservice (Java) "05:18:42.995 INFO  - ...", cartservice (C#) lines without a level
            plain += 1
            expected = "info"
            assert not re.match(r"\d\d:\d\d:\d\d\.\d+ (?!INFO)", text)
        assert parse_line(row["Log"]).level == expected, row["Log"]
    assert plain and plain < len(rows)
