"""S3 (and S3-compatible) storage through aioboto3: the storage verbs.

Every call to S3 goes through :func:`_s3_errors`, the one place where
botocore's errors become domain errors. How streamed parts are signed
without hashing them on the event loop is ``s3_signing.py``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

import aioboto3
import anyio
from aiobotocore.config import AioConfig
from anyio import to_thread
from botocore.exceptions import BotoCoreError, ClientError
from botocore.handlers import add_expect_header

from uploadsvc.config import Settings
from uploadsvc.errors import StorageError, Unprocessable, UploadsvcError
from uploadsvc.storage.base import (
    DELETE_BATCH_SIZE,
    LIST_PAGE_SIZE,
    GetGrant,
    IncompleteUpload,
    ListedObject,
    MultipartTracker,
    ObjectInfo,
    PartGrant,
    PresignedRequest,
    PutGrant,
    Storage,
    StorageSetup,
    UploadedPart,
    no_such_multipart_upload,
    no_such_object,
)
from uploadsvc.storage.s3_presign import S3Presigner, open_presigner
from uploadsvc.storage.s3_setup import set_up_bucket
from uploadsvc.storage.s3_signing import PrehashedBody, sign_parts_with_their_hash

logger = logging.getLogger(__name__)

# Parts of a streamed upload (S3's minimum is 5 MiB, except for the last part).
STREAM_PART_SIZE = 8 * 1024 * 1024
# Reads of whole objects (downloads, hashing) go in chunks of this size.
_READ_CHUNK_SIZE = 1024 * 1024
_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
_NO_SUCH_UPLOAD = "NoSuchUpload"
# What S3 answers to a CompleteMultipartUpload whose part list is wrong.
_BAD_PARTS_CODES = frozenset({"InvalidPart", "InvalidPartOrder", "EntityTooSmall"})


def _client_config(settings: Settings) -> AioConfig:
    return AioConfig(
        signature_version="s3v4",
        s3={"addressing_style": settings.s3_addressing_style},
        # botocore >= 1.36 adds CRC32 checksums to every request by default,
        # which some S3-compatible stores refuse; we send checksums ourselves.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        # Bounded, so that a hung S3 is a 503 within seconds (config.py, "deadlines").
        retries={"max_attempts": settings.s3_max_attempts, "mode": "standard"},
        connect_timeout=settings.s3_connect_timeout_seconds,
        read_timeout=settings.s3_read_timeout_seconds,
    )


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _invalid_parts(exc: ClientError) -> UploadsvcError:
    message = str(exc.response.get("Error", {}).get("Message", _error_code(exc)))
    return Unprocessable(message, code="invalid_parts")


# S3's refusals that are the caller's to handle, by error code: a missing
# object or upload, a wrong part list. Anything else is storage failing.
_Refusals = Mapping[str, Callable[[ClientError], UploadsvcError]]
_OBJECT_MISSING: _Refusals = dict.fromkeys(_MISSING_CODES, lambda exc: no_such_object())
_UPLOAD_MISSING: _Refusals = {_NO_SUCH_UPLOAD: lambda exc: no_such_multipart_upload()}
_BAD_PARTS: _Refusals = dict.fromkeys(_BAD_PARTS_CODES, _invalid_parts)


class _Tolerated:
    """Which of its ``tolerate`` codes :func:`_s3_errors` let pass (true when one did)."""

    code: str | None = None

    def __bool__(self) -> bool:
        return self.code is not None


@contextlib.contextmanager
def _s3_errors(
    action: str, *, refusals: _Refusals | None = None, tolerate: Collection[str] = ()
) -> Iterator[_Tolerated]:
    """Where botocore's errors become domain errors, for every call to S3.

    An S3 error code in ``refusals`` raises the domain error made for it; one
    in ``tolerate`` ends the block quietly (the yielded value then names the
    code, and whatever the block was to assign is unset); any other error,
    the network's included, is a ``StorageError`` saying storage failed to
    ``action``.
    """
    tolerated = _Tolerated()
    try:
        yield tolerated
    except ClientError as exc:
        code = _error_code(exc)
        if code in tolerate:
            tolerated.code = code
            return
        refusal = (refusals or {}).get(code)
        if refusal is not None:
            raise refusal(exc) from None
        raise _storage_error(action, exc) from exc
    except BotoCoreError as exc:
        raise _storage_error(action, exc) from exc


def _storage_error(action: str, exc: Exception) -> StorageError:
    # Log the storage's own words for operators; clients get a generic sentence,
    # never an endpoint, a bucket policy or a credential.
    logger.warning("S3 failed to %s: %s", action, exc)
    return StorageError(f"Object storage failed to {action}; try again later.")


class S3Storage(Storage):
    """Talks to one bucket. Made by :func:`open_s3_storage`, which owns the clients."""

    def __init__(
        self,
        *,
        client: Any,
        presign_client: Any,
        presigner: S3Presigner,
        bucket: str,
        tracker: MultipartTracker | None = None,
    ) -> None:
        # `client` reaches S3 from the service. URLs are signed for the host
        # that browsers and apps reach (S3_PUBLIC_ENDPOINT_URL): PUT, GET and
        # part URLs by `presigner` (the hot path: no per-call endpoint
        # resolution, see storage/s3_presign.py), POST policies by
        # `presign_client`, botocore.
        self._client = client
        self._presign_client = presign_client
        self._presigner = presigner
        self._bucket = bucket
        # Told before every multipart upload starts and after it ends (see
        # repository/multipart_ledger.py); tools without a database pass none.
        self._tracker = tracker or _Untracked()
        sign_parts_with_their_hash(client)

    @property
    def tracks_multipart_uploads(self) -> bool:
        return not isinstance(self._tracker, _Untracked)

    async def presign_put(self, grant: PutGrant) -> PresignedRequest:
        url = await self._presigner.presign_put_object(grant)
        return PresignedRequest(url=url, method="PUT", headers=grant.client_headers())

    async def presign_browser_upload(
        self, key: str, *, content_type: str, max_size: int, expires_in: int
    ) -> PresignedRequest:
        # botocore adds the bucket and key conditions itself. S3 has no
        # If-None-Match for POST: the policy's short life is what bounds a replay.
        post = await self._presign_client.generate_presigned_post(
            Bucket=self._bucket,
            Key=key,
            Fields={"Content-Type": content_type},
            Conditions=[{"Content-Type": content_type}, ["content-length-range", 1, max_size]],
            ExpiresIn=expires_in,
        )
        return PresignedRequest(url=post["url"], method="POST", fields=dict(post["fields"]))

    async def presign_get(self, grant: GetGrant) -> str:
        return await self._presigner.presign_get_object(
            grant.key,
            expires_in=grant.expires_in,
            content_type=grant.content_type,
            content_disposition=grant.content_disposition,
        )

    async def put_stream(
        self, key: str, *, content_type: str, chunks: AsyncIterator[bytes]
    ) -> None:
        with _s3_errors("store an object"):
            await self._put_stream(key, content_type, chunks)

    async def _put_stream(self, key: str, content_type: str, chunks: AsyncIterator[bytes]) -> None:
        # Two part-sized buffers, allocated once: one fills while the other
        # uploads, so memory stays at two parts and reading the client
        # overlaps writing to S3. A part is sent from its buffer (see _Part).
        buffers = [bytearray(STREAM_PART_SIZE)]
        current, filled = 0, 0
        multipart_upload_id: str | None = None
        parts: list[dict[str, Any]] = []
        in_flight: asyncio.Task[dict[str, Any]] | None = None
        try:
            async for chunk in chunks:
                view, offset = memoryview(chunk), 0
                while offset < len(view):
                    take = min(STREAM_PART_SIZE - filled, len(view) - offset)
                    buffers[current][filled : filled + take] = view[offset : offset + take]
                    filled += take
                    offset += take
                    if filled < STREAM_PART_SIZE:
                        continue
                    if multipart_upload_id is None:
                        multipart_upload_id = await self._start_multipart(key, content_type)
                        buffers.append(bytearray(STREAM_PART_SIZE))
                    if in_flight is not None:
                        parts.append(await in_flight)  # frees the other buffer
                    in_flight = asyncio.create_task(
                        self._upload_part(
                            key, multipart_upload_id, len(parts) + 1, buffers[current]
                        )
                    )
                    current, filled = 1 - current, 0
            last = memoryview(buffers[current])[:filled]
            if multipart_upload_id is None:
                await self._client.put_object(
                    Bucket=self._bucket,
                    Key=key,
                    Body=await _Part.of(last) if filled else b"",
                    ContentType=content_type,
                )
                return
            if in_flight is not None:
                parts.append(await in_flight)
                in_flight = None
            if filled:
                parts.append(
                    await self._upload_part(key, multipart_upload_id, len(parts) + 1, last)
                )
            await self._client.complete_multipart_upload(
                Bucket=self._bucket,
                Key=key,
                UploadId=multipart_upload_id,
                MultipartUpload={"Parts": parts},
            )
            await self._tracker.ended(key)
        except BaseException:
            if in_flight is not None:
                in_flight.cancel()
                with contextlib.suppress(BaseException):
                    await in_flight
            if multipart_upload_id is not None:
                await self._abort_quietly(key, multipart_upload_id)
            raise

    async def _start_multipart(self, key: str, content_type: str) -> str:
        await self._tracker.starting(key)
        try:
            response = await self._client.create_multipart_upload(
                Bucket=self._bucket, Key=key, ContentType=content_type
            )
        except ClientError:
            # Refused: no upload was started. (After a network error or a
            # cancellation one may have been; the tracker keeps the key.)
            await self._tracker.ended(key)
            raise
        return str(response["UploadId"])

    async def _upload_part(
        self, key: str, multipart_upload_id: str, number: int, data: bytearray | memoryview
    ) -> dict[str, Any]:
        response = await self._client.upload_part(
            Bucket=self._bucket,
            Key=key,
            UploadId=multipart_upload_id,
            PartNumber=number,
            Body=await _Part.of(data),
        )
        return {"PartNumber": number, "ETag": response["ETag"]}

    async def _abort_quietly(self, key: str, multipart_upload_id: str) -> None:
        # Shielded: a cancelled request must still not leave parts behind.
        try:
            await asyncio.shield(self.abort_multipart(key, multipart_upload_id=multipart_upload_id))
        except Exception:
            logger.warning("could not abort multipart upload of %s; cleanup will", key)

    async def download_to(self, key: str, destination: Path) -> None:
        async with self._open_body(key) as body, await anyio.open_file(destination, "wb") as out:
            while chunk := await body.read(_READ_CHUNK_SIZE):
                await out.write(chunk)

    @contextlib.asynccontextmanager
    async def _open_body(self, key: str) -> AsyncIterator[Any]:
        """The streaming body of the whole object, closed after the block (``NotFound``)."""
        with _s3_errors("read an object", refusals=_OBJECT_MISSING):
            response = await self._client.get_object(Bucket=self._bucket, Key=key)
            body = response["Body"]
            try:
                yield body
            finally:
                body.close()

    async def read_chunks(self, key: str) -> AsyncGenerator[bytes, None]:
        async with self._open_body(key) as body:
            while True:
                with _s3_errors("read an object"):
                    chunk: bytes = await body.read(_READ_CHUNK_SIZE)
                if not chunk:
                    return
                yield chunk

    async def move(self, key: str, new_key: str) -> None:
        with _s3_errors("copy an object", refusals=_OBJECT_MISSING):
            # One CopyObject call takes objects up to 5 GiB, more than any profile allows.
            await self._copy_object(key, new_key)
        await self.delete(key)

    async def promote(self, staged_key: str, key: str) -> None:
        # A staged object came in one PUT or POST, which S3 limits to 5 GiB:
        # exactly what one CopyObject takes, so no UploadPartCopy is needed.
        # If-None-Match makes S3 refuse (412) to replace an object at `key`,
        # even for two confirms at once. (LocalStack 4.13 ignores it on copies;
        # confirm looks at `key` before it promotes.) ChecksumAlgorithm: S3
        # hashes the copy itself, so the file's SHA-256 is storage's own.
        with _s3_errors(
            "copy an object", tolerate=_MISSING_CODES | {"PreconditionFailed"}
        ) as skipped:
            await self._copy_object(staged_key, key, IfNoneMatch="*", ChecksumAlgorithm="SHA256")
        if skipped.code not in _MISSING_CODES:
            await self.delete(staged_key)

    async def _copy_object(self, source: str, key: str, **options: str) -> None:
        await self._client.copy_object(
            Bucket=self._bucket,
            Key=key,
            CopySource={"Bucket": self._bucket, "Key": source},
            MetadataDirective="COPY",
            **options,
        )

    async def head(self, key: str) -> ObjectInfo | None:
        with _s3_errors("head", tolerate=_MISSING_CODES) as missing:
            response = await self._client.head_object(
                Bucket=self._bucket, Key=key, ChecksumMode="ENABLED"
            )
        if missing:
            return None
        return ObjectInfo(
            key=key,
            size=int(response["ContentLength"]),
            content_type=response.get("ContentType"),
            sha256=response.get("ChecksumSHA256"),
            last_modified=response.get("LastModified"),
        )

    async def read_prefix(self, key: str, length: int) -> bytes:
        with _s3_errors("read", tolerate={"InvalidRange"}) as empty:
            response = await self._client.get_object(
                Bucket=self._bucket, Key=key, Range=f"bytes=0-{length - 1}"
            )
            async with response["Body"] as body:
                data: bytes = await body.read()
        if empty:  # an empty object has no byte 0
            return b""
        return data[:length]

    async def delete(self, key: str) -> None:
        with _s3_errors("delete"):
            await self._client.delete_object(Bucket=self._bucket, Key=key)

    async def list_pages(
        self, prefix: str = "", *, start_after: str | None = None
    ) -> AsyncIterator[list[ListedObject]]:
        paginator = self._client.get_paginator("list_objects_v2")
        options: dict[str, Any] = {"Bucket": self._bucket, "Prefix": prefix}
        if start_after is not None:
            options["StartAfter"] = start_after
        with _s3_errors("list objects"):
            async for page in paginator.paginate(
                **options, PaginationConfig={"PageSize": LIST_PAGE_SIZE}
            ):
                yield [
                    ListedObject(
                        key=item["Key"], size=int(item["Size"]), last_modified=item["LastModified"]
                    )
                    for item in page.get("Contents", [])
                ]

    async def delete_many(self, keys: list[str]) -> None:
        if not keys:
            return
        if len(keys) > DELETE_BATCH_SIZE:
            raise ValueError(f"at most {DELETE_BATCH_SIZE} keys per DeleteObjects call")
        with _s3_errors("delete objects"):
            response = await self._client.delete_objects(
                Bucket=self._bucket,
                Delete={"Objects": [{"Key": key} for key in keys], "Quiet": True},
            )
        errors = response.get("Errors", [])
        if errors:
            logger.warning("S3 refused to delete %d objects: %s", len(errors), errors[:3])
            raise StorageError("Object storage failed to delete some objects; try again later.")

    async def list_incomplete_uploads(self, prefix: str) -> list[IncompleteUpload]:
        found: list[IncompleteUpload] = []
        paginator = self._client.get_paginator("list_multipart_uploads")
        with _s3_errors("list multipart uploads"):
            async for page in paginator.paginate(Bucket=self._bucket, Prefix=prefix):
                found.extend(
                    IncompleteUpload(
                        key=item["Key"],
                        multipart_upload_id=item["UploadId"],
                        initiated=item["Initiated"],
                    )
                    for item in page.get("Uploads", [])
                )
        return found

    async def abort_incomplete_upload(self, upload: IncompleteUpload) -> None:
        await self.abort_multipart(upload.key, multipart_upload_id=upload.multipart_upload_id)

    # --- multipart uploads straight from clients ------------------------------

    async def start_multipart(self, key: str, *, content_type: str) -> str:
        with _s3_errors("start a multipart upload"):
            return await self._start_multipart(key, content_type)

    async def presign_part(self, grant: PartGrant) -> PresignedRequest:
        # With `content_length`, it is signed into the URL: S3 refuses a part
        # of any other size.
        url = await self._presigner.presign_upload_part(grant)
        return PresignedRequest(url=url, method="PUT")

    async def list_parts(self, key: str, *, multipart_upload_id: str) -> list[UploadedPart]:
        parts: list[UploadedPart] = []
        paginator = self._client.get_paginator("list_parts")
        with _s3_errors("list the parts of an upload", refusals=_UPLOAD_MISSING):
            async for page in paginator.paginate(
                Bucket=self._bucket, Key=key, UploadId=multipart_upload_id
            ):
                parts.extend(
                    UploadedPart(
                        part_number=int(item["PartNumber"]),
                        size=int(item["Size"]),
                        etag=str(item["ETag"]),
                    )
                    for item in page.get("Parts", [])
                )
        return parts

    async def complete_multipart(
        self, key: str, *, multipart_upload_id: str, parts: list[tuple[int, str]]
    ) -> None:
        with _s3_errors(
            "complete a multipart upload", refusals=_BAD_PARTS, tolerate={_NO_SUCH_UPLOAD}
        ) as missing:
            await self._client.complete_multipart_upload(
                Bucket=self._bucket,
                Key=key,
                UploadId=multipart_upload_id,
                MultipartUpload={
                    "Parts": [{"PartNumber": number, "ETag": etag} for number, etag in parts]
                },
            )
        # Completed now, or (when missing) completed or aborted already: it has ended.
        await self._tracker.ended(key)
        if missing:
            raise no_such_multipart_upload()

    async def abort_multipart(self, key: str, *, multipart_upload_id: str) -> None:
        # An upload aborted meanwhile is no error: the goal is met.
        with _s3_errors("abort a multipart upload", tolerate={_NO_SUCH_UPLOAD}):
            await self._client.abort_multipart_upload(
                Bucket=self._bucket, Key=key, UploadId=multipart_upload_id
            )
        await self._tracker.ended(key)

    async def sha256_of(self, key: str) -> str:
        digest = hashlib.sha256()
        async with self._open_body(key) as body:
            while chunk := await body.read(_READ_CHUNK_SIZE):
                # hashlib lets go of the GIL on big buffers: hash in a thread.
                await anyio.to_thread.run_sync(digest.update, chunk)
        return base64.b64encode(digest.digest()).decode()

    async def check_ready(self) -> None:
        with _s3_errors("reach the bucket"):
            await self._client.head_bucket(Bucket=self._bucket)

    async def initialize(self, *, cors_origins: list[str], check: bool = False) -> StorageSetup:
        # The merge with other owners' rules is storage/s3_setup.py's.
        return await set_up_bucket(
            self._client,
            bucket=self._bucket,
            region=self._client.meta.region_name,
            cors_origins=cors_origins,
            check=check,
        )


class _Untracked(MultipartTracker):
    async def starting(self, key: str) -> None:
        return None

    async def ended(self, key: str) -> None:
        return None


class _Part(PrehashedBody):
    """The body of one ``put_object``/``upload_part`` request, sent from its buffer.

    Given a ``bytearray``, aiohttp copies a part twice on its way to the socket
    (it slices the body to its length, then joins it with the headers), and
    botocore hashes it on the event loop (see ``s3_signing.py``). So a part is:

    - file-like for botocore (``read``/``seek``/``len``: a valid blob, rewound
      before a retry);
    - an async iterable of memoryview slices for aiohttp, which writes them to
      the socket without a copy (the first slice is small because aiohttp joins
      the first write with the headers);
    - hashed once, in a worker thread, for the signer of ``s3_signing.py``.

    The buffer must not change until the request is done: ``put_stream``
    refills a buffer only after its part's request has returned.
    """

    FIRST_WRITE = 64 * 1024

    def __init__(self, data: memoryview, sha256_hex: str) -> None:
        super().__init__(sha256_hex)
        self._data = data
        self._position = 0

    @classmethod
    async def of(cls, data: bytearray | memoryview) -> _Part:
        view = memoryview(data)
        return cls(view, await to_thread.run_sync(_sha256_hex, view))

    def __len__(self) -> int:
        return len(self._data)

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size < 0 else min(len(self._data), self._position + size)
        data = bytes(self._data[self._position : end])
        self._position = end
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._position, 2: len(self._data)}[whence]
        self._position = max(0, min(len(self._data), base + offset))
        return self._position

    def tell(self) -> int:
        return self._position

    async def __aiter__(self) -> AsyncIterator[memoryview]:
        yield self._data[: self.FIRST_WRITE]
        if len(self._data) > self.FIRST_WRITE:
            yield self._data[self.FIRST_WRITE :]


def _sha256_hex(data: memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def _send_bodies_without_expect_continue(client: Any) -> None:
    """Send PUT bodies at once, without ``Expect: 100-continue``.

    botocore asks for it on every file-like body (our parts are), and aiohttp
    then waits for the ``100 Continue`` with no deadline: its read timeout
    starts only once the body is sent, so a hung S3 hung the upload forever.
    The bodies are in memory already, so waiting for leave to send gains
    nothing, and it costs a round trip per part.
    """
    client.meta.events.unregister("before-call.s3", add_expect_header)


@contextlib.asynccontextmanager
async def open_s3_storage(
    settings: Settings, *, tracker: MultipartTracker | None = None
) -> AsyncIterator[S3Storage]:
    """One pair of clients per process, closed when the context exits."""
    session = aioboto3.Session()
    secret = settings.s3_secret_access_key
    client_args: dict[str, Any] = {
        "region_name": settings.s3_region,
        "aws_access_key_id": settings.s3_access_key_id,
        "aws_secret_access_key": secret.get_secret_value() if secret else None,
        "config": _client_config(settings),
    }
    public_endpoint = settings.s3_public_endpoint_url or settings.s3_endpoint_url
    async with contextlib.AsyncExitStack() as stack:
        client = await stack.enter_async_context(
            session.client("s3", endpoint_url=settings.s3_endpoint_url, **client_args)
        )
        _send_bodies_without_expect_continue(client)
        presign_client = client
        if public_endpoint != settings.s3_endpoint_url:
            presign_client = await stack.enter_async_context(
                session.client("s3", endpoint_url=public_endpoint, **client_args)
            )
        presigner = await open_presigner(settings, session=session, config=_client_config(settings))
        yield S3Storage(
            client=client,
            presign_client=presign_client,
            presigner=presigner,
            bucket=settings.s3_bucket,
            tracker=tracker,
        )
