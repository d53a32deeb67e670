"""SMTP sink: STARTTLS (or implicit TLS) and AUTH, HTML + plain-text email."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from typing import Any

from tools.notify.config import Channel
from tools.notify.delivery import Delivery, DeliveryError
from tools.notify.email_message import build_email


def _send(delivery: Delivery, channel: Channel) -> None:
    s = channel.settings
    security = s.get("security", "starttls")
    context = ssl.create_default_context(cafile=s.get("ca_file"))
    port = int(s.get("port", 465 if security == "tls" else 587))
    timeout = float(s.get("timeout", 30))
    msg = build_email(delivery, s["from"], list(s["to"]))
    client: Any = (smtplib.SMTP_SSL(s["host"], port, timeout=timeout, context=context) if security == "tls"
                   else smtplib.SMTP(s["host"], port, timeout=timeout))
    with client:
        client.ehlo()
        if security == "starttls":
            client.starttls(context=context)
            client.ehlo()
        if s.get("username"):
            client.login(s["username"], channel.secret("password"))
        client.send_message(msg)


async def send(delivery: Delivery, channel: Channel, http: Any = None) -> None:
    """Send the email; 4xx replies and lost connections are retried, 5xx replies and bad credentials are not."""
    try:
        await asyncio.to_thread(_send, delivery, channel)
    except smtplib.SMTPAuthenticationError as exc:
        raise DeliveryError(f"smtp: authentication refused ({exc.smtp_code})", retryable=False) from exc
    except smtplib.SMTPResponseException as exc:
        raise DeliveryError(f"smtp: {exc.smtp_code} {exc.smtp_error!r}", retryable=400 <= exc.smtp_code < 500) from exc
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        raise DeliveryError(f"smtp: recipients refused {codes}", retryable=all(400 <= c < 500 for c in codes)) from exc
    except (OSError, smtplib.SMTPException) as exc:  # refused, reset, timed out, TLS failure, disconnected
        raise DeliveryError(f"smtp unreachable: {type(exc).__name__}: {exc}", retryable=True) from exc
