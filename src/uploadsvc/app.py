"""The FastAPI application factory.

``create_app(settings)`` builds a fresh app, so tests make their own with
their own settings. The lifespan opens every long-lived client once per
process (database engine, storage client, JWKS client, Redis) and closes
them on shutdown; nothing touches the network at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute

from uploadsvc import __version__
from uploadsvc.body_guard import install_body_guard
from uploadsvc.config import Settings
from uploadsvc.errors import install_error_handlers
from uploadsvc.http_middleware import REQUEST_ID_HEADER, install_request_observability
from uploadsvc.resources import open_resources
from uploadsvc.routers import (
    demo,
    direct,
    docs,
    events,
    files,
    health,
    images,
    local_storage,
    openevent_uploads,
    uploads,
    uppy,
)
from uploadsvc.workers.jobs import bind_in_process_jobs
from uploadsvc.workers.scheduler import run_in_process_schedule

logger = logging.getLogger(__name__)


def _operation_id(route: APIRoute) -> str:
    # Handler names are unique and read well as SDK method names
    # (`client.request_upload_url(...)`), unlike FastAPI's path-derived ids.
    return route.name


# A young-generation collection every this many new objects instead of 700:
# a request allocates hundreds, and with 700 objects of requests still in
# flight were promoted at every collection and then traversed by the older
# generations' ones (BENCHMARKS.md, "The request path": p99 latency).
_GC_YOUNG_THRESHOLD = 20_000


def prepare_for_serving() -> None:
    """Garbage-collector settings of a serving process, once its app is built.

    Everything made so far (modules, routes, models, schemas) lives as long as
    the process: frozen, no collection traverses it again. Only ``serve``
    does this; tests build many apps in one process.
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(_GC_YOUNG_THRESHOLD, older, oldest)


def create_served_app() -> FastAPI:
    """``create_app`` for a ``serve`` process (each worker of ``--workers N`` calls it)."""
    app = create_app()
    prepare_for_serving()
    return app


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_resources(settings) as resources:
            bind_in_process_jobs(resources)
            app.state.resources = resources
            scheduler = None
            if resources.redis is None:
                # No Redis, no arq worker: this process runs the periodic jobs.
                scheduler = asyncio.create_task(run_in_process_schedule(resources))
            logger.info(
                "uploadsvc ready: storage=%s database=%s jobs=%s",
                settings.storage_backend,
                "sqlite" if settings.uses_sqlite else "postgresql",
                "in-process" if scheduler else "arq",
            )
            try:
                yield
            finally:
                if scheduler is not None:
                    scheduler.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await scheduler

    app = FastAPI(
        title="uploadsvc",
        version=__version__,
        summary="Presigned uploads to S3, confirmed by the server before they are recorded.",
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
        # Served from the package by install_docs, not from a CDN.
        docs_url=None,
        redoc_url=None,
    )
    install_error_handlers(app)
    docs.install_docs(app)
    # Before CORS, which then wraps it: browsers can read its 401 and 413 too.
    install_body_guard(app, settings)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE", "OPTIONS"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "X-Amz-Checksum-Sha256",
                "If-None-Match",
                REQUEST_ID_HEADER,
            ],
            expose_headers=["ETag", "Location", REQUEST_ID_HEADER],
            max_age=600,
        )
    install_request_observability(app)
    # The routes called most first: FastAPI tries the routes in this order
    # for every request (no two routers' paths overlap, so order decides nothing else).
    app.include_router(uploads.router)
    app.include_router(files.router)
    app.include_router(images.router)
    app.include_router(uppy.router)
    app.include_router(direct.router)
    app.include_router(openevent_uploads.router)
    app.include_router(events.router)
    app.include_router(health.router)
    if settings.metrics_public:
        app.include_router(health.metrics_router)
    app.include_router(demo.router)
    if settings.storage_backend == "local":
        app.include_router(local_storage.router)
    return app
