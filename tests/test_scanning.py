"""Malware scanning against a real clamd: EICAR is caught on every upload path,
nothing is served before a clean verdict, and an outage only delays the verdict."""

from __future__ import annotations

import asyncio
import io
import os
import uuid
import zipfile
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from PIL import Image
from redis.asyncio import Redis
from sqlalchemy import select

from tests.conftest import TEST_REDIS_URL, Api
from tests.openevent_archives import build_zip
from tests.support.clamd import EICAR, SIGNATURE, ClamdServer
from tests.support.files import pdf, plain_text, png
from tests.support.webhooks import (  # noqa: F401 - receiver_fixture is the `receiver` fixture
    Receiver,
    receiver_fixture,
    webhook_settings,
)
from tests.test_image_variants import ORIENTATION, jpeg_rotated_with_gps
from tests.test_imports import import_zip
from tests.test_multipart_uploads import complete, put_part, start
from uploadsvc.job_queue import ArqQueue, InProcessQueue
from uploadsvc.models.uploads import Upload
from uploadsvc.workers.settings import create_worker

MiB = 1024 * 1024
# clamd's StreamMaxLength in these tests; the service's setting is left above it
# where a test needs clamd itself to refuse a stream.
CLAMD_STREAM_MAX = 30 * MiB
# A hang bound for a scan to finish, not an expectation (a scan takes milliseconds).
SCAN_HANG_SECONDS = 60.0


@pytest.fixture(scope="module")
def clamd() -> Iterator[ClamdServer]:
    with ClamdServer(stream_max_bytes=CLAMD_STREAM_MAX) as server:
        yield server


@pytest.fixture
def settings_overrides(clamd: ClamdServer) -> dict[str, Any]:
    return {"scan_backend": "clamd", "clamd_url": clamd.url, "scan_max_tries": 20}


async def scans_done(api: Api) -> None:
    jobs = api.resources.jobs
    assert isinstance(jobs, InProcessQueue)
    async with asyncio.timeout(SCAN_HANG_SECONDS):
        await jobs.wait_idle()


async def row(api: Api, file_id: str) -> Upload:
    async with api.resources.session_factory() as session:
        upload = await session.scalar(select(Upload).where(Upload.id == uuid.UUID(file_id)))
    assert upload is not None
    return upload


async def download(api: Api, file_id: str, *, user: str = "alice", admin: bool = False) -> Any:
    return await api.app_client.get(
        f"/v1/files/{file_id}/download", headers=api.headers(user, admin=admin)
    )


def zip_holding(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("readme.txt", "nothing to see here\n" * 50)
        archive.writestr(name, data)
    return buffer.getvalue()


async def direct(api: Api, filename: str, body: bytes, content_type: str) -> dict[str, Any]:
    response = await api.app_client.post(
        "/v1/uploads/direct",
        files={"file": (filename, body, content_type)},
        headers=api.headers(),
    )
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def assert_infected_and_withheld(api: Api, confirmed: dict[str, Any]) -> None:
    """Pending with no URL when confirmed; then infected, quarantined, never downloadable."""
    assert confirmed["scan"] == "pending"
    assert confirmed["download_url"] is None
    assert confirmed["expires_in"] is None
    await scans_done(api)
    file_id = confirmed["file_id"]
    upload = await row(api, file_id)
    assert upload.scan_state == "infected"
    assert upload.scan_signature is not None
    assert SIGNATURE in upload.scan_signature
    # Moved out of the served prefix: the original key is gone.
    assert upload.file_key == "quarantine/" + confirmed["file_key"]
    assert not await api.object_exists(confirmed["file_key"])
    assert await api.object_exists(upload.file_key)
    for response in (
        await download(api, file_id),
        await download(api, file_id, user="root", admin=True),
    ):
        assert response.status_code == 423, response.text
        assert response.json()["code"] == "infected"
    redirect = await api.app_client.get(
        f"/v1/files/{file_id}/download?redirect=true", headers=api.headers()
    )
    assert redirect.status_code == 423
    read = await api.app_client.get(f"/v1/files/{file_id}", headers=api.headers())
    assert read.json()["scan"] == "infected"
    listed = await api.app_client.get("/v1/files/infected", headers=api.headers("root", admin=True))
    assert listed.status_code == 200, listed.text
    [item] = [item for item in listed.json()["items"] if item["file_id"] == file_id]
    assert item["owner_id"] == "alice"
    assert SIGNATURE in item["signature"]


async def test_eicar_by_presigned_put_is_infected_and_never_downloadable(api: Api) -> None:
    await assert_infected_and_withheld(api, await api.upload(EICAR))


async def test_zip_holding_eicar_by_presigned_put_is_infected(api: Api) -> None:
    body = zip_holding("tools/eicar.com", EICAR)
    confirmed = await api.upload(body, filename="tools.zip", content_type="application/zip")
    await assert_infected_and_withheld(api, confirmed)


@pytest.mark.parametrize("backend", ["pg-s3", "pg-local"], indirect=True)
async def test_eicar_inside_a_multipart_upload_is_infected(api: Api) -> None:
    # A PDF of two parts with the EICAR marker in the middle of the second one.
    body = bytearray(pdf(5 * MiB + 300_000))
    body[5 * MiB + 1000 : 5 * MiB + 1000 + len(EICAR)] = EICAR
    started = await start(api, bytes(body))
    etags = {
        part["part_number"]: await put_part(api, part, bytes(body)) for part in started["parts"]
    }
    completed = await complete(api, started["upload_id"], etags)
    assert completed.status_code == 200, completed.text
    await assert_infected_and_withheld(api, completed.json())


async def test_eicar_by_direct_upload_is_infected(api: Api) -> None:
    await assert_infected_and_withheld(api, await direct(api, "eicar.txt", EICAR, "text/plain"))


async def test_zip_holding_eicar_by_direct_upload_is_infected(api: Api) -> None:
    body = zip_holding("eicar.com", EICAR)
    await assert_infected_and_withheld(api, await direct(api, "a.zip", body, "application/zip"))


async def test_open_event_upload_of_eicar_is_refused_and_leaves_nothing(api: Api) -> None:
    files = [
        ("files[]", ("ok.txt", b"hello\n", "text/plain")),
        ("files[]", ("eicar.txt", EICAR, "text/plain")),
    ]
    response = await api.app_client.post("/v1/upload/file", files=files, headers=api.headers())
    assert response.status_code == 423, response.text
    assert response.json()["code"] == "infected"
    await scans_done(api)
    await api.assert_nothing_left()

    single = await api.app_client.post(
        "/v1/upload/file",
        files={"file": ("eicar.zip", zip_holding("x.com", EICAR), "application/zip")},
        headers=api.headers(),
    )
    assert single.status_code == 423, single.text
    await api.assert_nothing_left()


async def test_open_event_upload_of_a_clean_file_answers_a_working_url(api: Api) -> None:
    response = await api.app_client.post(
        "/v1/upload/file",
        files={"file": ("notes.txt", b"hello\n", "text/plain")},
        headers=api.headers(),
    )
    assert response.status_code == 200, response.text
    # Without auth: the URL itself grants access (app_client reaches S3 and the app alike).
    fetched = await api.app_client.get(response.json()["url"])
    assert fetched.content == b"hello\n"
    files = await api.app_client.get("/v1/files", headers=api.headers())
    [item] = files.json()["items"]
    assert item["scan"] == "clean"


async def test_a_clean_20_mib_file_becomes_clean_and_downloadable(api: Api) -> None:
    body = plain_text(20 * MiB)
    confirmed = await api.upload(body)
    assert confirmed["scan"] == "pending"
    assert confirmed["download_url"] is None
    await scans_done(api)
    assert (await row(api, confirmed["file_id"])).scan_state == "clean"
    response = await download(api, confirmed["file_id"])
    assert response.status_code == 200, response.text
    fetched = await api.app_client.get(response.json()["download_url"])
    assert fetched.content == body
    # Confirming again now answers with the URL.
    again = await api.confirm(confirmed["file_key"])
    assert again.json()["scan"] == "clean"
    assert again.json()["download_url"] is not None


@pytest.mark.parametrize("backend", ["sqlite-local"], indirect=True)
async def test_a_file_over_clamds_stream_limit_is_unscanned_and_withheld(api: Api) -> None:
    # The service's limit (100 MiB) is above clamd's: clamd refuses the stream.
    confirmed = await direct(api, "big.txt", plain_text(CLAMD_STREAM_MAX + MiB), "text/plain")
    await scans_done(api)
    assert (await row(api, confirmed["file_id"])).scan_state == "unscanned_too_large"
    response = await download(api, confirmed["file_id"])
    assert response.status_code == 423, response.text
    assert response.json()["code"] == "unscanned_too_large"


class TestTheServicesStreamLimit:
    @pytest.fixture
    def settings_overrides(self, clamd: ClamdServer) -> dict[str, Any]:
        return {
            "scan_backend": "clamd",
            "clamd_url": clamd.url,
            "clamd_stream_max_bytes": MiB,
            "scan_serve_too_large": True,
        }

    @pytest.mark.parametrize("backend", ["sqlite-local"], indirect=True)
    async def test_a_file_over_the_limit_is_not_sent_and_marked_unscanned(self, api: Api) -> None:
        # EICAR after the first MiB: a scan would find it. Over the limit, the
        # file is never sent, so it is unscanned_too_large, not infected.
        body = plain_text(MiB) + EICAR
        confirmed = await direct(api, "big.txt", body, "text/plain")
        small = await direct(api, "small.txt", plain_text(MiB), "text/plain")
        await scans_done(api)
        assert (await row(api, confirmed["file_id"])).scan_state == "unscanned_too_large"
        assert (await row(api, small["file_id"])).scan_state == "clean"
        # scan_serve_too_large=True: served, as the operator chose.
        assert (await download(api, confirmed["file_id"])).status_code == 200


class TestClamdOutage:
    @pytest.fixture
    def outage_clamd(self) -> Iterator[ClamdServer]:
        server = ClamdServer(stream_max_bytes=CLAMD_STREAM_MAX)
        try:
            yield server  # not started: clamd is down
        finally:
            server.close()

    @pytest.fixture
    def settings_overrides(self, outage_clamd: ClamdServer) -> dict[str, Any]:
        return {"scan_backend": "clamd", "clamd_url": outage_clamd.url, "scan_max_tries": 20}

    @pytest.mark.parametrize("backend", ["pg-s3"], indirect=True)
    async def test_scans_retry_while_clamd_is_down_and_finish_once_it_is_back(
        self, api: Api, outage_clamd: ClamdServer
    ) -> None:
        jobs = api.resources.jobs
        assert isinstance(jobs, InProcessQueue)
        clean = await api.upload(b"just some notes\n")
        infected = await direct(api, "eicar.txt", EICAR, "text/plain")
        ready = await api.app_client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["clamd"] == "unavailable"

        async with asyncio.timeout(SCAN_HANG_SECONDS):
            while jobs.jobs_retried < 2:  # noqa: ASYNC110 - a counter, not an event
                await asyncio.sleep(0.05)
        # Still pending, for the owner and an admin alike: nothing is served unscanned.
        for file in (clean, infected):
            for response in (
                await download(api, file["file_id"]),
                await download(api, file["file_id"], user="root", admin=True),
            ):
                assert response.status_code == 409, response.text
                assert response.json()["code"] == "scan_pending"
                assert response.headers["retry-after"]
        assert (await row(api, clean["file_id"])).scan_state == "pending"

        await asyncio.to_thread(outage_clamd.start)
        await scans_done(api)
        assert (await row(api, clean["file_id"])).scan_state == "clean"
        assert (await row(api, infected["file_id"])).scan_state == "infected"
        assert (await download(api, clean["file_id"])).status_code == 200
        assert (await download(api, infected["file_id"])).status_code == 423
        ready = await api.app_client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["clamd"] == "ok"


class TestScanningOff:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {}

    @pytest.mark.parametrize("backend", ["sqlite-local"], indirect=True)
    async def test_files_are_served_at_once_and_carry_no_scan_state(self, api: Api) -> None:
        confirmed = await api.upload(EICAR)
        assert confirmed["scan"] is None
        assert confirmed["download_url"] is not None
        assert (await download(api, confirmed["file_id"])).status_code == 200
        assert "clamd" not in (await api.app_client.get("/readyz")).json()["checks"]


class TestOnAnArqWorker:
    @pytest.fixture
    async def settings_overrides(self, clamd: ClamdServer) -> AsyncIterator[dict[str, Any]]:
        # This test's own Redis database (UPLOADSVC_TEST_REDIS_URL), emptied around it.
        redis = Redis.from_url(TEST_REDIS_URL)
        await redis.flushdb()
        yield {"scan_backend": "clamd", "clamd_url": clamd.url, "redis_url": TEST_REDIS_URL}
        await redis.flushdb()
        await redis.aclose()

    @pytest.mark.parametrize("backend", ["pg-local"], indirect=True)
    async def test_scans_run_on_an_arq_worker(self, api: Api) -> None:
        assert isinstance(api.resources.jobs, ArqQueue)
        infected = await api.upload(EICAR)
        clean = await api.upload(b"hello\n")
        # No worker has run yet: both wait, deterministically.
        for file in (infected, clean):
            response = await download(api, file["file_id"])
            assert response.status_code == 409, response.text
            assert response.json()["code"] == "scan_pending"
        worker = create_worker(api.settings, burst=True, handle_signals=False, poll_delay=0.05)
        try:
            async with asyncio.timeout(SCAN_HANG_SECONDS):
                await worker.main()
        finally:
            await worker.close()
        assert (await row(api, infected["file_id"])).scan_state == "infected"
        assert (await row(api, clean["file_id"])).scan_state == "clean"
        assert (await download(api, clean["file_id"])).status_code == 200


async def event_keys(api: Api) -> list[str]:
    """Every object an import stored (under events/)."""
    keys: list[str] = []
    async for page in api.resources.storage.list_pages("events/"):
        keys.extend(listed.key for listed in page)
    return keys


def event_archive(*, logo: bytes, photo: bytes, padding: int = 0) -> bytes:
    files = {
        "event": {"id": 1, "name": "Scanned", "logo-url": "/images/logo.png"},
        "speakers": [{"id": 1, "name": "Ada", "photo-url": "/images/ada.png"}],
    }
    media = {"images/logo.png": logo, "images/ada.png": photo}
    if padding:
        media["extra/padding.bin"] = os.urandom(padding)  # random: the zip cannot shrink it
    return build_zip(files, media)


@pytest.mark.parametrize("backend", ["sqlite-local"], indirect=True)
async def test_an_import_whose_archive_holds_malware_fails_and_stores_nothing(api: Api) -> None:
    # A PNG with the EICAR marker after its image data: libmagic still says PNG.
    archive = event_archive(logo=png() + EICAR, photo=png())
    task = await import_zip(api, archive)
    assert task["state"] == "FAILURE", task
    assert "malware" in task["error"]["message"]
    assert SIGNATURE in task["error"]["message"]
    assert await event_keys(api) == []


class TestImportedMediaScannedOneByOne:
    @pytest.fixture
    def settings_overrides(self, clamd: ClamdServer) -> dict[str, Any]:
        # The archive is over this limit (unscanned as a whole); its media are under it.
        return {"scan_backend": "clamd", "clamd_url": clamd.url, "clamd_stream_max_bytes": 64_000}

    @pytest.mark.parametrize("backend", ["pg-s3"], indirect=True)
    async def test_infected_media_of_an_unscanned_archive_are_skipped(self, api: Api) -> None:
        archive = event_archive(logo=png() + EICAR, photo=png(), padding=100_000)
        task = await import_zip(api, archive)
        assert task["state"] == "SUCCESS", task
        warnings = "\n".join(task["result"]["warnings"])
        assert "/images/logo.png holds malware" in warnings
        event_id = task["result"]["id"]
        event = await api.app_client.get(f"/v1/events/{event_id}", headers=api.headers())
        assert event.json()["logo_key"] is None
        [speaker] = (
            await api.app_client.get(f"/v1/events/{event_id}/speakers", headers=api.headers())
        ).json()["items"]
        assert speaker["photo_key"] == f"events/{event_id}/speakers/{speaker['id']}/photo"
        assert await event_keys(api) == [speaker["photo_key"]]


class TestInfectedWebhook:
    @pytest.fixture
    def settings_overrides(self, clamd: ClamdServer, receiver: Receiver) -> dict[str, Any]:
        return {"scan_backend": "clamd", "clamd_url": clamd.url, **webhook_settings(receiver)}

    @pytest.mark.parametrize("backend", ["sqlite-local"], indirect=True)
    async def test_an_infected_file_is_announced_with_its_signature(
        self, api: Api, receiver: Receiver
    ) -> None:
        confirmed = await api.upload(EICAR)
        await scans_done(api)

        by_type = {event["type"]: event["data"] for event in receiver.events()}
        assert set(by_type) == {"file.confirmed", "file.infected"}
        assert by_type["file.infected"]["file_id"] == confirmed["file_id"]
        assert SIGNATURE in by_type["file.infected"]["signature"]


class TestStrippingWaitsForTheScan:
    @pytest.fixture
    def settings_overrides(self, clamd: ClamdServer) -> dict[str, Any]:
        return {"scan_backend": "clamd", "clamd_url": clamd.url, "strip_image_metadata": True}

    @pytest.mark.parametrize("backend", ["sqlite-local"], indirect=True)
    async def test_a_clean_image_is_stripped_after_its_scan(self, api: Api) -> None:
        body = jpeg_rotated_with_gps()
        confirmed = await direct(api, "photo.jpg", body, "image/jpeg")
        assert confirmed["scan"] == "pending"  # the variants job leaves the original alone
        await scans_done(api)  # the scan, then the variants job it enqueued again

        upload = await row(api, confirmed["file_id"])
        assert upload.scan_state == "clean"
        link = await download(api, confirmed["file_id"])
        assert link.status_code == 200, link.text
        data = (await api.app_client.get(link.json()["download_url"])).content
        assert len(data) < len(body)
        assert dict(Image.open(io.BytesIO(data)).getexif()) == {ORIENTATION: 6}
        assert upload.size_bytes == len(data)
