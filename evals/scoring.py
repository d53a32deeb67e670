"""Scoring shared by every eval: one case against its truth, and the table over many cases."""

from __future__ import annotations

import statistics


def score_case(fault_type: str, root_service: str | None, is_incident: bool | None,
               ranked: list[tuple[str, str]]) -> dict:
    """Correctness of one case: ranked = [(service, fault_type), ...] best first, the truth is (root, fault).

    A false alarm (fault "none") is correct when it is called not an incident (inconclusive is not that call); a
    real fault needs the verdict "incident" too.
    """
    if fault_type == "none":
        ok = is_incident is False
        return {"top1_service": ok, "top3_service": ok, "top1_fault": ok, "false_alarm_ok": ok}
    services = [s for s, _ in ranked]
    is_incident = bool(is_incident)
    return {
        "top1_service": is_incident and bool(ranked) and ranked[0][0] == root_service,
        "top3_service": is_incident and root_service in services[:3],
        "top1_fault": is_incident and bool(ranked) and ranked[0][1] == fault_type,
    }


def aggregate(cases: list[dict]) -> dict:
    """The eval table from scored cases ({"scenario", "seconds"?, "confidence"?, and score_case's keys}): fractions
    and the calibration of the confidence."""

    def frac(rows: list[dict], key: str) -> float:
        rows = [r for r in rows if key in r]
        return round(sum(r[key] for r in rows) / len(rows), 4) if rows else 0.0

    def median_seconds(rows: list[dict]) -> float:
        timed = [r["seconds"] for r in rows if "seconds" in r]
        return round(statistics.median(timed), 3) if timed else 0.0

    per_scenario = {}
    for name in dict.fromkeys(c["scenario"] for c in cases):
        rows = [c for c in cases if c["scenario"] == name]
        per_scenario[name] = {
            "cases": len(rows),
            **{k: frac(rows, k) for k in ("top1_service", "top3_service", "top1_fault")},
            "median_seconds": median_seconds(rows),
            "misses": [r["seed"] for r in rows if not (r["top1_service"] and r["top1_fault"])],
        }
    return {
        "cases": len(cases),
        **{k: frac(cases, k) for k in ("top1_service", "top3_service", "top1_fault")},
        "false_alarms_ok": frac(cases, "false_alarm_ok"),
        "median_seconds": median_seconds(cases),
        "calibration": calibration(cases),
        "per_scenario": per_scenario,
    }


CALIBRATION_BINS = 5


def _frac(rows: list[dict], key: str) -> float:
    rows = [r for r in rows if key in r]
    return round(sum(bool(r[key]) for r in rows) / len(rows), 4) if rows else 0.0


def calibration(rows: list[dict], bins: int = CALIBRATION_BINS) -> dict | None:
    """How well the named root cause's confidence predicts that it is right (its service and fault, with the
    incident verdict), over real faults ({"confidence", and score_case's keys}): the Brier score (mean squared
    error of the confidence; 0 is perfect, always saying 0.5 scores 0.25) and a reliability table of equal-width
    confidence bins (cases, mean confidence, fraction right). None without cases."""
    pairs = [
        (min(1.0, max(0.0, float(r["confidence"]))), bool(r["top1_service"] and r["top1_fault"]))
        for r in rows
        if "confidence" in r and "false_alarm_ok" not in r
    ]
    if not pairs:
        return None
    table = []
    for k in range(bins):
        lo, hi = k / bins, (k + 1) / bins
        members = [(p, y) for p, y in pairs if lo <= p < hi or (k == bins - 1 and p == 1.0)]
        table.append(
            {
                "range": [round(lo, 3), round(hi, 3)],
                "cases": len(members),
                "mean_confidence": round(statistics.fmean(p for p, _ in members), 4) if members else None,
                "right": round(sum(y for _, y in members) / len(members), 4) if members else None,
            }
        )
    return {
        "event": "root cause right (service and fault, verdict incident)",
        "cases": len(pairs),
        "brier": round(statistics.fmean((p - y) ** 2 for p, y in pairs), 4),
        "bins": table,
    }


def summarize_dataset(rows: list[dict]) -> dict:
    """The eval table of a recorded dataset (evals/dataset.score_answer rows): AS@1 and AS@3 (the right service
    first / among the first three, with the incident verdict), fault accuracy, missed incidents (a real fault not
    called an incident), false alarms, calibration, and the same per source fault type."""

    def table(group: list[dict]) -> dict:
        return {
            "cases": len(group),
            "as1": _frac(group, "top1_service"),
            "as3": _frac(group, "top3_service"),
            "fault_accuracy": _frac(group, "top1_fault"),
            "missed": sum(r["outcome"] != "incident" for r in group),
        }

    faults = [r for r in rows if "false_alarm_ok" not in r]
    quiet = [r for r in rows if "false_alarm_ok" in r]
    timed = [r["seconds"] for r in rows if "seconds" in r]
    outcomes: dict[str, int] = {}
    for r in faults:
        if r["outcome"] != "incident":
            outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
    return {
        **table(faults),
        "missed_by_outcome": outcomes,
        "as1_ignoring_verdict": _frac(faults, "ranked_top1_service"),
        "false_alarms": {"cases": len(quiet), "ok": sum(bool(r["false_alarm_ok"]) for r in quiet)},
        "calibration": calibration(faults),
        "per_source_fault": {
            kind: table([r for r in faults if r["source_fault"] == kind])
            for kind in sorted({r["source_fault"] for r in faults})
        },
        "median_seconds": round(statistics.median(timed), 3) if timed else 0.0,
        "cases_detail": rows,
    }


def format_calibration(scores: dict) -> list[str]:
    """The reliability table and Brier score as text lines (none without calibration)."""
    cal = scores.get("calibration")
    if not cal:
        return []
    lines = [f"calibration ({cal['event']}), {cal['cases']} cases: Brier {cal['brier']:.3f}",
             f"  {'confidence':<12} {'cases':>5} {'mean conf':>9} {'right':>6}"]
    for b in cal["bins"]:
        lo, hi = b["range"]
        conf = "" if b["mean_confidence"] is None else f"{b['mean_confidence']:.2f}"
        right = "" if b["right"] is None else f"{b['right']:.0%}"
        lines.append(f"  {lo:.1f}-{hi:.1f}      {b['cases']:>5} {conf:>9} {right:>6}")
    return lines


def format_dataset_table(scores: dict) -> str:
    """The dataset eval result as a text table."""
    lines = [f"{'source fault':<16} {'cases':>5} {'AS@1':>6} {'AS@3':>6} {'fault':>6} {'missed':>6}"]
    groups = [*scores["per_source_fault"].items(), ("all faults", scores)]
    for name, s in groups:
        lines.append(f"{name:<16} {s['cases']:>5} {s['as1']:>6.1%} {s['as3']:>6.1%} {s['fault_accuracy']:>6.1%} "
                     f"{s['missed']:>6}")
    fa = scores["false_alarms"]
    if fa["cases"]:
        lines.append(f"false alarms classified as no incident: {fa['ok']}/{fa['cases']}")
    lines += format_calibration(scores)
    lines.append(f"median seconds per case: {scores['median_seconds']:.2f}")
    return "\n".join(lines)
