"""The storage interface: domain verbs that both backends implement.

``storage/`` is the only package that knows S3 or the disk. Callers get
domain values and domain errors (``errors.StorageError``), never botocore
exceptions or file-system paths.
"""

from __future__ import annotations

import abc
import datetime as dt
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from uploadsvc.errors import NotFound


@dataclass(frozen=True, slots=True)
class PresignedRequest:
    """An HTTP request a client may make once, without credentials."""

    url: str
    method: str
    # Headers the client must send exactly as given (they are signed).
    headers: dict[str, str] = field(default_factory=dict)
    # Form fields of a browser POST upload, sent before the file (S3 POST policy).
    fields: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PutGrant:
    """What a presigned PUT lets a client store: exactly these bytes at ``key``, once.

    Content-Type, Content-Length and (when given) the SHA-256 are signed, so
    storage itself refuses any other body; the URL lives ``expires_in`` seconds.
    """

    key: str
    content_type: str
    content_length: int
    # Base64 SHA-256 the body must have, when the client declared one.
    sha256: str | None
    expires_in: int

    def client_headers(self) -> dict[str, str]:
        """The signed headers the client must send as given (its HTTP library sets the length).

        ``If-None-Match: *``: the object must not exist yet, so a confirmed
        object can never be overwritten through an old URL.
        """
        headers = {"Content-Type": self.content_type, "If-None-Match": "*"}
        if self.sha256 is not None:
            headers["x-amz-checksum-sha256"] = self.sha256
        return headers


@dataclass(frozen=True, slots=True)
class PartGrant:
    """What a presigned part URL lets a client store: one part of a multipart upload."""

    key: str
    multipart_upload_id: str
    part_number: int
    # When given, signed: storage refuses a part of any other size.
    content_length: int | None
    expires_in: int


@dataclass(frozen=True, slots=True)
class GetGrant:
    """What a presigned GET lets anyone holding it do: download ``key`` for ``expires_in`` s.

    A response header left None is the one stored with the object (S3 sends
    no Content-Disposition then; the local backend neither).
    """

    key: str
    expires_in: int
    content_type: str | None = None
    content_disposition: str | None = None


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    key: str
    size: int
    content_type: str | None
    # Base64 SHA-256 of the whole object, when storage computed one.
    sha256: str | None
    last_modified: dt.datetime | None


@dataclass(frozen=True, slots=True)
class ListedObject:
    key: str
    size: int
    last_modified: dt.datetime


@dataclass(frozen=True, slots=True)
class UploadedPart:
    """A part of a multipart upload that storage has received."""

    part_number: int
    size: int
    etag: str


@dataclass(frozen=True, slots=True)
class IncompleteUpload:
    """A multipart upload that was started and never completed or aborted."""

    key: str
    multipart_upload_id: str
    initiated: dt.datetime


@dataclass(frozen=True, slots=True)
class StorageSetup:
    """What ``Storage.initialize`` did or, when it only checked, what it found.

    ``done``: what was applied or already in place; ``drift``: what differs
    from the wanted setup (filled only when checking, nothing is changed
    then); ``warnings``: what the store does not support, skipped.
    """

    done: list[str] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def no_such_object() -> NotFound:
    """What every backend raises for a missing object, or a key that cannot name one."""
    return NotFound("No such object.")


def no_such_multipart_upload() -> NotFound:
    """What every backend raises for a multipart upload it does not (or no longer) hold."""
    return NotFound("No such multipart upload.", code="upload_not_found")


# S3's limits: a listing page and a DeleteObjects call hold at most 1000 keys.
LIST_PAGE_SIZE = 1000
DELETE_BATCH_SIZE = 1000
# S3's limits on multipart uploads: every part but the last has at least
# 5 MiB, part numbers run from 1 to 10,000.
MIN_PART_SIZE = 5 * 1024 * 1024
MAX_PART_NUMBER = 10_000


class MultipartTracker(abc.ABC):
    """Told of every multipart upload storage starts, so that none is forgotten.

    Storage calls ``starting`` before it asks for a new multipart upload (if
    ``starting`` fails, none is started) and ``ended`` once the upload is
    completed or aborted. Whatever stops a process in between, the tracker
    still knows the key: cleanup aborts what is left there.
    """

    @abc.abstractmethod
    async def starting(self, key: str) -> None:
        """A multipart upload is about to start at ``key``."""

    @abc.abstractmethod
    async def ended(self, key: str) -> None:
        """The multipart upload at ``key`` is completed or aborted."""


class Storage(abc.ABC):
    """Object storage for uploads. Every method is a coroutine."""

    @property
    def tracks_multipart_uploads(self) -> bool:
        """Whether a ``MultipartTracker`` is told of every multipart upload this storage starts.

        Only S3 can be given one: the local backend's incomplete uploads are
        folders, which cleanup lists at no cost.
        """
        return False

    @abc.abstractmethod
    async def presign_put(self, grant: PutGrant) -> PresignedRequest:
        """A URL that accepts exactly the granted bytes, once, until it expires.

        Its headers are ``grant.client_headers()``; the object must not exist yet.
        """

    @abc.abstractmethod
    async def presign_browser_upload(
        self, key: str, *, content_type: str, max_size: int, expires_in: int
    ) -> PresignedRequest:
        """One request a browser can make without knowing the exact size up front.

        S3: a presigned POST whose policy fixes the key and the Content-Type
        and limits the size to 1..``max_size`` bytes (``content-length-range``).
        The local backend answers a signed PUT that accepts up to ``max_size``.
        Either way the object must not exist yet.
        """

    @abc.abstractmethod
    async def presign_get(self, grant: GetGrant) -> str:
        """A URL that downloads ``grant.key`` with the grant's response headers."""

    @abc.abstractmethod
    async def put_stream(
        self, key: str, *, content_type: str, chunks: AsyncIterator[bytes]
    ) -> None:
        """Store bytes as they arrive, in bounded memory (S3: multipart above one part).

        On any error, including one raised by ``chunks`` itself (a size limit,
        a type check, a client that went away), nothing is left in storage:
        the multipart upload is aborted, the temporary file removed.
        """

    @abc.abstractmethod
    async def download_to(self, key: str, destination: Path) -> None:
        """Copy the object into a local file, in chunks (``NotFound`` if missing)."""

    @abc.abstractmethod
    def read_chunks(self, key: str) -> AsyncGenerator[bytes, None]:
        """The object's bytes in order, about 1 MiB at a time (``NotFound`` if missing).

        An async generator: close it (``aclose``) when stopping early, so the
        connection behind it is released.
        """

    @abc.abstractmethod
    async def move(self, key: str, new_key: str) -> None:
        """Give the object (bytes and metadata) a new key; the old key no longer exists.

        Not atomic on S3 (a copy, then a delete): a crash in between leaves
        both, and the caller's row decides which one counts.
        """

    @abc.abstractmethod
    async def promote(self, staged_key: str, key: str) -> None:
        """Copy the object at ``staged_key`` to ``key``, then delete the staged one.

        Never replaces an object at ``key``: one already there stays as it
        is (the staged object may then stay too; cleanup removes it once the
        upload is confirmed). No staged object is not an error either; the
        caller looks at ``key`` afterwards. The
        bytes move inside storage (S3: one CopyObject, enough for any
        object a single request can upload; the local backend: a hard link).
        """

    @abc.abstractmethod
    async def head(self, key: str) -> ObjectInfo | None:
        """The object's metadata, or None when there is no such object."""

    @abc.abstractmethod
    async def read_prefix(self, key: str, length: int) -> bytes:
        """Up to ``length`` bytes from the start of the object (a ranged read)."""

    @abc.abstractmethod
    async def delete(self, key: str) -> None:
        """Delete the object; deleting a missing object is not an error."""

    @abc.abstractmethod
    async def check_ready(self) -> None:
        """Raise ``StorageError`` unless storage answers."""

    @abc.abstractmethod
    async def initialize(self, *, cors_origins: list[str], check: bool = False) -> StorageSetup:
        """Create the bucket or folder and apply its policies, or with ``check`` compare only.

        Rules of other owners on the same bucket are kept (docs/api.md,
        "Command line"). Raises ``StorageError``, with the store's own words,
        when storage refuses or cannot be reached.
        """

    # --- listing and bulk deletion (cleanup) ---------------------------------

    @abc.abstractmethod
    def list_pages(
        self, prefix: str = "", *, start_after: str | None = None
    ) -> AsyncIterator[list[ListedObject]]:
        """Objects under ``prefix`` in key order, after ``start_after``; up to 1000 a page."""

    @abc.abstractmethod
    async def delete_many(self, keys: list[str]) -> None:
        """Delete up to 1000 objects in one request; missing ones are not an error."""

    @abc.abstractmethod
    async def list_incomplete_uploads(self, prefix: str) -> list[IncompleteUpload]:
        """Multipart uploads under ``prefix`` that are neither completed nor aborted."""

    @abc.abstractmethod
    async def abort_incomplete_upload(self, upload: IncompleteUpload) -> None:
        """Abort a multipart upload and free its parts."""

    async def remove_leftover_temporaries(self, before: dt.datetime, *, dry_run: bool) -> int:
        """Remove the temporary files of uploads that a stopped process left unfinished.

        Only those untouched since ``before``; returns how many there were.
        S3 keeps no temporary files (what a stopped upload leaves there is a
        multipart upload); the local backend writes every upload to a
        temporary file first.
        """
        return 0

    # --- multipart uploads straight from clients (large files) ---------------

    @abc.abstractmethod
    async def start_multipart(self, key: str, *, content_type: str) -> str:
        """Start a multipart upload at ``key``; return storage's multipart upload id."""

    @abc.abstractmethod
    async def presign_part(self, grant: PartGrant) -> PresignedRequest:
        """A PUT URL for one part. With ``grant.content_length`` the size is signed:
        storage refuses a part of any other size."""

    @abc.abstractmethod
    async def list_parts(self, key: str, *, multipart_upload_id: str) -> list[UploadedPart]:
        """The parts received so far, by part number (``NotFound`` if no such upload)."""

    @abc.abstractmethod
    async def complete_multipart(
        self, key: str, *, multipart_upload_id: str, parts: list[tuple[int, str]]
    ) -> None:
        """Join the listed ``(part_number, etag)`` parts into the object.

        ``NotFound`` if the upload does not exist (any more); ``Unprocessable``
        (code ``invalid_parts``) if a part is missing, has another ETag, is out
        of order, or is under 5 MiB without being the last.
        """

    @abc.abstractmethod
    async def abort_multipart(self, key: str, *, multipart_upload_id: str) -> None:
        """Abort a multipart upload; an unknown or finished one is not an error."""

    @abc.abstractmethod
    async def sha256_of(self, key: str) -> str:
        """Base64 SHA-256 of the whole object, hashed off the event loop if storage has none."""
