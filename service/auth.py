"""Who is calling: API keys by bearer token, X-Webhook-API-Key or the dashboard's session cookie."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from service.errors import ApiError
from service.settings import ServerSettings

SESSION_COOKIE = "ic_session"


def match_key(settings: ServerSettings, presented: str | None) -> str | None:
    """The identity of the presented key; every key is compared, in constant time."""
    if not presented:
        return None
    found = None
    for key, identity in settings.api_keys.items():
        if hmac.compare_digest(presented.encode(), key.encode()):
            found = identity
    return found


def authenticate(request: Request) -> str:
    """Bearer token, X-Webhook-API-Key, or the dashboard's session cookie; the identity of the caller."""
    settings: ServerSettings = request.app.state.settings
    if settings.auth_disabled:
        return "anonymous (auth disabled)"
    header = request.headers.get("authorization", "")
    bearer = header[7:].strip() if header[:7].lower() == "bearer " else None
    for presented in (bearer, request.headers.get("x-webhook-api-key"), request.cookies.get(SESSION_COOKIE)):
        identity = match_key(settings, presented)
        if identity is not None:
            return identity
    raise ApiError(401, "unauthorized", "missing or invalid credentials", {"WWW-Authenticate": "Bearer"})


async def caller_identity(request: Request) -> str:
    """`authenticate` as an async dependency: FastAPI runs a sync one in a worker thread, on every request."""
    return authenticate(request)


Caller = Annotated[str, Depends(caller_identity)]
