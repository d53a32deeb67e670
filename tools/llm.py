"""LLM providers and the one structured-call helper every reasoning node uses.

Providers are built by langchain's `init_chat_model`: `google` (Gemini through langchain-google-genai), `openai` (any
OpenAI-compatible endpoint through langchain-openai: OpenAI, OpenRouter, vLLM, Ollama) and `offline` (no model; the
deterministic engine answers). One client per process, provider, model, endpoint and key; retries with backoff and a
timeout per call are ours, the same for every provider. The API key is handed to the client explicitly: the run
context's `llm_api_key` (a SecretStr the configuration fills from the environment, .env or the TOML file), else, for a
context built without the configuration (LangGraph Studio, an embedding app), the provider's environment variable.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import threading
from collections.abc import Collection, Mapping
from typing import Any, Literal, TypeVar

from pydantic import BaseModel

from analysis.guard import refused_instruction
from analysis.secrets import redact_value
from graph.context import LLM_PROVIDERS, ConfigError, Context
from prompts import render_prompt
from state import TokenUsage

Tier = Literal["reasoning", "fast"]
T = TypeVar("T", bound=BaseModel)
log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
# Names a provider's API accepts as a model: Gemini models by family, any "vendor/model:tag" on OpenAI-compatible hosts.
_MODEL_NAMES = {
    "google": re.compile(r"(?:models/)?(?:gemini|gemma|learnlm)-[a-z0-9.-]+"),
    "openai": re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@-]{0,127}"),
}
_API_KEYS = {"google": ("GOOGLE_API_KEY", "GEMINI_API_KEY"), "openai": ("OPENAI_API_KEY",)}
_INIT_PROVIDER = {"google": "google_genai", "openai": "openai"}
_clients: dict[tuple, Any] = {}
_clients_lock = threading.Lock()


def api_key(context: Context, env: Mapping[str, str] | None = None) -> str | None:
    """The run's API key: the context's, else the provider's variable in `env` (default: the process environment)."""
    if context.llm_api_key is not None and context.llm_api_key.get_secret_value():
        return context.llm_api_key.get_secret_value()
    env = os.environ if env is None else env
    return next((env[name] for name in _API_KEYS.get(context.llm_provider, ()) if env.get(name)), None)


def check_llm_settings(context: Context, env: Mapping[str, str] | None = None) -> None:
    """Raise ConfigError with a clear message when the run's LLM settings cannot work."""
    provider = context.llm_provider
    if provider not in LLM_PROVIDERS:
        raise ConfigError(f"unknown LLM provider {provider!r}: use one of {', '.join(LLM_PROVIDERS)}")
    if provider == "offline":
        return
    for tier, model in (("reasoning", context.reasoning_model), ("fast", context.fast_model)):
        if not _MODEL_NAMES[provider].fullmatch(model or ""):
            hint = " (Gemini models are named gemini-...)" if provider == "google" else ""
            raise ConfigError(f"{tier} model {model!r} is not a {provider} model name{hint}")
    base_url = context.llm_base_url
    if base_url is not None and not re.fullmatch(r"https?://[^\s/?#]+(?:/[^\s?#]*)?", base_url):
        raise ConfigError(f"LLM base URL {base_url!r} is not an http(s) URL")
    if provider == "google" and not api_key(context, env):
        raise ConfigError("LLM_PROVIDER=google needs GOOGLE_API_KEY (or GEMINI_API_KEY)")
    if provider == "openai" and not api_key(context, env) and base_url is None:
        raise ConfigError("LLM_PROVIDER=openai needs OPENAI_API_KEY, or LLM_BASE_URL for a local server")
    if context.llm_timeout_seconds <= 0 or context.llm_max_attempts < 1:
        raise ConfigError("LLM timeout must be positive and attempts at least 1")


def chat_model(context: Context, tier: Tier) -> Any | None:
    """The chat model for a tier, or None when the run is offline; one instance per process and settings."""
    if tier in context.chat_models:
        return context.chat_models[tier]
    if context.llm_provider == "offline":
        return None
    check_llm_settings(context)
    model = context.reasoning_model if tier == "reasoning" else context.fast_model
    secret = api_key(context)
    key = (context.llm_provider, model, context.llm_base_url, context.llm_timeout_seconds, secret)
    with _clients_lock:
        if key not in _clients:
            _clients[key] = _build(context.llm_provider, model, context.llm_base_url, context.llm_timeout_seconds,
                                   secret)
        return _clients[key]


def _build(provider: str, model: str, base_url: str | None, timeout: float, secret: str | None) -> Any:
    """A provider's own client class through init_chat_model, given its key, its built-in retries off (ours apply)."""
    from langchain.chat_models import init_chat_model

    if provider == "google":
        # max_retries=1 is one attempt in the Google SDK (0 would mean its own default)
        return init_chat_model(f"google_genai:{model}", temperature=0, max_retries=1, timeout=timeout,
                               base_url=base_url, google_api_key=secret)
    # a local server (Ollama, vLLM) takes any key; the client insists on one
    return init_chat_model(f"openai:{model}", temperature=0, max_retries=0, timeout=timeout, base_url=base_url,
                           api_key=secret or "no-key")


def _usage(message: Any) -> TokenUsage:
    meta = getattr(message, "usage_metadata", None) or {}
    return TokenUsage(input=int(meta.get("input_tokens", 0)), output=int(meta.get("output_tokens", 0)), calls=1)


def _status(exc: BaseException) -> int | None:
    """The HTTP status behind a provider error (openai: status_code; google-genai: code, under langchain's wrapper)."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            break
        for name in ("status_code", "code"):
            value = getattr(seen, name, None)
            if isinstance(value, int):
                return value
        seen = seen.__cause__ or seen.__context__
    return None


def _malformed(exc: BaseException) -> bool:
    """An answer that came back but does not fit the schema (some clients raise instead of returning it)."""
    return type(exc).__name__ in ("ValidationError", "OutputParserException", "JSONDecodeError")


def is_retryable(exc: BaseException) -> bool:
    """Rate limits, server errors and lost connections are retried; a timeout or a refusal is not."""
    status = _status(exc)
    if status is not None:
        return status in RETRYABLE_STATUS
    return any(kind in type(exc).__name__ for kind in ("Connection", "RemoteProtocol", "ReadError"))


def estimate_tokens(text: str) -> int:
    """A provider-neutral estimate (about four characters a token) for budget decisions before a call."""
    return len(text) // 4 + 1


def spent_tokens(tokens: Mapping[str, TokenUsage] | None) -> int:
    """Tokens in and out used so far by an incident."""
    return sum(t.input + t.output for t in (tokens or {}).values())


async def structured_call(
    context: Context, tier: Tier, schema: type[T], prompt: str, *, spent: int = 0, verbatim: Collection[str] = (),
    **variables: str
) -> tuple[T | None, TokenUsage | None, str | None]:
    """Ask the tier's model for `schema` with a prompt file; returns (result, usage, error), never raises.

    (None, None, None) means no model is configured: the caller keeps its deterministic result. `spent` is the
    incident's token count so far: no call is made that the per-incident budget cannot pay for. The answer comes back
    redacted, but for the `verbatim` fields: code the run would write as it is (the patch checks refuse a secret in
    it; a redaction marker would corrupt it).
    """
    try:
        model = chat_model(context, tier)
    except Exception as exc:  # a misconfigured provider must not stop the run: the rules' answer stands
        return None, None, f"LLM unavailable: {type(exc).__name__}: {str(exc)[:300]}"
    if model is None:
        return None, None, None
    messages = render_prompt(prompt, **variables)
    needed = sum(estimate_tokens(str(m.content)) for m in messages)
    if context.token_budget and spent + needed > context.token_budget:
        return None, None, (f"token budget spent: {spent} of {context.token_budget} tokens used, this call needs "
                            f"about {needed}; the rules' answer stands")
    runnable = model.with_structured_output(schema, include_raw=True)
    for attempt in range(1, context.llm_max_attempts + 1):
        try:
            out = await asyncio.wait_for(runnable.ainvoke(messages), timeout=context.llm_timeout_seconds)
            break
        except TimeoutError:
            return None, None, f"LLM call timed out after {context.llm_timeout_seconds:g}s"
        except Exception as exc:  # any provider failure falls back to the deterministic result
            if _malformed(exc):
                return None, None, f"LLM answer did not match {schema.__name__}: {str(exc)[:300]}"
            if attempt < context.llm_max_attempts and is_retryable(exc):
                delay = context.llm_backoff_seconds * 2 ** (attempt - 1) * (1 + random.random() / 2)
                log.info("LLM call for %s failed (%s), retry %d in %.2fs", prompt, exc, attempt, delay)
                await asyncio.sleep(delay)
                continue
            log.warning("LLM call for %s failed: %s", prompt, exc)
            tries = f" after {attempt} attempts" if attempt > 1 else ""
            return None, None, f"LLM call failed{tries}: {type(exc).__name__}: {str(exc)[:300]}"
    usage = _usage(out.get("raw"))
    parsed = out.get("parsed")
    if out.get("parsing_error") is not None or parsed is None:
        return None, usage, f"LLM answer did not match {schema.__name__}: {str(out.get('parsing_error'))[:300]}"
    if isinstance(parsed, dict):
        parsed = schema.model_validate(parsed)
    # a model can repeat a secret (from training or a leak upstream): its words are never kept with it
    parsed = parsed.model_copy(update={name: redact_value(getattr(parsed, name))
                                       for name in type(parsed).model_fields if name not in verbatim})
    reason = refused_instruction(*_strings(parsed.model_dump()))
    if reason is not None:  # an answer that took an instruction from the data is not used at all
        return None, usage, f"LLM answer refused ({reason}); the rules' answer stands"
    return parsed, usage, None


def _strings(value: Any) -> list[str]:
    """Every string inside plain data."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return []
