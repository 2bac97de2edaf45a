"""Direct (fallback) uploads: ``POST``/``PUT /v1/uploads/direct``.

The bytes come through the service (``incoming_files``) instead of going
to storage through a presigned URL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from sqlalchemy.ext.asyncio import AsyncSession

from uploadsvc.config import Settings
from uploadsvc.errors import Unprocessable
from uploadsvc.formdata import FormReader
from uploadsvc.models.uploads import Upload
from uploadsvc.profiles import Purpose, profile_for
from uploadsvc.schemas.files import ConfirmedFile
from uploadsvc.security import Principal
from uploadsvc.services.files import confirmed_body
from uploadsvc.services.incoming_files import (
    IncomingFile,
    form_parts,
    record_all_or_nothing,
    store_all_or_nothing,
    store_file,
)
from uploadsvc.storage import Storage


async def direct_upload_form(
    session: AsyncSession,
    storage: Storage,
    settings: Settings,
    *,
    principal: Principal,
    purpose: Purpose,
    form: FormReader,
) -> ConfirmedFile:
    """``POST /v1/uploads/direct``: the part ``file`` (a ``purpose`` field may precede it)."""

    async def each() -> AsyncIterator[Upload]:
        chosen = purpose
        stored = False
        # The rest of the body is still read after the file, so that a
        # malformed ending is refused (and the stored file removed) too.
        async for name, part_type, filename in form_parts(form):
            if name == "purpose" and stored:
                # The file went to storage under the purpose known then; a
                # late purpose would be silently ignored, so it is refused.
                raise Unprocessable(
                    "The 'purpose' field must come before 'file' (or use ?purpose=).",
                    code="validation_error",
                )
            if name == "purpose":
                chosen = _purpose(await form.text())
            elif name == "file" and not stored:
                stored = True
                yield await store_file(
                    session,
                    storage,
                    settings,
                    principal=principal,
                    profile=profile_for(settings, chosen),
                    incoming=IncomingFile(filename or "upload", part_type, form.chunks()),
                )

    uploads = await store_all_or_nothing(session, storage, each())
    if not uploads:
        raise Unprocessable("The form has no part named 'file'.", code="missing_file")
    return await confirmed_body(storage, settings, uploads[0])


def _purpose(text: str) -> Purpose:
    try:
        return Purpose(text.strip())
    except ValueError:
        raise Unprocessable(f"Unknown purpose {text!r}.", code="validation_error") from None


async def direct_upload_raw(
    session: AsyncSession,
    storage: Storage,
    settings: Settings,
    *,
    principal: Principal,
    purpose: Purpose,
    filename: str,
    content_type: str | None,
    body: AsyncIterator[bytes],
) -> ConfirmedFile:
    """``PUT /v1/uploads/direct``: the body is the file, its type in Content-Type."""
    upload = await store_file(
        session,
        storage,
        settings,
        principal=principal,
        profile=profile_for(settings, purpose),
        incoming=IncomingFile(filename, content_type, body),
    )
    await record_all_or_nothing(session, storage, [upload])
    return await confirmed_body(storage, settings, upload)
