"""What the browser tests run besides the service (tests/support/servers.py starts
that): Debian's Chromium, a second web origin, and the Uppy bundle. Plain helpers;
the fixtures are in tests/test_browser.py.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Playwright

from tests.support.files import sha256_hex
from tests.support.servers import serve_in_thread

UPPY_DIR = Path(__file__).resolve().parent / "uppy"
BOOTSTRAP_HINT = "run `scripts/bootstrap.sh --test` (what `make test` and CI run)"

CHROMIUM = "/usr/bin/chromium"
# From the machine notes: headless, no sandbox (we run as root), and no
# background traffic to Google's hosts, which this network refuses.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
START_TIMEOUT_SECONDS = 30.0


def launch_chromium(playwright: Playwright) -> Browser:
    """Debian's Chromium through Playwright; a clear error when it cannot start."""
    if not Path(CHROMIUM).is_file():
        raise RuntimeError(f"{CHROMIUM} is missing: {BOOTSTRAP_HINT} (apt-get install chromium)")
    try:
        # Playwright gives every launch a new, empty profile (--user-data-dir).
        return playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=START_TIMEOUT_SECONDS * 1000
        )
    except Exception as exc:
        raise RuntimeError(f"Chromium ({CHROMIUM}) did not start: {exc}") from exc


# --- a second origin ----------------------------------------------------------------


@dataclass
class StaticSite:
    """A tiny web server on another loopback port: another origin than the API's."""

    origin: str
    routes: dict[str, tuple[str, bytes]]

    def add(self, path: str, content_type: str, body: bytes) -> None:
        self.routes[path] = (content_type, body)


@contextlib.contextmanager
def static_site() -> Iterator[StaticSite]:
    routes: dict[str, tuple[str, bytes]] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            route = routes.get(self.path.split("?", 1)[0])
            if route is None:
                self.send_error(404)
                return
            content_type, body = route
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: pytest shows failures, not every request

    with serve_in_thread(Handler) as server:
        yield StaticSite(f"http://127.0.0.1:{server.server_address[1]}", routes)


# --- Uppy ---------------------------------------------------------------------------


def build_uppy_bundle() -> Path:
    """Bundle the pinned, unmodified Uppy packages for the test page (esbuild).

    ``node_modules`` comes from ``npm ci`` in ``scripts/bootstrap.sh --test``;
    the bundle goes to the git-ignored ``dist/``.
    """
    esbuild = UPPY_DIR / "node_modules" / ".bin" / "esbuild"
    if not esbuild.exists():
        raise RuntimeError(f"{esbuild} is missing: {BOOTSTRAP_HINT} (npm ci in {UPPY_DIR})")
    marker = UPPY_DIR / "node_modules" / ".bootstrap-lock.sha256"
    lock_hash = sha256_hex((UPPY_DIR / "package-lock.json").read_bytes())
    if not marker.is_file() or marker.read_text().strip() != lock_hash:
        raise RuntimeError(
            f"{UPPY_DIR / 'node_modules'} is not installed from package-lock.json: "
            + BOOTSTRAP_HINT
        )
    outfile = UPPY_DIR / "dist" / "uppy-test.js"
    result = subprocess.run(
        [
            str(esbuild),
            "entry.js",
            "--bundle",
            "--format=iife",
            "--target=es2020",
            "--log-level=warning",
            f"--outfile={outfile}",
        ],
        cwd=UPPY_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"esbuild failed:\n{result.stdout}{result.stderr}")
    return outfile
