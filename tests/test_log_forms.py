"""Logs as they come: level forms, stack traces of several runtimes, and cues matched on whole messages."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from analysis.log_cues import CUES, cue_hits
from analysis.logs import summarize_logs
from analysis.metrics import summarize_metrics
from analysis.ranking import rank_candidates
from analysis.records import LogRecord, MetricSeries
from state import Evidence, LogEvidence, LogTemplate, Window

END = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
WINDOW = Window(start=END - timedelta(minutes=15), end=END, baseline_start=END - timedelta(minutes=45))
T0 = WINDOW.baseline_start.timestamp()
ONSET = END.timestamp() - 8 * 60


def _incident(service: str, line: str, every: int = 10) -> list[LogRecord]:
    return [LogRecord(ONSET + i, service, line) for i in range(0, 400, every)]


def _baseline(service: str, line: str = "ts=x level=info msg=ok") -> list[LogRecord]:
    return [LogRecord(T0 + i, service, line) for i in range(0, 1800, 10)]


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
def test_every_cue_row_is_blind_to_digit_values(cue):
    # Entries differing only in their digits share a cached shape, so no cue may tell one digit from another.
    source = re.sub(r"\{\d+(,\d*)?\}", "", cue.pattern.pattern)
    assert not re.search(r"\d|\\d", source), f"cue {cue.name} depends on digits: {cue.pattern.pattern}"
    assert cue.fact


def test_cue_hits_walks_the_table_in_order():
    assert cue_hits("OOMKilled: container restarted, back-off 10s") == ("oom", "restart")
    assert cue_hits("all good") == ()
