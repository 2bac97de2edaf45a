"""What the browser tests run: the service (a real uvicorn), a second web origin,
Debian's Chromium, and the Uppy bundle. Plain helpers; the fixtures are in
tests/test_browser.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Browser, Playwright

UPLOADSVC = str(Path(sys.executable).with_name("uploadsvc"))
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
STOP_TIMEOUT_SECONDS = 15.0


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


# --- the service ----------------------------------------------------------------


@dataclass
class ServiceProcess:
    """``uploadsvc serve`` on a loopback port, as a deployment runs it."""

    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError as exc:
            return f"(no log: {exc})"

    def stop(self) -> None:
        """SIGTERM its process group (SIGKILL after 15 s). Idempotent."""
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=STOP_TIMEOUT_SECONDS)


def service_env(values: Mapping[str, str]) -> dict[str, str]:
    """The process environment with exactly these ``UPLOADSVC_*`` settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("UPLOADSVC_")}
    env.update({f"UPLOADSVC_{name.upper()}": value for name, value in values.items()})
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_cli(args: list[str], *, env: dict[str, str], cwd: Path) -> str:
    """Run an ``uploadsvc`` command to completion; its output, or an error with it."""
    result = subprocess.run(
        [UPLOADSVC, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"uploadsvc {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def start_service(*, port: int, env: dict[str, str], workdir: Path) -> ServiceProcess:
    """``uploadsvc serve`` on 127.0.0.1:<port>; returns once /readyz answers 200."""
    log_path = workdir / "uploadsvc.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [UPLOADSVC, "serve", "--host", "127.0.0.1", "--port", str(port)],
            # No stray .env: the settings are exactly `env`.
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    service = ServiceProcess(f"http://127.0.0.1:{port}", process, log_path)
    try:
        _wait_ready(service)
    except BaseException:
        service.stop()
        raise
    return service


def _wait_ready(service: ServiceProcess) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise RuntimeError(f"uploadsvc serve exited while starting:\n{service.log_tail()}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{service.base_url}/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"uploadsvc serve was not ready in time:\n{service.log_tail()}")


# --- a second origin ----------------------------------------------------------------


@dataclass
class StaticSite:
    """A tiny web server on another loopback port: another origin than the API's."""

    routes: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    server: ThreadingHTTPServer | None = None
    thread: threading.Thread | None = None

    @property
    def origin(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, path: str, content_type: str, body: bytes) -> None:
        self.routes[path] = (content_type, body)

    def start(self) -> None:
        routes = self.routes

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

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        if self.thread is not None:
            self.thread.join(timeout=5)


@contextlib.contextmanager
def static_site() -> Iterator[StaticSite]:
    site = StaticSite()
    site.start()
    try:
        yield site
    finally:
        site.stop()


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
    lock_hash = hashlib.sha256((UPPY_DIR / "package-lock.json").read_bytes()).hexdigest()
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
