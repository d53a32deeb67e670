"""The email both mail sinks send: plain text and HTML with its chart images inline (multipart/alternative, the
HTML in multipart/related with each PNG by Content-ID, which mail clients show where they show no SVG), with a
Message-ID derived from the idempotency key."""

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
    html = msg.get_payload()[1]
    for cid, png in delivery.images.items():
        html.add_related(png, "image", "png", cid=f"<{cid}>", disposition="inline", filename=cid.split("@")[0] + ".png")
    if delivery.images:
        html.set_param("type", "text/html")  # RFC 2387: the root part's type
    return msg
