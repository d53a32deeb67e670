"""The email both mail sinks send: multipart text and HTML, with a Message-ID derived from the idempotency key."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate

from tools.notify.delivery import Delivery


def build_email(delivery: Delivery, sender: str, recipients: list[str]) -> EmailMessage:
    """The MIME message of a delivery."""
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, ", ".join(recipients), delivery.subject
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = delivery.message_id
    msg["X-Incident-Copilot-Incident"] = delivery.incident_id
    msg["X-Incident-Copilot-Key"] = delivery.key
    msg.set_content(delivery.text)
    msg.add_alternative(delivery.html, subtype="html")
    return msg
