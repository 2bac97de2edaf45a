"""Liveness, readiness and Prometheus metrics (at the root, not under /v1)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

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
async def readyz(resources: ResourcesDep) -> Readiness | JSONResponse:
    """Database, storage and (when configured) Redis answer; 503 names what is down."""
    readiness = await check_readiness(resources)
    if readiness.status != "ok":
        return JSONResponse(readiness.model_dump(), status_code=503)
    return readiness


@router.get("/metrics", response_class=Response, include_in_schema=False)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
