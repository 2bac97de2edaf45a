"""Servers the tests run on loopback: in a process group of their own, or in a thread.

A process server (``uploadsvc serve`` or ``dev``, LocalStack) is started with
``spawn``, held as a ``ServerProcess`` and waited for with
``wait_until_answers``; ``start_uploadsvc`` does all three for the service.
Each is stopped by its process group, so what it started (uvicorn's workers,
LocalStack's children) stops with it:

    env = uploadsvc_env({"database_url": ..., "jwt_secret": ...})
    with start_uploadsvc("serve", port=free_loopback_port(), env=env, workdir=tmp_path) as api:
        ...  # the service answers at api.base_url
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

import httpx

UPLOADSVC = str(Path(sys.executable).with_name("uploadsvc"))
# Hang bounds, not expectations: the service starts in about 3.5 s, LocalStack in 3-9 s.
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 15.0
CLI_TIMEOUT_SECONDS = 60.0
LOG_TAIL_CHARS = 4000
POLL_SECONDS = 0.2


def free_loopback_port() -> int:
    """A loopback port nothing listens on (until something else takes it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """A server on ``127.0.0.1:<port>``, leader of its own process group, logging to a file."""

    def __init__(
        self, name: str, port: int, process: subprocess.Popen[bytes], log_path: Path
    ) -> None:
        self.name = name
        self.port = port
        self.process = process
        self.log_path = log_path
        # A session that dies without calling stop() does not leave the server behind.
        atexit.register(self.stop)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, chars: int = LOG_TAIL_CHARS) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError as exc:
            return f"(no log: {exc})"

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL it after 15 s. Idempotent."""
        atexit.unregister(self.stop)
        if self.process.poll() is not None:
            return  # already exited and reaped: its group id may belong to others now
        self._signal_group(signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            self.process.wait(timeout=STOP_TIMEOUT_SECONDS)

    def kill(self) -> None:
        """SIGKILL the process group at once, as a crash would end it."""
        atexit.unregister(self.stop)
        self._signal_group(signal.SIGKILL)
        self.process.wait(timeout=STOP_TIMEOUT_SECONDS)

    def _signal_group(self, signum: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.base_url!r}, pid={self.pid})"


def spawn(
    args: list[str], *, env: Mapping[str, str], cwd: Path, log_path: Path
) -> subprocess.Popen[bytes]:
    """Start ``args`` as the leader of a new process group, its output in ``log_path``."""
    with log_path.open("wb") as log:
        # The child keeps its own copy of the log's file descriptor.
        return subprocess.Popen(
            args,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Its own process group: Ctrl-C in the terminal does not reach it, and
            # stop() signals exactly the group it started.
            start_new_session=True,
        )


def wait_until_answers(
    server: ServerProcess, path: str, *, timeout: float = START_TIMEOUT_SECONDS, hint: str = ""
) -> None:
    """Return once ``GET path`` answers 200; raise (with the log) if the server exits or hangs.

    ``hint``: what to tell the reader when the server exits while starting.
    """
    url = server.base_url + path
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            returncode = server.process.poll()
            if returncode is not None:
                raise RuntimeError(
                    f"{server.name} exited with status {returncode} while starting "
                    f"(log {server.log_path}{'; ' + hint if hint else ''}):\n{server.log_tail()}"
                )
            with contextlib.suppress(httpx.TransportError):  # not listening yet
                if client.get(url).status_code == 200:
                    return
            time.sleep(POLL_SECONDS)
    raise RuntimeError(
        f"{server.name} did not answer {url} within {timeout:g} s "
        f"(log {server.log_path}):\n{server.log_tail()}"
    )


def uploadsvc_env(values: Mapping[str, str] | None = None) -> dict[str, str]:
    """The process environment with exactly these ``UPLOADSVC_*`` settings (none by default)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("UPLOADSVC_")}
    env.update({f"UPLOADSVC_{name.upper()}": value for name, value in (values or {}).items()})
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_cli(args: list[str], *, env: Mapping[str, str], cwd: Path) -> str:
    """Run an ``uploadsvc`` command to completion; its output, or an error with it."""
    result = subprocess.run(
        [UPLOADSVC, *args],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_SECONDS,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"uploadsvc {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def run_cli_status(
    args: list[str], *, env: Mapping[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    """Run an ``uploadsvc`` command to completion, whatever its exit code."""
    return subprocess.run(
        [UPLOADSVC, *args],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_SECONDS,
        check=False,
    )


def start_uploadsvc(
    command: str, *, port: int, env: Mapping[str, str], workdir: Path
) -> ServerProcess:
    """``uploadsvc <command>`` (``serve`` or ``dev``) on 127.0.0.1:<port>, once /readyz is 200.

    It runs in ``workdir``, so no stray .env is read: the settings are exactly ``env``.
    """
    log_path = workdir / f"uploadsvc-{command}-{port}.log"
    process = spawn(
        [UPLOADSVC, command, "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=workdir,
        log_path=log_path,
    )
    server = ServerProcess(f"uploadsvc {command}", port, process, log_path)
    try:
        wait_until_answers(server, "/readyz")
    except BaseException:
        server.stop()
        raise
    return server


@contextlib.contextmanager
def serve_in_thread(handler: type[BaseHTTPRequestHandler]) -> Iterator[ThreadingHTTPServer]:
    """``handler`` served on a free loopback port from a thread, until the block ends."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
