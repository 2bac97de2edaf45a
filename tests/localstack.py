"""Start and stop LocalStack's strict S3 server for the test session.

Installed by ``scripts/bootstrap.sh --test`` in ``.venv-localstack`` (its own
pinned boto3 must not meet ours), started through ``scripts/ls_launch.py`` on
a free loopback port. The state folder is kept between runs: LocalStack's
first start builds a cache there (9 s), later starts take about 3 s.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

START_TIMEOUT_SECONDS = 90


@dataclass
class LocalStackServer:
    endpoint_url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_localstack(repo_root: Path) -> LocalStackServer:
    python = repo_root / ".venv-localstack" / "bin" / "python"
    if not python.exists():
        raise RuntimeError(
            "LocalStack is not installed: run `make test` (scripts/bootstrap.sh --test)"
        )
    state = repo_root / ".localstack-state"
    state.mkdir(exist_ok=True)
    port = _free_port()
    log_path = state / f"localstack-{port}.log"
    env = {**os.environ, "LS_STATE_DIR": str(state)}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(python), str(repo_root / "scripts" / "ls_launch.py"), str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = LocalStackServer(f"http://127.0.0.1:{port}", process, log_path)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            if httpx.get(f"{server.endpoint_url}/_localstack/health", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    server.stop()
    tail = log_path.read_text(errors="replace")[-3000:]
    raise RuntimeError(f"LocalStack did not start on port {port}:\n{tail}")
