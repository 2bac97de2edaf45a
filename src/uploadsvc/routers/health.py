"""Liveness, readiness and Prometheus metrics (at the root, not under /v1).

``/metrics`` has a router of its own: operators who do not expose it on the
API's port leave it out (``UPLOADSVC_METRICS_PUBLIC=false``) and may scrape
``UPLOADSVC_METRICS_PORT`` instead.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from uploadsvc import metrics as metric_series
from uploadsvc.deps import ResourcesDep
from uploadsvc.schemas.health import Health, Readiness
from uploadsvc.services.health import check_readiness

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> Health:
    """The process is alive (checks nothing else)."""
    return Health()


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "A dependency is down."}},
)
async def readyz(request: Request, resources: ResourcesDep) -> Readiness | JSONResponse:
    """Database, storage and (when configured) Redis answer; 503 names what is down.

    Also 503 (``shutting_down``) once the process was asked to stop.
    """
    readiness = await check_readiness(resources, shutting_down=request.app.state.shutdown.started)
    if readiness.status != "ok":
        return JSONResponse(readiness.model_dump(), status_code=503)
    return readiness


metrics_router = APIRouter(tags=["operations"])


@metrics_router.get("/metrics", response_class=Response, include_in_schema=False)
def metrics() -> Response:
    """Prometheus text format; under ``serve --workers N``, the sum over the workers."""
    # Plain `def`: FastAPI runs it in a thread, and in multiprocess mode a
    # scrape reads one file per worker.
    body, content_type = metric_series.render()
    return Response(body, media_type=content_type)
