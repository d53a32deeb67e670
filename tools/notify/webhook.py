"""Generic webhook sink: the incident JSON, an Idempotency-Key header and an optional HMAC-SHA256 signature."""

from __future__ import annotations

import hashlib
import hmac
import json

import httpx

from tools.notify.config import Channel
from tools.notify.delivery import Delivery, post


def body(delivery: Delivery) -> bytes:
    """The JSON document posted."""
    return json.dumps({
        "kind": delivery.kind, "incident_id": delivery.incident_id, "idempotency_key": delivery.key,
        "service": delivery.service, "severity": delivery.severity, "subject": delivery.subject,
        "link": delivery.link, "incident": delivery.incident,
    }, separators=(",", ":")).encode()


async def send(delivery: Delivery, channel: Channel, http: httpx.AsyncClient) -> None:
    """POST; a receiver that already saw the Idempotency-Key can answer 2xx (or 409) and ignore the repeat."""
    payload = body(delivery)
    headers = {"Content-Type": "application/json", "Idempotency-Key": delivery.key,
               **dict(channel.settings.get("headers") or {})}
    if channel.settings.get("secret_env"):
        digest = hmac.new(channel.secret("secret").encode(), payload, hashlib.sha256).hexdigest()
        headers["X-Incident-Copilot-Signature"] = f"sha256={digest}"
    try:
        await post(http, "webhook", channel.settings["url"], content=payload, headers=headers)
    except Exception as exc:
        if " 409:" in str(exc):  # the receiver already has this key: delivered
            return
        raise
