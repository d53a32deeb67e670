"""What the dispatcher hands a sink adapter, and how a sink says a delivery failed."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import httpx

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Delivery:
    """One message for one channel; `key` is its idempotency key, the same on every attempt."""

    key: str
    incident_id: str
    kind: str
    service: str
    severity: str | None
    subject: str
    text: str
    html: str
    link: str | None = None
    incident: dict[str, Any] = field(default_factory=dict)
    images: dict[str, bytes] = field(default_factory=dict)
    """PNG images the HTML shows by Content-ID (`cid:<id>`): the brief's charts."""

    @property
    def message_id(self) -> str:
        """An RFC 5322 Message-ID derived from the key: a resend is recognisably the same email."""
        return f"<{hashlib.sha256(self.key.encode()).hexdigest()[:32]}@incident-copilot>"


class DeliveryError(Exception):
    """A failed delivery: retried later when `retryable`, after at least `retry_after` seconds if the sink said."""

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None):
        super().__init__(message)
        self.retryable, self.retry_after = retryable, retry_after


def check_response(response: httpx.Response, sink: str) -> None:
    """Raise DeliveryError for a non-2xx answer: 408/429/5xx are retryable, other 4xx are not."""
    if response.is_success:
        return
    retry_after = response.headers.get("retry-after")
    seconds = float(retry_after) if retry_after and retry_after.replace(".", "", 1).isdigit() else None
    raise DeliveryError(f"{sink} answered {response.status_code}: {response.text[:300]}",
                        retryable=response.status_code in RETRYABLE_STATUS, retry_after=seconds)


async def post(http: httpx.AsyncClient, sink: str, url: str, **kwargs: Any) -> httpx.Response:
    """POST, turning transport failures (refused, reset, timed out) into retryable DeliveryErrors."""
    try:
        response = await http.post(url, **kwargs)
    except httpx.TransportError as exc:
        raise DeliveryError(f"{sink} unreachable: {type(exc).__name__}: {exc}", retryable=True) from exc
    check_response(response, sink)
    return response
