"""``uploadsvc dev`` as a newcomer starts it: an empty folder, no ``UPLOADSVC_*`` variables.

A plain helper for the tests that follow the README (tests/test_readme_walkthrough.py,
tests/test_docs_offline.py, tests/test_first_run.py).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.servers import UPLOADSVC, free_loopback_port, uploadsvc_env

# Generous: a loaded 2-core machine migrates SQLite and starts uvicorn in seconds.
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 15.0


def clean_env() -> dict[str, str]:
    """The environment less every ``UPLOADSVC_*`` setting: the zero-config defaults."""
    return uploadsvc_env()


@dataclass
class DevServer:
    base_url: str
    token: str
    workdir: Path
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def running_dev_server(workdir: Path) -> Iterator[DevServer]:
    """``uploadsvc dev --port N`` in ``workdir``; yields once /healthz answers."""
    port = free_loopback_port()
    log_path = workdir / "dev.log"
    with log_path.open("wb") as output:
        process = subprocess.Popen(
            [UPLOADSVC, "dev", "--port", str(port)],
            cwd=workdir,
            env=clean_env(),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"uploadsvc dev did not start:\n{log_path.read_text()}")
            time.sleep(0.2)
        lines = log_path.read_text().splitlines()
        token = lines[next(i for i, line in enumerate(lines) if "dev token" in line) + 1].strip()
        yield DevServer(base_url=base, token=token, workdir=workdir, log_path=log_path)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
