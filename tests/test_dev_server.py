"""`uploadsvc dev` with zero configuration serves the README's curl flow."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright

from tests.browser.servers import launch_chromium

UPLOADSVC = str(Path(sys.executable).with_name("uploadsvc"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def dev_server(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """The dev server in an empty folder, with no UPLOADSVC_* variables; yields (base, token)."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("UPLOADSVC_")}
    env["PYTHONUNBUFFERED"] = "1"
    log = tmp_path / "dev.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [UPLOADSVC, "dev", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"dev server did not start:\n{log.read_text()}")
            time.sleep(0.2)
        lines = log.read_text().splitlines()
        token = lines[next(i for i, line in enumerate(lines) if "dev token" in line) + 1].strip()
        yield base, token
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)


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
        "big.pdf": b"%PDF-1.4\n".ljust(12 * 1024 * 1024, b"\x00"),
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
    files = httpx.get(
        f"{base}/v1/files", headers={"Authorization": f"Bearer {token}"}, timeout=10
    ).json()["items"]
    assert sorted((file["filename"], file["size_bytes"]) for file in files) == sorted(
        (name, len(data)) for name, data in picked.items()
    )
    for file in files:
        link = httpx.get(
            f"{base}/v1/files/{file['file_id']}/download",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        ).json()["download_url"]
        assert httpx.get(link, timeout=30).content == picked[file["filename"]]
