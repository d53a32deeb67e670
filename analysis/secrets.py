"""The one secret detector: a table of named patterns, used to redact text and to refuse patches that add secrets.

Pure (text in, findings out), so the evidence engine, the adapters and the patch checks share it. Each row names
the secret it finds, the text it must contain before its pattern is tried (a cheap filter: most log lines hold
none of them), and whether it also counts in source code, where `password=config.password` is a reference, not a
secret: in code only quoted literals and `.env`-style assignments of credentials count.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# A value that only stands for a secret: a variable, a template, a mask, or an earlier redaction.
_PLACEHOLDER = r"(?!\$|<|\{|%\(|\*\*\*|\[REDACTED)"
# Key names that hold credentials: password, DB_PASSWORD, db_password, client_secret, AWS_SECRET_ACCESS_KEY, ...
_CREDENTIAL_KEY = (
    r"[\w.-]*(?:passw(?:or)?d|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key|accountkey"
    r"|credentials?|auth[_-]?key)[\w.-]*"
)
_KEY_HINTS = ("pass", "pwd", "secret", "token", "key", "credential")


@dataclass(frozen=True)
class SecretPattern:
    """One kind of secret: its pattern (the secret is the group `secret`, else the whole match)."""

    name: str
    pattern: re.Pattern[str]
    hints: tuple[str, ...]
    """Lower-case strings one of which the text must contain for the pattern to be tried."""
    in_code: bool = True
    """Also a secret in source code (False: only in logs and prose, where a bare value is a literal)."""


def _row(name: str, pattern: str, hints: tuple[str, ...], *, in_code: bool = True, flags: int = 0) -> SecretPattern:
    return SecretPattern(name, re.compile(pattern, flags), hints, in_code)


SECRET_PATTERNS: tuple[SecretPattern, ...] = (
    # a PEM or OpenSSH private key, with its body; an unterminated one up to where base64 ends
    _row(
        "private-key",
        r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----(?:.*?-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"
        r"|(?:[A-Za-z0-9+/=\s]|\\[nr]|(?:Proc-Type|DEK-Info|Comment):[^\n\\]*)*)",
        ("-----begin",),
        flags=re.S,
    ),
    _row("aws-access-key-id", r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b", ("akia", "asia", "abia", "acca")),
    _row("github-token", r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,})", ("gh", "github_pat_")),
    _row("gitlab-token", r"\bgl(?:pat|dt|rt|ptt|cbt|oas|ft|imt)-[A-Za-z0-9_-]{20,}", ("gl",)),
    _row("slack-token", r"\bxox[abposre]-[A-Za-z0-9-]{10,}", ("xox",)),
    _row("slack-webhook", r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9/_-]{20,}",
         ("hooks.slack.com",)),
    _row("google-api-key", r"\bAIza[0-9A-Za-z_-]{35}", ("aiza",)),
    _row("google-oauth-token", r"\bya29\.[0-9A-Za-z_-]{20,}|(?<![\w/])1//[0-9A-Za-z_-]{30,}", ("ya29.", "1//")),
    _row("api-secret-key", r"\bsk-(?:proj-|svcacct-|admin-|ant-(?:api\d+-)?|or-v1-)?[A-Za-z0-9_-]{20,}", ("sk-",)),
    _row("stripe-key", r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}|\bwhsec_[A-Za-z0-9]{20,}",
         ("sk_live", "sk_test", "rk_live", "rk_test", "whsec_")),
    _row("npm-token", r"\bnpm_[A-Za-z0-9]{36}\b", ("npm_",)),
    _row("pypi-token", r"\bpypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{40,}", ("pypi-",)),
    _row("sendgrid-key", r"\bSG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{20,}", ("sg.",)),
    _row("jwt", r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}", ("eyj",)),
    # Authorization: Basic/Bearer/Token/Digest <credential>, and a bare "Bearer <token>"
    _row(
        "authorization-header",
        r"(?i)\b(?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?(?:(?:basic|bearer|token|digest|negotiate)\s+)?"
        + _PLACEHOLDER + r"(?P<secret>[^\s\"',;]{6,})",
        ("authorization",),
    ),
    _row("bearer-token", r"(?i)\bbearer\s+" + _PLACEHOLDER + r"(?P<secret>[A-Za-z0-9._~+/=-]{12,})", ("bearer",)),
    # scheme://user:password@host, and redis://:password@host
    _row(
        "url-credentials",
        r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@'\"]*:" + _PLACEHOLDER + r"(?P<secret>[^\s@/'\"]+)@",
        ("://",),
    ),
    # password: "x", "api_key": "x", client_secret='x' (quoted: a literal, in code too)
    _row(
        "credential",
        r"(?i)(?<![\w-])" + _CREDENTIAL_KEY + r"\\?[\"']?\s*(?:=|:|=>)\s*\\?(?P<quote>[\"'])" + _PLACEHOLDER
        + r"(?P<secret>[^\"'\n\\]{3,}?)\\?(?P=quote)",
        _KEY_HINTS,
    ),
    # DB_PASSWORD=x, export PGPASSWORD=x: a .env line or a shell assignment (in code too)
    _row(
        "credential",
        r"(?m)(?:^|(?<=\s))(?:export\s+)?[A-Z0-9_]*(?:PASSWORD|PASSWD|SECRET|TOKEN|API_KEY|ACCESS_KEY|PRIVATE_KEY)"
        r"[A-Z0-9_]*=" + _PLACEHOLDER + r"(?P<secret>[^\s\"']{3,})",
        ("pass", "secret", "token", "key"),
    ),
    # password=x, db_password: x, --password=x (bare: a literal in logs, a reference in code)
    _row(
        "credential",
        r"(?i)(?<![\w-])-{0,2}" + _CREDENTIAL_KEY + r"[\"']?\s*(?:=|:|=>)\s*" + _PLACEHOLDER
        + r"(?P<secret>[^\s\"',;&()\[\]{}<>]{3,})(?=[\s\"',;&)\]}]|$)",
        _KEY_HINTS,
        in_code=False,
    ),
)
# Any row's hint: a text containing none of them (most texts) is matched against no row's pattern. One search of
# the lower-cased text instead of a substring test per hint, on every one of the thousands of strings a brief holds.
_ANY_HINT = re.compile("|".join(sorted({re.escape(h) for row in SECRET_PATTERNS for h in row.hints})))
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")


@dataclass(frozen=True)
class Finding:
    """A secret found in a text: which kind, and where ([start, end) of the secret itself)."""

    name: str
    start: int
    end: int


def find_secrets(text: str, *, code: bool = False, emails: bool = False) -> list[Finding]:
    """Every secret in `text`, in order, overlapping finds merged; code=True applies the source-code rows only."""
    lower = text.lower()
    found: list[Finding] = []
    for row in SECRET_PATTERNS if _ANY_HINT.search(lower) else ():
        if (code and not row.in_code) or not any(h in lower for h in row.hints):
            continue
        for match in row.pattern.finditer(text):
            group = "secret" if "secret" in row.pattern.groupindex else 0
            start, end = match.span(group)
            if end > start:
                found.append(Finding(row.name, start, end))
    if emails and "@" in text:
        found += [Finding("email", m.start(), m.end()) for m in _EMAIL.finditer(text)]
    found.sort(key=lambda f: (f.start, -f.end))
    merged: list[Finding] = []
    for f in found:
        if merged and f.start < merged[-1].end:
            last = merged[-1]
            merged[-1] = Finding(last.name, last.start, max(last.end, f.end))
        else:
            merged.append(f)
    return merged


def redact(text: str, *, emails: bool = False) -> str:
    """`text` with every secret replaced by `[REDACTED:<kind>]`; applying it twice changes nothing more."""
    findings = find_secrets(text, emails=emails)
    for f in reversed(findings):
        text = f"{text[: f.start]}[REDACTED:{f.name}]{text[f.end :]}"
    return text


def redact_value(value: Any, *, emails: bool = False) -> Any:
    """Redact every string inside plain data (dicts, lists, tuples) and pydantic models, keeping their types."""
    if isinstance(value, str):
        return redact(value, emails=emails)
    if isinstance(value, dict):
        return {k: redact_value(v, emails=emails) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_value(v, emails=emails) for v in value]
    if isinstance(value, tuple):
        return tuple(redact_value(v, emails=emails) for v in value)
    if hasattr(value, "model_copy") and hasattr(type(value), "model_fields"):
        updates = {name: redact_value(getattr(value, name), emails=emails) for name in type(value).model_fields}
        return value.model_copy(update=updates)
    return value
