"""What the tables whose rows belong to one user (``owner_id``) share: who sees a row."""

from __future__ import annotations

import uuid
from typing import TypeVar

from sqlalchemy import ColumnElement, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from uploadsvc.models.events import Event, ImportJob
from uploadsvc.models.uploads import Upload
from uploadsvc.security import Principal

Owned = TypeVar("Owned", Event, ImportJob, Upload)


def visible_to(model: type[Owned], principal: Principal) -> ColumnElement[bool]:
    """Admins act on anyone's rows; everyone else sees only their own."""
    return true() if principal.is_admin else model.owner_id == principal.user_id


async def get_visible(
    session: AsyncSession, model: type[Owned], row_id: uuid.UUID, *, principal: Principal
) -> Owned | None:
    """The row with this id if the caller may see it (a foreign row is as missing as none)."""
    return await session.scalar(
        select(model).where(model.id == row_id, visible_to(model, principal))
    )
