"""The caller's storage usage and quota."""

from __future__ import annotations

from fastapi import APIRouter

from uploadsvc.deps import EngineDep, PrincipalDep, SettingsDep
from uploadsvc.errors import error_responses
from uploadsvc.schemas.usage import Usage
from uploadsvc.services import quotas as service

router = APIRouter(prefix="/v1", tags=["files"])


@router.get("/usage", responses=error_responses())
async def read_usage(principal: PrincipalDep, engine: EngineDep, settings: SettingsDep) -> Usage:
    """Your confirmed and pending bytes, and what your quota leaves (docs/api.md, "Quotas")."""
    return await service.usage(engine, settings, principal=principal)
