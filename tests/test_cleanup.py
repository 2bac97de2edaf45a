"""Cleanup removes orphans and never a confirmed file's object (docs/api.md, "Cleanup")."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import shutil
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import delete, event, func, select, update

from tests.conftest import Api
from tests.support.files import MiB, pdf
from tests.test_image_variants import jpeg_rotated_with_gps
from uploadsvc.db import utcnow
from uploadsvc.errors import StorageError
from uploadsvc.job_queue import InProcessQueue
from uploadsvc.models.cleanup import CleanupRun
from uploadsvc.models.uploads import Upload, UploadStatus
from uploadsvc.profiles import staging_key
from uploadsvc.services.cleanup import CleanupReport, run_cleanup
from uploadsvc.storage import S3Storage

both_backends = pytest.mark.parametrize("backend", ["pg-s3", "pg-local"])

DAY = dt.timedelta(days=1)
LATER = dt.timedelta(days=3)  # "now" for runs that should see every object as old
PENDING_BODY = b"pending bytes\n"
DELETED_BODY = b"deleted, object left behind\n"
NO_ROW_BODY = b"nobody asked for this\n"


async def _cleanup(
    api: Api, *, dry_run: bool = False, later: bool = True, all_incomplete: bool = False
) -> CleanupReport:
    return await run_cleanup(
        api.resources.session_factory,
        api.resources.storage,
        older_than=DAY,
        dry_run=dry_run,
        all_incomplete=all_incomplete,
        now=utcnow() + LATER if later else None,
    )


async def _pending_with_object(api: Api, body: bytes = PENDING_BODY) -> dict[str, Any]:
    grant = await api.grant(body)
    assert (await api.put(grant, body)).status_code == 200
    return grant


async def _set_url_expiry(api: Api, upload_id: str, expires_at: dt.datetime) -> None:
    async with api.resources.session_factory() as session, session.begin():
        await session.execute(
            update(Upload)
            .where(Upload.id == uuid.UUID(upload_id))
            .values(url_expires_at=expires_at)
        )


async def _age_url(api: Api, upload_id: str) -> None:
    """Make a pending upload's URL look expired long ago."""
    await _set_url_expiry(api, upload_id, utcnow() - LATER)


async def _set_status(api: Api, upload_id: str, status: UploadStatus) -> None:
    async with api.resources.session_factory() as session, session.begin():
        await session.execute(
            update(Upload).where(Upload.id == uuid.UUID(upload_id)).values(status=status)
        )


async def _world(api: Api) -> dict[str, str]:
    """One object of every kind; returns their keys by kind."""
    confirmed = await api.upload(b"a confirmed file\n")
    young_pending = await _pending_with_object(api)
    # Still valid even at the "later" time the runs pretend it is.
    await _set_url_expiry(api, young_pending["upload_id"], utcnow() + LATER + DAY)
    expired_pending = await _pending_with_object(api)
    await _age_url(api, expired_pending["upload_id"])
    rejected = await _pending_with_object(api)
    await _set_status(api, rejected["upload_id"], UploadStatus.REJECTED)
    deleted = await api.upload(DELETED_BODY)
    await _set_status(api, deleted["file_id"], UploadStatus.DELETED)
    no_row = f"uploads/mallory/2026/01/01/{uuid.uuid4()}.txt"
    await api.plant(no_row, NO_ROW_BODY, "text/plain")
    event_media = f"events/{uuid.uuid4()}/logo"
    await api.plant(event_media, b"an event logo\n", "text/plain")
    return {
        "confirmed": confirmed["file_key"],
        # A pending upload's bytes wait at the staging key its URL names.
        "young_pending": staging_key(young_pending["file_key"]),
        "expired_pending": staging_key(expired_pending["file_key"]),
        "rejected": staging_key(rejected["file_key"]),
        "deleted": deleted["file_key"],
        "no_row": no_row,
        "event_media": event_media,
    }


async def _existing(api: Api, keys: dict[str, str]) -> set[str]:
    return {kind for kind, key in keys.items() if await api.object_exists(key)}


@both_backends
async def test_each_kind_of_orphan_is_removed_and_the_rest_kept(api: Api) -> None:
    keys = await _world(api)
    report = await _cleanup(api)
    assert report.outcome == "done"
    assert await _existing(api, keys) == {"confirmed", "young_pending", "event_media"}
    assert report.deleted == 4
    assert report.expired == 1
    # The objects of the expired and the rejected upload, of the deleted file, of no row.
    assert report.freed_bytes == 2 * len(PENDING_BODY) + len(DELETED_BODY) + len(NO_ROW_BODY)
    # The claimed upload can no longer be confirmed.
    gone = await api.confirm(keys["expired_pending"])
    assert gone.status_code == 410
    assert gone.json()["code"] == "upload_gone"
    # The run is recorded.
    async with api.resources.session_factory() as session:
        run = await session.get(CleanupRun, report.run_id)
    assert run is not None
    assert (run.deleted, run.expired, run.outcome) == (4, 1, "done")


@both_backends
async def test_young_objects_without_a_row_are_kept(api: Api) -> None:
    keys = await _world(api)
    report = await _cleanup(api, later=False)
    # Finished (and long-expired) uploads go at once; an object with no row
    # waits until it is older than the cutoff.
    assert await _existing(api, keys) == {"confirmed", "young_pending", "no_row", "event_media"}
    assert report.deleted == 3


@both_backends
async def test_dry_run_reports_and_deletes_nothing(api: Api) -> None:
    keys = await _world(api)
    report = await _cleanup(api, dry_run=True)
    assert (report.deleted, report.expired) == (4, 1)
    assert await _existing(api, keys) == set(keys)
    async with api.resources.session_factory() as session:
        pending = await session.scalar(
            select(func.count()).where(Upload.status == UploadStatus.PENDING)
        )
    assert pending == 2


@both_backends
async def test_incomplete_multipart_uploads_are_aborted(api: Api) -> None:
    storage = api.resources.storage
    key = f"uploads/alice/2026/01/01/{uuid.uuid4()}.bin"
    await storage.start_multipart(key, content_type="application/pdf")
    young = await _cleanup(api, later=False)
    assert young.aborted == 0
    report = await _cleanup(api)
    assert report.aborted == 1
    assert await storage.list_incomplete_uploads("uploads/") == []


@both_backends
async def test_a_multipart_upload_still_in_progress_keeps_its_parts(api: Api) -> None:
    part = pdf(5 * MiB)  # exactly the 5 MiB part size
    started = (
        await api.app_client.post(
            "/v1/uploads/multipart",
            json={"filename": "big.pdf", "content_type": "application/pdf", "size": 2 * len(part)},
            headers=api.headers(),
        )
    ).json()
    put = await api.app_client.put(started["parts"][0]["url"], content=part)
    assert put.status_code == 200, put.text
    upload_id = uuid.UUID(started["upload_id"])

    async def set_url_expiry(when: dt.datetime) -> None:
        async with api.resources.session_factory() as session, session.begin():
            await session.execute(
                update(Upload).where(Upload.id == upload_id).values(url_expires_at=when)
            )

    # Begun longer ago than the cutoff, but the client still asks for part
    # URLs (each request moves the URL expiry on): the parts stay.
    await set_url_expiry(utcnow() + LATER + DAY)
    kept = await _cleanup(api)
    assert kept.aborted == 0
    assert await api.status_of(started["upload_id"]) == "pending"
    parts = await api.app_client.get(
        f"/v1/uploads/{started['upload_id']}/parts", headers=api.headers()
    )
    assert [p["part_number"] for p in parts.json()["parts"]] == [1]

    # The client went away: once its URLs lapse, the upload expires and its parts go.
    await set_url_expiry(utcnow())
    gone = await _cleanup(api)
    assert gone.expired == 1
    assert gone.aborted == 1
    assert await api.status_of(started["upload_id"]) == "expired"
    assert await api.resources.storage.list_incomplete_uploads("") == []


@both_backends
async def test_two_runs_at_once_delete_each_orphan_once(api: Api) -> None:
    keys = await _world(api)
    first, second = await asyncio.gather(_cleanup(api), _cleanup(api))
    assert sorted([first.outcome, second.outcome]) == ["done", "skipped"]
    assert first.deleted + second.deleted == 4
    assert await _existing(api, keys) == {"confirmed", "young_pending", "event_media"}
    # The lease is free again afterwards.
    assert (await _cleanup(api)).outcome == "done"


@both_backends
async def test_confirm_racing_cleanup_never_loses_a_confirmed_object(api: Api) -> None:
    rng = random.Random(20261123)
    for _round in range(3):
        grants = [await _pending_with_object(api, f"race {n}\n".encode()) for n in range(8)]
        for grant in grants:
            await _age_url(api, grant["upload_id"])

        async def confirm_later(grant: dict[str, Any]) -> int:
            await asyncio.sleep(rng.random() * 0.05)
            return (await api.confirm(grant["file_key"])).status_code

        async def cleanup_later() -> CleanupReport:
            await asyncio.sleep(rng.random() * 0.05)
            return await _cleanup(api)

        results = await asyncio.gather(cleanup_later(), *(confirm_later(g) for g in grants))
        statuses = results[1:]
        assert set(statuses) <= {200, 410}, statuses
        for grant, status in zip(grants, statuses, strict=True):
            exists = await api.object_exists(grant["file_key"])
            row = await api.status_of(grant["upload_id"])
            if status == 200:
                assert row == "confirmed"
                assert exists, "a confirmed file lost its object"
            else:
                assert row == "expired"
        # A second run finds no orphan left behind by the race.
        await _cleanup(api)
        for grant, status in zip(grants, statuses, strict=True):
            assert await api.object_exists(grant["file_key"]) == (status == 200)


async def _put(api: Api, keys: list[str]) -> None:
    gate = asyncio.Semaphore(32)

    async def put(key: str) -> None:
        async def body() -> AsyncIterator[bytes]:
            yield key.encode()

        async with gate:
            await api.resources.storage.put_stream(key, content_type="text/plain", chunks=body())

    await asyncio.gather(*(put(key) for key in keys))


@pytest.mark.parametrize("backend", ["pg-s3", "pg-local", "sqlite-local"])
async def test_a_bucket_of_several_pages_and_batches_is_swept_exactly(api: Api) -> None:
    # 2,300 objects: three listing pages, 1,380 orphans in two delete batches,
    # so the read-ahead, the lookups and the deletions in flight all overlap.
    kinds = ["no_row", "rejected", "confirmed", "young_pending", "deleted"]
    keys: dict[str, list[str]] = {kind: [] for kind in kinds}
    keys["event"] = [f"events/{uuid.uuid4()}/logo"]
    for n in range(2300):
        keys[kinds[n % 5]].append(f"uploads/u{n % 7}/2026/01/01/{uuid.uuid4()}.txt")
    await _put(api, [key for group in keys.values() for key in group])
    now = utcnow()
    status = {
        "rejected": UploadStatus.REJECTED,
        "confirmed": UploadStatus.CONFIRMED,
        "young_pending": UploadStatus.PENDING,
        "deleted": UploadStatus.DELETED,
    }
    async with api.resources.session_factory() as session, session.begin():
        for kind, state in status.items():
            session.add_all(
                Upload(
                    owner_id="alice",
                    purpose="attachment",
                    file_key=key,
                    filename="f.txt",
                    content_type="text/plain",
                    size_bytes=len(key),
                    status=state,
                    url_expires_at=now + LATER + DAY,
                )
                for key in keys[kind]
            )
    lookups: list[str] = []

    def on_statement(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "uploads.file_key" in statement and "open_multipart_uploads" not in statement:
            lookups.append(statement)

    engine = api.resources.engine.sync_engine
    event.listen(engine, "before_cursor_execute", on_statement)
    try:
        report = await _cleanup(api)
    finally:
        event.remove(engine, "before_cursor_execute", on_statement)

    orphans = keys["no_row"] + keys["rejected"] + keys["deleted"]
    assert (report.outcome, report.scanned, report.deleted) == ("done", 2300, len(orphans))
    assert report.freed_bytes == sum(len(key) for key in orphans)
    kept = keys["confirmed"] + keys["young_pending"]
    assert sorted(await api.stored_keys()) == sorted(kept)
    assert await api.object_exists(keys["event"][0])
    assert len(lookups) == 3  # one per listing page


@pytest.mark.parametrize("backend", ["pg-s3"])
async def test_cleanup_asks_storage_only_about_the_keys_of_the_multipart_ledger(
    api: Api,
) -> None:
    storage = api.resources.storage
    assert isinstance(storage, S3Storage)
    bucket = api.settings.s3_bucket
    sent: list[tuple[str, str]] = []

    def on_call(model: Any, params: dict[str, Any], **_: Any) -> None:
        sent.append((model.name, str(params.get("Prefix") or params.get("Key") or "")))

    storage._client.meta.events.register("provide-client-params.s3", on_call)

    def multipart_calls() -> list[tuple[str, str]]:
        return [call for call in sent if "Multipart" in call[0]]

    # Begun by something else (or before the ledger existed): not cleanup's;
    # the bucket's lifecycle rule aborts it.
    foreign = f"uploads/alice/2026/01/01/{uuid.uuid4()}.bin"
    await storage._client.create_multipart_upload(Bucket=bucket, Key=foreign)
    # Begun by the service, which then stopped (no row, no complete, no abort).
    key = f"uploads/alice/2026/01/01/{uuid.uuid4()}.bin"
    await storage.start_multipart(key, content_type="application/pdf")
    assert await api.open_multipart_keys() == [key]
    sent.clear()

    # Younger than the cutoff: not a single multipart request.
    young = await _cleanup(api, later=False)
    assert (young.aborted, multipart_calls()) == (0, [])
    # A dry run once it is due: storage is asked about that key only.
    dry = await _cleanup(api, dry_run=True)
    assert (dry.aborted, multipart_calls()) == (1, [("ListMultipartUploads", key)])
    assert await api.open_multipart_keys() == [key]
    sent.clear()
    report = await _cleanup(api)
    assert report.aborted == 1
    assert [name for name, _ in multipart_calls()] == [
        "ListMultipartUploads",
        "AbortMultipartUpload",
    ]
    assert await api.open_multipart_keys() == []
    left = await storage.list_incomplete_uploads("")
    assert [upload.key for upload in left] == [foreign]
    # Nothing named any more: the next run sends no multipart request.
    sent.clear()
    assert (await _cleanup(api)).aborted == 0
    assert multipart_calls() == []
    # An operator's run with --all-incomplete lists them all, once.
    swept = await _cleanup(api, all_incomplete=True)
    assert swept.aborted == 1
    assert multipart_calls() == [
        ("ListMultipartUploads", ""),
        ("AbortMultipartUpload", foreign),
    ]
    assert await storage.list_incomplete_uploads("") == []


@pytest.mark.parametrize("backend", ["pg-local"])
async def test_a_failed_deletion_fails_the_run_and_frees_the_lease(api: Api) -> None:
    orphan = f"uploads/mallory/2026/01/01/{uuid.uuid4()}.txt"
    await api.plant(orphan, b"left behind\n", "text/plain")
    # Something the backend cannot delete where the object's metadata should be.
    sidecar = api.settings.local_storage_dir / "meta" / f"{orphan}.json"
    sidecar.unlink()
    (sidecar / "not-a-file").mkdir(parents=True)
    with pytest.raises(StorageError):
        await _cleanup(api)
    async with api.resources.session_factory() as session:
        outcomes = (await session.scalars(select(CleanupRun.outcome))).all()
    assert outcomes == ["failed"]
    shutil.rmtree(sidecar)
    assert (await _cleanup(api)).outcome == "done"
    assert not await api.object_exists(orphan)


@pytest.mark.parametrize("backend", ["pg-local"])
async def test_temporary_files_of_a_stopped_local_upload_are_removed(api: Api) -> None:
    # What a process killed mid-upload leaves on the local backend: the temp
    # file it was writing, or the folder of a multipart completion it began.
    root = api.settings.local_storage_dir
    (root / "tmp").mkdir(parents=True, exist_ok=True)
    stopped = root / "tmp" / str(uuid.uuid4())
    stopped.write_bytes(b"half an upload")
    completing = root / "multipart" / f"completing-{uuid.uuid4().hex}"
    completing.mkdir(parents=True)
    (completing / "00001-0123").write_bytes(b"a part")
    two_days_ago = (utcnow() - 2 * DAY).timestamp()
    for path in (stopped, completing):
        os.utime(path, (two_days_ago, two_days_ago))
    # Being written right now.
    active = root / "tmp" / str(uuid.uuid4())
    active.write_bytes(b"still arriving")

    dry = await _cleanup(api, dry_run=True, later=False)
    assert dry.aborted == 2
    assert stopped.exists()
    report = await _cleanup(api, later=False)
    assert report.aborted == 2
    assert not stopped.exists()
    assert not completing.exists()
    assert active.exists()


@both_backends
async def test_listing_is_in_s3_key_order_on_both_backends(api: Api) -> None:
    # "-" and "." sort before "/": S3 lists "bob-x/..." before "bob/...". A
    # walk that sorted folder names alone would list "bob/" first.
    keys = [
        "uploads/bob/2026/a.txt",
        "uploads/bob-x/2026/b.txt",
        "uploads/bob.x/c.txt",
        "uploads/bob/2026-01/d.txt",
        "uploads/bob0/e.txt",
        "uploads/bo/f.txt",
    ]
    for key in keys:
        await api.plant(key, b"x\n", "text/plain")
    listed = [
        item.key async for page in api.resources.storage.list_pages("uploads/") for item in page
    ]
    assert listed == sorted(keys)
    after = [
        item.key
        async for page in api.resources.storage.list_pages(start_after="uploads/bob.x/c.txt")
        for item in page
    ]
    assert after == [key for key in sorted(keys) if key > "uploads/bob.x/c.txt"]


@both_backends
async def test_variants_whose_file_is_gone_are_collected_and_a_files_variants_kept(
    api: Api,
) -> None:
    kept = await api.upload(jpeg_rotated_with_gps(400, 300), content_type="image/jpeg")
    lost = await api.upload(jpeg_rotated_with_gps(400, 300), content_type="image/jpeg")
    queue = api.resources.jobs
    assert isinstance(queue, InProcessQueue)
    await queue.wait_idle()
    kept_keys = await _variant_keys(api, kept["file_id"])
    lost_keys = await _variant_keys(api, lost["file_id"])
    assert len(kept_keys) == len(lost_keys) == 4
    # The row goes without its objects (its variant rows go with it).
    async with api.resources.session_factory() as session, session.begin():
        await session.execute(delete(Upload).where(Upload.id == uuid.UUID(lost["file_id"])))

    young = await _cleanup(api, later=False)
    assert young.deleted == 0  # no row, but younger than the cutoff: a job may be storing it
    report = await _cleanup(api)
    assert report.deleted == 1 + 4  # the lost file's original and its variants
    assert not await api.object_exists(lost["file_key"])
    assert [await api.object_exists(key) for key in lost_keys] == [False] * 4
    assert [await api.object_exists(key) for key in kept_keys] == [True] * 4


async def _variant_keys(api: Api, file_id: str) -> list[str]:
    keys: list[str] = []
    async for page in api.resources.storage.list_pages(f"variants/{file_id}/"):
        keys += [listed.key for listed in page]
    return keys
