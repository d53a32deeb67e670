"""Prompt templates kept as files; the system part sits above a line `---` and the user part below it.

Every variable is untrusted data (telemetry, code, diffs): it is redacted here, whatever the caller did, and put in
a data block whose tags carry a random id made for this call, `<evidence-3f9a1c0d>...</evidence-3f9a1c0d>`: text
inside the data cannot guess the id, so it cannot close the block, and tags that look like ours are defused as well.
"""

from __future__ import annotations

import re
import secrets
from functools import cache
from pathlib import Path

from langchain_core.messages import HumanMessage, SystemMessage

from analysis.secrets import redact

_DIR = Path(__file__).parent


@cache
def _load(name: str) -> tuple[str, str]:
    text = (_DIR / f"{name}.md").read_text()
    system, _, user = text.partition("\n---\n")
    guard = (_DIR / "_guard.md").read_text()
    return f"{system.strip()}\n\n{guard.strip()}", user.strip()


def data_block(kind: str, text: str, tag_id: str) -> str:
    """`text` as a delimited data block that nothing inside it can close (look-alike tags are defused too)."""
    lookalike = re.compile(rf"<(?=\s*/?\s*(?:{re.escape(kind)}|evidence|code|diff|data)\b)", re.I)
    return f"<{kind}-{tag_id}>\n{lookalike.sub('&lt;', text)}\n</{kind}-{tag_id}>"


def render_prompt(name: str, **variables: str) -> list:
    """System and user messages of prompt `name`, each variable redacted and in its own data block."""
    system, user = _load(name)
    tag_id = secrets.token_hex(4)
    blocks = {key: data_block(key, redact(value), tag_id) for key, value in variables.items()}
    return [SystemMessage(system.replace("{id}", tag_id)), HumanMessage(user.format(**blocks))]
