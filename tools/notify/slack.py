"""Slack incoming-webhook sink: a Block Kit message with the verdict and a button to the incident."""

from __future__ import annotations

from typing import Any

import httpx

from tools.notify.config import Channel
from tools.notify.delivery import Delivery, post


def mrkdwn(text: str) -> str:
    """Text for Slack's mrkdwn: &, < and > escaped, so nothing becomes a link or a mention."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def blocks(delivery: Delivery) -> list[dict[str, Any]]:
    """The Block Kit layout of a delivery."""
    fields = [f"*Service:*\n{mrkdwn(delivery.service)}", f"*Severity:*\n{delivery.severity or '-'}"]
    out: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": delivery.subject[:150]}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
        {"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn(delivery.text)[:2900]}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": f"incident `{mrkdwn(delivery.incident_id)}`"}]},
    ]
    if delivery.link:
        label = "Review and approve" if delivery.kind == "awaiting_approval" else "Open the incident"
        out.append({"type": "actions", "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": label}, "url": delivery.link}]})
    return out


async def send(delivery: Delivery, channel: Channel, http: httpx.AsyncClient) -> None:
    """POST to the webhook; Slack answers 200 "ok", or 4xx with a reason (invalid_payload, no_service, ...)."""
    payload = {"text": delivery.subject, "blocks": blocks(delivery)}
    await post(http, "slack", channel.secret("webhook_url"), json=payload)
