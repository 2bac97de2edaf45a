"""The keys where storage may hold an incomplete multipart upload.

S3 keeps the parts of a multipart upload that was neither completed nor
aborted, and bills them, until someone aborts it. The service starts such
uploads itself (a large direct upload is streamed in parts; a client asks
for a multipart upload), and a process can stop at any point in between: a
crash, a deploy, a lost connection to storage while aborting.

S3 storage tells the ledger before it starts one and after it ends one (see
``storage.base.MultipartTracker``); the row is committed before S3 is asked,
in a transaction of its own, so no upload can exist that the ledger does not
name. Cleanup then looks only at the keys whose rows are older than its
cutoff, instead of listing every incomplete upload in the bucket (a storage
request per run, and per 1,000 uploads). With SQLite, and with the local
backend, there is no ledger (see ``resources._multipart_ledger``).

Only keys under the upload prefixes are kept: those are cleanup's. An import
that stops midway leaves its ``events/`` uploads to the bucket's lifecycle
rule (``uploadsvc storage init``), which is also the backstop for anything
begun before this ledger existed.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import delete, exists, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from uploadsvc.db import utcnow
from uploadsvc.models.multipart_ledger import OpenMultipartUpload
from uploadsvc.models.uploads import Upload, UploadStatus
from uploadsvc.profiles import UPLOAD_PREFIXES
from uploadsvc.storage.base import MultipartTracker

logger = logging.getLogger(__name__)


async def record_start(session: AsyncSession, *, key: str, started_at: dt.datetime) -> None:
    """The row for a multipart upload about to start at ``key`` (a restart replaces it)."""
    await session.merge(OpenMultipartUpload(key=key, started_at=started_at))


async def remove(session: AsyncSession, *, key: str) -> None:
    await session.execute(delete(OpenMultipartUpload).where(OpenMultipartUpload.key == key))


async def due_keys(session: AsyncSession, *, cutoff: dt.datetime) -> list[str]:
    """Keys of uploads started before ``cutoff`` that nothing is still working on.

    A client may take longer than the cutoff over a multipart upload it
    keeps asking part URLs for: while its upload row is pending, its parts
    stay. (Once its URLs lapse, cleanup's expire claim ends it.)
    """
    still_pending = exists().where(
        Upload.file_key == OpenMultipartUpload.key, Upload.status == UploadStatus.PENDING
    )
    keys = await session.scalars(
        select(OpenMultipartUpload.key)
        .where(OpenMultipartUpload.started_at < cutoff, ~still_pending)
        .order_by(OpenMultipartUpload.started_at)
    )
    return list(keys)


class MultipartLedger(MultipartTracker):
    """The tracker S3 storage is given: each change in a transaction of its own."""

    def __init__(self, session_factory: async_sessionmaker[AsyncSession]) -> None:
        self._session_factory = session_factory

    async def starting(self, key: str) -> None:
        if not key.startswith(UPLOAD_PREFIXES):
            return
        async with self._session_factory() as session, session.begin():
            await record_start(session, key=key, started_at=utcnow())

    async def ended(self, key: str) -> None:
        if not key.startswith(UPLOAD_PREFIXES):
            return
        try:
            await self.forget(key)
        except SQLAlchemyError:
            # The upload itself is over; a row left behind only makes cleanup
            # ask storage about this key once, and then forget it.
            logger.warning("could not remove %s from the multipart ledger", key, exc_info=True)

    async def forget(self, key: str) -> None:
        async with self._session_factory() as session, session.begin():
            await remove(session, key=key)

    async def due(self, cutoff: dt.datetime) -> list[str]:
        """``due_keys`` in a session of its own."""
        async with self._session_factory() as session:
            return await due_keys(session, cutoff=cutoff)
