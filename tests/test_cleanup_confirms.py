"""A PUT whose client never confirmed ends confirmed (or rejected) at the next cleanup run."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from tests.conftest import Api
from tests.support.files import plain_text
from tests.test_cleanup import DAY, LATER, _age_url, _pending_with_object, _set_url_expiry
from uploadsvc.db import utcnow
from uploadsvc.models.uploads import Upload
from uploadsvc.services.cleanup import CleanupReport, run_cleanup

pytestmark = pytest.mark.parametrize("backend", ["pg-s3", "sqlite-local"])


async def _scheduled_run(api: Api) -> CleanupReport:
    # As the cron job and `uploadsvc cleanup` call it: with the settings.
    return await run_cleanup(
        api.resources.session_factory,
        api.resources.storage,
        older_than=DAY,
        now=utcnow() + LATER,
        settings=api.settings,
        jobs=api.resources.jobs,
    )


async def _file_read(api: Api, file_id: str) -> int:
    response = await api.app_client.get(f"/v1/files/{file_id}", headers=api.headers())
    return response.status_code


async def test_a_put_never_confirmed_is_confirmed_by_cleanup(api: Api) -> None:
    grant = await _pending_with_object(api, plain_text(100))
    await _age_url(api, grant["upload_id"])

    report = await _scheduled_run(api)

    assert (report.confirmed, report.expired, report.deleted) == (1, 0, 0)
    assert await api.status_of(grant["upload_id"]) == "confirmed"
    assert await api.object_exists(grant["file_key"])
    assert await _file_read(api, grant["upload_id"]) == 200
    # The client's late confirm gets the file, as a repeated confirm would.
    assert (await api.confirm(grant["file_key"])).status_code == 200


async def test_bytes_that_fail_the_checks_are_rejected_and_deleted(api: Api) -> None:
    grant = await api.grant(plain_text(100))
    await api.plant(grant["file_key"], plain_text(101), "text/plain")
    await _age_url(api, grant["upload_id"])

    report = await _scheduled_run(api)

    assert (report.confirmed, report.rejected) == (0, 1)
    assert await api.status_of(grant["upload_id"]) == "rejected"
    assert not await api.object_exists(grant["file_key"])
    confirm = await api.confirm(grant["file_key"])
    assert (confirm.status_code, confirm.json()["code"]) == (422, "size_mismatch")


async def test_a_grant_never_used_still_expires(api: Api) -> None:
    grant = await api.grant(plain_text(100))
    await _age_url(api, grant["upload_id"])
    young = await _pending_with_object(api, plain_text(10))
    # Its URL is still valid at the run's "now": it stays pending, untouched.
    await _set_url_expiry(api, young["upload_id"], utcnow() + LATER + DAY)

    report = await _scheduled_run(api)

    assert (report.confirmed, report.expired) == (0, 1)
    assert await api.status_of(grant["upload_id"]) == "expired"
    assert await api.status_of(young["upload_id"]) == "pending"


class TestWithAQuota:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"user_quota_bytes": 1000}

    async def test_bytes_past_the_quota_are_rejected_and_the_run_goes_on(self, api: Api) -> None:
        await api.grant(plain_text(900))
        # Uppy's single-request upload declares no size: the quota meets it at confirm.
        params = await api.app_client.get(
            "/v1/s3/params",
            params={"filename": "notes.txt", "type": "text/plain"},
            headers=api.headers(),
        )
        key = params.json()["key"]
        await api.plant(key, plain_text(200), "text/plain")
        async with api.resources.session_factory() as session:
            upload_id = await session.scalar(select(Upload.id).where(Upload.file_key == key))
        await _age_url(api, str(upload_id))

        report = await _scheduled_run(api)

        assert (report.outcome, report.confirmed, report.rejected) == ("done", 0, 1)
        assert await api.status_of(str(upload_id)) == "rejected"
        assert not await api.object_exists(key)
