"""Who is calling and what they may do: named API keys with roles, for the JSON API (bearer credentials only).

The dashboard signs people in with the same keys but keeps them in a server-side session (service/sessions.py);
the session cookie never authenticates the JSON API, so a page on another site cannot drive it with the
browser's cookies.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, Request

from service.errors import ApiError
from service.settings import ROLES, ServerSettings

Action = Literal["post_alerts", "read", "decide", "operate"]

# intake: the key in Alertmanager's or Grafana's configuration, nothing else; viewer: read; approver: read and
# decide at the gate; admin: everything, including replays and other operations on runs.
PERMISSIONS: dict[str, frozenset[str]] = {
    "intake": frozenset({"post_alerts"}),
    "viewer": frozenset({"read"}),
    "approver": frozenset({"read", "decide"}),
    "admin": frozenset({"read", "decide", "operate", "post_alerts"}),
}
assert set(PERMISSIONS) == set(ROLES)
ACTION_TEXT = {"post_alerts": "post alerts", "read": "read incidents", "decide": "decide at an approval gate",
               "operate": "replay, retry or resolve incidents"}
ANONYMOUS = "anonymous (auth disabled)"


@dataclass(frozen=True)
class Principal:
    """A caller: the name its credentials belong to and their role."""

    name: str
    role: str

    def may(self, action: Action) -> bool:
        """Whether this role allows `action`."""
        return action in PERMISSIONS.get(self.role, frozenset())


def match_key(settings: ServerSettings, presented: str | None) -> Principal | None:
    """The holder of the presented key; every key is compared, in constant time."""
    if not presented:
        return None
    found = None
    for key, identity in settings.api_keys.items():
        if hmac.compare_digest(presented.encode(), key.encode()):
            found = identity
    return Principal(found, settings.role_of(found)) if found is not None else None


def principal_named(settings: ServerSettings, name: str) -> Principal | None:
    """The holder called `name` as the settings know them now (None when their key is gone)."""
    if settings.auth_disabled:
        return Principal(ANONYMOUS, "admin") if name == ANONYMOUS else None
    if name not in settings.api_keys.values():
        return None
    return Principal(name, settings.role_of(name))


def authenticate(request: Request) -> Principal:
    """The caller of the JSON API: `Authorization: Bearer <key>` or `X-Webhook-API-Key: <key>`, nothing else."""
    settings: ServerSettings = request.app.state.settings
    if settings.auth_disabled:
        return Principal(ANONYMOUS, "admin")
    header = request.headers.get("authorization", "")
    bearer = header[7:].strip() if header[:7].lower() == "bearer " else None
    for presented in (bearer, request.headers.get("x-webhook-api-key")):
        principal = match_key(settings, presented)
        if principal is not None:
            return principal
    raise ApiError(401, "unauthorized", "missing or invalid credentials", {"WWW-Authenticate": "Bearer"})


def allowed(principal: Principal, action: Action) -> Principal:
    """`principal` when its role allows `action`; 403 otherwise."""
    if not principal.may(action):
        raise ApiError(403, "forbidden", f"{principal.name} (role {principal.role}) may not {ACTION_TEXT[action]}")
    return principal


def requires(action: Action):
    """A route dependency: the authenticated caller, if their role allows `action` (401, else 403)."""

    async def dependency(request: Request) -> Principal:  # async: FastAPI runs a sync one in a thread
        return allowed(authenticate(request), action)

    return dependency


Reader = Annotated[Principal, Depends(requires("read"))]
Decider = Annotated[Principal, Depends(requires("decide"))]
Operator = Annotated[Principal, Depends(requires("operate"))]
Caller = Reader  # any caller who may read
