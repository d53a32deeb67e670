"""Prompt templates kept as files; the system part sits above a line `---` and the user part below it."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from langchain_core.messages import HumanMessage, SystemMessage

_DIR = Path(__file__).parent


@cache
def _load(name: str) -> tuple[str, str]:
    text = (_DIR / f"{name}.md").read_text()
    system, _, user = text.partition("\n---\n")
    guard = (_DIR / "_guard.md").read_text()
    return f"{system.strip()}\n\n{guard.strip()}", user.strip()


def render_prompt(name: str, **variables: str) -> list:
    """System and user messages of prompt `name`, with `{variables}` filled in the user part."""
    system, user = _load(name)
    return [SystemMessage(system), HumanMessage(user.format(**variables))]
