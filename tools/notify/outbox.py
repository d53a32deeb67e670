"""The notification outbox: events written with the state change, routed to channels, delivered until taken.

`record_event` writes an event (at most one per incident and kind) in the caller's transaction. The dispatcher
routes each new event to its channels (one message per incident, channel and kind; key `incident/channel/kind`)
and delivers due messages: it leases a message, sends it, then marks it sent. A sink that is down is retried with
exponential backoff; a process that dies between send and mark leaves the lease to expire, so the message is sent
once more, with the same idempotency key (email Message-ID, webhook Idempotency-Key, PagerDuty dedup_key).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import httpx
from psycopg import OperationalError
from psycopg.types.json import Jsonb

from tools.background import stop_task
from tools.notify import gmail, pagerduty, slack, smtp, webhook
from tools.notify.config import Channel, NotifyConfig
from tools.notify.delivery import Delivery, DeliveryError
from tools.redact import redact_value

log = logging.getLogger(__name__)
Sink = Callable[[Delivery, Channel, httpx.AsyncClient], Awaitable[None]]
SINKS: dict[str, Sink] = {"smtp": smtp.send, "gmail": gmail.send, "slack": slack.send,
                          "pagerduty": pagerduty.send, "webhook": webhook.send}


def idempotency_key(incident_id: str, channel: str, kind: str) -> str:
    """The stable key of the one message per incident, channel and kind."""
    return f"{incident_id}/{channel}/{kind}"


async def record_event(conn: Any, incident_id: str, kind: str, payload: dict[str, Any]) -> bool:
    """Write a notification event in the caller's transaction (redacted); False when the incident already has one
    of this kind (a re-run or a replay adds nothing). `payload["images"]`, base64 PNG charts by Content-ID, is
    drawn lines, not text: it is kept as it is."""
    images = payload.get("images") or {}
    body = redact_value({k: v for k, v in payload.items() if k != "images"}) | ({"images": images} if images else {})
    cur = await conn.execute(
        """INSERT INTO notification_events (incident_id, kind, payload) VALUES (%s, %s, %s)
           ON CONFLICT (incident_id, kind) DO NOTHING""",
        (incident_id, kind, Jsonb(body)),
    )
    return cur.rowcount == 1


def _resolved_text(payload: dict[str, Any]) -> tuple[str, str]:
    subject = f"[resolved] {payload.get('alertname', 'alert')} on {payload.get('service', '?')}"
    by = payload.get("resolved_by") or "its source"
    return subject, f"{subject}: resolved by {by} at {payload.get('resolved_at')}."


def delivery_of(row: dict[str, Any], config: NotifyConfig) -> Delivery:
    """The Delivery of an outbox row joined with its event."""
    payload, kind = row["payload"], row["kind"]
    if kind == "resolved":
        subject, text = _resolved_text(payload)
        html = f"<p>{_html(text)}</p>"
    else:
        subject, text, html = payload["subject"], payload["text"], payload["html"]
    return Delivery(
        key=row["idempotency_key"], incident_id=row["incident_id"], kind=kind, service=payload.get("service", "?"),
        severity=payload.get("severity"), subject=subject, text=text, html=html,
        link=config.link(row["incident_id"], payload.get("anchor", "")), incident=payload.get("incident") or {},
        images={cid: base64.b64decode(png) for cid, png in (payload.get("images") or {}).items()},
    )


def _html(text: str) -> str:
    from html import escape

    return escape(text)


class OutboxDispatcher:
    """Routes events and delivers messages; several dispatchers (replicas) can run side by side."""

    def __init__(self, pool: Any, config: NotifyConfig, *, max_attempts: int = 12, base_delay: float = 5.0,
                 max_delay: float = 900.0, lease_seconds: float = 120.0, batch: int = 20,
                 sinks: dict[str, Sink] | None = None):
        self.pool, self.config = pool, config
        self.max_attempts, self.base_delay, self.max_delay = max_attempts, base_delay, max_delay
        self.lease_seconds, self.batch = lease_seconds, batch
        self.sinks = sinks or SINKS
        self._task: asyncio.Task | None = None

    async def route(self) -> int:
        """Turn new events into messages for their channels; returns the number of messages created."""
        created = 0
        async with self.pool.connection() as conn:
            while True:
                async with conn.transaction():
                    cur = await conn.execute(
                        """SELECT id, incident_id, kind, payload FROM notification_events WHERE routed_at IS NULL
                           ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED""")
                    event = await cur.fetchone()
                    if event is None:
                        return created
                    created += await self._route_one(conn, event)
                    await conn.execute("UPDATE notification_events SET routed_at = now() WHERE id = %s",
                                       (event["id"],))

    async def _route_one(self, conn: Any, event: dict[str, Any]) -> int:
        payload = event["payload"]
        if event["kind"] == "resolved":  # only incidents people were told about are announced resolved
            cur = await conn.execute(
                """SELECT 1 FROM notification_events WHERE incident_id = %s AND kind <> 'resolved' LIMIT 1""",
                (event["incident_id"],))
            if await cur.fetchone() is None:
                return 0
        created = 0
        for channel in self.config.channels_for(payload.get("service", ""), payload.get("severity"), event["kind"]):
            cur = await conn.execute(
                """INSERT INTO notification_outbox (idempotency_key, event_id, incident_id, channel, kind)
                   VALUES (%s, %s, %s, %s, %s) ON CONFLICT (idempotency_key) DO NOTHING""",
                (idempotency_key(event["incident_id"], channel.name, event["kind"]), event["id"],
                 event["incident_id"], channel.name, event["kind"]))
            created += cur.rowcount
        return created

    async def deliver(self) -> int:
        """Send every due message once; returns how many were sent."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """UPDATE notification_outbox SET locked_until = now() + make_interval(secs => %s),
                          attempts = attempts + 1
                   WHERE id IN (SELECT id FROM notification_outbox
                                WHERE status = 'pending' AND next_attempt_at <= now()
                                  AND (locked_until IS NULL OR locked_until < now())
                                ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED)
                   RETURNING id""",
                (self.lease_seconds, self.batch))
            ids = [r["id"] for r in await cur.fetchall()]
            if not ids:
                return 0
            cur = await conn.execute(
                """SELECT o.*, e.payload FROM notification_outbox o JOIN notification_events e ON e.id = o.event_id
                   WHERE o.id = ANY(%s) ORDER BY o.id""", (ids,))
            rows = await cur.fetchall()
        sent = 0
        async with httpx.AsyncClient(timeout=30.0) as http:
            for row in rows:
                error = await self._send(row, http)
                if error is None:
                    await self._mark_sent(row["id"])
                    sent += 1
                else:
                    await self._mark_failed(row, error)
        return sent

    async def _send(self, row: dict[str, Any], http: httpx.AsyncClient) -> DeliveryError | None:
        channel = self.config.channels.get(row["channel"])
        if channel is None:
            return DeliveryError(f"channel {row['channel']} is no longer configured", retryable=False)
        try:
            await self.sinks[channel.type](delivery_of(row, self.config), channel, http)
        except DeliveryError as exc:
            return exc
        except Exception as exc:  # a missing secret, a bug: kept on the row, retried like a sink that is down
            return DeliveryError(f"{type(exc).__name__}: {exc}", retryable=True)
        return None

    async def _mark_sent(self, message_id: int) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                """UPDATE notification_outbox SET status = 'sent', sent_at = now(), locked_until = NULL,
                          last_error = NULL WHERE id = %s""", (message_id,))

    async def _mark_failed(self, row: dict[str, Any], error: DeliveryError) -> None:
        attempts = row["attempts"]
        give_up = not error.retryable or attempts >= self.max_attempts
        delay = min(self.max_delay, self.base_delay * 2 ** (attempts - 1)) * (1 + random.random() / 4)
        delay = max(delay, error.retry_after or 0.0)
        log.warning("notification %s attempt %d failed%s: %s", row["idempotency_key"], attempts,
                    " (giving up)" if give_up else f", retry in {delay:.0f}s", error)
        async with self.pool.connection() as conn:
            await conn.execute(
                """UPDATE notification_outbox SET status = %s, locked_until = NULL, last_error = %s,
                          next_attempt_at = now() + make_interval(secs => %s) WHERE id = %s""",
                ("failed" if give_up else "pending", str(error)[:1000], delay, row["id"]))

    async def run_once(self) -> int:
        """Route new events, then deliver what is due; returns how many messages were sent."""
        await self.route()
        return await self.deliver()

    async def run(self, poll_seconds: float = 2.0) -> None:
        """Dispatch until cancelled; an error (database restarting) is logged and the loop goes on."""
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except OperationalError as exc:  # the database away (no connection, one broken): expected, one line
                log.warning("notification dispatch waits for the database: %s", exc)
            except Exception:
                log.exception("notification dispatch failed")
            await asyncio.sleep(poll_seconds)

    def start(self, poll_seconds: float = 2.0) -> None:
        """Run in the background of the current event loop (the service's lifespan)."""
        self._task = asyncio.create_task(self.run(poll_seconds), name="notification-dispatcher")

    async def stop(self) -> None:
        """Stop; a message being sent is finished by the next start (its lease expires)."""
        if self._task is not None:
            await stop_task(self._task)
            self._task = None


async def pending_messages(pool: Any) -> int:
    """Messages not yet sent, and events not yet routed."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            """SELECT (SELECT count(*) FROM notification_outbox WHERE status = 'pending')
                    + (SELECT count(*) FROM notification_events WHERE routed_at IS NULL) AS n""")
        return (await cur.fetchone())["n"]


async def deliver_now(pool: Any, config: NotifyConfig, *, timeout: float = 20.0) -> int:
    """For the CLI: deliver what is due, retrying briefly; whatever is left stays in the outbox for the service."""
    dispatcher = OutboxDispatcher(pool, config, base_delay=1.0)
    sent, deadline = 0, asyncio.get_running_loop().time() + timeout
    while True:
        sent += await dispatcher.run_once()
        async with pool.connection() as conn:
            cur = await conn.execute(
                """SELECT min(next_attempt_at) AS due FROM notification_outbox WHERE status = 'pending'""")
            due: datetime | None = (await cur.fetchone())["due"]
            now = (await (await conn.execute("SELECT now() AS t")).fetchone())["t"]
        if due is None:
            return sent
        wait = max(0.0, (due - now).total_seconds())
        if asyncio.get_running_loop().time() + wait > deadline:
            return sent
        await asyncio.sleep(wait)
