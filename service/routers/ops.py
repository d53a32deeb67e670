"""Liveness, readiness and Prometheus metrics (no auth: scraped and probed inside the cluster)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from service.errors import documented_errors, error_response

# A probe's answer must come before the prober gives up (Kubernetes waits 1 s by default): a database that does not
# answer is found out within db_acquire_timeout and a 1 s connection probe; one that answers this slowly is no
# help to this process's requests either.
READY_SECONDS = 2.0


def ops_router() -> APIRouter:
    """GET /healthz, /readyz, /metrics."""
    router = APIRouter(tags=["operations"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", responses=documented_errors(503))
    async def readyz(request: Request) -> JSONResponse:
        try:
            async with request.app.state.db.pool.connection_within(READY_SECONDS) as conn:
                await conn.execute("SELECT 1")
        except Exception:
            return error_response(503, "not_ready", "database unreachable")
        if not request.app.state.workers_alive():
            return error_response(503, "not_ready", "the run workers are not running")
        return JSONResponse({"status": "ready"})

    @router.get("/metrics", response_class=Response)
    async def metrics(request: Request) -> Response:
        body, content_type = await request.app.state.metrics.render(request.app.state.db.pool)
        return Response(body, media_type=content_type)

    return router
