"""``/docs`` and ``/redoc`` work on a machine without internet.

``uploadsvc dev`` runs as a newcomer starts it; Debian's Chromium opens the
pages with every request that is not to 127.0.0.1 aborted, as on a machine
with no network. Swagger UI and ReDoc must still render every operation.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Route, expect, sync_playwright

from tests.browser.harness import launch_chromium
from tests.devserver import DevServer, running_dev_server
from uploadsvc.routers.docs import STATIC_URL

# The service has some thirty operations; more than 20 on the page means
# the document was loaded and rendered, not just the page's frame.
MIN_OPERATIONS = 20
PAGE_TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    with running_dev_server(tmp_path_factory.mktemp("docs-offline")) as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        try:
            yield chromium
        finally:
            chromium.close()


class Offline:
    """A browser context that can reach loopback only; it notes what it refused."""

    def __init__(self, browser: Browser) -> None:
        self.refused: list[str] = []
        self.seen: list[str] = []
        self.context: BrowserContext = browser.new_context()
        self.context.set_default_timeout(PAGE_TIMEOUT_MS)
        self.context.route("**/*", self._guard)

    def _guard(self, route: Route) -> None:
        url = route.request.url
        self.seen.append(url)
        if urlsplit(url).hostname == "127.0.0.1":
            route.continue_()
        else:
            self.refused.append(url)
            route.abort("internetdisconnected")


@pytest.fixture
def offline(browser: Browser) -> Iterator[Offline]:
    guard = Offline(browser)
    try:
        yield guard
    finally:
        guard.context.close()


def _operation_count(dev: DevServer) -> int:
    """How many operation blocks the pages show: one under each of an operation's tags."""
    document = httpx.get(f"{dev.base_url}/openapi.json", timeout=10).json()
    methods = {"get", "put", "post", "delete", "patch", "options", "head"}
    return sum(
        max(1, len(operation.get("tags", [])))
        for item in document["paths"].values()
        for method, operation in item.items()
        if method in methods
    )


def test_swagger_ui_renders_every_operation_with_no_network(
    dev: DevServer, offline: Offline
) -> None:
    operations = _operation_count(dev)
    assert operations > MIN_OPERATIONS
    page = offline.context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{dev.base_url}/docs")
    expect(page.locator(".opblock")).to_have_count(operations)
    # The bearer scheme's Authorize button, which the README sends people to.
    expect(page.get_by_role("button", name="Authorize")).to_be_visible()
    assert offline.refused == [], "the page asked for files from another host"
    assert any(urlsplit(url).path.startswith(STATIC_URL) for url in offline.seen)
    assert errors == []


def test_redoc_renders_every_operation_with_no_network(dev: DevServer, offline: Offline) -> None:
    operations = _operation_count(dev)
    page = offline.context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{dev.base_url}/redoc")
    # ReDoc gives each operation a section in the page.
    expect(page.locator("[data-section-id^='operation/']")).to_have_count(operations)
    assert offline.refused == [], "the page asked for files from another host"
    assert errors == []


def test_docs_pages_name_no_other_host(dev: DevServer) -> None:
    """Without a browser: every URL in the pages is on the service itself."""
    for path in ("/docs", "/redoc"):
        page = httpx.get(f"{dev.base_url}{path}", timeout=10)
        assert page.status_code == 200
        assert "https://" not in page.text, path
        assert "http://" not in page.text, path
    for name in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png"):
        asset = httpx.get(f"{dev.base_url}{STATIC_URL}/{name}", timeout=10)
        assert asset.status_code == 200, name
    redirect = httpx.get(f"{dev.base_url}/docs/oauth2-redirect", timeout=10)
    assert redirect.status_code == 200
