"""Confirmed files: list, read, download, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from fastapi.responses import RedirectResponse

from uploadsvc.deps import (
    OwnedFile,
    PrincipalDep,
    ReadableFile,
    ResourcesDep,
    SessionDep,
    SettingsDep,
    StorageDep,
)
from uploadsvc.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    StorageError,
    error_responses,
)
from uploadsvc.schemas.files import DownloadUrl, FileList, FileRead, InfectedFileList
from uploadsvc.schemas.text import Text
from uploadsvc.services import files as service
from uploadsvc.services import images
from uploadsvc.services.scanning import FileLocked

router = APIRouter(prefix="/v1/files", tags=["files"])


@router.get("", responses=error_responses(BadRequest, StorageError))
async def list_files(
    resources: ResourcesDep,
    principal: PrincipalDep,
    cursor: Annotated[Text | None, Query(description="`next_cursor` of the previous page.")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    urls: Annotated[
        bool, Query(description="Give each item a `download_url` (and its `expires_in`).")
    ] = False,
) -> FileList:
    """The caller's confirmed files, newest first."""
    # One dependency for engine, storage and settings: each one FastAPI
    # solves costs per request (docs/architecture.md, "Reads and single writes").
    return await service.list_files(
        resources.engine,
        resources.storage,
        resources.settings,
        principal=principal,
        cursor=cursor,
        limit=limit,
        urls=urls,
    )


# Before /{file_id}, which would take "infected" for an id.
@router.get("/infected", responses=error_responses(Forbidden))
async def list_infected_files(
    session: SessionDep,
    principal: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> InfectedFileList:
    """Admins only: every user's files the malware scanner flagged, newest first."""
    return await service.list_infected_files(session, principal=principal, limit=limit)


@router.get("/{file_id:uuid}", responses=error_responses(NotFound))
async def get_file(file: ReadableFile, resources: ResourcesDep) -> FileRead:
    return await service.file_with_variants(
        resources.engine, resources.storage, resources.settings, file
    )


@router.get(
    "/{file_id:uuid}/download",
    response_model=DownloadUrl,
    responses={
        **error_responses(NotFound, Conflict, FileLocked, StorageError),
        307: {
            "description": "With `redirect=true`: a redirect to the download URL.",
            "headers": {
                "Location": {"description": "The download URL.", "schema": {"type": "string"}}
            },
        },
    },
)
async def download_file(
    file: ReadableFile,
    resources: ResourcesDep,
    redirect: Annotated[
        bool, Query(description="Answer 307 to the download URL instead of JSON.")
    ] = False,
    variant: Annotated[
        Text | None,
        Query(
            max_length=32,
            description="An image variant (`large`, `thumbnail`, `small`, `icon`) instead "
            "of the file: 404 `variant_not_found`, 409 `variant_pending` or `variant_failed`.",
        ),
    ] = None,
) -> DownloadUrl | RedirectResponse:
    """A short-lived URL that downloads the file with its name and type.

    With malware scanning on: 409 `scan_pending` until the file is scanned,
    423 `infected` (or `unscanned_too_large`) if it is withheld.
    """
    storage, settings = resources.storage, resources.settings
    if variant is None:
        download = await service.download_url(storage, settings, file)
    else:
        download = await images.variant_download_url(
            resources.engine, storage, settings, upload=file, name=variant
        )
    if redirect:
        return RedirectResponse(download.download_url, status_code=307)
    return download


@router.delete(
    "/{file_id:uuid}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=error_responses(NotFound),
)
async def delete_file(
    file: OwnedFile, session: SessionDep, storage: StorageDep, settings: SettingsDep
) -> None:
    """Delete the file and its object."""
    await service.delete_file(session, storage, settings, upload=file)
