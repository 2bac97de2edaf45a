"""Real browsers, real clients: the demo page and the published Uppy, in Chromium.

Everything runs for real on loopback: Debian's Chromium (driven by
Playwright), the service as ``uploadsvc serve`` (uvicorn) on PostgreSQL,
LocalStack's strict S3 over HTTP with the bucket CORS that
``uploadsvc storage init`` applies. The browser reaches the service only
through a counting TCP proxy (tests/browser/byte_counter.py), so the tests
can show the service received none of the file bytes; the bytes storage
holds are compared, by SHA-256, with what the browser was given.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    Page,
    Request,
    Response,
    Route,
    expect,
    sync_playwright,
)
from sqlalchemy.ext.asyncio import create_async_engine

from tests.browser.byte_counter import CountingProxy
from tests.browser.harness import (
    UPPY_DIR,
    StaticSite,
    build_uppy_bundle,
    launch_chromium,
    static_site,
)
from tests.conftest import TEST_JWT_SECRET, empty_shared_database
from tests.support.files import MiB, pdf, png, sha256_b64
from tests.support.localstack import LocalStackServer
from tests.support.servers import (
    ServerProcess,
    free_loopback_port,
    run_cli,
    start_uploadsvc,
    uploadsvc_env,
)
from tests.support.tokens import bearer
from uploadsvc.config import Settings
from uploadsvc.profiles import file_key_of
from uploadsvc.security import mint_token

pytestmark = pytest.mark.s3
logger = logging.getLogger(__name__)

# Everything the browser may send the service in one test (the page, its
# script, JSON requests with their headers) stays under this; the files are
# 100 times bigger.
MAX_BYTES_TO_SERVICE = 256 * 1024
# The longest wait for the page (an upload to finish); each test takes seconds.
PAGE_TIMEOUT_MS = 45_000


# --- fixtures -----------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium. A browser that cannot start fails the tests; it never skips them."""
    with sync_playwright() as playwright:
        try:
            chromium = launch_chromium(playwright)
        except RuntimeError as exc:
            pytest.fail(str(exc), pytrace=False)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
async def browser_database(postgres_url: str) -> AsyncIterator[str]:
    """The session's database; emptied afterwards, as the `api` fixture leaves it."""
    yield postgres_url
    engine = create_async_engine(postgres_url)
    try:
        async with engine.begin() as connection:
            await empty_shared_database(connection)
    finally:
        await engine.dispose()


@dataclass
class Stack:
    """The running service, the proxy the browser reaches it through, a second origin."""

    service: ServerProcess
    proxy: CountingProxy
    site: StaticSite
    storage_origin: str
    settings: Settings
    # The service's environment, and a port for a second instance of it whose
    # origin the bucket's CORS rules also allow.
    env: dict[str, str]
    spare_port: int

    def token(self, user: str) -> str:
        return mint_token(self.settings, sub=user, ttl_seconds=600)

    def api(self, user: str) -> httpx.Client:
        """A client straight to the service (not through the proxy: it is not counted)."""
        return httpx.Client(
            base_url=self.service.base_url,
            headers=bearer(self.token(user)),
            timeout=30,
        )


@pytest.fixture(scope="module")
def stack(
    localstack: LocalStackServer, browser_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("browser-service")
    api_port, spare_port = free_loopback_port(), free_loopback_port()
    with contextlib.ExitStack() as cleanup:
        site = cleanup.enter_context(static_site())
        proxy = cleanup.enter_context(contextlib.closing(CountingProxy(api_port)))
        env = uploadsvc_env(
            {
                "env": "development",
                "database_url": browser_database,
                "storage_backend": "s3",
                "s3_endpoint_url": localstack.endpoint_url,
                "s3_bucket": f"uploadsvc-browser-{uuid.uuid4().hex[:12]}",
                "s3_access_key_id": "test",
                # LocalStack verifies presigned URLs with the secret "test" only.
                "s3_secret_access_key": "test",
                "s3_addressing_style": "path",
                "jwt_secret": TEST_JWT_SECRET,
                # The demo page is served by the service (through the proxy); the
                # Uppy page by the second origin, which calls the API cross-origin.
                # Both upload to the bucket, whose CORS `storage init` sets.
                "cors_origins": f"{proxy.origin},{site.origin},http://127.0.0.1:{spare_port}",
            }
        )
        initialized = run_cli(["storage", "init"], env=env, cwd=workdir)
        assert f"CORS for {proxy.origin}, {site.origin}," in initialized, initialized
        service = cleanup.enter_context(
            start_uploadsvc("serve", port=api_port, env=env, workdir=workdir)
        )
        yield Stack(
            service=service,
            proxy=proxy,
            site=site,
            storage_origin=localstack.endpoint_url,
            settings=Settings(_env_file=None, jwt_secret=TEST_JWT_SECRET),
            env=env,
            spare_port=spare_port,
        )


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(accept_downloads=True)
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page
    finally:
        context.close()
    assert errors == [], f"the page raised: {errors}"


# --- helpers ------------------------------------------------------------------


def part_number_of(url: str) -> int | None:
    numbers = parse_qs(urlsplit(url).query).get("partNumber")
    return int(numbers[0]) if numbers else None


def storage_requests(requests: list[Request], storage_origin: str) -> list[dict[str, Any]]:
    """The browser's writes to storage: method, key, and part number of a part."""
    writes = []
    for request in requests:
        if not request.url.startswith(storage_origin) or request.method not in ("PUT", "POST"):
            continue
        writes.append(
            {
                "method": request.method,
                "path": urlsplit(request.url).path,
                "part": part_number_of(request.url),
            }
        )
    return writes


def assert_stored(
    stack: Stack, user: str, expected: dict[str, bytes], *, known_sha256: set[str]
) -> dict[str, Any]:
    """Each file is confirmed for `user`, and storage holds exactly its bytes.

    ``known_sha256``: the files whose SHA-256 the service recorded: declared
    by the client (storage then checked it on the PUT), or computed by S3
    when confirm copied the file from its staging key (every single-request
    upload). A multipart upload without a declared one has none.
    """
    with stack.api(user) as api:
        listing = api.get("/v1/files", params={"limit": 50})
        assert listing.status_code == 200, listing.text
        files = {item["filename"]: item for item in listing.json()["items"]}
        assert sorted(files) == sorted(expected)
        for name, data in expected.items():
            record = files[name]
            assert record["status"] == "confirmed"
            assert record["size_bytes"] == len(data)
            assert record["sha256"] == (sha256_b64(data) if name in known_sha256 else None)
            link = api.get(f"/v1/files/{record['file_id']}/download")
            assert link.status_code == 200, link.text
            # The bytes as storage holds them, fetched from storage itself.
            stored = httpx.get(link.json()["download_url"], timeout=30)
            assert stored.status_code == 200
            assert sha256_b64(stored.content) == sha256_b64(data), name
    return files


# --- the demo page --------------------------------------------------------------


def test_demo_page_uploads_three_files_straight_to_storage(
    stack: Stack, page: Page, tmp_path: Path
) -> None:
    user = f"demo-{uuid.uuid4().hex[:8]}"
    picked = {
        "notes.txt": b"Minutes of the meeting.\n" * 2000,
        "chart.png": png(200, 150, noise=True),
        # Above the page's 10 MiB threshold: six 5 MiB parts.
        "recording.pdf": pdf(30 * MiB),
    }
    for name, data in picked.items():
        (tmp_path / name).write_bytes(data)
    requests: list[Request] = []
    page.on("request", lambda request: requests.append(request))
    counted_before = stack.proxy.bytes_from_clients

    page.goto(f"{stack.proxy.origin}/demo")
    page.get_by_label("Bearer token").fill(stack.token(user))
    page.get_by_role("button", name="Use token").click()
    expect(page.get_by_text(f"Signed in as {user}")).to_be_visible()
    expect(page.get_by_text("No files yet.")).to_be_visible()

    page.get_by_label("Choose files, or drop them here").set_input_files(
        [tmp_path / name for name in picked]
    )
    page.get_by_label("Purpose").select_option("attachment")
    page.get_by_role("button", name="Upload", exact=True).click()

    uploads = page.locator("#uploads li")
    expect(uploads).to_have_count(3)
    unfinished = page.locator("#uploads li:is([data-state=waiting], [data-state=uploading])")
    expect(unfinished).to_have_count(0, timeout=PAGE_TIMEOUT_MS)
    states = [(item.get_attribute("data-state"), item.inner_text()) for item in uploads.all()]
    assert [state for state, _ in states] == ["done", "done", "done"], states
    for name in picked:
        expect(page.get_by_role("progressbar", name=f"Upload of {name}")).to_have_attribute(
            "value", str(len(picked[name]))
        )
    # The list of the user's files shows all three, each with a download link,
    # and the image with its icon variant, loaded from storage.
    expect(page.locator("#file-rows tr")).to_have_count(3)
    thumbnail = page.get_by_role("img", name="Preview of chart.png")
    expect(thumbnail).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    expect(thumbnail).to_have_js_property("naturalWidth", 64)
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download notes.txt").click()
    downloaded = download_info.value.path().read_bytes()
    assert downloaded == picked["notes.txt"]

    # What the service got from the browser: the page, its script and style,
    # and JSON. The 30 MiB went to storage: six part PUTs, then two PUTs.
    sent_to_service = stack.proxy.bytes_from_clients - counted_before
    total = sum(len(data) for data in picked.values())
    logger.info("demo page: browser -> service %d bytes; files %d bytes", sent_to_service, total)
    assert 0 < sent_to_service < MAX_BYTES_TO_SERVICE
    assert sent_to_service * 100 < total
    writes = storage_requests(requests, stack.storage_origin)
    assert sorted(write["part"] for write in writes if write["part"] is not None) == [
        1,
        2,
        3,
        4,
        5,
        6,
    ]
    assert (
        len([write for write in writes if write["part"] is None and write["method"] == "PUT"]) == 2
    )
    assert all(
        not request.url.startswith(stack.proxy.origin) or request.method in ("GET", "POST")
        for request in requests
    )

    # The page declares the SHA-256 of the files it sends in one PUT.
    assert_stored(stack, user, picked, known_sha256={"notes.txt", "chart.png"})


def test_demo_page_gets_a_fresh_url_for_a_part_whose_url_expired(
    stack: Stack, page: Page, tmp_path: Path
) -> None:
    user = f"retry-{uuid.uuid4().hex[:8]}"
    data = pdf(12 * MiB)  # three parts: 5 + 5 + 2 MiB
    (tmp_path / "slides.pdf").write_bytes(data)
    # A second instance of the service whose URLs live 3 s, so that one can
    # really expire while the page uses it.
    service = start_uploadsvc(
        "serve",
        port=stack.spare_port,
        env={**stack.env, "UPLOADSVC_UPLOAD_URL_EXPIRES_SECONDS": "3"},
        workdir=tmp_path,
    )
    try:
        # The first PUT of part 2 is held back in the browser until its URL has
        # expired, then sent on: storage (LocalStack, strict) refuses it.
        held: list[Route] = []
        part_two: list[int] = []

        def hold_first_try_of_part_two(route: Route) -> None:
            first_try = not held
            if (
                route.request.method == "PUT"
                and part_number_of(route.request.url) == 2
                and first_try
            ):
                held.append(route)
                return
            route.continue_()

        def record(response: Response) -> None:
            if response.request.method == "PUT" and part_number_of(response.url) == 2:
                part_two.append(response.status)

        page.route(f"{stack.storage_origin}/**", hold_first_try_of_part_two)
        page.on("response", record)
        requests: list[Request] = []
        page.on("request", lambda request: requests.append(request))

        page.goto(f"{service.base_url}/demo")
        page.get_by_label("Bearer token").fill(stack.token(user))
        page.get_by_role("button", name="Use token").click()
        page.get_by_label("Choose files, or drop them here").set_input_files(
            tmp_path / "slides.pdf"
        )
        page.get_by_role("button", name="Upload", exact=True).click()
        deadline = time.monotonic() + 30
        while not held:
            assert time.monotonic() < deadline, "the page never sent part 2"
            page.wait_for_timeout(50)
        # The URL lives 3 s from its X-Amz-Date (whole seconds): 4 s is past it. Waiting
        # here (not sleeping) lets the browser go on with the other parts.
        page.wait_for_timeout(4000)
        held[0].continue_()

        item = page.locator("#uploads li")
        expect(item).to_have_attribute(
            "data-state", re.compile("done|failed"), timeout=PAGE_TIMEOUT_MS
        )
        assert item.get_attribute("data-state") == "done", item.inner_text()
        assert part_two == [403, 200]
        renewals = [
            request.post_data_json
            for request in requests
            if request.method == "POST" and request.url.endswith("/parts/urls")
        ]
        assert {"part_numbers": [2]} in renewals
        assert_stored(stack, user, {"slides.pdf": data}, known_sha256=set())
    finally:
        service.stop()


# --- Uppy ------------------------------------------------------------------------


# page.evaluate() waits as long as the promise does, and Uppy can wait forever
# (e.g. a part whose ETag storage's CORS rules hide): give it a deadline.
IN_TIME = (
    "args => Promise.race([CALL, new Promise((_, reject) => setTimeout("
    "() => reject(new Error('no answer within ' + args.timeoutMs + ' ms')), args.timeoutMs))])"
)


@pytest.fixture(scope="module")
def uppy_page_url(stack: Stack) -> str:
    """The Uppy test page, served from the second origin with the fresh bundle."""
    bundle = build_uppy_bundle()
    stack.site.add("/uppy.html", "text/html; charset=utf-8", (UPPY_DIR / "page.html").read_bytes())
    stack.site.add("/uppy-test.js", "text/javascript; charset=utf-8", bundle.read_bytes())
    return f"{stack.site.origin}/uppy.html"


def test_published_uppy_uploads_through_the_service(
    stack: Stack, page: Page, uppy_page_url: str
) -> None:
    user = f"uppy-{uuid.uuid4().hex[:8]}"
    files = {"small.pdf": pdf(48 * 1024), "large.pdf": pdf(20 * MiB)}
    for name, data in files.items():
        stack.site.add(f"/files/{name}", "application/pdf", data)
    requests: list[Request] = []
    page.on("request", lambda request: requests.append(request))
    counted_before = stack.proxy.bytes_from_clients

    page.goto(uppy_page_url)
    result = page.evaluate(
        IN_TIME.replace("CALL", "window.uploadWithUppy(args)"),
        {
            "endpoint": f"{stack.proxy.origin}/v1",
            "timeoutMs": PAGE_TIMEOUT_MS,
            "token": stack.token(user),
            "files": [
                {"path": f"/files/{name}", "name": name, "type": "application/pdf"}
                for name in files
            ],
        },
    )

    assert result["failed"] == [], result
    uploaded = {file["name"]: file for file in result["successful"]}
    assert sorted(uploaded) == sorted(files)
    assert uploaded["large.pdf"]["multipart"] is True
    assert uploaded["small.pdf"]["multipart"] is False
    # The page confirmed the single-request upload; the service confirmed the
    # multipart one itself when Uppy completed it.
    assert [(c["name"], c["status"]) for c in result["confirmed"]] == [("small.pdf", 200)]
    # The key Uppy passed on is the one its policy wrote to (the staging key):
    # confirm takes it for the file's.
    confirmed_key = file_key_of(result["confirmed"][0]["key"])
    assert result["confirmed"][0]["body"]["file_key"] == confirmed_key

    # Uppy declares none; S3 hashed the single-request one when confirm copied it.
    records = assert_stored(stack, user, files, known_sha256={"small.pdf"})
    assert records["small.pdf"]["file_key"] == confirmed_key
    assert records["large.pdf"]["file_key"] == uploaded["large.pdf"]["key"]

    # Uppy spoke the Companion S3 protocol to the service, cross-origin...
    called = [
        (request.method, urlsplit(request.url).path)
        for request in requests
        if request.url.startswith(stack.proxy.origin) and request.method != "OPTIONS"
    ]
    assert ("GET", "/v1/s3/params") in called
    assert ("POST", "/v1/s3/multipart") in called
    assert any(
        method == "POST" and path.startswith("/v1/s3/multipart/") and path.endswith("/complete")
        for method, path in called
    )
    # ...and sent the bytes to storage: a POST (policy) and 5 MiB parts.
    writes = storage_requests(requests, stack.storage_origin)
    assert [write["method"] for write in writes if write["part"] is None] == ["POST"]
    assert sorted(write["part"] for write in writes if write["part"] is not None) == [1, 2, 3, 4]
    sent_to_service = stack.proxy.bytes_from_clients - counted_before
    total = sum(len(data) for data in files.values())
    logger.info("Uppy: browser -> service %d bytes; files %d bytes", sent_to_service, total)
    assert sent_to_service * 100 < total

    # Another user's upload: signing its part answers 404, as for a made-up id.
    answers = page.evaluate(
        IN_TIME.replace("CALL", "window.signPartAs(args)"),
        {
            "endpoint": f"{stack.proxy.origin}/v1",
            "timeoutMs": PAGE_TIMEOUT_MS,
            "owner": stack.token(user),
            "stranger": stack.token(f"stranger-{uuid.uuid4().hex[:8]}"),
        },
    )
    assert answers["created"] == 200, answers
    assert answers["asStranger"]["status"] == 404, answers
    assert answers["asStranger"]["body"]["code"] == "upload_not_found"
    assert answers["asStranger"] == answers["madeUp"]
    assert answers["asOwner"]["status"] == 200, answers
    assert answers["asOwner"]["body"]["url"].startswith(stack.storage_origin)
    assert answers["aborted"] == 200
