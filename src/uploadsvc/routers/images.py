"""The image variants of a confirmed file."""

from __future__ import annotations

from fastapi import APIRouter

from uploadsvc.deps import OwnedFile, SessionDep, SettingsDep, StorageDep
from uploadsvc.errors import NotFound, StorageError, error_responses
from uploadsvc.schemas.images import ImageVariantList
from uploadsvc.services import images as service

router = APIRouter(prefix="/v1/files", tags=["files"])


@router.get("/{file_id:uuid}/variants", responses=error_responses(NotFound, StorageError))
async def list_file_variants(
    file: OwnedFile, session: SessionDep, storage: StorageDep, settings: SettingsDep
) -> ImageVariantList:
    """The resized copies of an image file with their state; empty for other files."""
    return await service.list_variants(session, storage, settings, upload=file)
