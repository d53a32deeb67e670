"""Planted secrets of every format issue 9 names, each a unique random value inside the text that carries it."""

from __future__ import annotations

import base64
import random
import string
from dataclasses import dataclass

ALNUM = string.ascii_letters + string.digits


@dataclass(frozen=True)
class Planted:
    """One secret: its format, the secret value itself, and a text that carries it (a log line, a header...)."""

    kind: str
    secret: str
    text: str


def _r(rng: random.Random, n: int, alphabet: str = ALNUM) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _formats(rng: random.Random) -> list[tuple[str, str, str]]:
    """(kind, secret, carrier text) for each format, with fresh random values."""
    pw = _r(rng, 14)
    b64 = base64.b64encode(f"svc:{_r(rng, 12)}".encode()).decode()
    key_body = _r(rng, 64, ALNUM + "+/")
    jwt = "eyJ" + _r(rng, 20) + ".eyJ" + _r(rng, 30) + "." + _r(rng, 30, ALNUM + "_-")
    return [
        ("password=", pw, f"login failed for admin password={pw} from 10.0.0.7"),
        ("DB_PASSWORD=", (v := _r(rng, 16)), f"DB_PASSWORD={v}"),
        ("db_password:", (v := _r(rng, 16)), f"config loaded db_password: {v}"),
        ("AWS_SECRET_ACCESS_KEY=", (v := _r(rng, 40, ALNUM + "/+")), f"export AWS_SECRET_ACCESS_KEY={v}"),
        ("client_secret=", (v := _r(rng, 24)), f"POST /oauth/token grant_type=client_credentials&client_secret={v}"),
        ("PGPASSWORD=", (v := _r(rng, 15)), f"running PGPASSWORD={v} psql -h db -U app"),
        ("Authorization: Basic", b64, f"upstream rejected request, Authorization: Basic {b64}"),
        ("redis://:pw@", (v := _r(rng, 18)), f"cache unreachable: redis://:{v}@cache-0.internal:6379/0"),
        ("sk-proj-", (v := "sk-proj-" + _r(rng, 40, ALNUM + "_-")), f"OPENAI_KEY loaded {v}"),
        ("sk_live_", (v := "sk_live_" + _r(rng, 24)), f"stripe client init key {v}"),
        ("glpat-", (v := "glpat-" + _r(rng, 20, ALNUM + "_-")), f"git clone https://ci:{v}@gitlab.example/x.git"),
        ("openssh-private-key", key_body,
         f"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA{key_body}\n{_r(rng, 64)}"),
        ("AKIA", (v := "AKIA" + _r(rng, 16, string.ascii_uppercase + string.digits)), f"s3 upload as {v} denied"),
        ("Bearer", (v := _r(rng, 32, ALNUM + "._-")), f"401 for Bearer {v}"),
        ("ghp_", (v := "ghp_" + _r(rng, 36)), f"GITHUB_TOKEN {v} rate limited"),
        ("xoxb-", (v := "xoxb-" + _r(rng, 10, string.digits) + "-" + _r(rng, 24)), f"slack post with {v}"),
        ("AIza", (v := "AIza" + _r(rng, 35, ALNUM + "_-")), f"maps call key={v}"),
        ("jwt", jwt, f"session {jwt} expired"),
        ("postgres-url", (v := _r(rng, 14)), f"connect postgresql://app:{v}@db.internal:5432/shop failed"),
        ("json api_key", (v := _r(rng, 20)), f'payload {{"api_key": "{v}", "retry": 3}}'),
        ("rsa-private-key", key_body[::-1],
         f"-----BEGIN RSA PRIVATE KEY-----\n{key_body[::-1]}\n-----END RSA PRIVATE KEY-----"),
    ]


def planted_secrets(n: int = 100, seed: int = 9) -> list[Planted]:
    """`n` planted secrets cycling through every format, all values distinct."""
    rng = random.Random(seed)
    out: list[Planted] = []
    while len(out) < n:
        for kind, secret, text in _formats(rng):
            if len(out) < n:
                out.append(Planted(kind, secret, text))
    return out


FORMATS = sorted({p.kind for p in planted_secrets(21)})


def leaked(planted: list[Planted], *texts: str) -> list[Planted]:
    """The planted secrets that appear in any of `texts`."""
    blob = "\n".join(texts)
    return [p for p in planted if p.secret in blob]
