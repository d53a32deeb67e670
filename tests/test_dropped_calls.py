"""Requests that end before the calls they used to make (analysis/metrics.py `dropped_calls`): a caller's calls per
request fall while it still serves its requests, read from real rows of Nezha's OnlineBoutique days (MIT) and
judged by ranking as its own code failing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from analysis.detection import detect
from analysis.metrics import dropped_calls, summarize_metrics
from analysis.ranking import rank_candidates
from analysis.records import MetricSeries
from prompts.views import evidence_view
from state import Evidence, Hypothesis, MetricEvidence, MetricSignal, Window

# PodWorkload(Ops) (requests per second, one sample a minute) of Nezha's rows of 2022-08-23, 12:19:28-13:04:28
# (rca_data/2022-08-23/metric/*_metric.csv). An exception was injected into checkoutservice at 13:02:09; emailservice
# is called by checkoutservice alone, paymentservice too.
CHECKOUT_FIRST = 1661257168
FRONTEND = [6.867, 7.267, 6.667, 8.933, 8.133, 9.467, 8.333, 9.067, 8.733, 8.933, 8.267, 8.2, 8.467, 8.8, 8.533, 8.2,
            7.933, 8.333, 8.6, 7.733, 8.6, 8.8, 9.2, 9.067, 9, 8.933, 8.733, 8.333, 7.667, 8.533, 8.6, 8, 8.333, 8.8,
            8.8, 8.533, 9.333, 8.267, 9.4, 9.133, 8.733, 8.6, 8.867, 8.533, 8.333, 7.4]
CHECKOUT = [0.3333, 0.4, 0.4, 0.2667, 0.1333, 0.5333, 0.3333, 0.2, 0.2, 0.4, 0.4, 0.2667, 0.2, 0.2, 0.2, 0.2, 0.4,
            0.06667, 0.2667, 0.6, 0.5333, 0.2, 0.2, 0.2667, 0.2, 0.2, 0.4667, 0.3333, 0.3333, 0.2, 0.1333, 0.1333, 0.4,
            0.2667, 0.1333, 0.4, 0.06667, 0.2667, 0.4, 0.4, 0.1333, 0.2667, 0.3333, 0.2667, 0.2667, 0.4]
EMAIL = [0.2667, 0.4, 0.3333, 0.2, 0.1333, 0.5333, 0.3333, 0.2667, 0.2, 0.4, 0.4, 0.2667, 0.2, 0.2, 0.2, 0.2, 0.4,
         0.06667, 0.2, 0.6, 0.5333, 0.1333, 0.2, 0.2667, 0.1333, 0.2, 0.4667, 0.3333, 0.3333, 0.2, 0.1333, 0.2, 0.4,
         0.2667, 0.1333, 0.4, 0.06667, 0.2667, 0.3333, 0.4, 0.1333, 0.2667, 0.3333, 0.2667, 0, 0]
PAYMENT = [0.3333, 0.4, 0.4667, 0.2, 0.2, 0.6, 0.1333, 0.4, 0.2, 0.5333, 0.2667, 0.2, 0.2667, 0.2667, 0.3333, 0.4, 0.2,
           0.2, 0.2667, 0.2, 0.5333, 0.2667, 0.3333, 0.4, 0.4667, 0.2667, 0.2667, 0.2667, 0.2, 0.2667, 0.06667, 0.2,
           0.4, 0.4, 0.2, 0.06667, 0.3333, 0.3333, 0.6, 0.5331, 0.2667, 0.3333, 0.2, 0, 0, 0]
SHOP = [("frontend", "checkoutservice"), ("checkoutservice", "emailservice"), ("checkoutservice", "paymentservice")]
# The same rows of 2022-08-23, 14:00:28-14:46:28: the storefront's own traffic fell to a twentieth from 14:40 (a
# network delay at productcatalogservice was under way), and checkoutservice saw no order for three minutes.
LOST_FIRST = 1661263228
FRONTEND_LOST = [10.13, 8.933, 7.6, 8.2, 9.733, 8.867, 9, 8.133, 8.467, 8.733, 8.733, 8.733, 7.667, 7.8, 8.733, 9.733,
                 9.267, 8.467, 9.4, 8.933, 7.267, 8.467, 8.733, 8.733, 9.067, 9.333, 7.533, 8.4, 9.2, 8.667, 6.467,
                 6.4, 7.2, 7.733, 9.4, 9.067, 8, 8.2, 8.733, 8, 4.2, 4.133, 3.733, 1.267, 0.4667, 8.333, 9.533]
CHECKOUT_LOST = [0.4, 0.4667, 0.2, 0.2667, 0.3333, 0.2667, 0.2, 0.4, 0.4, 0.4667, 0.1333, 0.06667, 0.2, 0.5333, 0.2,
                 0.3333, 0.3333, 0.3333, 0.2, 0.06667, 0.2, 0.2667, 0.4667, 0.1333, 0.4667, 0.2, 0.2667, 0.1333, 0.2,
                 0.2, 0.2667, 0.1333, 0.3333, 0.4, 0.2667, 0.3333, 0.3333, 0.2667, 0.3333, 0.3333, 0.1333, 0.2, 0, 0,
                 0, 0.3333, 0.2667]


def rates(first: int, **values: list[float]) -> list[MetricSeries]:
    return [MetricSeries(signal="request_rate", service=service,
                         points=[(first + 60 * i, v) for i, v in enumerate(series)])
            for service, series in values.items()]


def window(end: float, minutes: int = 15, baseline_minutes: int = 30) -> Window:
    at = datetime.fromtimestamp(end, UTC)
    return Window(start=at - timedelta(minutes=minutes), end=at,
                  baseline_start=at - timedelta(minutes=minutes + baseline_minutes))


def shop_rates() -> list[MetricSeries]:
    return rates(CHECKOUT_FIRST, frontend=FRONTEND, checkoutservice=CHECKOUT, emailservice=EMAIL,
                 paymentservice=PAYMENT)


def test_checkout_stopped_calling_email_after_the_injected_exception_on_nezha_rows() -> None:
    alert = CHECKOUT_FIRST + 60 * 45 + 41  # 13:05:09, three minutes after the injection, as the eval set alerts
    found = dropped_calls(shop_rates(), SHOP, window(alert))
    assert list(found) == ["checkoutservice"] and "emailservice" in found["checkoutservice"], found
    note = found["checkoutservice"]["emailservice"]
    assert "per request" in note and "end before those calls" in note
    # the summary carries it when given the call graph, and only then
    assert summarize_metrics(shop_rates(), window(alert), dependencies=SHOP).dropped_calls == found
    assert summarize_metrics(shop_rates(), window(alert)).dropped_calls == {}


def test_the_same_rows_before_the_injection_show_no_dropped_calls() -> None:
    before = CHECKOUT_FIRST + 60 * 42 + 41  # 13:02:09: the injection, nothing yet
    assert dropped_calls(shop_rates(), SHOP, window(before)) == {}


def test_a_callee_with_another_caller_is_not_judged_by_its_own_request_rate() -> None:
    """Its request rate mixes the calls of both callers: only a per-edge call rate tells whose calls stopped."""
    alert = CHECKOUT_FIRST + 60 * 45 + 41
    edges = [*SHOP, ("frontend", "emailservice")]
    assert "emailservice" not in dropped_calls(shop_rates(), edges, window(alert)).get("checkoutservice", {})
    # with the edge's own call rate (checkoutservice's calls to emailservice) it is judged again
    edge = MetricSeries(signal="client_request_rate", service="checkoutservice", peer="emailservice",
                        points=[(CHECKOUT_FIRST + 60 * i, v) for i, v in enumerate(EMAIL)])
    found = dropped_calls([*shop_rates(), edge], edges, window(alert))
    assert "emailservice" in found["checkoutservice"]


def test_empty_minutes_of_a_low_traffic_callee_are_no_drop_on_nezha_rows() -> None:
    """Nezha's rows at 14:43-14:45: no order reached checkoutservice for three minutes while the storefront's own
    traffic fell to a twentieth. A few orders a minute vary too much per request for empty minutes to stand out."""
    series = rates(LOST_FIRST, frontend=FRONTEND_LOST, checkoutservice=CHECKOUT_LOST)
    for minute in (43, 44, 45):
        assert dropped_calls(series, [("frontend", "checkoutservice")], window(LOST_FIRST + 60 * minute + 1)) == {}


def test_a_callee_whose_calls_come_in_bursts_is_not_judged_by_two_empty_minutes() -> None:
    """Calls per request that vary as much as their level in the baseline (a few calls a minute, in bursts): two
    empty minutes are within that spread, under half or not."""
    first = 1_700_000_000
    bursts = [0.0, 0.4, 0.1, 0.0, 0.3, 0.05, 0.2, 0.0, 0.35, 0.1] * 4
    series = rates(first, gateway=[10.0] * 46, ledger=bursts + [0.2, 0.1, 0.3, 0.1, 0.0, 0.0])
    assert dropped_calls(series, [("gateway", "ledger")], window(first + 60 * 45 + 1)) == {}


def test_a_caller_that_lost_its_own_requests_is_not_judged_by_its_calls() -> None:
    """Its calls per request fell, but it serves a tenth of its usual requests: too few to say its code stopped."""
    first = 1_700_000_000
    series = rates(first, gateway=[10.0] * 40 + [1.0] * 6, ledger=[20.0] * 40 + [0.0] * 6)
    assert dropped_calls(series, [("gateway", "ledger")], window(first + 60 * 45 + 1)) == {}
    serving = rates(first, gateway=[10.0] * 40 + [6.0] * 6, ledger=[20.0] * 40 + [0.0] * 6)
    assert "ledger" in dropped_calls(serving, [("gateway", "ledger")], window(first + 60 * 45 + 1))["gateway"]


def test_calls_that_fall_with_the_load_are_no_drop() -> None:
    """A slowdown or a quieter hour moves both rates together: the calls per request hold."""
    first = 1_700_000_000
    load = [10.0] * 40 + [4.0] * 6
    series = rates(first, gateway=load, ledger=[2 * v for v in load])
    assert dropped_calls(series, [("gateway", "ledger")], window(first + 60 * 45 + 1)) == {}
    # fewer calls per request by less than half: a shift of the request mix, however steady the baseline
    shifted = rates(first, gateway=[10.0] * 46, ledger=[20.0] * 40 + [11.0] * 6)
    assert dropped_calls(shifted, [("gateway", "ledger")], window(first + 60 * 45 + 1)) == {}
    stopped = rates(first, gateway=[10.0] * 46, ledger=[20.0] * 40 + [1.0] * 6)
    assert "ledger" in dropped_calls(stopped, [("gateway", "ledger")], window(first + 60 * 45 + 1))["gateway"]


# The same day's first minutes, 11:59:28-12:12:28 (its metrics begin at 11:59:28): CPU contention at the storefront
# from 12:01:25, then a `return` fault injected into it at 12:10:21; the storefront's success rate (front_service.csv).
DAY_FIRST = 1661255968
FRONTEND_DAY = [9.067, 8.6, 8.533, 6, 5.333, 5.267, 4.667, 2.333, 8.8, 8.733, 8.933, 8.067, 9.933, 8.8]
AD_DAY = [4.8, 4.533, 5.067, 3.867, 3.333, 3.2, 2.267, 1.4, 4.733, 4.533, 5, 4.4, 0.8, 0.8]
RECOMMENDATION_DAY = [6.333, 5.867, 5.933, 4.467, 3.733, 4.6, 3.467, 1.8, 6.733, 6.067, 6.333, 5.733, 2.133, 2.2]
SUCCESS_DAY = [100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 89.26, 53.69, 50.76]


def test_fourteen_minutes_of_history_lend_a_baseline_and_show_the_storefronts_own_fault() -> None:
    """No sample before the window: the first eight lend the baseline (before, a series needed sixteen, and this one
    scored nothing at all); the storefront's errors and its requests that stopped calling show."""
    series = rates(DAY_FIRST, frontend=FRONTEND_DAY, adservice=AD_DAY, recommendationservice=RECOMMENDATION_DAY)
    series.append(MetricSeries(signal="error_ratio", service="frontend",
                               points=[(DAY_FIRST + 60 * i, 1 - v / 100) for i, v in enumerate(SUCCESS_DAY)]))
    edges = [("frontend", "adservice"), ("frontend", "recommendationservice")]
    alert = DAY_FIRST + 60 * 13 + 53  # 12:13:21, three minutes after the injection
    metrics = summarize_metrics(series, window(alert), dependencies=edges)
    errors = next(m for m in metrics.signals if (m.service, m.signal) == ("frontend", "error_ratio"))
    assert errors.direction == "up" and errors.score >= 8 and errors.active and errors.short_baseline
    assert set(metrics.dropped_calls["frontend"]) == {"adservice", "recommendationservice"}
    # the short history is still said: without a named cause the outcome stays inconclusive
    assert metrics.short_history == len(series)
    ranked = rank_candidates(Evidence(alerted_service="frontend", window=window(alert), services=[],
                                      dependencies=edges, metrics=metrics))
    assert (ranked[0].service, ranked[0].fault_type) == ("frontend", "deployment_regression")


# --- ranking -------------------------------------------------------------------------------------------------

END = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
EDGES = [("frontend", "checkout"), ("checkout", "email"), ("checkout", "payment"), ("checkout", "currency")]
NOTE = "checkout made 1 calls to email per request it served, now 0 (last 2 samples) ..."


def ranked(signals: list[MetricSignal], dropped: dict[str, dict[str, str]]):
    evidence = Evidence(alerted_service="frontend", window=window(END.timestamp()),
                        services=sorted({s for e in EDGES for s in e}), dependencies=EDGES,
                        metrics=MetricEvidence(signals=signals, dropped_calls=dropped))
    return rank_candidates(evidence)


def signal(service: str, name: str, baseline: float, current: float, peer: str | None = None) -> MetricSignal:
    return MetricSignal(service=service, signal=name, peer=peer, baseline=baseline, current=current, peak=current,
                        score=20, direction="up" if current > baseline else "down",
                        onset=END - timedelta(minutes=3))


def test_requests_that_stop_calling_name_the_callers_code() -> None:
    errors = [signal("frontend", "error_ratio", 0.0, 0.03)]
    top = ranked(errors, {"checkout": {"email": NOTE}})[0]
    assert (top.service, top.fault_type) == ("checkout", "deployment_regression")
    assert any("email per request" in line for line in top.evidence)
    # without the dropped calls nothing names checkout
    assert all(h.service != "checkout" for h in ranked(errors, {}))


def test_a_slow_callee_or_a_callee_that_is_down_explains_the_stop() -> None:
    slow = [signal("currency", "latency_p99", 0.01, 0.5)]
    assert all((h.service, h.fault_type) != ("checkout", "deployment_regression")
               for h in ranked(slow, {"checkout": {"email": NOTE}}))
    down = [signal("email", "up", 1.0, 0.0)]
    assert all((h.service, h.fault_type) != ("checkout", "deployment_regression")
               for h in ranked(down, {"checkout": {"email": NOTE}}))


def test_the_models_digest_shows_the_dropped_calls() -> None:
    evidence = Evidence(alerted_service="frontend", window=window(END.timestamp()), services=[], dependencies=EDGES,
                        metrics=MetricEvidence(dropped_calls={"checkout": {"email": NOTE}}))
    assert json.loads(evidence_view(evidence))["dropped_calls"] == [NOTE]
    assert "dropped_calls" not in json.loads(evidence_view(evidence.model_copy(update={"metrics": MetricEvidence()})))


def test_requests_that_stopped_calling_corroborate_a_strong_anomaly_at_the_gate() -> None:
    """A second observation from other series (the callees' own rates), tested on its own, as requests cut short in
    traces are: one strong anomaly with it is an incident, without it is not."""
    errors = [MetricSignal(service="frontend", signal="error_ratio", baseline=0.0, current=0.48, peak=0.49, score=46,
                           direction="up", onset=END - timedelta(minutes=2))]
    candidate = Hypothesis(service="frontend", fault_type="deployment_regression", score=7.5, confidence=0.6)
    with_stop = Evidence(alerted_service="frontend", window=window(END.timestamp()), services=[], dependencies=EDGES,
                         metrics=MetricEvidence(signals=errors, dropped_calls={"frontend": {"checkout": NOTE}}))
    detection = detect(with_stop, [candidate])
    assert detection.is_incident is True
    assert any("no longer make calls" in reason for reason in detection.reasons)
    alone = with_stop.model_copy(update={"metrics": MetricEvidence(signals=errors)})
    assert detect(alone, [candidate]).is_incident is not True
