"""PagerDuty Events API v2 sink: trigger on open, resolve on resolved, one alert per incident (its dedup_key)."""

from __future__ import annotations

import httpx

from tools.notify.config import Channel
from tools.notify.delivery import Delivery, post

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
SEVERITY = {"P1": "critical", "P2": "error", "P3": "warning", "P4": "info"}


def dedup_key(incident_id: str) -> str:
    """One PagerDuty alert per incident: a resent trigger is merged into it, and resolve closes it."""
    return f"incident-copilot/{incident_id}"


def event(delivery: Delivery, routing_key: str) -> dict:
    """The Events v2 body of a delivery."""
    body: dict = {"routing_key": routing_key, "dedup_key": dedup_key(delivery.incident_id),
                  "event_action": "resolve" if delivery.kind == "resolved" else "trigger"}
    if delivery.kind != "resolved":
        body["payload"] = {
            "summary": delivery.subject[:1024], "source": delivery.service,
            "severity": SEVERITY.get(delivery.severity or "", "error"), "component": delivery.service,
            "custom_details": {"kind": delivery.kind, "incident_id": delivery.incident_id,
                               "message": delivery.text[:4000]},
        }
        if delivery.link:
            body["links"] = [{"href": delivery.link, "text": "Incident CoPilot"}]
    return body


async def send(delivery: Delivery, channel: Channel, http: httpx.AsyncClient) -> None:
    """POST the event; PagerDuty answers 202 {"status": "success"}, 400 "invalid event", or 429 when throttled."""
    url = channel.settings.get("url", EVENTS_URL)
    await post(http, "pagerduty", url, json=event(delivery, channel.secret("routing_key")))
