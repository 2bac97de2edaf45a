"""A real ClamAV daemon for the tests, with a signature database of its own.

Debian's ``clamav-daemon`` ships no signatures, and the official databases
cannot be downloaded here, so each daemon gets a database that knows one
threat: the EICAR test file, as a body signature (``test.ndb``: the EICAR
marker anywhere in a file, so in a zip entry or in the middle of a PDF too)
and as a hash signature (``test.hdb``: the 68-byte file itself).

    with ClamdServer(stream_max_bytes=30 * MiB) as clamd:
        ...  # settings: scan_backend="clamd", clamd_url=clamd.url

It listens on a socket in a short temporary folder (a socket path must stay
under ~100 characters, which pytest's ``tmp_path`` can exceed), runs in the
foreground as a child of the test process, and is stopped by its PID.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from tests.support.servers import spawn

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
EICAR_MARKER = b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE"
SIGNATURE = "Test.EICAR"
# Hang bounds: clamd answers PING about 0.3 s after it starts.
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 15.0
SBIN_PATH = "/usr/local/sbin:/usr/sbin:/sbin"


def clamd_binary() -> str:
    found = shutil.which("clamd", path=f"{os.environ.get('PATH', '')}:{SBIN_PATH}")
    if found is None:
        raise RuntimeError("clamd is not installed: run `scripts/bootstrap.sh --test`")
    return found


def ping(socket_path: Path, *, timeout: float = 2.0) -> bool:
    """Whether clamd answers ``zPING`` with ``PONG`` on ``socket_path``."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(socket_path))
            sock.sendall(b"zPING\0")
            return sock.recv(16) == b"PONG\0"
    except OSError:
        return False


class ClamdServer:
    """clamd on a unix socket of its own; ``start``/``stop`` may be called again and again."""

    def __init__(self, *, stream_max_bytes: int) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="clamd-", dir="/tmp"))
        self.socket_path = self.folder / "clamd.sock"
        self.log_path = self.folder / "clamd.log"
        database = self.folder / "db"
        database.mkdir()
        (database / "test.ndb").write_text(f"{SIGNATURE}:0:*:{EICAR_MARKER.hex()}\n")
        (database / "test.hdb").write_text(
            f"{hashlib.md5(EICAR).hexdigest()}:{len(EICAR)}:{SIGNATURE}\n"  # noqa: S324 - clamd's format
        )
        self.config_path = self.folder / "clamd.conf"
        self.config_path.write_text(
            "Foreground yes\n"
            f"LocalSocket {self.socket_path}\n"
            f"DatabaseDirectory {database}\n"
            f"StreamMaxLength {stream_max_bytes}\n"
            # Limits of what is scanned inside a stream: above the stream limit.
            f"MaxScanSize {stream_max_bytes * 4}\n"
            f"MaxFileSize {stream_max_bytes * 2}\n"
            "LogTime yes\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def start(self) -> None:
        assert self.process is None, "clamd is running already"
        self.process = spawn(
            [clamd_binary(), "-c", str(self.config_path)],
            env=dict(os.environ),
            cwd=self.folder,
            log_path=self.log_path,
        )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"clamd exited while starting:\n{self._log_tail()}")
            if ping(self.socket_path):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"clamd did not answer PING within {START_TIMEOUT_SECONDS:g} s")

    def stop(self) -> None:
        """SIGTERM clamd by its PID (SIGKILL after 15 s); its socket goes with it."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError as exc:
            return f"(no log: {exc})"

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> ClamdServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
