"""The evidence engine at the edges (issue 7): one small input per failure class that the engine got wrong before."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from analysis.detection import detect
from analysis.logs import summarize_logs
from analysis.metrics import summarize_metrics
from analysis.ranking import estimate_onset, rank_candidates
from analysis.records import LogRecord, MetricSeries
from state import FAULT_TYPES, DeployEvent, Evidence, Hypothesis, Window

# issue 7's failure classes whose fix is not on main yet: each fails today, strictly (an unexpected pass fails too)
PENDING = pytest.mark.xfail(strict=True, reason="issue 7: failure class not fixed yet")

END = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
WINDOW = Window(start=END - timedelta(minutes=15), end=END, baseline_start=END - timedelta(minutes=45))
T0 = WINDOW.baseline_start.timestamp()
ONSET = END.timestamp() - 8 * 60
SERVICES = ["web", "mobile", "checkout", "payments", "db-proxy"]
DEPS = [("web", "checkout"), ("mobile", "checkout"), ("checkout", "payments"), ("checkout", "db-proxy")]


def series(signal, service, value, peer=None, step=15, since=T0):
    """A series from `since` to the window end at `step` seconds; `value(t)` with 2% deterministic noise."""
    rng = random.Random(f"{signal}/{service}/{peer}")
    times = [since + s for s in range(0, int(END.timestamp() - since) + 1, step)]
    return MetricSeries(signal, service, [(t, value(t) * (1 + rng.gauss(0, 0.02))) for t in times], peer)


def after(onset, before_value, after_value):
    return lambda t: after_value if t >= onset else before_value


def evidence(metrics, logs=None, deploys=(), window=WINDOW):
    ev = Evidence(
        alerted_service="web",
        window=window,
        services=SERVICES,
        dependencies=DEPS,
        logs=logs,
        metrics=summarize_metrics(metrics, window),
        deploys=list(deploys),
    )
    ev.onset = estimate_onset(ev)
    ev.candidates = rank_candidates(ev)
    return ev


def top(ev):
    return (ev.candidates[0].service, ev.candidates[0].fault_type) if ev.candidates else None


def healthy(*services):
    """Flat request rates and error ratios: services that are measured and fine."""
    out = []
    for s in services:
        out += [series("request_rate", s, lambda t: 50.0), series("error_ratio", s, lambda t: 0.001)]
    return out


def callers_fail_towards(callee, caller="checkout", onset=ONSET):
    return [
        series("error_ratio", "web", after(onset + 30, 0.001, 0.2)),
        series("client_error_ratio", "web", after(onset + 30, 0.0, 0.2), peer="checkout"),
        series("error_ratio", "checkout", after(onset + 15, 0.001, 0.3)),
        series("client_error_ratio", caller, after(onset, 0.0, 0.4), peer=callee),
    ]


# --- a catch-all wins ----------------------------------------------------------------------------------


def test_dependency_outage_needs_a_callee_without_a_fault_of_its_own():
    records = [LogRecord(T0 + i, "payments", "level=info msg=charged") for i in range(0, 2700, 5)]
    records += [
        LogRecord(
            ONSET + i,
            "payments",
            'level=error msg="unhandled error"\nTraceback (most recent call last):\n'
            '  File "payments/charge.py", line 41, in charge\n    x\nKeyError: \'currency\'',
        )
        for i in range(0, 400, 4)
    ]
    metrics = callers_fail_towards("payments") + [series("error_ratio", "payments", after(ONSET, 0.001, 0.4))]
    ev = evidence(metrics, logs=summarize_logs(records, WINDOW))
    assert top(ev) == ("payments", "deployment_regression"), ev.candidates
    assert not any(h.fault_type == "dependency_outage" and h.service == "payments" for h in ev.candidates)


def test_every_signature_row_states_its_fact_and_names_known_facts():
    from analysis.signatures import FACTS, SIGNATURES

    assert {s.fault for s in SIGNATURES} == set(FAULT_TYPES) - {"none"}
    for s in SIGNATURES:
        assert s.fact and s.needs, s.fault
        assert all(w > 0 for w in s.weights.values()), s.fault
        named = {f for group in s.needs for f in group} | set(s.weights) | set(s.excludes)
        assert named <= set(FACTS), (s.fault, named - set(FACTS))
    outage = next(s for s in SIGNATURES if s.fault == "dependency_outage")
    assert "own_fault" in outage.excludes
    assert outage.score({"inbound_errors": 1, "own_fault": 1}) == 0 < outage.score({"inbound_errors": 1})


def test_ties_are_broken_by_evidence_not_by_name(monkeypatch):
    import analysis.ranking as ranking
    from analysis.signatures import Signature

    # two rows that score the same on a service with rising errors and p99: the one with more facts behind it wins,
    # though its name sorts last
    rows = (
        Signature("certificate_expired", needs=(("latency_up",),), weights={"latency_up": 2}, fact="test row"),
        Signature(
            "config_error", needs=(("latency_up",),), weights={"latency_up": 1, "error_ratio_up": 1}, fact="test row"
        ),
    )
    monkeypatch.setattr(ranking, "SIGNATURES", rows)
    ev = evidence(
        [
            series("latency_p99", "payments", after(ONSET, 0.05, 0.5)),
            series("error_ratio", "payments", after(ONSET, 0.001, 0.3)),
            series("request_rate", "payments", lambda t: 40.0),
        ]
    )
    first, second = ev.candidates[:2]
    assert first.score == second.score
    assert (first.fault_type, second.fault_type) == ("config_error", "certificate_expired")


# --- faults that began before the baseline ---------------------------------------------------------------


def test_memory_leak_that_began_before_the_baseline_and_restarted_in_the_window():
    restart = END.timestamp() - 5 * 60
    since = T0 - 3600

    def memory(t):  # grows 0.2 MB/s for an hour and a half, OOM-killed at `restart`, growing again after
        return 300e6 + 0.2e6 * (t - since) if t < restart else 300e6 + 0.2e6 * (t - restart)

    metrics = [
        series("memory_bytes", "payments", memory, since=since),
        series("up", "payments", lambda t: 0.0 if restart <= t < restart + 15 else 1.0),
        series("error_ratio", "payments", lambda t: 0.001),
        series("request_rate", "payments", lambda t: 30.0),
        series("latency_p99", "checkout", lambda t: 0.2),
    ]
    ev = evidence(metrics)
    assert top(ev) == ("payments", "memory_leak"), ev.candidates
    assert any("restart" in e for e in ev.candidates[0].evidence)


def test_a_leak_killed_every_few_minutes_is_found_as_a_scraper_sees_it():
    # a Node service leaks from 10 min before the alert and is OOM-killed every 3 min, last a minute before the
    # alert: a scrape while it restarts fails (up 0, no memory sample), the next reads its memory at start, where
    # it was before the leak began, so at the alert it is only 1.4x up
    began = END.timestamp() - 615
    kills = [began + 180 * k for k in (1, 2, 3)]

    def memory(t):
        since = max([began, *[k for k in kills if k <= t]]) if t >= began else t
        return 500e6 + (4e6 * (t - since) if t >= began else 0)

    def scraped(t):
        return any(k <= t < k + 15 for k in kills)

    memory_series = series("memory_bytes", "payments", memory)
    memory_series.points[:] = [(t, v) for t, v in memory_series.points if not scraped(t)]
    up_series = series("up", "payments", lambda t: 1.0)
    up_series.points[:] = [(t, 0.0 if scraped(t) else 1.0) for t, _ in up_series.points]  # `up` is exact
    metrics = [
        memory_series,
        up_series,
        series("latency_p99", "payments", after(began + 60, 0.2, 0.8)),
        series("error_ratio", "payments", lambda t: 0.001),
        series("request_rate", "payments", lambda t: 30.0),
    ] + callers_fail_towards("payments", onset=began + 120)
    ev = evidence(metrics)
    up = next(m for m in ev.metrics.signals if (m.service, m.signal) == ("payments", "up"))
    assert up.peak == 0.0  # one failed scrape is a restart, though too short to score
    assert top(ev) == ("payments", "memory_leak"), ev.candidates
    assert any("memory_bytes of payments up" in e for e in ev.candidates[0].evidence)


def test_a_disk_filling_since_before_the_baseline_is_found_by_its_time_to_exhaustion():
    since = T0 - 3600

    def free(t):  # 60 GB free, losing 8 MB/s for two hours: about 12 GB left at the alert, 25 minutes from full
        return 60e9 - 8e6 * (t - since)

    metrics = [
        series("disk_free_bytes", "db-proxy", free, since=since),
        series("latency_p99", "db-proxy", lambda t: 0.05),
        series("request_rate", "db-proxy", lambda t: 40.0),
        series("error_ratio", "db-proxy", lambda t: 0.001),
    ]
    ev = evidence(metrics)
    assert top(ev) == ("db-proxy", "disk_full"), ev.candidates
    assert any("runs out in" in e for e in ev.candidates[0].evidence)


def test_short_history_gives_a_flagged_baseline_not_silence():
    window = Window(start=END - timedelta(minutes=15), end=END, baseline_start=END - timedelta(minutes=45))
    since = END.timestamp() - 15.5 * 60  # half a minute of history before the window
    metrics = [
        series("cpu_usage", "payments", after(ONSET, 0.2, 0.9), since=since),
        series("request_rate", "payments", lambda t: 30.0, since=since),
        series("latency_p99", "payments", after(ONSET, 0.1, 0.5), since=since),
    ]
    ev = evidence(metrics, window=window)
    assert top(ev) == ("payments", "cpu_saturation")
    cpu = next(m for m in ev.metrics.signals if m.signal == "cpu_usage")
    assert cpu.short_baseline


# --- onsets polluted by the earliest wobble ---------------------------------------------------------------


def test_onset_comes_from_the_strongest_sustained_signal():
    wobble = WINDOW.start.timestamp()
    config = DeployEvent(
        at=datetime.fromtimestamp(ONSET - 20, UTC), service="payments", version="cfg-42", kind="config"
    )
    metrics = callers_fail_towards("payments") + [
        series("latency_p99", "payments", after(wobble, 0.100, 0.150)),  # a weak wobble from the window start
        series("error_ratio", "payments", after(ONSET, 0.001, 0.5)),
        series("request_rate", "payments", lambda t: 40.0),
    ]
    ev = evidence(metrics, deploys=[config])
    assert top(ev) == ("payments", "config_error"), ev.candidates
    assert abs(ev.onset.timestamp() - ONSET) <= 60


def test_a_config_reload_minutes_after_an_early_wobble_of_the_same_signal_is_near_the_onset():
    # payments' error ratio wobbles (two noise floors) five minutes before the reload, then jumps at the reload
    wobble = ONSET - 5 * 60
    config = DeployEvent(
        at=datetime.fromtimestamp(ONSET - 20, UTC), service="payments", version="cfg-43", kind="config"
    )
    metrics = callers_fail_towards("payments") + [
        series("error_ratio", "payments", lambda t: 0.5 if t >= ONSET else 0.02 if t >= wobble else 0.001),
        series("request_rate", "payments", lambda t: 40.0),
    ]
    ev = evidence(metrics, deploys=[config])
    assert abs(ev.onset.timestamp() - ONSET) <= 30
    assert top(ev) == ("payments", "config_error"), ev.candidates


def test_a_config_reload_is_tied_to_the_first_line_of_a_new_error_when_a_few_requests_a_second_delay_the_onset():
    # payments serves a request every few seconds: its error ratio needs minutes of failures to hold as a deviation,
    # so the metric onset lags the reload; its first 'invalid configuration' line came a second after the reload
    lag = 7 * 60
    config = DeployEvent(at=datetime.fromtimestamp(ONSET, UTC), service="payments", version="cfg-44", kind="config")
    records = [LogRecord(T0 + i, "payments", "level=info msg=charged") for i in range(0, 2700, 20)]
    records += [LogRecord(ONSET + 1 + i, "payments",
                          "level=error msg=\"invalid configuration: key 'provider.timeout' must be a duration\"")
                for i in range(0, 480, 10)]
    metrics = callers_fail_towards("payments", onset=ONSET + lag) + [
        series("error_ratio", "payments", after(ONSET + lag, 0.001, 0.5)),
        series("request_rate", "payments", lambda t: 0.3),
    ]
    ev = evidence(metrics, logs=summarize_logs(records, WINDOW), deploys=[config])
    assert top(ev) == ("payments", "config_error"), ev.candidates
    assert any("config change payments cfg-44" in note for note in ev.candidates[0].evidence)


def test_a_code_deploy_tied_by_the_first_line_of_a_new_error_names_its_commit():
    # payments' p99 rose 6 min before a bad deploy (its onset), then the deploy's first exceptions: the ranking
    # ties the deploy by that first line, and the detection names the same deploy's commit for the code path
    deployed = ONSET + 5 * 60
    deploy = DeployEvent(at=datetime.fromtimestamp(deployed, UTC), service="payments", version="2.4.0", kind="code",
                         commit="9f1c2ab")
    records = [LogRecord(T0 + i, "payments", "level=info msg=charged") for i in range(0, 2700, 20)]
    records += [LogRecord(deployed + 1 + i, "payments", 'level=error msg="unhandled exception: KeyError currency"')
                for i in range(0, 170, 5)]
    metrics = callers_fail_towards("payments", onset=deployed) + [
        series("latency_p99", "payments", after(ONSET - 60, 0.1, 2.0)),
        series("error_ratio", "payments", after(deployed, 0.001, 0.05)),
        series("request_rate", "payments", lambda t: 30.0),
    ]
    ev = evidence(metrics, logs=summarize_logs(records, WINDOW), deploys=[deploy])
    assert top(ev) == ("payments", "deployment_regression"), ev.candidates
    assert ev.onset.timestamp() < deployed - 2 * 60, ev.onset  # the onset alone would not reach the deploy
    detection = detect(ev, ev.candidates)
    assert detection.code_regression and detection.suspect_commit == "9f1c2ab", detection.reasons


def test_a_callee_whose_calls_are_measured_fine_does_not_explain_its_callers_errors():
    # checkout fails from a config reload; seconds earlier db-proxy began logging an error of its own (a log shipper
    # dropping events), but checkout's calls to db-proxy were measured and never failed
    config = DeployEvent(at=datetime.fromtimestamp(ONSET, UTC), service="checkout", version="cfg-45", kind="config")
    records = [LogRecord(T0 + i, s, "level=info msg=served")
               for i in range(0, 2700, 20) for s in ("checkout", "db-proxy")]
    records += [LogRecord(ONSET - 20 + i, "db-proxy", 'level=error msg="audit log shipper: dropped 12 events"')
                for i in range(0, 480, 60)]
    records += [LogRecord(ONSET + 1 + i, "checkout", "level=error msg=\"invalid configuration: key 'tax' is required\"")
                for i in range(0, 480, 5)]
    metrics = [
        series("error_ratio", "web", after(ONSET + 30, 0.001, 0.2)),
        series("client_error_ratio", "web", after(ONSET + 30, 0.0, 0.3), peer="checkout"),
        series("error_ratio", "checkout", after(ONSET + 15, 0.001, 0.3)),
        series("client_error_ratio", "checkout", lambda t: 0.001, peer="db-proxy"),
        series("client_error_ratio", "checkout", lambda t: 0.001, peer="payments"),
    ]
    ev = evidence(metrics, logs=summarize_logs(records, WINDOW), deploys=[config])
    assert top(ev) == ("checkout", "config_error"), ev.candidates
    assert not any("explained by anomalous dependency" in note for note in ev.candidates[0].evidence)


# --- faults before the alerted one ------------------------------------------------------------------------


def test_an_earlier_fault_that_recovered_is_kept_apart_from_the_alerted_one():
    earlier = END.timestamp() - 13 * 60
    recovered = earlier + 4 * 60
    now = END.timestamp() - 3 * 60
    metrics = [
        # an earlier, larger fault at checkout (a stress process: cpu and memory), over before the alerted one began
        series("cpu_usage", "checkout", lambda t: 0.9 if earlier <= t < recovered else 0.1, step=60),
        series("memory_bytes", "checkout", lambda t: 400e6 if earlier <= t < recovered else 100e6, step=60),
        series("up", "checkout", lambda t: 0.0 if earlier + 60 <= t < earlier + 120 else 1.0, step=60),
        series("latency_p99", "checkout", lambda t: 0.9 if earlier <= t < recovered else 0.1, step=60),
        # the alerted one: cpu at payments, still going at the alert
        series("cpu_usage", "payments", after(now, 0.1, 0.4), step=60),
        series("latency_p99", "payments", after(now, 0.05, 0.3), step=60),
        series("latency_p99", "web", after(now, 0.3, 0.8), step=60),
        series("request_rate", "payments", lambda t: 30.0, step=60),
        series("request_rate", "checkout", lambda t: 30.0, step=60),
    ]
    ev = evidence(metrics)
    assert top(ev) == ("payments", "cpu_saturation"), ev.candidates


# --- blame along an edge ------------------------------------------------------------------------------------


def test_failing_edge_blames_the_caller_when_the_callees_other_callers_are_healthy():
    metrics = healthy("checkout", "mobile") + [
        series("error_ratio", "web", after(ONSET + 15, 0.001, 0.3)),
        series("client_error_ratio", "web", after(ONSET, 0.0, 0.6), peer="checkout"),
        series("client_error_ratio", "mobile", lambda t: 0.001, peer="checkout"),
        series("client_request_rate", "mobile", lambda t: 20.0, peer="checkout"),
        series("client_request_rate", "web", lambda t: 20.0, peer="checkout"),
    ]
    ev = evidence(metrics)
    assert top(ev) == ("web", "network_partition"), ev.candidates


# --- latency-only faults ------------------------------------------------------------------------------------


def test_a_server_slow_by_its_own_measure_with_fast_callees_is_starved_not_delayed():
    # CPU contention from a neighbour (or a throttled quota) shows in the p99 the server measures itself, not in its
    # own CPU use; a network delay would not show there at all (Nezha's 16 pod delays: callers' latency only, the
    # server's own p99 flat; its 4 contention faults with a flat CPU: the server's own p99 up)
    metrics = healthy("web", "checkout", "payments") + [
        series("latency_p99", "payments", after(ONSET, 0.05, 0.45)),
        series("latency_p99", "checkout", after(ONSET + 15, 0.2, 0.6)),
        series("latency_p99", "web", after(ONSET + 30, 0.3, 0.7)),
        series("cpu_usage", "payments", lambda t: 0.2),
        series("cpu_usage", "checkout", lambda t: 0.2),
    ]
    ev = evidence(metrics)
    assert top(ev) == ("payments", "cpu_saturation"), ev.candidates


def test_a_caller_that_measured_its_time_going_to_a_slow_callee_is_explained_by_it():
    # checkout's memory keeps rising (a warm-up after a restart) and its p99 rose a minute before the callee's did
    # (one-minute samples blur the order), but it measured the time going into its calls to payments, whose own
    # server is slow: payments is the origin
    since = T0 - 3600
    metrics = healthy("web", "checkout", "payments") + [
        series("memory_bytes", "checkout", lambda t: 200e6 + 0.05e6 * (t - since), since=since),
        series("latency_p99", "checkout", after(ONSET - 60, 0.2, 3.0)),
        series("client_latency_p99", "checkout", after(ONSET, 0.05, 0.2), peer="payments"),
        series("latency_p99", "payments", after(ONSET, 0.04, 0.65)),
        series("cpu_usage", "payments", lambda t: 0.2),
    ]
    ev = evidence(metrics)
    assert top(ev) == ("payments", "cpu_saturation"), ev.candidates


def test_memory_that_stepped_up_once_and_settled_lower_is_no_leak():
    # a stress tool (or any one-off allocation) lifts memory at once to 2.5x for a sample, then it settles at 1.25x;
    # a leak holds what it took until the process is killed
    metrics = healthy("web", "checkout", "payments") + [
        series("memory_bytes", "payments", lambda t: 40e6 if t < ONSET else (100e6 if t < ONSET + 15 else 50e6)),
        series("latency_p99", "payments", after(ONSET, 0.05, 0.6)),
        series("latency_p99", "checkout", after(ONSET + 15, 0.2, 0.7)),
        series("client_latency_p99", "checkout", after(ONSET + 15, 0.06, 0.62), peer="payments"),
        series("cpu_usage", "payments", lambda t: 0.2),
    ]
    ev = evidence(metrics)
    assert top(ev) == ("payments", "cpu_saturation"), ev.candidates
    assert all(h.fault_type != "memory_leak" for h in ev.candidates), ev.candidates


def test_slow_calls_to_a_service_whose_server_is_not_slow_name_its_network():
    # tc netem on payments' pod: its callers wait, while the p99 its own server measures stays flat
    metrics = healthy("web", "checkout", "payments") + [
        series("latency_p99", "payments", lambda t: 0.05),
        series("client_latency_p99", "checkout", after(ONSET, 0.06, 0.5), peer="payments"),
        series("latency_p99", "checkout", after(ONSET + 15, 0.2, 0.6)),
        series("client_latency_p99", "web", after(ONSET + 15, 0.2, 0.6), peer="checkout"),
        series("latency_p99", "web", after(ONSET + 30, 0.3, 0.7)),
        series("cpu_usage", "payments", lambda t: 0.2),
    ]
    ev = evidence(metrics)
    assert top(ev) == ("payments", "network_partition"), ev.candidates
    assert any("network delay" in e for e in ev.candidates[0].evidence)


# --- low-traffic noise ----------------------------------------------------------------------------------------


def test_one_failed_request_on_a_quiet_service_is_not_an_anomaly():
    metrics = [
        series("request_rate", "payments", lambda t: 0.01),  # one request every 100 s
        # one failure shows as ratio 1.0 for as long as it stays in the 1-minute rate window
        series("error_ratio", "payments", lambda t: 1.0 if ONSET <= t < ONSET + 60 else 0.0),
        series("latency_p99", "web", lambda t: 0.2),
    ]
    ev = evidence(metrics)
    assert not any(m.signal == "error_ratio" and m.score >= 4 for m in ev.metrics.signals), ev.metrics.signals
    assert not detect(ev, ev.candidates).is_incident


def test_many_failed_requests_on_a_busy_service_are_an_anomaly():
    metrics = [
        series("request_rate", "payments", lambda t: 40.0),
        series("error_ratio", "payments", after(ONSET, 0.0, 0.05)),
    ]
    ev = evidence(metrics)
    assert any(m.signal == "error_ratio" and m.score >= 4 for m in ev.metrics.signals)


# --- saturation under load ------------------------------------------------------------------------------------


def test_a_surge_that_fills_a_pool_is_found_upstream_of_the_pool():
    metrics = [
        series("request_rate", "web", after(ONSET, 40.0, 130.0)),
        series("request_rate", "checkout", after(ONSET + 15, 40.0, 130.0)),
        series("request_rate", "db-proxy", after(ONSET + 15, 40.0, 125.0)),
        series("request_rate", "mobile", lambda t: 20.0),
        series("db_pool_in_use", "db-proxy", after(ONSET + 15, 6.0, 20.0)),
        series("db_pool_max", "db-proxy", lambda t: 20.0),
        series("latency_p99", "db-proxy", after(ONSET + 30, 0.05, 0.4)),
        series("latency_p99", "checkout", after(ONSET + 30, 0.2, 0.6)),
    ]
    ev = evidence(metrics)
    assert top(ev) == ("web", "traffic_surge"), ev.candidates


# --- the gate and the confidence --------------------------------------------------------------------------------


def test_the_gate_never_dismisses_a_strong_candidate():
    metrics = [series("cpu_usage", "payments", after(ONSET, 0.2, 0.9)), series("request_rate", "payments", lambda t: 9)]
    ev = evidence(metrics)
    strong = Hypothesis(service="payments", fault_type="cpu_saturation", confidence=0.8, score=6.0)
    assert detect(ev, [strong]).is_incident
    weak = strong.model_copy(update={"confidence": 0.3, "score": 2.0})
    assert not detect(ev, [weak]).is_incident


def test_confidence_separates_a_clear_answer_from_a_coin_toss():
    clear = evidence(
        callers_fail_towards("db-proxy")
        + [
            series("db_pool_in_use", "db-proxy", after(ONSET, 8.0, 20.0)),
            series("db_pool_max", "db-proxy", lambda t: 20.0),
            series("latency_p99", "db-proxy", after(ONSET, 0.05, 2.0)),
            series("request_rate", "db-proxy", lambda t: 40.0),
        ]
    )
    assert top(clear) == ("db-proxy", "db_connection_exhaustion")
    assert clear.candidates[0].confidence >= 0.75
    toss = evidence(
        [
            series("cpu_usage", "payments", after(ONSET, 0.2, 0.9)),
            series("cpu_usage", "db-proxy", after(ONSET, 0.2, 0.9)),
            series("request_rate", "payments", lambda t: 9.0),
            series("request_rate", "db-proxy", lambda t: 9.0),
        ]
    )
    assert toss.candidates[0].confidence <= 0.5


# --- code faults seen only in traces --------------------------------------------------------------------------


def _request(i, at, callees):
    """One traced request of web's `GET /product`: a server span and one client span per callee, in call order."""
    from analysis.records import Span

    root = Span(f"t{i}", f"t{i}-root", None, "web", "GET /product", at, 60.0)
    spans = [root]
    for n, callee in enumerate(callees):
        client = Span(f"t{i}", f"t{i}-c{n}", root.span_id, "web", f"call {callee}", at + 0.01 * n, 5.0, peer=callee)
        server = Span(f"t{i}", f"t{i}-s{n}", client.span_id, callee, "serve", at + 0.01 * n + 0.001, 4.0)
        spans += [client, server]
    return spans


def test_requests_cut_short_after_a_callee_name_its_code():
    # no error status, no deploy, no error metric of its own: only web's requests, which now end right after their
    # call to checkout and skip the calls that used to follow (fail fast on its answers)
    from analysis.traces import summarize_traces

    # baseline: every request calls all three, checkout first; the last minutes: most stop after checkout
    traces = summarize_traces(_cut_after_checkout(), WINDOW)
    assert list(traces.cut_after) == ["checkout"], traces.cut_after

    ev = _ranked_with_web_failing(traces, series("request_rate", "web", lambda t: 50.0))
    assert top(ev) == ("checkout", "deployment_regression"), ev.candidates
    assert any("end right after calling checkout" in e for e in ev.candidates[0].evidence)
    assert detect(ev, ev.candidates).is_incident


def _ranked_with_web_failing(traces, *more_series, deploys=()):
    """Evidence of web's error ratio rising in the last 4 minutes over healthy callees, with `traces`, ranked."""
    replaced = {(s.signal, s.service) for s in more_series}
    metrics = [s for s in healthy("checkout", "payments", "db-proxy") if (s.signal, s.service) not in replaced] + [
        series("error_ratio", "web", after(END.timestamp() - 240, 0.001, 0.4)), *more_series]
    ev = Evidence(alerted_service="web", window=WINDOW, services=SERVICES, dependencies=DEPS,
                  metrics=summarize_metrics(metrics, WINDOW), traces=traces, deploys=list(deploys))
    ev.candidates = rank_candidates(ev)
    return ev


def _cut_after_checkout():
    usual = ["checkout", "payments", "db-proxy"]
    spans = [s for i in range(40) for s in _request(i, T0 + 30 * i, usual)]
    for i in range(40, 60):
        spans += _request(i, END.timestamp() - 240 + 10 * (i - 40), usual[:1] if i % 5 else usual)
    return spans


def test_requests_cut_short_after_a_slow_callee_name_its_slowness():
    # callers give up on a callee that got slow (timeouts) just as on one that answers badly: its slowness names it
    from analysis.traces import summarize_traces

    traces = summarize_traces(_cut_after_checkout(), WINDOW)
    ev = _ranked_with_web_failing(traces, series("latency_p99", "checkout", after(END.timestamp() - 240, 0.1, 2.0)),
                                  series("cpu_usage", "checkout", lambda t: 0.2))
    assert top(ev) == ("checkout", "cpu_saturation"), ev.candidates


def test_requests_cut_short_after_a_config_change_name_the_change():
    # the same cut, but checkout's configuration was reloaded as its errors began: its bad answers come from the
    # reload (as errors starting in its own spans do), not from its code
    from analysis.traces import summarize_traces

    began = END.timestamp() - 240
    reload = DeployEvent(at=datetime.fromtimestamp(began - 10, UTC), service="checkout", version="cfg-9", kind="config")
    traces = summarize_traces(_cut_after_checkout(), WINDOW)
    ev = _ranked_with_web_failing(traces, series("error_ratio", "checkout", after(began, 0.001, 0.3)),
                                  deploys=[reload])
    assert top(ev) == ("checkout", "config_error"), ev.candidates


def test_requests_that_keep_their_calls_cut_nothing():
    from analysis.traces import summarize_traces

    usual = ["checkout", "payments", "db-proxy"]
    spans = [s for i in range(60) for s in _request(i, T0 + 45 * i, usual)]
    assert summarize_traces(spans, WINDOW).cut_after == {}


def test_the_cut_test_holds_at_thousands_of_spans():
    from analysis.traces import _more

    # binomial coefficients of 10,000 trials overflow a float: the tail is summed in log space
    assert _more(6000, 10_000, 0.5)
    assert not _more(5050, 10_000, 0.5)


def _chain(i, at, payments_fail):
    """web -> checkout -> payments, each call a client span with its peer and the callee's server span below it;
    payments' own server span fails when asked, and the failure rises to every span above it."""
    from analysis.records import Span

    t = f"x{i}"
    return [
        Span(t, f"{t}-w", None, "web", "GET /checkout", at, 50.0, error=payments_fail),
        Span(t, f"{t}-wc", f"{t}-w", "web", "POST checkout", at, 40.0, error=payments_fail, peer="checkout"),
        Span(t, f"{t}-c", f"{t}-wc", "checkout", "POST /orders", at, 38.0, error=payments_fail),
        Span(t, f"{t}-cp", f"{t}-c", "checkout", "POST payments", at, 20.0, error=payments_fail, peer="payments"),
        Span(t, f"{t}-p", f"{t}-cp", "payments", "POST /charges", at, 18.0, error=payments_fail),
    ]


def _failing_in_payments(config_change=False):
    from analysis.traces import summarize_traces

    spans = [s for i in range(40) for s in _chain(i, T0 + 45 * i, False)]
    spans += [s for i in range(40, 80) for s in _chain(i, ONSET + 10 * (i - 40), i % 2 == 0)]
    metrics = healthy("web", "checkout") + [
        series("error_ratio", "payments", after(ONSET, 0.001, 0.5)),
        series("request_rate", "payments", lambda t: 20.0),
        series("cpu_usage", "payments", lambda t: 0.2),
    ]
    deploys = [DeployEvent(at=END - timedelta(minutes=8), service="payments", version="v2", kind="config")]
    ev = Evidence(alerted_service="web", window=WINDOW, services=SERVICES, dependencies=DEPS,
                  metrics=summarize_metrics(metrics, WINDOW), traces=summarize_traces(spans, WINDOW),
                  deploys=deploys if config_change else [])
    ev.onset = estimate_onset(ev)
    ev.candidates = rank_candidates(ev)
    return ev


def test_errors_that_start_in_a_services_own_spans_with_nothing_else_to_explain_them_name_its_code():
    # no deploy recorded, no resource running out, no caller-side error metrics: the traces say the errors start in
    # payments' own server spans, below which nothing failed
    ev = _failing_in_payments()
    assert top(ev) == ("payments", "deployment_regression"), ev.candidates
    assert any("own spans" in e for e in ev.candidates[0].evidence)


def test_errors_that_start_in_a_services_own_spans_after_a_config_change_name_the_change():
    ev = _failing_in_payments(config_change=True)
    assert top(ev) == ("payments", "config_error"), ev.candidates


# --- errors that only logs witness -------------------------------------------------------------------------------

SPRING_TRACE = (
    "ERROR 1 --- [nio-8080-exec-{i}] c.s.payments.ChargeController : charge failed\n"
    "java.lang.IllegalStateException: no exchange rate for currency\n"
    "\tat com.shop.payments.RateTable.rateFor(RateTable.java:58)\n"
    "\tat com.shop.payments.ChargeController.charge(ChargeController.java:41)\n"
    "\tat org.springframework.web.servlet.FrameworkServlet.service(FrameworkServlet.java:897)"
)


def _logged_failure_at_payments() -> list[LogRecord]:
    """payments (a Spring service) starts failing with a stack trace of its own code; checkout logs its failed calls."""
    records = [LogRecord(T0 + i, s, f"INFO 1 --- [main] c.s.{s}.Api : served in 12 ms")
               for s in ("checkout", "payments") for i in range(0, 2700, 10)]
    records += [LogRecord(ONSET + i, "payments", SPRING_TRACE.format(i=i % 9)) for i in range(0, 400, 5)]
    records += [LogRecord(ONSET + 2 + i, "checkout", "ERROR 1 --- [nio-8080-exec-1] c.s.checkout.Api : call to "
                          "payments failed: 500 Internal Server Error") for i in range(0, 400, 5)]
    return records


def test_where_no_metric_measures_errors_a_services_new_error_logs_witness_them():
    """Telemetry without per-service error ratios (Nezha's pods have none): the failing service's own new errors,
    with a stack trace through its code, name its code; its callers' logged failures are explained by it."""
    metrics = [series("request_rate", s, lambda t: 40.0) for s in SERVICES]
    metrics.append(series("latency_p99", "web", after(ONSET + 30, 0.2, 0.9)))
    ev = evidence(metrics, logs=summarize_logs(_logged_failure_at_payments(), WINDOW))
    assert top(ev) == ("payments", "deployment_regression"), ev.candidates
    assert any("no metric measures the error ratio of payments" in line for line in ev.candidates[0].evidence)


def test_a_measured_flat_error_ratio_is_not_overruled_by_logs():
    metrics = [series("request_rate", s, lambda t: 40.0) for s in SERVICES]
    metrics += [series("error_ratio", s, lambda t: 0.001) for s in SERVICES]
    ev = evidence(metrics, logs=summarize_logs(_logged_failure_at_payments(), WINDOW))
    assert all("no metric measures the error ratio" not in line for h in ev.candidates for line in h.evidence)
