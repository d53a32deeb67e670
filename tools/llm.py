"""LLM providers and the one structured-call helper every reasoning node uses."""

from __future__ import annotations

import logging
from typing import Any, Literal, TypeVar

from pydantic import BaseModel

from graph.context import Context
from prompts import render_prompt
from state import TokenUsage

Tier = Literal["reasoning", "fast"]
T = TypeVar("T", bound=BaseModel)
log = logging.getLogger(__name__)


def chat_model(context: Context, tier: Tier) -> Any | None:
    """The chat model for a tier, or None when the run is offline."""
    if tier in context.chat_models:
        return context.chat_models[tier]
    if context.llm_provider == "offline":
        return None
    model_name = context.reasoning_model if tier == "reasoning" else context.fast_model
    if context.llm_provider == "google":
        from langchain_google_genai import ChatGoogleGenerativeAI

        return ChatGoogleGenerativeAI(model=model_name, temperature=0, max_retries=1, timeout=60)
    raise ValueError(f"unsupported LLM provider {context.llm_provider!r}")


def _usage(message: Any) -> TokenUsage:
    meta = getattr(message, "usage_metadata", None) or {}
    return TokenUsage(input=int(meta.get("input_tokens", 0)), output=int(meta.get("output_tokens", 0)), calls=1)


async def structured_call(
    context: Context, tier: Tier, schema: type[T], prompt: str, **variables: str
) -> tuple[T | None, TokenUsage | None, str | None]:
    """Ask the tier's model for `schema` with a prompt file; returns (result, usage, error), never raises.

    (None, None, None) means no model is configured: the caller keeps its deterministic result.
    """
    try:
        model = chat_model(context, tier)
    except Exception as exc:  # a misconfigured provider must not stop the run: the rules' answer stands
        return None, None, f"LLM unavailable: {type(exc).__name__}: {str(exc)[:300]}"
    if model is None:
        return None, None, None
    messages = render_prompt(prompt, **variables)
    try:
        runnable = model.with_structured_output(schema, include_raw=True)
        out = await runnable.ainvoke(messages)
    except Exception as exc:  # any provider failure falls back to the deterministic result
        log.warning("LLM call for %s failed: %s", prompt, exc)
        return None, None, f"LLM call failed: {type(exc).__name__}: {str(exc)[:300]}"
    usage = _usage(out.get("raw"))
    parsed = out.get("parsed")
    if out.get("parsing_error") is not None or parsed is None:
        return None, usage, f"LLM answer did not match {schema.__name__}: {str(out.get('parsing_error'))[:300]}"
    if isinstance(parsed, dict):
        parsed = schema.model_validate(parsed)
    return parsed, usage, None
