"""Local-disk storage: files, their metadata, multipart folders, listings.

This is what ``make dev`` uses, so a new user can try the whole flow without
a cloud account. An object is a file under ``objects/``, its metadata (type,
checksum) a JSON file under ``meta/``; a multipart upload is a folder under
``multipart/``; every upload is written to ``tmp/`` first. The URLs this
backend presigns are HMAC-signed (``local_signing.py``) and served by the
app itself (``local_server.py``), enforcing what S3 enforces for the same
presigned URL.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
from anyio import to_thread

from uploadsvc.errors import BadRequest, NotFound, PreconditionFailed, StorageError, Unprocessable
from uploadsvc.storage.base import (
    DELETE_BATCH_SIZE,
    LIST_PAGE_SIZE,
    MIN_PART_SIZE,
    GetGrant,
    IncompleteUpload,
    ListedObject,
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
from uploadsvc.storage.local_signing import Param, UrlSigner

# A promote that finds its key claimed waits this long, at most, for the claimer's
# second link (two hard links on one disk: microseconds, unless that process died).
PROMOTE_WAIT_STEPS = 200
PROMOTE_WAIT_STEP_SECONDS = 0.005

logger = logging.getLogger(__name__)

# Reads of an object for streaming (scanning): large enough to keep syscalls rare.
_READ_CHUNK_SIZE = 1024 * 1024

CHUNK_SIZE = 1024 * 1024

# A multipart upload is a folder multipart/<multipart upload id>/ holding
# upload.json and one file per part, named <part number>-<md5 hex> (its ETag).
_MULTIPART_UPLOAD_ID_PATTERN = re.compile(r"[0-9a-f]{32}")
_PART_FILE = re.compile(r"(?P<number>[0-9]{5})-(?P<etag>[0-9a-f]{32})")
_UPLOAD_FILE = "upload.json"
# An object's metadata: meta/<key>.json.
_META_SUFFIX = ".json"
_COMPLETING = "completing-"


@dataclass(frozen=True, slots=True)
class Received:
    """A request body, written whole to a temporary file."""

    path: Path
    size: int
    # SHA-256, or for a part the MD5 that S3 uses as its ETag.
    digest: bytes


class LocalStorage(Storage):
    """Objects as files under ``root`` (see the module docstring for the layout)."""

    def __init__(self, *, root: Path, secret: str, public_base_url: str) -> None:
        self._objects = root / "objects"
        self._meta = root / "meta"
        self._tmp = root / "tmp"
        self._multipart = root / "multipart"
        # Signs this backend's URLs; local_server.py verifies them with it.
        self.signer = UrlSigner(secret=secret, public_base_url=public_base_url)

    # --- Storage interface -------------------------------------------------

    async def presign_put(self, grant: PutGrant) -> PresignedRequest:
        params = {
            Param.CONTENT_TYPE: grant.content_type,
            Param.CONTENT_LENGTH: str(grant.content_length),
            Param.IF_NONE_MATCH: "*",
        }
        if grant.sha256 is not None:
            params[Param.SHA256] = grant.sha256
        url = self.signer.sign("PUT", grant.key, params, grant.expires_in)
        return PresignedRequest(url=url, method="PUT", headers=grant.client_headers())

    async def presign_browser_upload(
        self, key: str, *, content_type: str, max_size: int, expires_in: int
    ) -> PresignedRequest:
        # S3 answers a POST policy here; a signed PUT with a size cap does the same job.
        params = {
            Param.CONTENT_TYPE: content_type,
            Param.MAX_LENGTH: str(max_size),
            Param.IF_NONE_MATCH: "*",
        }
        url = self.signer.sign("PUT", key, params, expires_in)
        headers = {"Content-Type": content_type, "If-None-Match": "*"}
        return PresignedRequest(url=url, method="PUT", headers=headers)

    async def presign_get(self, grant: GetGrant) -> str:
        params = {
            name: value
            for name, value in (
                (Param.RESPONSE_TYPE, grant.content_type),
                (Param.RESPONSE_DISPOSITION, grant.content_disposition),
            )
            if value is not None
        }
        return self.signer.sign("GET", grant.key, params, grant.expires_in)

    async def put_stream(
        self, key: str, *, content_type: str, chunks: AsyncIterator[bytes]
    ) -> None:
        async with self.receiving(chunks, limit=sys.maxsize) as received:
            await self.publish(
                received.path, key, content_type=content_type, sha256=received.digest
            )

    async def download_to(self, key: str, destination: Path) -> None:
        source = self._object_path(key)
        try:
            await to_thread.run_sync(shutil.copyfile, source, destination)
        except FileNotFoundError:
            raise no_such_object() from None

    async def read_chunks(self, key: str) -> AsyncGenerator[bytes, None]:
        try:
            f = await anyio.open_file(self._object_path(key), "rb")
        except FileNotFoundError:
            raise no_such_object() from None
        async with f:
            while chunk := await f.read(_READ_CHUNK_SIZE):
                yield chunk

    async def move(self, key: str, new_key: str) -> None:
        source, target = self._object_path(key), self._object_path(new_key)
        if not await anyio.Path(source).exists():
            raise no_such_object()
        for old, new in ((source, target), (self._meta_path(key), self._meta_path(new_key))):
            await anyio.Path(new.parent).mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):  # an object may have no metadata
                await anyio.Path(old).rename(new)

    async def head(self, key: str) -> ObjectInfo | None:
        path = anyio.Path(self._object_path(key))
        try:
            stat = await path.stat()
        except FileNotFoundError:
            return None
        meta = await self._read_meta(key)
        return ObjectInfo(
            key=key,
            size=stat.st_size,
            content_type=meta.get("content_type"),
            sha256=meta.get("sha256"),
            last_modified=dt.datetime.fromtimestamp(stat.st_mtime, dt.UTC),
        )

    async def read_prefix(self, key: str, length: int) -> bytes:
        try:
            async with await anyio.open_file(self._object_path(key), "rb") as f:
                return await f.read(length)
        except FileNotFoundError:
            raise no_such_object() from None

    async def delete(self, key: str) -> None:
        for path in (self._object_path(key), self._meta_path(key)):
            await anyio.Path(path).unlink(missing_ok=True)

    async def check_ready(self) -> None:
        if not await anyio.Path(self._objects).is_dir():
            raise StorageError("The local storage folder does not exist.")

    async def initialize(self, *, cors_origins: list[str], check: bool = False) -> StorageSetup:
        folders = (self._objects, self._meta, self._tmp, self._multipart)
        if check:
            missing = [str(f) for f in folders if not await anyio.Path(f).is_dir()]
            if missing:
                return StorageSetup(drift=[f"missing folder {folder}" for folder in missing])
            return StorageSetup(done=[f"{self._objects.parent} exists"])
        for folder in folders:
            await anyio.Path(folder).mkdir(parents=True, exist_ok=True)
        return StorageSetup(done=[f"created {self._objects.parent}"])

    # --- listing and bulk deletion (cleanup) --------------------------------

    async def list_pages(
        self, prefix: str = "", *, start_after: str | None = None
    ) -> AsyncIterator[list[ListedObject]]:
        # The walk is a blocking generator; each page is pulled in a worker
        # thread, so the event loop never waits on the disk.
        walk = self._walk(prefix, start_after or "")
        while True:
            page = await to_thread.run_sync(_take, walk, LIST_PAGE_SIZE)
            if page:
                yield page
            if len(page) < LIST_PAGE_SIZE:
                return

    def _walk(self, prefix: str, start_after: str) -> Iterator[ListedObject]:
        """Objects under ``prefix`` after ``start_after``, in key order (blocking)."""
        folder = prefix.rpartition("/")[0]
        start = self._objects.joinpath(*folder.split("/")) if folder else self._objects

        def visit(directory: Path, key_prefix: str) -> Iterator[ListedObject]:
            try:
                entries = sorted(os.scandir(directory), key=_s3_order)
            except FileNotFoundError:
                return
            for entry in entries:
                key = key_prefix + entry.name
                if entry.is_dir(follow_symlinks=False):
                    # Skip whole folders that sort before start_after (S3's StartAfter).
                    if key + "/\U0010ffff" > start_after:
                        yield from visit(Path(entry.path), key + "/")
                elif entry.is_file(follow_symlinks=False) and key > start_after:
                    try:
                        stat = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue  # deleted since the folder was read (a promote, a delete)
                    yield ListedObject(
                        key=key,
                        size=stat.st_size,
                        last_modified=dt.datetime.fromtimestamp(stat.st_mtime, dt.UTC),
                    )

        for listed in visit(start, folder + "/" if folder else ""):
            if listed.key.startswith(prefix):
                yield listed

    async def delete_many(self, keys: list[str]) -> None:
        if len(keys) > DELETE_BATCH_SIZE:
            raise ValueError(f"at most {DELETE_BATCH_SIZE} keys per call")
        if not keys:
            return
        # Plain strings, not Path objects: pathlib would parse (and intern)
        # every part of every key. Every key is checked before any deletion.
        objects, meta = f"{self._objects}{os.sep}", f"{self._meta}{os.sep}"
        paths: list[str] = []
        for key in keys:
            _key_parts(key)
            paths += (objects + key, meta + key + _META_SUFFIX)
        # One rm process for the batch, not os.unlink in a worker thread:
        # during cleanup another thread lists at the same time, and two
        # threads making a system call per file pass the GIL back and forth
        # at every one (a whole run measured twice as slow). -f: a file
        # already gone, or an object stored without metadata, is no error.
        try:
            await anyio.run_process(["rm", "-f", "--", *paths])
        except (OSError, subprocess.CalledProcessError) as exc:
            stderr = getattr(exc, "stderr", b"") or b""
            logger.warning("could not delete local objects: %s %s", exc, stderr[:500])
            raise StorageError("Local storage failed to delete some objects.") from exc

    async def list_incomplete_uploads(self, prefix: str) -> list[IncompleteUpload]:
        return await to_thread.run_sync(self._incomplete_uploads, prefix)

    def _incomplete_uploads(self, prefix: str) -> list[IncompleteUpload]:
        found = []
        try:
            entries = list(os.scandir(self._multipart))
        except FileNotFoundError:
            return []
        for entry in entries:
            if not _MULTIPART_UPLOAD_ID_PATTERN.fullmatch(entry.name):
                continue  # being completed, or not ours
            try:
                upload = json.loads((Path(entry.path) / _UPLOAD_FILE).read_text())
            except (FileNotFoundError, NotADirectoryError, ValueError):
                continue  # aborted or completed meanwhile
            if upload["key"].startswith(prefix):
                found.append(
                    IncompleteUpload(
                        key=upload["key"],
                        multipart_upload_id=entry.name,
                        initiated=dt.datetime.fromisoformat(upload["initiated"]),
                    )
                )
        return found

    async def abort_incomplete_upload(self, upload: IncompleteUpload) -> None:
        await self.abort_multipart(upload.key, multipart_upload_id=upload.multipart_upload_id)

    async def remove_leftover_temporaries(self, before: dt.datetime, *, dry_run: bool) -> int:
        return await to_thread.run_sync(self._remove_leftovers, before.timestamp(), dry_run)

    def _remove_leftovers(self, before: float, dry_run: bool) -> int:
        """Temp files of uploads and folders of completions that never finished (blocking).

        A temp file is written to while its upload goes on, and a completion
        takes seconds: one untouched since ``before`` belongs to a process
        that stopped.
        """
        leftovers: list[os.DirEntry[str]] = []
        for folder, wanted in ((self._tmp, _is_file), (self._multipart, _is_completing)):
            with contextlib.suppress(FileNotFoundError), os.scandir(folder) as entries:
                leftovers += [
                    entry
                    for entry in entries
                    if wanted(entry) and entry.stat(follow_symlinks=False).st_mtime < before
                ]
        if not dry_run:
            for entry in leftovers:
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
        return len(leftovers)

    # --- multipart uploads straight from clients ------------------------------

    async def start_multipart(self, key: str, *, content_type: str) -> str:
        self._object_path(key)  # refuses keys that could leave the folder
        multipart_upload_id = uuid.uuid4().hex
        folder = anyio.Path(self._multipart / multipart_upload_id)
        await folder.mkdir(parents=True)
        initiated = dt.datetime.now(dt.UTC).isoformat()
        await (folder / _UPLOAD_FILE).write_text(
            json.dumps({"key": key, "content_type": content_type, "initiated": initiated})
        )
        return multipart_upload_id

    async def presign_part(self, grant: PartGrant) -> PresignedRequest:
        params = {
            Param.MULTIPART_UPLOAD_ID: grant.multipart_upload_id,
            Param.PART_NUMBER: str(grant.part_number),
        }
        if grant.content_length is not None:
            params[Param.CONTENT_LENGTH] = str(grant.content_length)
        url = self.signer.sign("PUT", grant.key, params, grant.expires_in)
        return PresignedRequest(url=url, method="PUT")

    async def list_parts(self, key: str, *, multipart_upload_id: str) -> list[UploadedPart]:
        folder, _ = await self._upload_folder(key, multipart_upload_id)
        return await to_thread.run_sync(_parts_in, folder)

    async def complete_multipart(
        self, key: str, *, multipart_upload_id: str, parts: list[tuple[int, str]]
    ) -> None:
        folder, upload = await self._upload_folder(key, multipart_upload_id)
        # Renaming the folder claims the upload: a second complete finds none.
        claimed = folder.with_name(_COMPLETING + multipart_upload_id)
        try:
            await anyio.Path(folder).rename(claimed)
        except FileNotFoundError:
            raise no_such_multipart_upload() from None
        try:
            async with self._temporary() as tmp:
                digest = await to_thread.run_sync(_join_parts, claimed, parts, tmp)
                await self.publish(tmp, key, content_type=upload["content_type"], sha256=digest)
        except BaseException:
            # As on S3, a refused part list leaves the upload open for another try.
            await anyio.Path(claimed).rename(folder)
            raise
        await to_thread.run_sync(shutil.rmtree, claimed, True)

    async def abort_multipart(self, key: str, *, multipart_upload_id: str) -> None:
        try:
            folder, _ = await self._upload_folder(key, multipart_upload_id)
        except NotFound:
            return
        await to_thread.run_sync(shutil.rmtree, folder, True)

    async def sha256_of(self, key: str) -> str:
        recorded = (await self._read_meta(key)).get("sha256")
        if recorded is not None:
            return recorded
        return await to_thread.run_sync(_file_sha256, self._object_path(key))

    async def _upload_folder(
        self, key: str, multipart_upload_id: str
    ) -> tuple[Path, dict[str, str]]:
        """A multipart upload of ``key``: its folder and upload.json; ``NotFound`` otherwise."""
        if not _MULTIPART_UPLOAD_ID_PATTERN.fullmatch(multipart_upload_id):
            raise no_such_multipart_upload()
        folder = self._multipart / multipart_upload_id
        try:
            upload: dict[str, str] = json.loads(await anyio.Path(folder / _UPLOAD_FILE).read_text())
        except FileNotFoundError:
            raise no_such_multipart_upload() from None
        if upload.get("key") != key:
            raise no_such_multipart_upload()
        return folder, upload

    # --- storing and reading objects (local_server.py serves its URLs with these)

    async def publish(self, tmp: Path, key: str, *, content_type: str, sha256: bytes) -> None:
        """Make a complete temp file the object at ``key``, with its metadata.

        ``PreconditionFailed`` if ``key`` holds an object already: the same
        no-overwrite guarantee as S3's If-None-Match (see ``_link_object``).
        The caller removes ``tmp``.
        """
        meta = {"content_type": content_type, "sha256": base64.b64encode(sha256).decode()}
        await self._link_object(tmp, key, meta)

    async def promote(self, staged_key: str, key: str) -> None:
        meta = await self._read_meta(staged_key)
        try:
            await self._link_object(self._object_path(staged_key), key, meta)
        except FileNotFoundError:
            return  # nothing staged
        except PreconditionFailed:
            # `key` is claimed: promoted already, or being promoted by a
            # confirm that links the object next. The staged file stays for
            # that one (cleanup removes it once confirmed); wait for its link,
            # so that this confirm checks the object too instead of missing it.
            await self._wait_for_object(key)
            return
        await self.delete(staged_key)

    async def _wait_for_object(self, key: str) -> None:
        """Return once ``key`` has its object, or after a bound (its claimer died midway)."""
        path = anyio.Path(self._object_path(key))
        for _ in range(PROMOTE_WAIT_STEPS):
            if await path.exists():
                return
            await anyio.sleep(PROMOTE_WAIT_STEP_SECONDS)

    async def _link_object(self, source: Path, key: str, meta: dict[str, str]) -> None:
        """Give the file ``source`` a second name, ``key``, unless an object is there.

        Hard links never replace a file, so there is no race. The metadata is
        linked first: it claims the key, and a second writer (a replayed URL,
        a second confirm) stops there, before it could change the recorded
        type or checksum of the object published first. The object follows;
        until then the key reads as missing (``head`` looks at the object).
        """
        final, meta_path = self._object_path(key), self._meta_path(key)
        for folder in (final.parent, meta_path.parent):
            await anyio.Path(folder).mkdir(parents=True, exist_ok=True)
        async with self._temporary() as written:
            await anyio.Path(written).write_text(json.dumps(meta))
            try:
                await to_thread.run_sync(os.link, written, meta_path)
            except FileExistsError:
                raise PreconditionFailed("An object already exists at this key.") from None
        try:
            await to_thread.run_sync(os.link, source, final)
        except BaseException as exc:
            await anyio.Path(meta_path).unlink(missing_ok=True)
            if isinstance(exc, FileExistsError):  # an object stored without metadata
                raise PreconditionFailed("An object already exists at this key.") from None
            raise

    async def exists(self, key: str) -> bool:
        """Whether there is an object at ``key``."""
        return await anyio.Path(self._object_path(key)).exists()

    @contextlib.asynccontextmanager
    async def receiving(
        self, body: AsyncIterator[bytes], *, limit: int, etag: bool = False
    ) -> AsyncIterator[Received]:
        """Stream the body into a temporary file, removed when the block ends.

        A body over ``limit`` bytes is refused as it arrives. The digest is
        SHA-256, or with ``etag`` the MD5 that S3 uses as a part's ETag.
        """
        async with self._temporary() as tmp:
            digest = hashlib.md5(usedforsecurity=False) if etag else hashlib.sha256()
            written = 0
            async with await anyio.open_file(tmp, "wb") as f:
                async for chunk in body:
                    written += len(chunk)
                    if written > limit:
                        raise BadRequest(
                            "The body is longer than its Content-Length.", code="incomplete_body"
                        )
                    digest.update(chunk)
                    await f.write(chunk)
            yield Received(path=tmp, size=written, digest=digest.digest())

    async def part_folder(self, key: str, multipart_upload_id: str) -> Path:
        """Where the parts of a multipart upload of ``key`` go; ``NotFound`` if there is none."""
        folder, _ = await self._upload_folder(key, multipart_upload_id)
        return folder

    async def store_part(self, folder: Path, part_number: int, received: Received) -> None:
        """Keep a body received with ``etag=True`` as a part, replacing an earlier one."""
        await to_thread.run_sync(
            _store_part, folder, part_number, received.digest.hex(), received.path
        )

    async def read_range(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes ``start`` to ``end`` (inclusive) of the object, in chunks."""
        remaining = end - start + 1
        async with await anyio.open_file(self._object_path(key), "rb") as f:
            await f.seek(start)
            while remaining > 0:
                chunk = await f.read(min(CHUNK_SIZE, remaining))
                if not chunk:
                    break
                remaining -= len(chunk)
                yield chunk

    # --- files -------------------------------------------------------------

    def _object_path(self, key: str) -> Path:
        return self._objects.joinpath(*_key_parts(key))

    def _meta_path(self, key: str) -> Path:
        *folders, name = _key_parts(key)
        return self._meta.joinpath(*folders, name + _META_SUFFIX)

    async def _read_meta(self, key: str) -> dict[str, str]:
        try:
            raw = await anyio.Path(self._meta_path(key)).read_text()
        except FileNotFoundError:
            return {}
        data = json.loads(raw)
        return {k: str(v) for k, v in data.items() if v is not None}

    @contextlib.asynccontextmanager
    async def _temporary(self) -> AsyncIterator[Path]:
        """A new path in the temporary folder; whatever is written there goes after the block."""
        await anyio.Path(self._tmp).mkdir(parents=True, exist_ok=True)
        tmp = self._tmp / str(uuid.uuid4())
        try:
            yield tmp
        finally:
            await anyio.Path(tmp).unlink(missing_ok=True)


def _parts_in(folder: Path) -> list[UploadedPart]:
    """The newest file of each part number in an upload folder (blocking)."""
    newest: dict[int, tuple[int, UploadedPart]] = {}
    for entry in os.scandir(folder):
        match = _PART_FILE.fullmatch(entry.name)
        if match is None:
            continue
        try:
            stat = entry.stat()
        except FileNotFoundError:
            continue  # replaced meanwhile
        number = int(match["number"])
        part = UploadedPart(part_number=number, size=stat.st_size, etag=f'"{match["etag"]}"')
        if number not in newest or stat.st_mtime_ns >= newest[number][0]:
            newest[number] = (stat.st_mtime_ns, part)
    return [newest[number][1] for number in sorted(newest)]


def _part_file(number: int, etag: str) -> str:
    """The file name of a part: its number and ETag (MD5 hex, quotes or not)."""
    bare = etag.strip('"')
    return f"{number:05d}-{bare}"


def _s3_order(entry: os.DirEntry[str]) -> str:
    """Sort a folder's entries as S3 sorts their keys: a folder's keys all
    continue with "/", which sorts after "-" and "." ("bob-x/..." before "bob/...")."""
    return entry.name + "/" if entry.is_dir(follow_symlinks=False) else entry.name


def _is_file(entry: os.DirEntry[str]) -> bool:
    return entry.is_file(follow_symlinks=False)


def _is_completing(entry: os.DirEntry[str]) -> bool:
    return entry.name.startswith(_COMPLETING) and entry.is_dir(follow_symlinks=False)


def _store_part(folder: Path, number: int, etag: str, tmp: Path) -> None:
    """Keep ``tmp`` as part ``number``, replacing an earlier upload of it (blocking)."""
    name = _part_file(number, etag)
    try:
        os.replace(tmp, folder / name)
    except FileNotFoundError:
        raise no_such_multipart_upload() from None
    for entry in os.scandir(folder):
        if entry.name.startswith(f"{number:05d}-") and entry.name != name:
            Path(entry.path).unlink(missing_ok=True)


def _join_parts(folder: Path, parts: list[tuple[int, str]], destination: Path) -> bytes:
    """Check the client's part list as S3 does and write the parts, in order, into one file.

    Returns the SHA-256 of the result (blocking).
    """
    have = {part.part_number: part for part in _parts_in(folder)}
    numbers = [number for number, _ in parts]
    if not parts or numbers != sorted(set(numbers)):
        raise Unprocessable(
            "The parts must be listed once each, in ascending order.", code="invalid_parts"
        )
    for index, (number, etag) in enumerate(parts):
        part = have.get(number)
        if part is None or part.etag.strip('"') != etag.strip('"'):
            raise Unprocessable(
                f"Part {number} was not uploaded, or has another ETag.", code="invalid_parts"
            )
        if index < len(parts) - 1 and part.size < MIN_PART_SIZE:
            raise Unprocessable(
                f"Part {number} is smaller than {MIN_PART_SIZE} bytes and not the last.",
                code="invalid_parts",
            )
    digest = hashlib.sha256()
    with destination.open("wb") as out:
        for number, etag in parts:
            with (folder / _part_file(number, etag)).open("rb") as part_file:
                while chunk := part_file.read(CHUNK_SIZE):
                    digest.update(chunk)
                    out.write(chunk)
    return digest.digest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as f:
            while chunk := f.read(CHUNK_SIZE):
                digest.update(chunk)
    except FileNotFoundError:
        raise no_such_object() from None
    return base64.b64encode(digest.digest()).decode()


def _take(items: Iterator[ListedObject], count: int) -> list[ListedObject]:
    page: list[ListedObject] = []
    for item in items:
        page.append(item)
        if len(page) == count:
            break
    return page


def _key_parts(key: str) -> list[str]:
    """The path parts of a key; ``NotFound`` for a key that could leave the storage folder."""
    parts = key.split("/")
    if not key or "\\" in key or "\x00" in key or any(part in ("", ".", "..") for part in parts):
        raise no_such_object()
    return parts
