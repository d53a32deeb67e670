"""Alert webhook parsing: Alertmanager, Grafana and generic fixtures, every rejection class, fingerprints."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from service.alert_payloads import PayloadError, decode_body, fingerprint_of, parse_payload

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "alerts"
RECEIVED = datetime(2026, 11, 21, 14, 0, 0, tzinfo=UTC)


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def parse(body: Any, **kwargs: Any):
    return parse_payload(body, received_at=RECEIVED, **kwargs)


def rejection(body: Any, **kwargs: Any) -> PayloadError:
    with pytest.raises(PayloadError) as info:
        parse(body, **kwargs)
    return info.value


# --- fixtures -----------------------------------------------------------------------------------------


def test_alertmanager_firing_capture() -> None:
    body = load("alertmanager-0.25-firing.json")
    parsed = parse(body)
    assert parsed.format == "alertmanager"
    assert parsed.receiver == "local-webhook"
    assert parsed.group_key == '{}:{alertname="HighErrorRate", service="checkout"}'
    [alert] = parsed.alerts
    assert alert.source == "alertmanager"
    assert (alert.alertname, alert.service, alert.status) == ("HighErrorRate", "checkout", "firing")
    assert alert.severity == "page"
    assert alert.summary == "checkout error rate 4.0/s"
    assert alert.starts_at == datetime(2026, 11, 21, 13, 47, 40, 654000, tzinfo=UTC)
    assert alert.fingerprint == "4bf0bfb081d6d054"
    assert alert.labels == body["alerts"][0]["labels"]
    assert alert.annotations == {"summary": "checkout error rate 4.0/s"}
    assert alert.lookup_window_seconds is None
    assert alert.raw == {
        **body["alerts"][0],
        "receiver": "local-webhook",
        "groupKey": body["groupKey"],
        "externalURL": "http://vm:9093",
        "commonLabels": body["commonLabels"],
    }


def test_alertmanager_resolved_capture_keeps_the_fingerprint() -> None:
    firing = parse(load("alertmanager-0.25-firing.json")).alerts[0]
    [resolved] = parse(load("alertmanager-0.25-resolved.json")).alerts
    assert resolved.status == "resolved"
    assert resolved.fingerprint == firing.fingerprint
    assert resolved.starts_at == firing.starts_at
    assert resolved.summary == "checkout error rate 1.9/s"
    assert resolved.raw["endsAt"] == "2026-11-21T13:47:58.654Z"


def test_alertmanager_group_of_three_services() -> None:
    body = load("alertmanager-multi-service.json")
    parsed = parse(body)
    assert parsed.format == "alertmanager"
    assert parsed.group_key == '{}/{severity="critical"}:{alertname="HighErrorRate"}'
    assert parsed.receiver == "incident-copilot"
    checkout, payments, inventory = parsed.alerts
    assert [a.service for a in parsed.alerts] == ["checkout", "payments", "inventory"]
    assert [a.status for a in parsed.alerts] == ["firing", "firing", "resolved"]
    assert [a.fingerprint for a in parsed.alerts] == [
        "0f7d1a52c3be9e41",
        "8c2e66a09b1d3f57",
        "d41b0c7e95a2f380",
    ]
    # Nanosecond fractions are cut to microseconds, never rounded into the next second.
    assert checkout.starts_at == datetime(2026, 11, 21, 13, 47, 40, 654321, tzinfo=UTC)
    assert payments.starts_at == datetime(2026, 11, 21, 13, 46, 55, 100000, tzinfo=UTC)
    assert inventory.starts_at == datetime(2026, 11, 21, 13, 40, 10, tzinfo=UTC)
    assert checkout.summary == "checkout 5xx ratio above 5%"
    assert payments.summary == "5xx ratio of payments is 31.0% over the last 5 minutes"
    assert inventory.summary == ""
    assert inventory.labels["job"] == "inventory"
    for index, alert in enumerate(parsed.alerts):
        assert alert.raw["labels"] == body["alerts"][index]["labels"]
        assert alert.raw["startsAt"] == body["alerts"][index]["startsAt"]
        assert alert.raw["commonLabels"] == body["commonLabels"]
        assert alert.raw["receiver"] == "incident-copilot"
    assert checkout.raw["startsAt"] == "2026-11-21T13:47:40.654321987Z"


def test_grafana_firing() -> None:
    body = load("grafana-firing.json")
    parsed = parse(body)
    assert parsed.format == "grafana"
    assert parsed.receiver == "incident-copilot"
    assert parsed.group_key.endswith(':{alertname="CheckoutLatencyHigh", grafana_folder="shop"}')
    checkout, payments = parsed.alerts
    assert {a.source for a in parsed.alerts} == {"grafana"}
    assert (checkout.alertname, checkout.service, checkout.status) == (
        "CheckoutLatencyHigh",
        "checkout",
        "firing",
    )
    assert checkout.severity == "warning"
    assert checkout.fingerprint == "3e8ad2c41f09b76a"
    assert checkout.summary == "checkout p99 latency 1.42 s"
    # +01:00 offset normalized to UTC; nanoseconds cut.
    assert checkout.starts_at == datetime(2026, 11, 21, 13, 47, 40, 123456, tzinfo=UTC)
    assert payments.service == "payments"
    assert payments.fingerprint == "71c05be39a4d2e18"
    assert payments.summary == "A=0.913, C=1"
    assert payments.starts_at == datetime(2026, 11, 21, 13, 48, 10, tzinfo=UTC)
    assert checkout.raw["values"] == {"A": 1.4213379, "C": 1}
    assert checkout.raw["panelURL"] == "http://vm:3000/d/shop-overview?orgId=1&viewPanel=4"
    assert checkout.raw["orgId"] == 1
    assert checkout.raw["groupKey"] == body["groupKey"]


def test_grafana_resolved_matches_its_firing_alert() -> None:
    firing = parse(load("grafana-firing.json")).alerts[0]
    [resolved] = parse(load("grafana-resolved.json")).alerts
    assert resolved.source == "grafana"
    assert resolved.status == "resolved"
    assert (resolved.service, resolved.fingerprint) == (firing.service, firing.fingerprint)
    assert resolved.starts_at == firing.starts_at
    assert resolved.raw["endsAt"] == "2026-11-21T15:02:40+01:00"


@pytest.mark.parametrize(("name", "window"), [("grafana-custom.json", None), ("generic-seed.json", 900)])
def test_generic_payloads(name: str, window: int | None) -> None:
    body = load(name)
    parsed = parse(body)
    assert parsed.format == "generic"
    assert (parsed.group_key, parsed.receiver) == (None, None)
    [alert] = parsed.alerts
    assert alert.source == "generic"
    assert (alert.alertname, alert.service, alert.status) == ("UnnamedAlert", "checkout", "firing")
    assert alert.lookup_window_seconds == window
    assert alert.starts_at == RECEIVED
    assert alert.fingerprint == fingerprint_of("UnnamedAlert", "checkout")
    assert alert.raw == body


def test_generic_payload_with_every_optional_field() -> None:
    [alert] = parse(
        {
            "service_name": "payments",
            "lookup_window_seconds": 60,
            "alertname": "PaymentsDown",
            "severity": "critical",
            "summary": "payments answers 503",
            "labels": {"team": "pay", "replicas": 3, "canary": False},
            "starts_at": "2026-11-21T13:30:00.5+00:00",
        }
    ).alerts
    assert (alert.alertname, alert.service, alert.severity) == ("PaymentsDown", "payments", "critical")
    assert alert.summary == "payments answers 503"
    assert alert.labels == {"team": "pay", "replicas": "3", "canary": "false"}
    assert alert.starts_at == datetime(2026, 11, 21, 13, 30, 0, 500000, tzinfo=UTC)
    assert alert.fingerprint == fingerprint_of("PaymentsDown", "payments")


def test_received_at_stands_in_for_a_missing_or_zero_start() -> None:
    body = load("alertmanager-0.25-firing.json")
    del body["alerts"][0]["startsAt"]
    assert parse(body).alerts[0].starts_at == RECEIVED
    body["alerts"][0]["startsAt"] = "0001-01-01T00:00:00Z"
    assert parse(body).alerts[0].starts_at == RECEIVED


def test_service_label_order_and_fallback_fingerprint() -> None:
    body = load("alertmanager-0.25-firing.json")
    labels = body["alerts"][0]["labels"]
    del body["alerts"][0]["fingerprint"]
    labels["service_name"] = "cart"
    assert parse(body).alerts[0].service == "checkout"
    del labels["service"]
    assert parse(body).alerts[0].service == "cart"
    del labels["service_name"]
    alert = parse(body).alerts[0]
    assert alert.service == "toyapp"
    assert alert.fingerprint == fingerprint_of("HighErrorRate", "toyapp")
    del labels["alertname"]
    assert parse(body).alerts[0].alertname == "UnnamedAlert"


def test_older_grafana_value_string_becomes_the_summary() -> None:
    body = load("grafana-firing.json")
    alert = body["alerts"][1]
    del alert["values"]
    alert["valueString"] = "[ var='A' labels={service=payments} value=0.913 ]"
    assert parse(body).alerts[1].summary == "[ var='A' labels={service=payments} value=0.913 ]"


def test_alert_status_falls_back_to_the_group_status() -> None:
    body = load("alertmanager-0.25-resolved.json")
    del body["alerts"][0]["status"]
    assert parse(body).alerts[0].status == "resolved"


def test_raw_is_a_copy_of_the_input() -> None:
    body = load("alertmanager-0.25-firing.json")
    before = copy.deepcopy(body)
    alert = parse(body).alerts[0]
    alert.raw["labels"]["service"] = "changed"
    assert body == before


def test_naive_received_at_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware") as info:
        parse_payload({"service_name": "checkout"}, received_at=datetime(2026, 11, 21))
    assert not isinstance(info.value, PayloadError)


# --- rejections ---------------------------------------------------------------------------------------


def with_alert(change: dict[str, Any], *, remove: tuple[str, ...] = ()) -> dict[str, Any]:
    """The Alertmanager firing capture with its one alert changed."""
    body = load("alertmanager-0.25-firing.json")
    body["alerts"][0].update(change)
    for key in remove:
        del body["alerts"][0][key]
    return body


def with_labels(**labels: Any) -> dict[str, Any]:
    body = load("alertmanager-0.25-firing.json")
    body["alerts"][0]["labels"].update(labels)
    return body


HUGE = "x" * 5000


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ([1, 2], "invalid_json", "body"),
        ("checkout", "invalid_json", "body"),
        (None, "invalid_json", "body"),
        ({"hello": "world"}, "unknown_format", "body"),
        ({"alerts": [], "version": "3"}, "unknown_format", "body"),
        ({"version": "4", "alerts": {"status": "firing"}}, "invalid_field", "alerts"),
        ({"version": "4", "alerts": []}, "invalid_field", "alerts"),
        ({"orgId": 1, "alerts": "nope"}, "invalid_field", "alerts"),
        ({"version": "4", "alerts": ["firing"]}, "invalid_field", "alerts[0]"),
        (with_labels(service="", job=""), "missing_field", "alerts[0].labels.service"),
        (with_alert({"labels": {"alertname": "X"}}), "missing_field", "alerts[0].labels.service"),
        (with_labels(service="check out"), "invalid_field", "alerts[0].labels.service"),
        (with_labels(service="s" * 129), "invalid_field", "alerts[0].labels.service"),
        (with_alert({"status": "pending"}), "invalid_field", "alerts[0].status"),
        (with_alert({"status": 1}), "invalid_field", "alerts[0].status"),
        ({**with_alert({}, remove=("status",)), "status": "bogus"}, "invalid_field", "status"),
        ({**with_alert({}, remove=("status",)), "status": None}, "invalid_field", "status"),
        (
            {k: v for k, v in with_alert({}, remove=("status",)).items() if k != "status"},
            "missing_field",
            "alerts[0].status",
        ),
        (with_alert({"startsAt": "yesterday"}), "invalid_field", "alerts[0].startsAt"),
        (with_alert({"startsAt": "2026-11-21 13:47"}), "invalid_field", "alerts[0].startsAt"),
        (with_alert({"startsAt": "2026-13-21T13:47:40Z"}), "invalid_field", "alerts[0].startsAt"),
        (with_alert({"startsAt": "2026-11-21T13:47:40"}), "invalid_field", "alerts[0].startsAt"),
        (with_alert({"startsAt": 1763732860}), "invalid_field", "alerts[0].startsAt"),
        (with_alert({"endsAt": "soon"}), "invalid_field", "alerts[0].endsAt"),
        (with_alert({"labels": ["service=checkout"]}), "invalid_field", "alerts[0].labels"),
        (with_labels(team={"name": "blue"}), "invalid_field", "alerts[0].labels.team"),
        (with_labels(team=None), "invalid_field", "alerts[0].labels.team"),
        (with_alert({"labels": {"service": "checkout", 1: "one"}}), "invalid_field", "alerts[0].labels"),
        (with_labels(team=HUGE), "invalid_field", "alerts[0].labels.team"),
        (with_alert({"annotations": {"summary": HUGE}}), "invalid_field", "alerts[0].annotations.summary"),
        (with_alert({"fingerprint": 42}), "invalid_field", "alerts[0].fingerprint"),
        ({**load("alertmanager-0.25-firing.json"), "groupKey": ["k"]}, "invalid_field", "groupKey"),
        ({"service_name": 7}, "invalid_field", "service_name"),
        ({"service_name": ""}, "invalid_field", "service_name"),
        ({"service_name": "checkout; rm -rf /"}, "invalid_field", "service_name"),
        ({"service_name": "checkout", "lookup_window_seconds": 59}, "invalid_field", "lookup_window_seconds"),
        (
            {"service_name": "checkout", "lookup_window_seconds": 86401},
            "invalid_field",
            "lookup_window_seconds",
        ),
        (
            {"service_name": "checkout", "lookup_window_seconds": "900"},
            "invalid_field",
            "lookup_window_seconds",
        ),
        (
            {"service_name": "checkout", "lookup_window_seconds": 900.0},
            "invalid_field",
            "lookup_window_seconds",
        ),
        (
            {"service_name": "checkout", "lookup_window_seconds": True},
            "invalid_field",
            "lookup_window_seconds",
        ),
        ({"service_name": "checkout", "window": 900}, "invalid_field", "window"),
        ({"service_name": "checkout", "starts_at": "now"}, "invalid_field", "starts_at"),
        ({"service_name": "checkout", "labels": {"team": [1]}}, "invalid_field", "labels.team"),
        ({"service_name": "checkout", "summary": HUGE}, "invalid_field", "summary"),
    ],
)
def test_rejections_name_the_field(body: Any, code: str, field: str) -> None:
    error = rejection(body)
    assert error.code == code
    assert error.field == field
    assert error.message.startswith(f"{field}: ")
    assert str(error) == error.message
    assert len(error.message) < 300


def test_rejection_messages_are_clear() -> None:
    assert rejection([1]).message == "body: expected a JSON object, got array"
    assert rejection(with_alert({"status": "pending"})).message == (
        'alerts[0].status: expected "firing" or "resolved", got "pending"'
    )
    assert rejection(with_labels(service="", job="")).message == (
        "alerts[0].labels.service: no non-empty service, service_name or job label"
    )
    assert rejection({"service_name": "checkout", "lookup_window_seconds": 59}).message == (
        "lookup_window_seconds: 59 is out of range 60..86400"
    )
    assert (
        rejection(with_labels(team=HUGE)).message
        == "alerts[0].labels.team: value is 5000 bytes, at most 4096"
    )
    assert rejection(with_labels(team=7.5, owner={"x": 1})).message == (
        "alerts[0].labels.owner: expected a string, got object"
    )
    assert rejection({"version": "4", "alerts": {}}).message == "alerts: expected an array, got object"
    assert rejection(with_alert({"startsAt": "yesterday"})).message == (
        'alerts[0].startsAt: "yesterday" is not an RFC 3339 timestamp'
    )
    unknown = rejection({"alertname": "X"}).message
    assert unknown.startswith("body: expected an Alertmanager")
    assert "alertname" in unknown


def test_missing_service_names_the_alert_index() -> None:
    body = load("alertmanager-multi-service.json")
    del body["alerts"][2]["labels"]["job"]
    error = rejection(body)
    assert (error.code, error.field) == ("missing_field", "alerts[2].labels.service")


def test_too_many_alerts() -> None:
    body = load("alertmanager-0.25-firing.json")
    body["alerts"] = body["alerts"] * 4
    assert len(parse(body, max_alerts=4).alerts) == 4
    error = rejection(body, max_alerts=3)
    assert (error.code, error.field) == ("too_many_alerts", "alerts")
    assert error.message == "alerts: 4 alerts, at most 3 per request"
    body["alerts"] = body["alerts"] * 300
    assert rejection(body).code == "too_many_alerts"


def test_huge_values_are_not_echoed_back() -> None:
    huge = "y" * 100_000
    for body in (
        with_labels(service=huge),
        with_alert({"startsAt": huge}),
        with_alert({"status": huge}),
        {huge: 1},
        {"service_name": "checkout", huge: 1},
        with_labels(**{huge: "v"}),
    ):
        error = rejection(body)
        assert len(error.message) < 300, error.message
        assert "y" * 101 not in error.message


def test_deep_nesting_is_rejected_before_it_reaches_the_serializer() -> None:
    body = load("alertmanager-0.25-firing.json")
    body["alerts"][0]["extra"] = json.loads("[" * 29 + "]" * 29)
    alert = parse(body).alerts[0]
    assert alert.model_dump(mode="json")["raw"]["extra"] == json.loads("[" * 29 + "]" * 29)
    body["alerts"][0]["extra"] = json.loads("[" * 300 + "]" * 300)
    error = rejection(body)
    assert (error.code, error.message) == ("invalid_field", "body: nested deeper than 32 levels")


def test_decode_body() -> None:
    assert decode_body(b'{"service_name": "checkout"}') == {"service_name": "checkout"}
    for data in (b"{not json", b"", b"\xff\xfe{}", b"[" * 100_000, b'{"n": ' + b"9" * 5000 + b"}"):
        with pytest.raises(PayloadError) as info:
            decode_body(data)
        assert (info.value.code, info.value.field) == ("invalid_json", "body")


# --- fingerprints -------------------------------------------------------------------------------------


def test_fingerprint_stability() -> None:
    first = fingerprint_of("HighErrorRate", "checkout")
    assert first == fingerprint_of("HighErrorRate", "checkout")
    assert len(first) == 16 and int(first, 16) >= 0
    assert first != fingerprint_of("HighErrorRate", "payments")
    assert first != fingerprint_of("HighLatency", "checkout")
    # Pinned: fingerprints are stored with open incidents, so they must not change between releases.
    assert first == "857e8219ffcf4107"


def test_generic_payloads_for_one_service_share_a_fingerprint() -> None:
    seed = parse(load("generic-seed.json")).alerts[0]
    custom = parse(load("grafana-custom.json")).alerts[0]
    other = parse({"service_name": "payments", "lookup_window_seconds": 900}).alerts[0]
    named = parse({"service_name": "checkout", "alertname": "CheckoutDown"}).alerts[0]
    assert seed.fingerprint == custom.fingerprint
    assert len({seed.fingerprint, other.fingerprint, named.fingerprint}) == 3
