"""Redaction before text leaves the process: an LLM prompt, a notification, a PR body, a page or an API answer.

The detector itself is analysis/secrets.py (pure, shared with the patch checks); this is where adapters take it.
"""

from __future__ import annotations

from analysis.secrets import find_secrets, redact, redact_value

__all__ = ["find_secrets", "redact", "redact_value"]
