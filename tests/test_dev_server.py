"""`uploadsvc dev` with zero configuration serves the README's curl flow."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright

from tests.browser.harness import launch_chromium
from tests.support.files import MiB, pdf
from tests.support.servers import free_loopback_port, start_uploadsvc, uploadsvc_env
from tests.support.tokens import bearer


@pytest.fixture
def dev_server(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """The dev server in an empty folder, with no UPLOADSVC_* variables; yields (base, token)."""
    with start_uploadsvc(
        "dev", port=free_loopback_port(), env=uploadsvc_env(), workdir=tmp_path
    ) as server:
        lines = server.log_path.read_text().splitlines()
        token = lines[next(i for i, line in enumerate(lines) if "dev token" in line) + 1].strip()
        yield server.base_url, token


def _curl(*args: str) -> str:
    result = subprocess.run(
        ["curl", "--silent", "--show-error", "--fail-with-body", *args],
        capture_output=True,
        check=True,
        text=True,
    )
    return result.stdout


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_readme_curl_flow_against_make_dev(dev_server: tuple[str, str], tmp_path: Path) -> None:
    base, token = dev_server
    auth = f"Authorization: Bearer {token}"
    document = tmp_path / "hello.txt"
    document.write_bytes(b"Hello from curl!\n" * 100)

    grant = json.loads(
        _curl(
            "-X",
            "POST",
            f"{base}/v1/uploads/request-url",
            "-H",
            auth,
            "-H",
            "Content-Type: application/json",
            "-d",
            json.dumps(
                {
                    "filename": "hello.txt",
                    "content_type": "text/plain",
                    "size": document.stat().st_size,
                }
            ),
        )
    )
    # The README's PUT spells these two headers out; keep it true.
    assert grant["headers"] == {"Content-Type": "text/plain", "If-None-Match": "*"}
    headers = [
        arg for name, value in grant["headers"].items() for arg in ("-H", f"{name}: {value}")
    ]
    _curl("-X", "PUT", grant["upload_url"], *headers, "--data-binary", f"@{document}")
    confirmed = json.loads(
        _curl(
            "-X",
            "POST",
            f"{base}/v1/uploads/confirm",
            "-H",
            auth,
            "-H",
            "Content-Type: application/json",
            "-d",
            json.dumps({"file_key": grant["file_key"]}),
        )
    )
    assert confirmed["status"] == "confirmed"
    downloaded = tmp_path / "downloaded.txt"
    _curl(confirmed["download_url"], "-o", str(downloaded))
    assert downloaded.read_bytes() == document.read_bytes()
    # Zero config means SQLite and files on disk, in the folder it was started from.
    assert (tmp_path / "uploadsvc.db").exists()
    assert any((tmp_path / "data" / "storage").rglob("*.txt"))


def test_demo_page_uploads_to_make_dev(dev_server: tuple[str, str], tmp_path: Path) -> None:
    """The README's first step: open /demo on `make dev`, paste the token, upload.

    Local storage, so the page's PUTs (one whole file, and the parts of one
    above the multipart threshold) go to the app's own signed storage URLs.
    """
    base, token = dev_server
    picked = {
        "hello.txt": b"Hello from the demo page!\n" * 50,
        # Over the page's 10 MiB threshold: three parts (5, 5 and 2 MiB).
        "big.pdf": pdf(12 * MiB),
    }
    for name, data in picked.items():
        (tmp_path / name).write_bytes(data)
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page()
            page.set_default_timeout(60_000)
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{base}/demo")
            page.get_by_label("Bearer token").fill(token)
            page.get_by_role("button", name="Use token").click()
            expect(page.get_by_text("Signed in as dev-user")).to_be_visible()
            page.get_by_label("Choose files, or drop them here").set_input_files(
                [tmp_path / name for name in picked]
            )
            page.get_by_role("button", name="Upload", exact=True).click()
            done = page.locator("#uploads li[data-state=done]")
            expect(done).to_have_count(2)
            expect(page.locator("#file-rows tr")).to_have_count(2)
            assert errors == []
        finally:
            browser.close()
    files = httpx.get(f"{base}/v1/files", headers=bearer(token), timeout=10).json()["items"]
    assert sorted((file["filename"], file["size_bytes"]) for file in files) == sorted(
        (name, len(data)) for name, data in picked.items()
    )
    for file in files:
        link = httpx.get(
            f"{base}/v1/files/{file['file_id']}/download",
            headers=bearer(token),
            timeout=10,
        ).json()["download_url"]
        assert httpx.get(link, timeout=30).content == picked[file["filename"]]
