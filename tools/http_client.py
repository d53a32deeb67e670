"""Shared HTTP plumbing of the telemetry connectors: credentials, retries with backoff, one error type."""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import random
import ssl
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Self

import httpx

from tools.telemetry_config import HttpConfig

USER_AGENT = "incident-copilot"


class BackendError(RuntimeError):
    """A query that failed for good; the message names the backend, the HTTP status and the query."""

    def __init__(self, backend: str, query: str, status: int | None, detail: str) -> None:
        self.backend, self.query, self.status, self.detail = backend, query, status, detail
        outcome = f"HTTP {status}" if status is not None else "no response"
        super().__init__(f"{backend} query failed ({outcome}): {detail}; query: {_clip(query, 300)}")


class QueryBudgetExceeded(RuntimeError):
    """The run's query budget is spent: the query was not sent."""


class QueryBudget:
    """How many queries a source may send per run; a Loki page or a PromQL query is one, retries are free."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.spent = 0

    def take(self, backend: str, query: str) -> None:
        """Count one query, or raise QueryBudgetExceeded when none is left."""
        if self.spent >= self.limit:
            raise QueryBudgetExceeded(
                f"query budget of {self.limit} queries spent; {backend} query not sent: {_clip(query, 200)}"
            )
        self.spent += 1


def auth_headers(credentials: str | None) -> dict[str, str]:
    """The Authorization header for "user:password" (basic) or "Bearer <token>"; none without credentials."""
    if not credentials:
        return {}
    if credentials[:7].lower() == "bearer ":
        return {"Authorization": f"Bearer {credentials[7:].strip()}"}
    user, colon, _ = credentials.partition(":")
    if not user or not colon:
        raise ValueError("telemetry credentials must be 'user:password' or 'Bearer <token>'")
    return {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode("ascii")}


@functools.cache
def tls_context() -> ssl.SSLContext:
    """httpx's default verifying TLS context, made once per process: loading the CA bundle costs tens of
    milliseconds, and a run opens a client per backend and source."""
    return httpx.create_ssl_context()


@functools.cache
def no_tls_context() -> ssl.SSLContext:
    """The TLS context of a client whose base URL is plain http: its requests (paths under that URL, redirects not
    followed) never make a TLS handshake, so it needs no CA bundle. It trusts no certificate, so a handshake, if
    one were ever made, would fail rather than go unverified."""
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


class BackendClient:
    """One backend's HTTP client: base URL, credentials, timeouts, retries and the run's query budget."""

    name = "backend"

    def __init__(
        self, base_url: str, credentials: str | None, timeout: float, http: HttpConfig, budget: QueryBudget
    ) -> None:
        self._http = http
        self._budget = budget
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"User-Agent": USER_AGENT, **auth_headers(credentials)},
            timeout=httpx.Timeout(timeout, connect=http.connect_timeout_seconds),
            verify=tls_context() if base_url.lower().startswith("https:") else no_tls_context(),
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    async def get_json(self, path: str, params: dict[str, str], query: str) -> dict[str, Any]:
        """GET `path` and decode the JSON envelope; retry 5xx, 429 and transport errors, never other 4xx."""
        self._budget.take(self.name, query)
        attempt = 0
        while True:
            wait: float | None = None
            try:
                response = await self._client.get(path, params=params)
            except httpx.TransportError as exc:
                failure = BackendError(self.name, query, None, _describe(exc))
            else:
                if response.is_success:
                    return _decode(response, self.name, query)
                failure = BackendError(self.name, query, response.status_code, _error_detail(response))
                if response.status_code != 429 and response.status_code < 500:
                    raise failure
                wait = _retry_after(response)
                if wait is not None and wait > self._http.backoff_max_seconds:
                    detail = f"{failure.detail}; Retry-After {wait:.0f}s is longer than the retry limit"
                    raise BackendError(self.name, query, response.status_code, detail)
            if attempt >= self._http.retries:
                detail = f"{failure.detail} (after {attempt + 1} attempts)"
                raise BackendError(self.name, query, failure.status, detail)
            await asyncio.sleep(wait if wait is not None else self._backoff(attempt))
            attempt += 1

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter so that parallel runs do not retry in lockstep."""
        delay = min(self._http.backoff_max_seconds, self._http.backoff_seconds * 2**attempt)
        return random.uniform(delay / 2, delay)


def _decode(response: httpx.Response, backend: str, query: str) -> dict[str, Any]:
    try:
        body = json.loads(response.content)
    except ValueError as exc:
        raise BackendError(
            backend, query, response.status_code, f"malformed JSON in the answer: {exc}"
        ) from None
    if not isinstance(body, dict):
        raise BackendError(backend, query, response.status_code, "malformed answer: not a JSON object")
    if body.get("status") == "error":
        raise BackendError(backend, query, response.status_code, _envelope_error(body))
    return body


def _error_detail(response: httpx.Response) -> str:
    """The backend's own explanation: the JSON envelope's error, else the start of the text body."""
    try:
        body = json.loads(response.content)
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("error"):
        return _envelope_error(body)
    if isinstance(body, dict) and isinstance(body.get("errors"), list) and body["errors"]:
        # Jaeger's query service: {"data": null, "errors": [{"code": 400, "msg": "..."}]}
        first = body["errors"][0]
        if isinstance(first, dict):
            return _clip(f"{first.get('code')}: {first.get('msg')}", 300)
    return _clip(response.text.strip(), 300) or response.reason_phrase or "no body"


def _envelope_error(body: dict[str, Any]) -> str:
    kind = body.get("errorType")
    message = _clip(str(body.get("error") or "status error without a message"), 300)
    return f"{kind}: {message}" if kind else message


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds the server asked to wait (Retry-After: seconds or an HTTP date); None if absent or invalid."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        at = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return max(0.0, (at - datetime.now(UTC)).total_seconds())


def _describe(exc: httpx.TransportError) -> str:
    kind = type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({kind})"
    text = str(exc)
    return f"{kind}: {text}" if text else kind


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
