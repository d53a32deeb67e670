"""Gmail API sink: an access token from an OAuth refresh token, then users.messages.send with the raw email."""

from __future__ import annotations

import base64
import time

import httpx

from tools.notify.config import Channel
from tools.notify.delivery import Delivery, DeliveryError, post
from tools.notify.email_message import build_email

TOKEN_URL = "https://oauth2.googleapis.com/token"
API_URL = "https://gmail.googleapis.com"
_tokens: dict[str, tuple[str, float]] = {}  # channel -> (access token, expiry): one token per process and channel


async def _access_token(channel: Channel, http: httpx.AsyncClient) -> str:
    cached = _tokens.get(channel.name)
    if cached and cached[1] > time.time() + 60:
        return cached[0]
    response = await http.post(channel.settings.get("token_url", TOKEN_URL), data={
        "grant_type": "refresh_token", "client_id": channel.secret("client_id"),
        "client_secret": channel.secret("client_secret"), "refresh_token": channel.secret("refresh_token"),
    })
    if response.status_code == 400 or response.status_code == 401:  # invalid_grant, invalid_client: fix the config
        raise DeliveryError(f"gmail: token refresh refused: {response.text[:300]}", retryable=False)
    if not response.is_success:
        raise DeliveryError(f"gmail: token endpoint answered {response.status_code}", retryable=True)
    body = response.json()
    _tokens[channel.name] = (body["access_token"], time.time() + float(body.get("expires_in", 3600)))
    return body["access_token"]


async def send(delivery: Delivery, channel: Channel, http: httpx.AsyncClient) -> None:
    """Send as the authorised user; a 401 drops the cached token and is retried with a fresh one."""
    s = channel.settings
    raw = base64.urlsafe_b64encode(build_email(delivery, s["from"], list(s["to"])).as_bytes()).decode()
    url = f"{s.get('api_url', API_URL).rstrip('/')}/gmail/v1/users/me/messages/send"
    try:
        token = await _access_token(channel, http)
    except httpx.TransportError as exc:
        raise DeliveryError(f"gmail token endpoint unreachable: {exc}", retryable=True) from exc
    try:
        await post(http, "gmail", url, json={"raw": raw}, headers={"Authorization": f"Bearer {token}"})
    except DeliveryError as exc:
        if " 401:" in str(exc):
            _tokens.pop(channel.name, None)
            raise DeliveryError(str(exc), retryable=True) from exc
        raise
