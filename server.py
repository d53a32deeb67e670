"""The HTTP service: `create_app()` wires settings, the database, run workers and the routers (DESIGN.md 4.4).

The parts live in service/ (settings, auth, intake, incidents, runs, workers, metrics, routers) and web/ (the
dashboard); this module only puts them together.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from graph.context import Context
from service.config_check import unread_telemetry
from service.errors import install_error_handlers
from service.metrics import ServerMetrics
from service.queue import QueueLimit
from service.routers.incidents import incidents_router
from service.routers.intake import intake_router
from service.routers.ops import ops_router
from service.settings import ServerSettings, load_settings
from service.worker import RunWorkers, service_context
from tools.database import open_database
from tools.notify.config import notify_config_of
from tools.notify.outbox import OutboxDispatcher
from web.dashboard import STATIC_DIR, DashboardViews, dashboard_router


def create_app(settings: ServerSettings | None = None, context: Context | None = None) -> FastAPI:
    """The FastAPI app; settings are validated, and the pool, checkpointer and workers opened, once, at start-up.

    Without arguments both come from the one configuration (service/settings.py)."""
    if settings is None or context is None:
        config = load_settings()
        settings = settings or config.server_settings()
        context = context or config.run_context(output_dir=settings.output_dir)
    settings.validate()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        run_context = service_context(settings, context)
        unread = unread_telemetry(run_context) if settings.telemetry == "live" else None
        if unread:
            logging.getLogger("incident_copilot").warning("WARNING: %s", unread)
        metrics = ServerMetrics()
        async with open_database(settings.database_url, max_size=2 * settings.workers + 8,
                                 acquire_timeout=settings.db_acquire_timeout) as db:
            workers = RunWorkers(db, run_context, concurrency=settings.workers, attempts=settings.run_attempts,
                                 group_ttl_seconds=settings.group_ttl_seconds,
                                 on_finished=metrics.run_finished, on_step=metrics.node_finished)
            app.state.db, app.state.metrics = db, metrics
            app.state.runner, app.state.graph, app.state.workers = workers.runner, workers.runner.graph, workers
            app.state.views = DashboardViews()
            dispatcher = OutboxDispatcher(db.pool, notify_config_of(run_context))
            if settings.run_workers:
                await workers.start()
                dispatcher.start()
            app.state.workers_alive = lambda: workers.running() if settings.run_workers else True
            # Start-up's objects (modules, the compiled graph: ~150k) live as long as the process; frozen, the
            # collector's full passes skip them instead of pausing every request for ~100 ms each time.
            gc.freeze()
            try:
                yield
            finally:
                await dispatcher.stop()
                await workers.stop()

    app = FastAPI(title="Incident CoPilot", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.queue_limit = QueueLimit(settings.max_queued_runs)
    install_error_handlers(app)
    app.include_router(intake_router())
    app.include_router(incidents_router())
    app.include_router(ops_router())
    app.include_router(dashboard_router())
    app.mount("/ui/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
