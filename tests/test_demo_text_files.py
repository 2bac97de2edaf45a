"""Text files dropped on ``/demo`` of ``uploadsvc dev`` go in, as the README promises.

Browsers declare ``text/markdown`` for a .md file, or nothing at all when the
system does not know the extension; the page then names the type by the
extension and confirm checks the bytes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright

from tests.browser.harness import launch_chromium
from tests.devserver import DevServer, running_dev_server

PAGE_TIMEOUT_MS = 45_000


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[DevServer]:
    with running_dev_server(tmp_path) as server:
        yield server


def test_markdown_csv_and_logs_dropped_on_the_demo_page_are_confirmed(dev: DevServer) -> None:
    # (name, the type the browser declares, bytes). A system that knows
    # neither .csv nor .log: the browser declares no type for them.
    picked = [
        ("notes.md", "text/markdown", "# Notes\n\n- *one*\n"),
        ("table.csv", "", "name,age\nada,36\ngrace,45\n"),
        ("server.log", "", "NP 2026-01-01 started\n"),
    ]
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page()
            page.set_default_timeout(PAGE_TIMEOUT_MS)
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{dev.base_url}/demo")
            page.get_by_label("Bearer token").fill(dev.token)
            page.get_by_role("button", name="Use token").click()
            expect(page.get_by_text("Signed in as dev-user")).to_be_visible()
            # Files made in the page: Playwright's own file chooser would name a
            # type from the extension, where a browser may leave it empty.
            page.evaluate(
                """(picked) => {
                    const chosen = new DataTransfer();
                    for (const [name, type, text] of picked) {
                        chosen.items.add(new File([text], name, { type }));
                    }
                    document.getElementById("files").files = chosen.files;
                }""",
                picked,
            )
            types = page.evaluate('[...document.getElementById("files").files].map((f) => f.type)')
            assert types == [declared for _, declared, _ in picked]
            page.get_by_role("button", name="Upload", exact=True).click()
            unfinished = page.locator(
                "#uploads li:is([data-state=waiting], [data-state=uploading])"
            )
            expect(page.locator("#uploads li")).to_have_count(len(picked))
            expect(unfinished).to_have_count(0)
            states = [
                (item.get_attribute("data-state"), item.inner_text())
                for item in page.locator("#uploads li").all()
            ]
            assert [state for state, _ in states] == ["done"] * len(picked), states
            assert errors == []
        finally:
            browser.close()
    files = httpx.get(
        f"{dev.base_url}/v1/files",
        headers={"Authorization": f"Bearer {dev.token}"},
        timeout=10,
    ).json()["items"]
    assert {file["filename"]: file["content_type"] for file in files} == {
        "notes.md": "text/markdown",
        "table.csv": "text/csv",
        "server.log": "text/plain",
    }
