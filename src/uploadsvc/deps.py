"""FastAPI dependencies, defined once as ``Annotated`` aliases.

Routers declare what they need (``SessionDep``, ``StorageDep``,
``PrincipalDep``, ``OwnedUpload``...) and never reach into ``app.state``
themselves. Everything long-lived comes from the lifespan (see ``app.py``).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPBearer
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from uploadsvc.config import Settings
from uploadsvc.errors import NotFound
from uploadsvc.job_queue import flush_after_commit, forget_after_commit
from uploadsvc.logs import bind_user
from uploadsvc.models.uploads import Upload
from uploadsvc.resources import Resources
from uploadsvc.security import Principal, extract_bearer_token
from uploadsvc.services.files import read_file, require_confirmed
from uploadsvc.services.uploads import find_upload
from uploadsvc.storage import Storage


def _resources(request: Request) -> Resources:
    resources: Resources = request.app.state.resources
    return resources


# These are ``async def`` although they never await: FastAPI runs a plain
# ``def`` dependency in a worker thread, and that hop (queue, wake-up,
# result) cost more per request than the database query of the list route.


async def get_resources(request: Request) -> Resources:
    return _resources(request)


async def get_settings(request: Request) -> Settings:
    return _resources(request).settings


async def get_storage(request: Request) -> Storage:
    return _resources(request).storage


async def get_engine(request: Request) -> AsyncEngine:
    """The engine, for routes whose one statement needs no session (see db.autocommit)."""
    return _resources(request).engine


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request, committed before the response is sent.

    With ``scope="function"`` (below) FastAPI runs the code after ``yield``
    when the handler returns, before the response leaves: a client that got
    a 2xx can rely on the row being committed. An exception rolls back.
    """
    resources = _resources(request)
    async with resources.session_factory() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            forget_after_commit(session)
            raise
        # Jobs go after the commit, so the worker finds the rows they name.
        await flush_after_commit(session, resources.jobs)


class _BearerPrincipal(HTTPBearer):
    """The bearer scheme, answering with the authenticated caller.

    One dependency rather than a function that depends on ``HTTPBearer``:
    FastAPI solves every dependency of every request on its own (cache key,
    parameters, call), which cost more per request than the token check.
    Being the security scheme itself is what puts it in OpenAPI (Swagger UI's
    "Authorize" button) and what ``body_guard`` looks for.
    """

    async def __call__(self, request: Request) -> Principal:  # type: ignore[override]
        # The raw header is parsed here rather than by HTTPBearer because
        # Open Event clients send "JWT <token>", which HTTPBearer rejects.
        token = extract_bearer_token(request.headers.get("authorization"))
        principal = await _resources(request).token_verifier.verify(token)
        # Every log line of the rest of this request names its user.
        bind_user(principal.user_id)
        return principal


# auto_error=False: a missing or malformed header must answer with our own
# problem+json 401, not FastAPI's 403. scheme_name keeps the name OpenAPI had.
bearer_scheme = _BearerPrincipal(
    auto_error=False,
    bearerFormat="JWT",
    scheme_name="HTTPBearer",
    description="A JWT whose `sub` is the user id (`uploadsvc token --sub USER` in development).",
)


ResourcesDep = Annotated[Resources, Depends(get_resources)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
StorageDep = Annotated[Storage, Depends(get_storage)]
EngineDep = Annotated[AsyncEngine, Depends(get_engine)]
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
PrincipalDep = Annotated[Principal, Depends(bearer_scheme)]


async def get_owned_upload(
    upload_id: uuid.UUID, session: SessionDep, principal: PrincipalDep
) -> Upload:
    """The caller's upload; someone else's id answers 404 like a missing one."""
    return await find_upload(session, principal=principal, upload_id=upload_id)


async def get_owned_file(
    file_id: uuid.UUID, session: SessionDep, principal: PrincipalDep
) -> Upload:
    """The caller's confirmed file; pending, rejected, deleted or foreign → 404."""
    try:
        upload = await find_upload(session, principal=principal, upload_id=file_id)
    except NotFound:
        raise NotFound("No such file.", code="file_not_found") from None
    return require_confirmed(upload)


async def get_readable_file(
    file_id: uuid.UUID, engine: EngineDep, principal: PrincipalDep
) -> Upload:
    """``OwnedFile`` for routes that only answer: one read, no session (detached row)."""
    return await read_file(engine, principal=principal, file_id=file_id)


OwnedUpload = Annotated[Upload, Depends(get_owned_upload)]
OwnedFile = Annotated[Upload, Depends(get_owned_file)]
ReadableFile = Annotated[Upload, Depends(get_readable_file)]
