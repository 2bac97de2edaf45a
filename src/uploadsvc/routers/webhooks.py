"""Webhook deliveries, for admins (docs/api.md, "Webhooks")."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from uploadsvc.deps import PrincipalDep, SessionDep
from uploadsvc.errors import Forbidden, error_responses
from uploadsvc.models.webhooks import DeliveryStatus
from uploadsvc.schemas.webhooks import DeliveryList
from uploadsvc.services import webhooks as service

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


@router.get("/deliveries", responses=error_responses(Forbidden))
async def list_webhook_deliveries(
    session: SessionDep,
    principal: PrincipalDep,
    status: DeliveryStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> DeliveryList:
    """The newest deliveries (optionally of one status), each with every attempt."""
    return await service.list_deliveries(session, principal=principal, status=status, limit=limit)
