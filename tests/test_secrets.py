"""The one secret detector: every format redacted, nothing else touched, the same table in the patch checks."""

from __future__ import annotations

import pytest

from analysis.patch_checks import check_patch
from analysis.secrets import SECRET_PATTERNS, find_secrets, redact_value
from state import Hypothesis
from tests.secret_corpus import FORMATS, leaked, planted_secrets
from tools.redact import redact

PLANTED = planted_secrets(100)


@pytest.mark.parametrize("kind", FORMATS)
def test_every_format_is_redacted(kind):
    for planted in (p for p in PLANTED if p.kind == kind):
        out = redact(planted.text)
        assert planted.secret not in out, out
        assert "[REDACTED:" in out


def test_a_hundred_planted_secrets_leave_nothing():
    assert len(PLANTED) == 100 and len({p.secret for p in PLANTED}) == 100
    assert leaked(PLANTED, *(redact(p.text) for p in PLANTED)) == []
    joined = "\n".join(p.text for p in PLANTED)  # also when they all sit in one text
    assert leaked(PLANTED, redact(joined)) == []


def test_redaction_keeps_the_context_and_is_idempotent():
    text = "login failed for admin password=hunter22 from 10.0.0.7"
    once = redact(text)
    assert once == "login failed for admin password=[REDACTED:credential] from 10.0.0.7"
    assert redact(once) == once
    assert redact("Authorization: Basic dXNlcjpwYXNz") == "Authorization: Basic [REDACTED:authorization-header]"


@pytest.mark.parametrize(
    "text",
    [
        "GET /api/orders 200 in 35ms",
        "token bucket refilled: 40 tokens",
        "password reset requested for user 42",
        "the basic plan is used by 3 tenants",
        "connecting to postgresql://db.internal:5432/shop",
        "DSN = postgresql://app:${DB_PASSWORD}@db/shop",
        "api_key=<redacted> secret=*** token=$TOKEN",
        "KeyError: 'currency' in checkout/cart.py line 88",
    ],
)
def test_ordinary_text_is_left_alone(text):
    assert redact(text) == text


def test_an_unterminated_key_inside_json_keeps_the_json():
    import json

    body = json.dumps({"msg": "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk=\nAAAA", "level": "error"})
    out = json.loads(redact(body))
    assert out["level"] == "error" and "b3BlbnNzaC1rZXk" not in out["msg"]


def test_emails_only_when_asked():
    assert redact("page oncall@example.com") == "page oncall@example.com"
    assert redact("page oncall@example.com", emails=True) == "page [REDACTED:email]"


def test_redact_value_walks_models_and_containers():
    h = Hypothesis(service="api", fault_type="config_error", confidence=0.5, evidence=["password=hunter22x"])
    out = redact_value({"h": [h], "t": ("Bearer abcdefghijklmnop",), "n": 3})
    assert out["h"][0].evidence == ["password=[REDACTED:credential]"] and isinstance(out["h"][0], Hypothesis)
    assert out["t"] == ("Bearer [REDACTED:bearer-token]",) and out["n"] == 3


ROW_EXAMPLES = {
    "private-key": "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIIrYSSNQFaA2Hwf1duRSxKtLYX5CB04fSeQ6tF1aY/PuoAoGCCqGSM49",
    "aws-access-key-id": "AKIAIOSFODNN7EXAMPLE",
    "github-token": "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuv",
    "gitlab-token": "glpat-xxxxxxxxxxxxxxxxxxxx",
    "slack-token": "xoxp-1234567890-abcdefghij",
    "slack-webhook": "https://hooks.slack.com/services/T0000000/B0000000/XXXXXXXXXXXXXXXXXXXXXXXX",
    "google-api-key": "AIzaSyA1234567890abcdefghijklmnopqrstuv",
    "google-oauth-token": "ya29.a0AfH6SMBx1234567890abcdefghij",
    "api-secret-key": "sk-ant-api03-abcdefghijklmnopqrstuvwx",
    "stripe-key": "whsec_abcdefghijklmnopqrstuvwx",
    "npm-token": "npm_abcdefghijklmnopqrstuvwxyz0123456789",
    "pypi-token": "pypi-AgEIcHlwaS5vcmc" + "a" * 50,
    "sendgrid-key": "SG.abcdefghijklmnopqrstuv.abcdefghijklmnopqrstuvwxyz0123456789abcdefg",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "authorization-header": "Proxy-Authorization: Digest abcdef123456",
    "bearer-token": "curl -H 'x: Bearer abcdefghijklmnop'",
    "url-credentials": "amqp://guest:guestpass@rabbit:5672/",
    "credential": "secret_key = 'abcdef'",
}


def test_every_row_of_the_table_has_a_working_example():
    assert set(ROW_EXAMPLES) == {r.name for r in SECRET_PATTERNS}
    for name, text in ROW_EXAMPLES.items():
        assert name in {f.name for f in find_secrets(text)}, name


@pytest.mark.parametrize("planted", PLANTED[:21], ids=lambda p: p.kind)
def test_patch_checks_use_the_same_detector(planted):
    """check_patch refuses an added line exactly when the detector, in its source-code mode, finds a secret."""
    lines = planted.text.splitlines()
    diff = ("diff --git a/s.txt b/s.txt\n--- a/s.txt\n+++ b/s.txt\n"
            f"@@ -1 +1,{len(lines) + 1} @@\n x = 1\n" + "".join(f"+{line}\n" for line in lines))
    check = {c.name: c for c in check_patch(diff)}["no_secrets"]
    expected = any(find_secrets(line, code=True) for line in lines)
    assert check.ok is not expected and planted.secret not in check.detail


def test_analysis_imports_no_adapter():
    """analysis/ is pure: it may import state and itself, never tools, nodes, graph, web or the service."""
    import ast
    from pathlib import Path

    upper = {"tools", "nodes", "graph", "web", "service", "server", "cli"}
    for path in Path(__file__).resolve().parent.parent.joinpath("analysis").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not {n.split(".")[0] for n in names} & upper, f"{path.name} imports {names}"
