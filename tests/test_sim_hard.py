"""The hard suite: each variant keeps its classic scenario's truth and adds what its twists claim, visibly in the
data; it is scored apart from the classic eval."""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime, timedelta
from statistics import median

from click.testing import CliRunner

from analysis.logparse import parse_line
from evals.engine import evaluate, window_for
from sim.generate import SimData, generate
from sim.names import HARD_SCENARIOS, SCENARIOS
from sim.scenarios import build_scenario
from sim.topology import callees_of

END = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


@functools.lru_cache(maxsize=16)
def data(name: str, seed: int = 0) -> SimData:
    return generate(build_scenario(name, seed, END))


def series(d: SimData, signal: str, service: str, peer: str | None = None) -> list[tuple[float, float]]:
    return next(s.points for s in d.metrics if (s.signal, s.service, s.peer) == (signal, service, peer))


def test_every_hard_variant_keeps_its_classic_truth_and_is_no_classic_scenario():
    assert not set(HARD_SCENARIOS) & set(SCENARIOS)
    for name, (classic, twists) in HARD_SCENARIOS.items():
        hard, plain = build_scenario(name, 3, END), build_scenario(classic, 3, END)
        assert (hard.fault_type, hard.root_service, hard.alerted_service, hard.onset) == (
            plain.fault_type, plain.root_service, plain.alerted_service, plain.onset)
        assert hard.variant == name and hard.twists == twists and plain.twists == ()


def test_a_leak_begun_an_hour_before_trends_through_the_baseline_and_restarts_in_the_window():
    d = data("hard_memory_leak_early")
    sc, start = d.scenario, window_for(END).start.timestamp()
    memory = series(d, "memory_bytes", sc.root_service)
    base = [v for t, v in memory if t < start]
    thirds = len(base) // 3
    assert median(base[-thirds:]) > 1.1 * median(base[:thirds]), "memory already rises through the baseline"
    down = [t for t, v in series(d, "up", sc.root_service) if v == 0]
    assert down and all(t >= sc.onset.timestamp() for t in down), "the OOM kill falls in the window, after the onset"
    assert any("OOMKilled" in r.line for r in d.logs if r.service == sc.root_service)


def test_a_disk_filling_for_an_hour_declines_through_the_whole_baseline():
    d = data("hard_disk_full_early")
    sc, start = d.scenario, window_for(END).start.timestamp()
    free = [v for t, v in series(d, "disk_free_bytes", sc.root_service) if t < sc.onset.timestamp()]
    classic = [v for t, v in series(data("disk_full"), "disk_free_bytes", sc.root_service) if t < start]
    assert free[0] > 2 * free[-1], "the decline is under way at the start of the data"
    assert classic[0] - classic[len(classic) // 2] < 0.01 * classic[0], "(the classic disk is flat there)"


def test_an_overlapping_fault_starts_earlier_on_a_service_the_alerted_one_does_not_call():
    for seed in range(4):
        d, plain = data("hard_db_connection_exhaustion_overlap", seed), data("db_connection_exhaustion", seed)
        sc = d.scenario
        classic = {(s.signal, s.service): dict(s.points) for s in plain.metrics if s.peer is None}
        began: dict[str, float] = {}  # service -> first time its own fault signal is far from the classic case's
        for s in d.metrics:
            if s.signal in ("cpu_usage", "memory_bytes", "db_pool_in_use") and s.service != sc.root_service:
                same = classic[(s.signal, s.service)]
                far = [t for t, v in s.points if abs(v - same[t]) > 0.5 * max(abs(same[t]), 1e-9)]
                if len(far) >= 4:
                    began[s.service] = min(began.get(s.service, far[0]), far[0])
        assert began, f"seed {seed}: a second fault shows"
        assert min(began.values()) < sc.onset.timestamp(), f"seed {seed}: and it began before the alerted one"
        reached, frontier = {sc.alerted_service}, [sc.alerted_service]
        while frontier:
            for callee in callees_of(frontier.pop()):
                if callee not in reached:
                    reached.add(callee)
                    frontier.append(callee)
        if sc.alerted_service != "gateway":  # the gateway reaches every service
            assert set(began) - reached, f"seed {seed}: {sorted(began)} all reached from {sc.alerted_service}"


def test_bursts_and_low_traffic_show_in_the_rates_and_ratios():
    bursty, plain = data("hard_traffic_surge_bursty"), data("traffic_surge")
    start = window_for(END).start.timestamp()

    def spread(d: SimData) -> float:
        base = [v for t, v in series(d, "request_rate", "gateway") if t < start]
        return max(base) / median(base)

    assert spread(bursty) > 1.4 > spread(plain)
    low = data("hard_config_error_low_traffic")
    rate = [v for _, v in series(low, "request_rate", "gateway")]
    assert median(rate) < 5 < median(v for _, v in series(data("config_error"), "request_rate", "gateway"))
    ratios = [v for _, v in series(low, "error_ratio", low.scenario.root_service)]
    assert len(set(ratios)) < len(ratios) / 2, "ratios of whole requests repeat"


def test_hard_log_shapes_keep_their_level_only_where_real_fleets_keep_it():
    d = data("hard_config_error_low_traffic", 1)
    root = d.scenario.root_service
    lines = [r for r in d.logs if r.service == root]
    bare = [r for r in d.logs if r.labels]
    assert bare and all(r.labels["detected_level"] in ("debug", "info", "warn", "error") for r in bare)
    assert all(not re.search(r"\b(ERROR|WARN|INFO|level)\b", r.line.split("\n")[0]) for r in bare)
    shaped = {("pino" if r.line.startswith('{"level":') else "bare" if r.labels else
               "logback" if re.match(r"\d\d:\d\d:\d\d\.\d{3} \[", r.line) else
               "plain_msg" if ' msg="' in r.line and "level=" not in r.line else "other") for r in lines}
    assert shaped <= {"pino", "bare", "logback", "plain_msg"} and shaped != {"other"}, shaped
    errors = [r for r in bare if r.labels["detected_level"] == "error"]
    assert errors and parse_line(errors[0].line, "error").level == "error"


def test_the_hard_suite_is_scored_apart_from_the_classic_eval():
    scores = evaluate(1, ["hard_traffic_surge_bursty", "hard_false_alarm_bursty_low_traffic"])
    assert set(scores["per_scenario"]) == {"hard_traffic_surge_bursty", "hard_false_alarm_bursty_low_traffic"}
    refused = CliRunner().invoke(__import__("cli").cli, ["eval", "--hard", "--scenario", "disk_full"])
    assert refused.exit_code == 2 and "--hard runs the whole hard suite" in refused.output


def test_the_classic_scenarios_are_unchanged_by_the_hard_suite():
    classic = data("memory_leak")
    assert not any(r.labels for r in classic.logs) and classic.scenario.twists == ()
    window = window_for(END)
    assert window.end == END and window.start == END - timedelta(minutes=15)
