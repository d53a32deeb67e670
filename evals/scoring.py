"""Scoring shared by every eval: one case against its truth, and the table over many cases."""

from __future__ import annotations

import statistics


def score_case(fault_type: str, root_service: str | None, is_incident: bool, ranked: list[tuple[str, str]]) -> dict:
    """Correctness of one case: ranked = [(service, fault_type), ...] best first, the truth is (root, fault).

    A false alarm (fault "none") is correct when it is not called an incident; a real fault needs the verdict
    "incident" too.
    """
    if fault_type == "none":
        ok = not is_incident
        return {"top1_service": ok, "top3_service": ok, "top1_fault": ok, "false_alarm_ok": ok}
    services = [s for s, _ in ranked]
    return {
        "top1_service": is_incident and bool(ranked) and ranked[0][0] == root_service,
        "top3_service": is_incident and root_service in services[:3],
        "top1_fault": is_incident and bool(ranked) and ranked[0][1] == fault_type,
    }


def aggregate(cases: list[dict]) -> dict:
    """The eval table from scored cases ({"scenario", "seconds"?, and score_case's keys}): fractions."""

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
        "per_scenario": per_scenario,
    }
