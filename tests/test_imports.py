"""Open Event imports through the API: real archives, messy data, hostile zips."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select

from tests import samples
from tests.conftest import Api
from tests.openevent_archives import SAMPLES, build_zip, expected
from tests.support.files import zip_document
from uploadsvc.job_queue import InProcessQueue
from uploadsvc.models.events import Event, EventSession, ImportJob, Track
from uploadsvc.schemas.events import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE

pytestmark = pytest.mark.parametrize("backend", ["pg-s3", "pg-local", "sqlite-local"])

OOXML_PRESENTATION = "application/vnd.openxmlformats-officedocument.presentationml.presentation"
ODF_PRESENTATION = "application/vnd.oasis.opendocument.presentation"
SAMPLE_NAMES = ["FOSSASIASummit2014", "OpenTechSummit2018", "EhealthAfrica"]


async def import_zip(api: Api, data: bytes, *, user: str = "alice") -> dict[str, Any]:
    """Post an archive, let the in-process queue run it, return the task."""
    response = await api.app_client.post(
        "/v1/events/import/json",
        files={"file": ("event.zip", data, "application/zip")},
        headers=api.headers(user),
    )
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["task_url"] == f"/v1/tasks/{accepted['task_id']}"
    queue = api.resources.jobs
    assert isinstance(queue, InProcessQueue)
    await queue.wait_idle()
    task = await api.app_client.get(accepted["task_url"], headers=api.headers(user))
    assert task.status_code == 200, task.text
    result: dict[str, Any] = task.json()
    return result


async def get_items(api: Api, url: str, *, limit: int = MAX_PAGE_SIZE) -> list[dict[str, Any]]:
    """Every item of an event's list, page by page (``limit`` each), following the cursors."""
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": limit}
    while True:
        response = await api.app_client.get(url, params=params, headers=api.headers())
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= limit
        items += page["items"]
        if page["next_cursor"] is None:
            return items
        params["cursor"] = page["next_cursor"]


async def assert_matches(api: Api, event_id: str, want: dict[str, Any]) -> None:
    event = (await api.app_client.get(f"/v1/events/{event_id}", headers=api.headers())).json()
    assert event["name"] == want["event_name"]
    for kind, count in want["counts"].items():
        assert event["counts"][kind] == count, kind
    speakers = await get_items(api, f"/v1/events/{event_id}/speakers")
    sessions = await get_items(api, f"/v1/events/{event_id}/sessions")
    assert sorted(s["name"] for s in speakers) == want["speaker_names"]
    got_links = {
        s["title"]: tuple(
            (s[kind] or {}).get("name") for kind in ("track", "microlocation", "session_type")
        )
        for s in sessions
    }
    assert got_links == want["session_links"]
    speaker_names = {s["id"]: s["name"] for s in speakers}
    pairs = {(s["title"], speaker_names[i]) for s in sessions for i in s["speaker_ids"]}
    assert pairs == want["speaker_session_links"]
    # Both sides of the many-to-many agree.
    titles = {s["id"]: s["title"] for s in sessions}
    reverse = {(titles[i], s["name"]) for s in speakers for i in s["session_ids"]}
    assert reverse == pairs


async def _event_objects(api: Api) -> list[str]:
    keys: list[str] = []
    async for page in api.resources.storage.list_pages("events/"):
        keys.extend(listed.key for listed in page)
    return keys


async def _event_rows(api: Api) -> int:
    async with api.resources.session_factory() as session:
        return int(await session.scalar(select(func.count()).select_from(Event)) or 0)


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="../shared/samples is not beside the repo")
@pytest.mark.parametrize("name", SAMPLE_NAMES)
async def test_real_archives_import_as_their_json_says(api: Api, name: str) -> None:
    data = (SAMPLES / f"{name}.zip").read_bytes()
    task = await import_zip(api, data)
    assert task["state"] == "SUCCESS", task
    result = task["result"]
    await assert_matches(api, result["id"], expected(data))
    assert result["url"] == f"/v1/events/{result['id']}"
    if name == "FOSSASIASummit2014":
        speakers = await get_items(api, f"/v1/events/{result['id']}/speakers")
        photos = [s["photo_key"] for s in speakers if s["photo_key"]]
        assert photos, "the archive's speaker photos are stored"
        for key in photos:
            assert key.startswith(f"events/{result['id']}/speakers/")
            assert key.endswith("/photo")
            assert await api.object_exists(key)
        event = (
            await api.app_client.get(f"/v1/events/{result['id']}", headers=api.headers())
        ).json()
        assert event["logo_key"] == f"events/{result['id']}/logo"
    if name == "OpenTechSummit2018":
        speakers = await get_items(api, f"/v1/events/{result['id']}/speakers")
        # Absolute URLs stay links; nothing is fetched or stored.
        assert all(s["photo_key"] is None for s in speakers)
        assert any((s["photo_url"] or "").startswith("https://") for s in speakers)


def _messy(dialect: str) -> bytes:
    def k(kebab: str, snake: str) -> str:
        return kebab if dialect == "kebab" else snake

    png = samples.png()
    event = {
        "id": 7,
        "name": f"Messy {dialect}",
        k("starts-at", "start_time"): "2026-05-01T09:00:00+02:00",
        k("logo-url", "logo"): "/images/logo.png",
        "owner_id": "mallory",  # must not set ownership
        "unknown-key": {"ignored": True},
    }
    speakers = [
        {
            "id": "1",
            "name": "Ada",
            k("photo-url", "photo"): "/images/ada.png",
            "sessions": [{"id": 2}],
        },
        {"id": 1, "name": "Ada again (duplicate id)"},
        {"id": None, "name": "No id"},
        {"id": 3, "name": "Grace", k("photo-url", "photo"): "/images/missing.png"},
        {"id": 4, "name": "Linus", k("photo-url", "photo"): "https://example.com/linus.png"},
    ]
    sessions = [
        {
            "id": 1,
            "title": "Keynote",
            "track": {"id": 1, "name": "Main"},
            "microlocation": 10,
            k("session-type", "session_type"): {"id": 5, "name": "Talk"},
            "speakers": [{"id": 1, "name": "Ada"}, {"id": 9, "name": "Embedded Edsger"}],
        },
        {"id": "2", "title": "Workshop", "track": 99, "microlocation": {"id": 10}, "speakers": [3]},
        {"id": 2, "title": "Duplicate workshop"},
        {"id": 3, "title": "Unscheduled", "track": None, "speakers": [77]},
    ]
    files = {
        "event": event,
        "speakers": speakers,
        "sessions": sessions,
        "tracks": [{"id": 1, "name": "Main", k("font-color", "font_color"): "#fff"}],
        "microlocations": [{"id": "10", "name": "Room A", "floor": 2}],
        "session_types": [],
    }
    return build_zip(files, {"images/logo.png": png, "images/ada.png": png})


@pytest.mark.parametrize("dialect", ["kebab", "snake"])
async def test_messy_archives_import_with_warnings(api: Api, dialect: str) -> None:
    data = _messy(dialect)
    task = await import_zip(api, data)
    assert task["state"] == "SUCCESS", task
    result = task["result"]
    await assert_matches(api, result["id"], expected(data))
    warnings = "\n".join(result["warnings"])
    assert "speakers id 1 appears twice" in warnings
    assert "speakers record 2 has no id" in warnings
    assert "sessions id 2 appears twice" in warnings
    assert "track 99 not found" in warnings
    assert "speaker 77 not found" in warnings
    assert "/images/missing.png is not in the archive" in warnings
    speakers = {s["name"]: s for s in await get_items(api, f"/v1/events/{result['id']}/speakers")}
    assert speakers["Ada"]["photo_key"].endswith("/photo")
    assert speakers["Grace"]["photo_key"] is None
    assert speakers["Linus"]["photo_url"] == "https://example.com/linus.png"
    assert "Embedded Edsger" in speakers
    async with api.resources.session_factory() as session:
        owners = set(await session.scalars(select(Event.owner_id)))
    assert owners == {"alice"}


@pytest.mark.parametrize(
    ("files", "media", "file", "message", "stage"),
    [
        ({"event": {"name": "x"}, "../evil": "{}"}, {}, "../evil", "", "archive"),
        ({"sessions": []}, {}, "event", "no 'event'", "event"),
        ({"event": "[1, 2"}, {}, "event", "", "event"),
        (
            {"event": {"name": "x"}, "sessions": {"not": "a list"}},
            {},
            "sessions",
            "array",
            "sessions",
        ),
        (
            {
                "event": {"name": "x"},
                "speakers": [
                    {"id": 1, "name": "A", "photo": "/images/a.png"},
                    {"id": 2, "name": "B", "photo": "../../secret"},
                ],
            },
            {"images/a.png": samples.png()},
            None,
            "",
            "speakers",
        ),
    ],
    ids=["traversal", "no-event", "broken-json", "sessions-not-a-list", "media-outside"],
)
async def test_failed_imports_leave_nothing(
    api: Api,
    files: dict[str, Any],
    media: dict[str, bytes],
    file: str | None,
    message: str,
    stage: str,
) -> None:
    task = await import_zip(api, build_zip(files, media))
    assert task["state"] == "FAILURE", task
    error = task["error"]
    assert error["message"]
    if file is not None:
        assert error["file"] == file or file in error["message"], error
    assert message in error["message"]
    # Open Event's frontend shows `result`; the stage is where the import stopped.
    assert task["result"] == error["message"]
    assert task["progress"]["stage"] == stage, task
    assert await _event_rows(api) == 0
    assert await _event_objects(api) == []


async def test_not_a_zip_fails_cleanly(api: Api) -> None:
    response = await api.app_client.post(
        "/v1/events/import/json",
        files={
            "file": ("event.zip", b"PK\x03\x04 this is not really a zip" * 10, "application/zip")
        },
        headers=api.headers(),
    )
    # A zip's signature alone does not make a zip (libmagic finds no entry in
    # it): refused by type before anything is stored or any job is made.
    assert response.status_code == 415, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert await api.row_count() == 0
    assert await api.stored_keys() == []
    async with api.resources.session_factory() as session:
        assert await session.scalar(select(func.count()).select_from(ImportJob)) == 0


async def test_a_truncated_zip_fails_in_the_archive_stage(api: Api) -> None:
    whole = build_zip({"event": {"name": "Cut short"}, "sessions": [{"id": 1, "title": "T"}]})
    # Its first entry is intact (so it is a zip by type); the central directory is gone.
    task = await import_zip(api, whole[: len(whole) // 2])
    assert task["state"] == "FAILURE", task
    assert "not a readable zip archive" in task["error"]["message"]
    assert task["result"] == task["error"]["message"]
    assert task["progress"]["stage"] == "archive"
    assert await _event_rows(api) == 0


async def test_import_by_key_of_a_confirmed_upload(api: Api) -> None:
    data = _messy("snake")
    grant = await api.request_url(
        data, filename="e.zip", content_type="application/zip", purpose="event-import"
    )
    assert grant.status_code == 201, grant.text
    assert (await api.put(grant.json(), data)).status_code == 200
    assert (await api.confirm(grant.json()["file_key"])).status_code == 200
    response = await api.app_client.post(
        "/v1/events/import", json={"file_key": grant.json()["file_key"]}, headers=api.headers()
    )
    assert response.status_code == 202, response.text
    await api.resources.jobs.wait_idle()  # type: ignore[attr-defined]
    task = await api.app_client.get(response.json()["task_url"], headers=api.headers())
    assert task.json()["state"] == "SUCCESS"
    jobs = await api.app_client.get("/v1/import-jobs", headers=api.headers())
    assert [j["task_id"] for j in jobs.json()["items"]] == [response.json()["task_id"]]


async def test_other_users_tasks_and_events_are_404(api: Api) -> None:
    task = await import_zip(api, _messy("kebab"))
    event_id = task["result"]["id"]
    bob = api.headers("bob")
    for url in (
        f"/v1/tasks/{task['task_id']}",
        f"/v1/events/{event_id}",
        f"/v1/events/{event_id}/sessions",
        f"/v1/events/{event_id}/speakers",
        f"/v1/events/{uuid.uuid4()}",
    ):
        response = await api.app_client.get(url, headers=bob)
        assert response.status_code == 404, url
    foreign = await api.app_client.post(
        "/v1/events/import", json={"file_key": "imports/alice/x.zip"}, headers=bob
    )
    assert foreign.status_code == 404


async def test_rerunning_a_job_never_makes_a_second_event(api: Api) -> None:
    from uploadsvc.models.events import ImportState
    from uploadsvc.services.imports import run_import

    task = await import_zip(api, _messy("kebab"))
    job_id = uuid.UUID(task["task_id"])
    # Pretend the worker died after committing but before anyone saw it, and run it again.
    async with api.resources.session_factory() as session, session.begin():
        job = await session.get(ImportJob, job_id)
        assert job is not None
        job.state = ImportState.STARTED
    await run_import(api.resources, job_id)
    assert await _event_rows(api) == 1


def _links_both_ways(sessions: int) -> bytes:
    """Speaker ↔ session links named from both sides, across many batches of rows."""
    speakers: list[dict[str, Any]] = [
        {"id": s, "name": f"Speaker {s}", "sessions": [{"id": s * 40}, {"id": s * 40 + 1}]}
        for s in range(1, 51)
    ]
    # Names a session that does not exist, and one twice.
    speakers[0]["sessions"] += [{"id": 99999}, {"id": 40}]
    talks: list[dict[str, Any]] = [
        {"id": n, "title": f"Talk {n}", "speakers": [n % 50 + 1]} for n in range(1, sessions + 1)
    ]
    # A speaker that only a session embeds names sessions before it (in an
    # earlier batch), itself, and after it.
    middle = sessions // 2
    talks[middle - 1]["speakers"].append(
        {
            "id": 500,
            "name": "Embedded Barbara",
            "sessions": [{"id": 1}, {"id": middle}, {"id": sessions}, 1, {"id": 99998}],
        }
    )
    return build_zip({"event": {"name": "Links"}, "speakers": speakers, "sessions": talks})


async def test_links_named_from_both_sides_across_batches(api: Api) -> None:
    data = _links_both_ways(2500)
    task = await import_zip(api, data)
    assert task["state"] == "SUCCESS", task
    result = task["result"]
    assert result["counts"]["sessions"] == 2500
    await assert_matches(api, result["id"], expected(data))
    warnings = "\n".join(result["warnings"])
    assert "speakers id 1: session 99999 not found" in warnings
    assert "speakers id 500: session 99998 not found" in warnings


async def test_event_lists_come_a_page_at_a_time(api: Api) -> None:
    task = await import_zip(api, _links_both_ways(250))
    url = f"/v1/events/{task['result']['id']}/sessions"
    first = (await api.app_client.get(url, headers=api.headers())).json()
    assert len(first["items"]) == DEFAULT_PAGE_SIZE
    assert first["next_cursor"] is not None
    # Small pages, in the archive's order of ids, add up to the whole list, each row once.
    paged = await get_items(api, url, limit=70)
    assert [s["title"] for s in paged] == sorted(
        (f"Talk {n}" for n in range(1, 251)), key=lambda t: t[5:]
    )
    assert [s["id"] for s in paged] == [s["id"] for s in await get_items(api, url)]
    assert len({s["id"] for s in paged}) == 250
    speakers = await get_items(api, url.replace("/sessions", "/speakers"), limit=7)
    assert len({s["id"] for s in speakers}) == 51
    refusals: list[tuple[dict[str, Any], int, str]] = [
        ({"cursor": "not-a-cursor"}, 400, "invalid_cursor"),
        ({"limit": MAX_PAGE_SIZE + 1}, 422, "validation_error"),
    ]
    for params, status, code in refusals:
        refused = await api.app_client.get(url, params=params, headers=api.headers())
        assert refused.status_code == status, refused.text
        assert refused.json()["code"] == code


async def test_a_limit_broken_deep_in_a_streamed_file_leaves_nothing(api: Api) -> None:
    nested = "[" * 100 + "]" * 100
    talks = ", ".join(
        f'{{"id": {n}, "title": "Talk {n}", "x": {nested if n == 1401 else 0}}}'
        for n in range(1, 1501)
    )
    files = {
        "event": {"name": "Deep"},
        # The photo is stored with the first batch, long before the failure.
        "speakers": [{"id": 1, "name": "Ada", "photo": "/images/ada.png"}],
        "sessions": f"[{talks}]",
    }
    task = await import_zip(api, build_zip(files, {"images/ada.png": samples.png()}))
    assert task["state"] == "FAILURE", task
    error = task["error"]
    assert error["file"] == "sessions"
    assert error["message"].startswith("record 1400:"), error
    assert "nested" in error["message"]
    assert await _event_rows(api) == 0
    assert await _event_objects(api) == []


async def test_a_media_path_outside_the_archive_names_its_record(api: Api) -> None:
    files = {
        "event": {"name": "x"},
        "speakers": [
            {"id": 1, "name": "A", "photo": "/images/a.png"},
            {"id": "2", "name": "B", "photo": "../../secret"},
        ],
    }
    task = await import_zip(api, build_zip(files, {"images/a.png": samples.png()}))
    assert task["state"] == "FAILURE", task
    assert task["error"]["file"] == "speakers"
    assert task["error"]["record_id"] == "2"
    assert "outside the archive" in task["error"]["message"]
    assert await _event_rows(api) == 0
    assert await _event_objects(api) == []


def _dialect_keys(dialect: str) -> Callable[[str, str], str]:
    def k(kebab: str, snake: str) -> str:
        return kebab if dialect == "kebab" else snake

    return k


@pytest.mark.parametrize("dialect", ["kebab", "snake"])
async def test_invalid_json_deep_in_an_archive_reports_its_file_and_stage(
    api: Api, dialect: str
) -> None:
    k = _dialect_keys(dialect)
    files = {
        "event": {"name": f"Broken {dialect}", k("starts-at", "start_time"): "2026-05-01T09:00"},
        "tracks": [{"id": 1, "name": "Main", k("font-color", "font_color"): "#fff"}],
        "session_types": '[{"id": 1, "name": "Talk", "length": "00:30"}, {"id": 2,',
        "sessions": [{"id": 1, "title": "T", k("session-type", "session_type"): 1}],
    }
    task = await import_zip(api, build_zip(files))
    assert task["state"] == "FAILURE", task
    assert task["error"]["file"] == "session_types"
    assert task["error"]["message"].startswith("record 1: invalid JSON"), task
    assert task["result"] == task["error"]["message"]
    assert task["progress"]["stage"] == "session_types"
    assert await _event_rows(api) == 0


@pytest.mark.parametrize("dialect", ["kebab", "snake"])
async def test_missing_names_and_titles_stay_empty_with_one_warning_each(
    api: Api, dialect: str
) -> None:
    k = _dialect_keys(dialect)
    files = {
        "event": {"id": 3, k("starts-at", "start_time"): "2026-05-01T09:00:00Z"},
        "tracks": [{"id": 1}, {"id": 2, "name": ""}],
        "microlocations": [{"id": 1, "name": None, "floor": 1}],
        "session_types": [{"id": 1, "length": "00:30"}],
        "speakers": [{"id": 1, k("photo-url", "photo"): "https://example.com/p.png"}],
        "sponsors": [{"id": 1, "url": "https://example.com"}],
        "sessions": [
            {
                "id": 247,
                k("starts-at", "start_time"): "2026-05-01T10:00:00Z",
                "track": 1,
                "microlocation": 1,
                k("session-type", "session_type"): 1,
                "speakers": [1],
            },
            {"id": 248, "title": "", "track": {"name": "Embedded, no id"}},
            {"id": 249, "title": "Named", "track": 2},
        ],
    }
    task = await import_zip(api, build_zip(files))
    assert task["state"] == "SUCCESS", task
    result = task["result"]
    assert result["event_name"] == ""
    warnings: list[str] = result["warnings"]
    for label in (
        "event has no name",
        "tracks id 1 has no name",
        "tracks id 2 has no name",
        "microlocations id 1 has no name",
        "session_types id 1 has no name",
        "speakers id 1 has no name",
        "sponsors id 1 has no name",
        "sessions id 247 has no title",
        "sessions id 248 has no title",
    ):
        assert sum(w.startswith(label) for w in warnings) == 1, (label, warnings)
    assert not any("249" in w for w in warnings), warnings
    base = f"/v1/events/{result['id']}"
    event = (await api.app_client.get(base, headers=api.headers())).json()
    assert event["name"] == ""
    sessions = {s["title"]: s for s in await get_items(api, f"{base}/sessions")}
    assert set(sessions) == {"", "Named"}
    untitled = [s for s in await get_items(api, f"{base}/sessions") if s["title"] == ""]
    assert len(untitled) == 2
    by_track = {(s["track"] or {}).get("name") for s in untitled}
    assert by_track == {"", "Embedded, no id"}
    session_247 = next(s for s in untitled if s["microlocation"] is not None)
    assert session_247["microlocation"]["name"] == ""
    assert session_247["session_type"]["name"] == ""
    assert len(session_247["speaker_ids"]) == 1
    for kind in ("speakers", "sponsors", "microlocations", "session-types"):
        assert [row["name"] for row in await get_items(api, f"{base}/{kind}")] == [""], kind
    assert sorted(t["name"] for t in await get_items(api, f"{base}/tracks")) == [
        "",
        "",
        "Embedded, no id",
    ]
    # Nothing the archive did not hold: the embedded track has no archive id either.
    async with api.resources.session_factory() as session:
        source_ids = set(
            await session.scalars(select(Track.source_id).where(Track.name == "Embedded, no id"))
        )
        titles = set(await session.scalars(select(EventSession.title)))
    assert source_ids == {None}
    assert titles == {"", "Named"}


async def test_slides_in_ooxml_and_odf_are_stored_as_documents(api: Api) -> None:
    pptx = zip_document(OOXML_PRESENTATION)
    odp = zip_document(ODF_PRESENTATION)
    talks = [
        {"id": 1, "title": "In PowerPoint", "slides-url": "/slides/one.pptx"},
        {"id": 2, "title": "In Impress", "slides-url": "/slides/two.odp"},
    ]
    data = build_zip(
        {"event": {"name": "Slides"}, "sessions": talks},
        {"slides/one.pptx": pptx, "slides/two.odp": odp},
    )
    task = await import_zip(api, data)
    assert task["state"] == "SUCCESS", task
    sessions = {
        s["title"]: s for s in await get_items(api, f"/v1/events/{task['result']['id']}/sessions")
    }
    # Zip files inside, but documents: stored as they are (a real zip there
    # still fails the import as a nested archive, tests/test_archive.py).
    for title, body, content_type in (
        ("In PowerPoint", pptx, OOXML_PRESENTATION),
        ("In Impress", odp, ODF_PRESENTATION),
    ):
        stored = await api.resources.storage.head(sessions[title]["slides_key"])
        assert stored is not None
        assert (stored.size, stored.content_type) == (len(body), content_type)
