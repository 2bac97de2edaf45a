"""Start and stop LocalStack's strict S3 server (test setup helpers, no fixtures).

LocalStack 4.13.1 lives in its own venv, ``.venv-localstack`` (its pinned boto3 must
not meet the project's), installed by ``scripts/bootstrap.sh --test``. It runs
through ``scripts/ls_launch.py``, which keeps it on a loopback port and inside
``.localstack-state/``. That folder is kept between runs: the first start builds a
cache there (about 9 s), later starts take about 3 s.

    server = start_localstack(repo_root)
    try:
        ...  # S3 at server.endpoint_url, presigned URLs signed with the secret "test"
    finally:
        server.stop()
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

import httpx

START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 10.0
LOG_TAIL_CHARS = 4000
# Logs of earlier runs (one per port) older than this are removed at start.
LOG_MAX_AGE_SECONDS = 24 * 3600

VENV_DIR = ".venv-localstack"
STATE_DIR = ".localstack-state"
LAUNCHER = Path("scripts") / "ls_launch.py"
INSTALL_HINT = "run `make test` (scripts/bootstrap.sh --test) to install LocalStack"


class LocalStackServer:
    """A running LocalStack: its S3 endpoint and how to stop it."""

    def __init__(self, endpoint_url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
        self.endpoint_url = endpoint_url
        self.process = process
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        """SIGTERM the server's process group, SIGKILL it after 10 s. Idempotent."""
        atexit.unregister(self.stop)
        if self.process.poll() is not None:
            return  # already exited and reaped: its group id may belong to others now
        self._signal_group(signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            self.process.wait(timeout=STOP_TIMEOUT_SECONDS)

    def log_tail(self, chars: int = LOG_TAIL_CHARS) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError as exc:
            return f"(no log: {exc})"

    def _signal_group(self, signum: signal.Signals) -> None:
        # The server is the leader of its own process group (start_new_session).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)

    def __enter__(self) -> LocalStackServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"LocalStackServer({self.endpoint_url!r}, pid={self.pid})"


def start_localstack(
    repo_root: Path, *, timeout: float = START_TIMEOUT_SECONDS
) -> LocalStackServer:
    """Start LocalStack on a free loopback port and wait until it answers."""
    python = repo_root / VENV_DIR / "bin" / "python"
    if not python.is_file():
        raise RuntimeError(f"{python} is missing: {INSTALL_HINT}")
    state_dir = repo_root / STATE_DIR
    state_dir.mkdir(exist_ok=True)
    _remove_old_logs(state_dir)

    port = free_loopback_port()
    log_path = state_dir / f"localstack-{port}.log"
    with log_path.open("wb") as log:
        # The child keeps its own copy of the log's file descriptor.
        process = subprocess.Popen(
            [str(python), str(repo_root / LAUNCHER), str(port)],
            cwd=repo_root,
            env={**os.environ, "LS_STATE_DIR": str(state_dir)},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Its own process group: Ctrl-C in the terminal does not reach it, and
            # stop() signals exactly the group it started.
            start_new_session=True,
        )
    server = LocalStackServer(f"http://127.0.0.1:{port}", process, log_path)
    # A session that dies without calling stop() does not leave the server behind.
    atexit.register(server.stop)
    try:
        _wait_until_healthy(server, timeout)
    except BaseException:
        server.stop()
        raise
    return server


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_until_healthy(server: LocalStackServer, timeout: float) -> None:
    health_url = f"{server.endpoint_url}/_localstack/health"
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            returncode = server.process.poll()
            if returncode is not None:
                raise RuntimeError(
                    f"LocalStack exited with status {returncode} while starting "
                    f"(log {server.log_path}; if it cannot import localstack, "
                    f"{INSTALL_HINT}):\n{server.log_tail()}"
                )
            try:
                if client.get(health_url).status_code == 200:
                    return
            except httpx.TransportError:
                pass  # not listening yet
            time.sleep(0.2)
    raise RuntimeError(
        f"LocalStack did not answer {health_url} within {timeout:g} s "
        f"(log {server.log_path}):\n{server.log_tail()}"
    )


def _remove_old_logs(state_dir: Path) -> None:
    cutoff = time.time() - LOG_MAX_AGE_SECONDS
    for old in state_dir.glob("localstack-*.log"):
        try:
            if old.stat().st_mtime < cutoff:
                old.unlink()
        except OSError:
            pass  # another session removed it first
