"""What a model answer may ask for: the kinds of mitigation a run may propose, and instructions no answer may carry.

A model reads untrusted telemetry and code; an answer that took an instruction from them (send a key somewhere,
open a pull request that removes authentication, disable a safety check) is refused, whatever the wording around it.
"""

from __future__ import annotations

import re

ALLOWED_ACTIONS: dict[str, str] = {
    "rollback": "roll back a deploy or a configuration change",
    "restart": "restart or recycle instances of a service",
    "scale": "add replicas or resources",
    "failover": "move traffic to a healthy replica, zone or dependency",
    "traffic": "shed, rate-limit or reroute load; toggle a feature flag",
    "config": "correct a configuration value",
    "capacity": "free or add disk, memory or connection capacity",
    "certificate": "renew or replace a certificate",
    "investigate": "read-only diagnosis: logs, metrics, traces, dumps",
}
_SECRET_WORDS = (
    r"(?:api[ _-]?keys?|keys?|tokens?|secrets?|passwords?|credentials?|private keys?|\.env|env(?:ironment)? vars?)"
)
# (name, pattern): instructions an answer must never carry, whichever part of the answer they are in
REFUSED_INSTRUCTIONS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("sends secrets out",
     re.compile(r"(?i)\b(?:e-?mail|send|post(?!\s+/)|upload|share|forward|paste|exfiltrate|leak|print|reveal|disclose)\b"
                r"[^.\n]{0,60}\b" + _SECRET_WORDS + r"\b")),
    ("sends data to an address", re.compile(r"(?i)\b(?:e-?mail|send|forward)\b[^.\n]{0,80}\bto\s+\S+@\S+")),
    ("weakens authentication or safety checks",
     re.compile(r"(?i)\b(?:delet|remov|disabl|bypass|skip|turn(?:ing)? off|drop|strip)\w*\s+"
                r"(?:the\s+|all\s+)?(?:\S+\s+){0,2}"
                r"(?:auth(?:entication|orization|n|z)?|login|access control|permissions?|approvals?|approval gate"
                r"|safety checks?|firewall|tls|mfa|2fa|rbac)\b")),
    ("follows instructions found in the data",
     re.compile(r"(?i)\b(?:ignore|disregard|forget)\b[^.\n]{0,30}\b(?:previous|prior|above|earlier|all)\b"
                r"[^.\n]{0,20}\b(?:instructions?|rules|prompts?)\b")),
    ("merges or pushes without review",
     re.compile(r"(?i)\b(?:merge|push)\b[^.\n]{0,40}\b(?:without (?:review|approval)|directly to (?:main|master))")),
)


def refused_instruction(*texts: str | None) -> str | None:
    """Why a model answer's text must be refused, or None when it carries no forbidden instruction."""
    for text in texts:
        for reason, pattern in REFUSED_INSTRUCTIONS:
            if text and pattern.search(text):
                return reason
    return None


def refused_action(kind: str, *texts: str | None) -> str | None:
    """Why a proposed mitigation is refused: a kind outside ALLOWED_ACTIONS, or a forbidden instruction."""
    if kind not in ALLOWED_ACTIONS:
        return f"action kind {kind!r} is not one a run may propose ({', '.join(ALLOWED_ACTIONS)})"
    return refused_instruction(*texts)
