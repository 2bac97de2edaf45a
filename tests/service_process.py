"""``uploadsvc serve`` as a real process, with its stdout kept: the log and metrics tests."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import TEST_JWT_SECRET, TEST_SIGNING_SECRET
from tests.support.servers import (
    UPLOADSVC,
    ServerProcess,
    free_loopback_port,
    run_cli,
    uploadsvc_env,
)

# Generous: a worker imports the whole app, and this machine may be busy with other suites.
READY_TIMEOUT_SECONDS = 120.0


def sqlite_local_values(workdir: Path, port: int, **overrides: str) -> dict[str, str]:
    """Settings of a zero-dependency service: SQLite and the local backend in ``workdir``."""
    return {
        "env": "development",
        "database_url": f"sqlite+aiosqlite:///{workdir / 'uploadsvc.db'}",
        "local_storage_dir": str(workdir / "storage"),
        "jwt_secret": TEST_JWT_SECRET,
        "signing_secret": TEST_SIGNING_SECRET,
        "public_base_url": f"http://127.0.0.1:{port}",
        **overrides,
    }


@contextlib.contextmanager
def served(
    workdir: Path, *, workers: int = 1, **overrides: str
) -> Iterator[tuple[ServerProcess, dict[str, str]]]:
    """A migrated ``uploadsvc serve`` on a free port; yields it and its settings."""
    port = free_loopback_port()
    values = sqlite_local_values(workdir, port, **overrides)
    env = uploadsvc_env(values)
    run_cli(["migrate"], env=env, cwd=workdir)
    run_cli(["storage", "init"], env=env, cwd=workdir)
    log_path = workdir / "serve.log"
    # stderr apart: the tests read stdout as the log stream it is.
    with log_path.open("wb") as log, (workdir / "serve.stderr").open("wb") as errors:
        process = subprocess.Popen(
            [UPLOADSVC, "serve", "--port", str(port), "--workers", str(workers)],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=errors,
            start_new_session=True,
        )
    service = ServerProcess("uploadsvc serve", port, process, log_path)
    try:
        _wait_ready(service)
        yield service, values
    finally:
        service.stop()


def _wait_ready(service: ServerProcess) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise RuntimeError(f"uploadsvc serve exited while starting:\n{_output(service)}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{service.base_url}/readyz", timeout=5).status_code == 200:
                return
        time.sleep(0.3)
    raise RuntimeError(f"uploadsvc serve was not ready in time:\n{_output(service)}")


def _output(service: ServerProcess) -> str:
    stderr = service.log_path.with_name("serve.stderr").read_text(errors="replace")
    return f"{service.log_tail()}\n--- stderr ---\n{stderr[-4000:]}"


def log_lines(service: ServerProcess) -> list[dict[str, Any]]:
    """Every line the service wrote to stdout, each parsed as JSON (which it must be).

    While it runs, the text after the last newline may be a line still being written.
    """
    text = service.log_path.read_text()
    lines = [line for line in text.split("\n")[:-1] if line.strip()]
    parsed = []
    for line in lines:
        value = json.loads(line)
        assert isinstance(value, dict), line
        parsed.append(value)
    return parsed
