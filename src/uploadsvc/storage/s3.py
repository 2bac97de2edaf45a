"""S3 (and S3-compatible) storage through aioboto3."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aioboto3
import anyio
import botocore.auth
from aiobotocore.config import AioConfig
from anyio import to_thread
from botocore.awsrequest import AWSRequest
from botocore.exceptions import BotoCoreError, ClientError

from uploadsvc.config import Settings
from uploadsvc.errors import NotFound, StorageError, Unprocessable
from uploadsvc.storage.base import (
    DELETE_BATCH_SIZE,
    LIST_PAGE_SIZE,
    IncompleteUpload,
    ListedObject,
    MultipartTracker,
    ObjectInfo,
    PresignedRequest,
    Storage,
    UploadedPart,
)

logger = logging.getLogger(__name__)

# Parts of a streamed upload (S3's minimum is 5 MiB, except for the last part).
STREAM_PART_SIZE = 8 * 1024 * 1024
_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
# What S3 answers to a CompleteMultipartUpload whose part list is wrong.
_BAD_PARTS_CODES = frozenset({"InvalidPart", "InvalidPartOrder", "EntityTooSmall"})
_HASH_CHUNK_SIZE = 1024 * 1024


def _client_config(settings: Settings) -> AioConfig:
    return AioConfig(
        signature_version="s3v4",
        s3={"addressing_style": settings.s3_addressing_style},
        # botocore >= 1.36 adds CRC32 checksums to every request by default,
        # which some S3-compatible stores refuse; we send checksums ourselves.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=5,
        read_timeout=30,
    )


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3Storage(Storage):
    """Talks to one bucket. Made by :func:`open_s3_storage`, which owns the clients."""

    def __init__(
        self,
        *,
        client: Any,
        presign_client: Any,
        bucket: str,
        tracker: MultipartTracker | None = None,
    ) -> None:
        # `client` reaches S3 from the service; `presign_client` signs URLs
        # for the host that browsers and apps reach (S3_PUBLIC_ENDPOINT_URL).
        self._client = client
        self._presign_client = presign_client
        self._bucket = bucket
        # Told before every multipart upload starts and after it ends (see
        # services/multipart_ledger.py); tools without a database pass none.
        self._tracker = tracker or _Untracked()
        _sign_parts_with_their_hash(client)

    @property
    def tracks_multipart_uploads(self) -> bool:
        return not isinstance(self._tracker, _Untracked)

    async def presign_put(
        self,
        key: str,
        *,
        content_type: str,
        content_length: int,
        sha256: str | None,
        expires_in: int,
    ) -> PresignedRequest:
        params: dict[str, Any] = {
            "Bucket": self._bucket,
            "Key": key,
            "ContentType": content_type,
            "ContentLength": content_length,
            "IfNoneMatch": "*",
        }
        headers = {"Content-Type": content_type, "If-None-Match": "*"}
        if sha256 is not None:
            params["ChecksumSHA256"] = sha256
            headers["x-amz-checksum-sha256"] = sha256
        url = await self._presign_client.generate_presigned_url(
            "put_object", Params=params, ExpiresIn=expires_in
        )
        return PresignedRequest(url=url, method="PUT", headers=headers)

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

    async def presign_get(
        self, key: str, *, expires_in: int, content_type: str, content_disposition: str
    ) -> str:
        url: str = await self._presign_client.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self._bucket,
                "Key": key,
                "ResponseContentType": content_type,
                "ResponseContentDisposition": content_disposition,
            },
            ExpiresIn=expires_in,
        )
        return url

    async def put_stream(
        self, key: str, *, content_type: str, chunks: AsyncIterator[bytes]
    ) -> None:
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
        except BaseException as exc:
            if in_flight is not None:
                in_flight.cancel()
                with contextlib.suppress(BaseException):
                    await in_flight
            if multipart_upload_id is not None:
                await self._abort_quietly(key, multipart_upload_id)
            if isinstance(exc, ClientError | BotoCoreError):
                raise _storage_error("store an object", exc) from exc
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
        try:
            response = await self._client.get_object(Bucket=self._bucket, Key=key)
            body = response["Body"]
            try:
                async with await anyio.open_file(destination, "wb") as out:
                    while chunk := await body.read(1024 * 1024):
                        await out.write(chunk)
            finally:
                body.close()
        except ClientError as exc:
            if _error_code(exc) in _MISSING_CODES:
                raise NotFound("No such object.") from None
            raise _storage_error("read an object", exc) from exc
        except BotoCoreError as exc:
            raise _storage_error("read an object", exc) from exc

    async def head(self, key: str) -> ObjectInfo | None:
        try:
            response = await self._client.head_object(
                Bucket=self._bucket, Key=key, ChecksumMode="ENABLED"
            )
        except ClientError as exc:
            if _error_code(exc) in _MISSING_CODES:
                return None
            raise _storage_error("head", exc) from exc
        except BotoCoreError as exc:
            raise _storage_error("head", exc) from exc
        return ObjectInfo(
            key=key,
            size=int(response["ContentLength"]),
            content_type=response.get("ContentType"),
            sha256=response.get("ChecksumSHA256"),
            last_modified=response.get("LastModified"),
        )

    async def read_prefix(self, key: str, length: int) -> bytes:
        try:
            response = await self._client.get_object(
                Bucket=self._bucket, Key=key, Range=f"bytes=0-{length - 1}"
            )
            async with response["Body"] as body:
                data: bytes = await body.read()
        except ClientError as exc:
            if _error_code(exc) == "InvalidRange":  # an empty object has no byte 0
                return b""
            raise _storage_error("read", exc) from exc
        except BotoCoreError as exc:
            raise _storage_error("read", exc) from exc
        return data[:length]

    async def delete(self, key: str) -> None:
        try:
            await self._client.delete_object(Bucket=self._bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            raise _storage_error("delete", exc) from exc

    async def list_pages(
        self, prefix: str = "", *, start_after: str | None = None
    ) -> AsyncIterator[list[ListedObject]]:
        paginator = self._client.get_paginator("list_objects_v2")
        options: dict[str, Any] = {"Bucket": self._bucket, "Prefix": prefix}
        if start_after is not None:
            options["StartAfter"] = start_after
        try:
            async for page in paginator.paginate(
                **options, PaginationConfig={"PageSize": LIST_PAGE_SIZE}
            ):
                yield [
                    ListedObject(
                        key=item["Key"], size=int(item["Size"]), last_modified=item["LastModified"]
                    )
                    for item in page.get("Contents", [])
                ]
        except (ClientError, BotoCoreError) as exc:
            raise _storage_error("list objects", exc) from exc

    async def delete_many(self, keys: list[str]) -> None:
        if not keys:
            return
        if len(keys) > DELETE_BATCH_SIZE:
            raise ValueError(f"at most {DELETE_BATCH_SIZE} keys per DeleteObjects call")
        try:
            response = await self._client.delete_objects(
                Bucket=self._bucket,
                Delete={"Objects": [{"Key": key} for key in keys], "Quiet": True},
            )
        except (ClientError, BotoCoreError) as exc:
            raise _storage_error("delete objects", exc) from exc
        errors = response.get("Errors", [])
        if errors:
            logger.warning("S3 refused to delete %d objects: %s", len(errors), errors[:3])
            raise StorageError("Object storage failed to delete some objects; try again later.")

    async def list_incomplete_uploads(self, prefix: str) -> list[IncompleteUpload]:
        found: list[IncompleteUpload] = []
        paginator = self._client.get_paginator("list_multipart_uploads")
        try:
            async for page in paginator.paginate(Bucket=self._bucket, Prefix=prefix):
                found.extend(
                    IncompleteUpload(
                        key=item["Key"],
                        multipart_upload_id=item["UploadId"],
                        initiated=item["Initiated"],
                    )
                    for item in page.get("Uploads", [])
                )
        except (ClientError, BotoCoreError) as exc:
            raise _storage_error("list multipart uploads", exc) from exc
        return found

    async def abort_incomplete_upload(self, upload: IncompleteUpload) -> None:
        await self.abort_multipart(upload.key, multipart_upload_id=upload.multipart_upload_id)

    # --- multipart uploads straight from clients ------------------------------

    async def start_multipart(self, key: str, *, content_type: str) -> str:
        try:
            return await self._start_multipart(key, content_type)
        except (ClientError, BotoCoreError) as exc:
            raise _storage_error("start a multipart upload", exc) from exc

    async def presign_part(
        self,
        key: str,
        *,
        multipart_upload_id: str,
        part_number: int,
        content_length: int | None,
        expires_in: int,
    ) -> PresignedRequest:
        params: dict[str, Any] = {
            "Bucket": self._bucket,
            "Key": key,
            "UploadId": multipart_upload_id,
            "PartNumber": part_number,
        }
        if content_length is not None:
            # Signed into the URL: S3 refuses a part of any other size.
            params["ContentLength"] = content_length
        url = await self._presign_client.generate_presigned_url(
            "upload_part", Params=params, ExpiresIn=expires_in
        )
        return PresignedRequest(url=url, method="PUT")

    async def list_parts(self, key: str, *, multipart_upload_id: str) -> list[UploadedPart]:
        parts: list[UploadedPart] = []
        paginator = self._client.get_paginator("list_parts")
        try:
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
        except ClientError as exc:
            if _error_code(exc) == "NoSuchUpload":
                raise NotFound("No such multipart upload.", code="upload_not_found") from None
            raise _storage_error("list the parts of an upload", exc) from exc
        except BotoCoreError as exc:
            raise _storage_error("list the parts of an upload", exc) from exc
        return parts

    async def complete_multipart(
        self, key: str, *, multipart_upload_id: str, parts: list[tuple[int, str]]
    ) -> None:
        try:
            await self._client.complete_multipart_upload(
                Bucket=self._bucket,
                Key=key,
                UploadId=multipart_upload_id,
                MultipartUpload={
                    "Parts": [{"PartNumber": number, "ETag": etag} for number, etag in parts]
                },
            )
        except ClientError as exc:
            code = _error_code(exc)
            if code == "NoSuchUpload":  # completed (or aborted) already
                await self._tracker.ended(key)
                raise NotFound("No such multipart upload.", code="upload_not_found") from None
            if code in _BAD_PARTS_CODES:
                message = str(exc.response.get("Error", {}).get("Message", code))
                raise Unprocessable(message, code="invalid_parts") from None
            raise _storage_error("complete a multipart upload", exc) from exc
        except BotoCoreError as exc:
            raise _storage_error("complete a multipart upload", exc) from exc
        await self._tracker.ended(key)

    async def abort_multipart(self, key: str, *, multipart_upload_id: str) -> None:
        try:
            await self._client.abort_multipart_upload(
                Bucket=self._bucket, Key=key, UploadId=multipart_upload_id
            )
        except ClientError as exc:
            if _error_code(exc) != "NoSuchUpload":  # aborted meanwhile: the goal is met
                raise _storage_error("abort a multipart upload", exc) from exc
        except BotoCoreError as exc:
            raise _storage_error("abort a multipart upload", exc) from exc
        await self._tracker.ended(key)

    async def sha256_of(self, key: str) -> str:
        digest = hashlib.sha256()
        try:
            response = await self._client.get_object(Bucket=self._bucket, Key=key)
            body = response["Body"]
            try:
                while chunk := await body.read(_HASH_CHUNK_SIZE):
                    # hashlib lets go of the GIL on big buffers: hash in a thread.
                    await anyio.to_thread.run_sync(digest.update, chunk)
            finally:
                body.close()
        except ClientError as exc:
            if _error_code(exc) in _MISSING_CODES:
                raise NotFound("No such object.") from None
            raise _storage_error("read an object", exc) from exc
        except BotoCoreError as exc:
            raise _storage_error("read an object", exc) from exc
        return base64.b64encode(digest.digest()).decode()

    async def check_ready(self) -> None:
        try:
            await self._client.head_bucket(Bucket=self._bucket)
        except (ClientError, BotoCoreError) as exc:
            raise _storage_error("reach the bucket", exc) from exc

    async def initialize(self, *, cors_origins: list[str]) -> list[str]:
        done: list[str] = []
        try:
            try:
                await self._client.create_bucket(Bucket=self._bucket)
                done.append(f"created bucket {self._bucket}")
            except ClientError as exc:
                if _error_code(exc) not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                    raise
                done.append(f"bucket {self._bucket} exists")
            await self._client.put_public_access_block(
                Bucket=self._bucket,
                PublicAccessBlockConfiguration={
                    "BlockPublicAcls": True,
                    "IgnorePublicAcls": True,
                    "BlockPublicPolicy": True,
                    "RestrictPublicBuckets": True,
                },
            )
            done.append("blocked public access")
            await self._client.put_bucket_lifecycle_configuration(
                Bucket=self._bucket,
                LifecycleConfiguration={
                    "Rules": [
                        {
                            "ID": "abort-incomplete-multipart-uploads",
                            "Status": "Enabled",
                            "Filter": {"Prefix": ""},
                            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
                        }
                    ]
                },
            )
            done.append("lifecycle: abort incomplete multipart uploads after 1 day")
            if cors_origins:
                await self._client.put_bucket_cors(
                    Bucket=self._bucket,
                    CORSConfiguration={
                        "CORSRules": [
                            {
                                "AllowedOrigins": cors_origins,
                                "AllowedMethods": ["GET", "PUT", "POST", "HEAD"],
                                "AllowedHeaders": [
                                    "content-type",
                                    "if-none-match",
                                    "x-amz-checksum-sha256",
                                    "x-amz-*",
                                ],
                                # Multipart clients read each part's ETag; POST uploads, Location.
                                "ExposeHeaders": ["ETag", "Location"],
                                "MaxAgeSeconds": 3600,
                            }
                        ]
                    },
                )
                done.append(f"CORS for {', '.join(cors_origins)}")
        except (ClientError, BotoCoreError) as exc:
            raise _storage_error("initialise the bucket", exc) from exc
        return done


class _Untracked(MultipartTracker):
    async def starting(self, key: str) -> None:
        return None

    async def ended(self, key: str) -> None:
        return None


class _Part:
    """The body of one ``put_object``/``upload_part`` request, sent from its buffer.

    Given a ``bytearray``, aiohttp copies a part twice on its way to the socket
    (it slices the body to its length, then joins it with the headers), and
    botocore hashes it for the SigV4 signature on the event loop (over plain
    HTTP always; over HTTPS too unless the request carries a checksum), which
    blocks the loop for milliseconds per part. So a part is:

    - file-like for botocore (``read``/``seek``/``len``: a valid blob, rewound
      before a retry);
    - an async iterable of memoryview slices for aiohttp, which writes them to
      the socket without a copy (the first slice is small because aiohttp joins
      the first write with the headers);
    - hashed once, in a worker thread (hashlib releases the GIL), and
      :class:`_PrehashedS3SigV4Auth` signs that hash instead of hashing again.

    The buffer must not change until the request is done: ``put_stream``
    refills a buffer only after its part's request has returned.
    """

    FIRST_WRITE = 64 * 1024

    def __init__(self, data: memoryview, sha256_hex: str) -> None:
        self._data = data
        self._position = 0
        self.sha256_hex = sha256_hex

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


class _PrehashedS3SigV4Auth(botocore.auth.S3SigV4Auth):  # type: ignore[misc]
    """S3's SigV4 signer that takes a :class:`_Part`'s payload hash from the part.

    Everything else, the signature included, is what ``s3v4`` does.
    """

    def payload(self, request: AWSRequest) -> str:
        body = request.body
        if (
            isinstance(body, _Part)
            and not self._is_streaming_checksum_payload(request)
            and self._should_sha256_sign_payload(request)
        ):
            return body.sha256_hex
        payload: str = super().payload(request)
        return payload


# botocore looks signers up by name in this table; the name is ours alone.
_PREHASHED_SIGNER = "s3v4-uploadsvc-prehashed"
botocore.auth.AUTH_TYPE_MAPS.setdefault(_PREHASHED_SIGNER, _PrehashedS3SigV4Auth)


def _sign_parts_with_their_hash(client: Any) -> None:
    """Make ``client`` sign the requests that may carry a :class:`_Part` with its hash."""
    for operation in ("PutObject", "UploadPart"):
        client.meta.events.register_first(
            f"choose-signer.s3.{operation}",
            _choose_prehashed_signer,
            unique_id=f"uploadsvc-prehashed-{operation}",
        )


def _choose_prehashed_signer(signature_version: str, **kwargs: Any) -> str | None:
    # Only where botocore would sign a request with plain "s3v4": presigned
    # URLs ("s3v4-query") and other schemes keep botocore's own choice.
    return _PREHASHED_SIGNER if signature_version == "s3v4" else None


def _storage_error(action: str, exc: Exception) -> StorageError:
    # Log the storage's own words for operators; clients get a generic sentence,
    # never an endpoint, a bucket policy or a credential.
    logger.warning("S3 failed to %s: %s", action, exc)
    return StorageError(f"Object storage failed to {action}; try again later.")


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
        presign_client = client
        if public_endpoint != settings.s3_endpoint_url:
            presign_client = await stack.enter_async_context(
                session.client("s3", endpoint_url=public_endpoint, **client_args)
            )
        yield S3Storage(
            client=client,
            presign_client=presign_client,
            bucket=settings.s3_bucket,
            tracker=tracker,
        )
