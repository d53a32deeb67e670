"""Scoring shared by the evals: correctness of one case, the tables, calibration (Brier score, reliability)."""

from __future__ import annotations

import pytest

from evals.scoring import aggregate, calibration, format_dataset_table, score_case, summarize_dataset


def test_a_fault_needs_the_incident_verdict_and_the_right_ranking() -> None:
    ranked = [("cart", "cpu_saturation"), ("checkout", "network_partition"), ("web", "memory_leak")]
    assert score_case("network_partition", "checkout", True, ranked) == {
        "top1_service": False, "top3_service": True, "top1_fault": False}
    assert score_case("cpu_saturation", "cart", False, ranked) == {
        "top1_service": False, "top3_service": False, "top1_fault": False}
    assert score_case("none", None, False, ranked)["false_alarm_ok"] is True
    assert score_case("none", None, True, ranked)["false_alarm_ok"] is False


def test_brier_score_and_reliability_bins() -> None:
    rows = [
        {"confidence": 0.9, "top1_service": True, "top1_fault": True},  # (0.9-1)^2 = 0.01
        {"confidence": 0.9, "top1_service": True, "top1_fault": False},  # 0.81
        {"confidence": 0.3, "top1_service": False, "top1_fault": False},  # 0.09
        {"confidence": 1.0, "top1_service": True, "top1_fault": True},  # 0
        {"confidence": 0.5, "top1_service": True, "top1_fault": True, "false_alarm_ok": True},  # not a fault
    ]
    cal = calibration(rows)
    assert cal["cases"] == 4
    assert cal["brier"] == pytest.approx((0.01 + 0.81 + 0.09 + 0.0) / 4)
    bins = {tuple(b["range"]): b for b in cal["bins"]}
    assert bins[(0.8, 1.0)] == {"range": [0.8, 1.0], "cases": 3, "mean_confidence": pytest.approx(0.9333, abs=1e-4),
                                "right": pytest.approx(0.6667, abs=1e-4)}
    assert bins[(0.2, 0.4)]["cases"] == 1 and bins[(0.2, 0.4)]["right"] == 0.0
    assert bins[(0.4, 0.6)] == {"range": [0.4, 0.6], "cases": 0, "mean_confidence": None, "right": None}
    assert calibration([{"confidence": 0.5, "top1_service": True, "top1_fault": True, "false_alarm_ok": True}]) is None
    # always right at full confidence is perfect; a coin flip said at 0.5 scores 0.25
    assert calibration([{"confidence": 1.0, "top1_service": True, "top1_fault": True}])["brier"] == 0.0
    assert calibration([{"confidence": 0.5, "top1_service": False, "top1_fault": False}])["brier"] == 0.25


def test_the_simulator_table_carries_calibration() -> None:
    right = score_case("disk_full", "db", True, [("db", "disk_full")])
    wrong = score_case("disk_full", "db", True, [("x", "disk_full")])
    cases = [
        {"scenario": "disk_full", "seed": 0, "confidence": 0.8, **right},
        {"scenario": "disk_full", "seed": 1, "confidence": 0.6, **wrong},
    ]
    scores = aggregate(cases)
    assert scores["top1_service"] == 0.5 and scores["per_scenario"]["disk_full"]["misses"] == [1]
    assert scores["calibration"]["brier"] == pytest.approx((0.04 + 0.36) / 2)


def _row(kind: str, expected: str | None, outcome: str, ranked: list[tuple[str, str]], fault: str,
         confidence: float) -> dict:
    is_incident = outcome == "incident"
    return {"id": f"{kind}-{expected}", "source_fault": kind, "outcome": outcome, "confidence": confidence,
            "seconds": 1.0, "ranked_top1_service": bool(ranked) and ranked[0][0] == expected,
            **score_case(fault, expected, is_incident, ranked)}


def test_dataset_table_counts_as_at_k_misses_and_false_alarms() -> None:
    rows = [
        _row("cpu_contention", "cart", "incident", [("cart", "cpu_saturation")], "cpu_saturation", 0.9),
        _row("cpu_contention", "ads", "incident", [("web", "cpu_saturation"), ("ads", "x")], "cpu_saturation", 0.7),
        _row("network_delay", "cart", "not_an_incident", [("cart", "network_partition")], "network_partition", 0.2),
        _row("network_delay", "email", "inconclusive", [("web", "none")], "network_partition", 0.1),
        _row("none", None, "not_an_incident", [("web", "none")], "none", 0.0),
    ]
    scores = summarize_dataset(rows)
    assert (scores["cases"], scores["as1"], scores["as3"], scores["fault_accuracy"]) == (4, 0.25, 0.5, 0.5)
    assert scores["missed"] == 2 and scores["missed_by_outcome"] == {"not_an_incident": 1, "inconclusive": 1}
    assert scores["as1_ignoring_verdict"] == 0.5  # the missed network delay had cart first
    assert scores["false_alarms"] == {"cases": 1, "ok": 1}
    assert scores["per_source_fault"]["cpu_contention"] == {
        "cases": 2, "as1": 0.5, "as3": 1.0, "fault_accuracy": 1.0, "missed": 0}
    text = format_dataset_table(scores)
    assert "all faults" in text and "false alarms classified as no incident: 1/1" in text and "Brier" in text


def test_a_dismissed_alerts_placeholder_is_not_a_ranked_cause() -> None:
    """A not_an_incident report names the alerted service with fault "none": ignoring the verdict must not count
    it as having ranked the right service first (it ranked nothing)."""
    from datetime import UTC, datetime

    from evals.dataset import EvalCase, score_answer

    case = EvalCase(id="c", service="frontend", at=datetime(2022, 8, 22, tzinfo=UTC), alertname="HighLatency",
                    expected_service="frontend", expected_fault="cpu_saturation", source_fault="cpu_consumed")
    dismissed = {"is_incident": False, "outcome": "not_an_incident", "errors": [],
                 "root_cause": {"service": "frontend", "fault_type": "none", "confidence": 0.0},
                 "hypotheses": [{"service": "frontend", "fault_type": "none"}]}
    assert score_answer(case, dismissed, 1.0)["ranked_top1_service"] is False
    ranked = {**dismissed, "hypotheses": [{"service": "frontend", "fault_type": "cpu_saturation"}]}
    assert score_answer(case, ranked, 1.0)["ranked_top1_service"] is True
