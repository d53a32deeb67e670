"""Dashboard sessions on the server: sign-in creates a row, the browser keeps only a signed random id; every form
carries the session's CSRF token; failed sign-ins are throttled per client address. All in PostgreSQL, so every
process and replica sees the same sessions and the same failures."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from psycopg_pool import AsyncConnectionPool

from service.settings import ServerSettings

LOGIN_WINDOW = timedelta(minutes=5)  # failed sign-ins count for this long


@dataclass(frozen=True)
class Session:
    """A signed-in browser: who it is and the token its forms must carry."""

    identity: str
    csrf_token: str


def signing_key(settings: ServerSettings) -> bytes:
    """The key that signs session cookies: derived from every API key, so it is the same in every process
    without a secret of its own, and changing the keys ends every session."""
    material = "\n".join(sorted(settings.api_keys)) if not settings.auth_disabled else "auth disabled"
    return hmac.new(b"incident-copilot dashboard session", material.encode(), hashlib.sha256).digest()


def _sign(key: bytes, session_id: str) -> str:
    return hmac.new(key, session_id.encode(), hashlib.sha256).hexdigest()


def cookie_value(settings: ServerSettings, session_id: str) -> str:
    """What the browser keeps: the id and its signature."""
    return f"{session_id}.{_sign(signing_key(settings), session_id)}"


def session_id_of(settings: ServerSettings, cookie: str | None) -> str | None:
    """The session id of a cookie whose signature holds, else None (forged or from other keys)."""
    if not cookie or len(cookie) > 200:
        return None
    session_id, _, signature = cookie.rpartition(".")
    if not session_id or not hmac.compare_digest(signature, _sign(signing_key(settings), session_id)):
        return None
    return session_id


def _id_hash(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode()).digest()


async def create_session(pool: AsyncConnectionPool, identity: str, hours: float) -> tuple[str, Session]:
    """A new session for `identity`: its id (for the cookie) and the session."""
    session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    async with pool.connection() as conn:
        await conn.execute(
            """INSERT INTO dashboard_sessions (id_hash, identity, csrf_token, expires_at)
               VALUES (%s, %s, %s, now() + %s)""",
            (_id_hash(session_id), identity, csrf, timedelta(hours=hours)),
        )
        await conn.execute("DELETE FROM dashboard_sessions WHERE expires_at < now()")
    return session_id, Session(identity, csrf)


async def load_session(pool: AsyncConnectionPool, session_id: str) -> Session | None:
    """The live session with this id, or None (unknown, signed out or expired)."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT identity, csrf_token FROM dashboard_sessions WHERE id_hash = %s AND expires_at > now()",
            (_id_hash(session_id),),
        )
        row = await cur.fetchone()
    return Session(row["identity"], row["csrf_token"]) if row else None


async def end_session(pool: AsyncConnectionPool, session_id: str) -> None:
    """Sign out: the session is gone, whoever holds its cookie."""
    async with pool.connection() as conn:
        await conn.execute("DELETE FROM dashboard_sessions WHERE id_hash = %s", (_id_hash(session_id),))


async def login_wait_seconds(pool: AsyncConnectionPool, client: str, attempts: int) -> int:
    """Seconds `client` must wait before trying to sign in again (0: it may try now)."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            """SELECT count(*) AS n, min(failed_at) AS first FROM login_failures
               WHERE client = %s AND failed_at > now() - %s""",
            (client, LOGIN_WINDOW),
        )
        row = await cur.fetchone()
        if row["n"] < attempts:
            return 0
        cur = await conn.execute("SELECT %s::timestamptz + %s - now() AS left", (row["first"], LOGIN_WINDOW))
        left = (await cur.fetchone())["left"]
    return max(1, int(left.total_seconds()) + 1)


async def record_login_failure(pool: AsyncConnectionPool, client: str) -> None:
    """Count a failed sign-in of `client` (and forget failures older than the window)."""
    async with pool.connection() as conn:
        await conn.execute("INSERT INTO login_failures (client) VALUES (%s)", (client,))
        await conn.execute("DELETE FROM login_failures WHERE failed_at < now() - %s", (LOGIN_WINDOW,))
