"""The one error shape of the API, {"error": {"code", "message"}}, and the handlers that enforce it."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg import OperationalError
from psycopg.errors import DataError
from psycopg_pool import PoolTimeout
from pydantic import BaseModel
from starlette.exceptions import HTTPException

log = logging.getLogger("incident_copilot.server")
RETRY_AFTER_SECONDS = 2  # what a 503 asks a sender to wait before trying again
AUTHENTICATED_PREFIXES = ("/alerts", "/webhook/", "/incidents")  # the JSON API (the dashboard has its sessions)


class ApiError(Exception):
    """An error answered with the stable shape {"error": {"code", "message"}}."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


class ErrorDetail(BaseModel):
    """What went wrong: a stable machine-readable code and a message for people."""

    model_config = {"extra": "forbid"}
    code: str
    message: str


class ErrorBody(BaseModel):
    """The body of every error response."""

    model_config = {"extra": "forbid"}
    error: ErrorDetail


def is_json_media_type(content_type: str | None) -> bool:
    """application/json or application/<something>+json, whatever the parameters (charset)."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def documented_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses, all in the one error shape (422 too, not FastAPI's)."""
    return {status: {"model": ErrorBody} for status in statuses}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The one error shape of the API."""
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Every error leaves in the same shape, and no internal exception text leaves at all."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    def unauthenticated(request: Request) -> JSONResponse | None:
        """401 for a request to the authenticated API without valid credentials: FastAPI reads (and refuses) a
        malformed body before any dependency runs, and a caller without credentials must learn only that."""
        from service.auth import authenticate

        if not request.url.path.startswith(AUTHENTICATED_PREFIXES):
            return None
        try:
            authenticate(request)
        except ApiError as refused:
            return error_response(refused.status, refused.code, refused.message, refused.headers)
        return None

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        refused = unauthenticated(request)
        if refused is not None:
            return refused
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(422, "invalid_request", f"{where}: {first.get('msg', 'invalid')}"[:300])

    # Starlette's base class: the router's own 404 and 405 are raised as it, not as FastAPI's subclass.
    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        # 400: FastAPI's own "error parsing the body" (e.g. bytes that are not UTF-8)
        refused = unauthenticated(request) if exc.status_code == 400 else None
        if refused is not None:
            return refused
        code = {400: "invalid_json", 404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = str(exc.detail)[:300] if exc.status_code < 500 else "error"
        return error_response(exc.status_code, code, message, exc.headers)  # e.g. 405's Allow

    @app.exception_handler(DataError)
    async def _unstorable(request: Request, exc: DataError) -> JSONResponse:
        # A value PostgreSQL refuses as data (a NUL character in text, a number out of range): the caller's input.
        log.warning("refused data on %s %s: %s", request.method, request.url.path, exc)
        return error_response(422, "invalid_field", "a value in the request cannot be stored (e.g. a NUL character)")

    @app.exception_handler(PoolTimeout)
    @app.exception_handler(OperationalError)
    async def _database_down(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, OperationalError) and (exc.sqlstate or "").startswith("54"):
            # a program limit (an index row, a statement too large): the caller's input, not an outage
            log.warning("refused data over a limit on %s %s: %s", request.method, request.url.path, exc)
            return error_response(422, "invalid_field", "a value in the request is too large to store")
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc)
        if isinstance(exc, PoolTimeout):  # no connection in time: nothing was sent
            message = "the database is unreachable; nothing was stored, try again"
        else:  # the connection broke, or was cut for not answering, after sending: it may have been carried out
            message = "the database did not answer; the request may have been stored, send it again"
        return error_response(503, "database_unavailable", message, {"Retry-After": str(RETRY_AFTER_SECONDS)})

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "internal error; see the server log")
