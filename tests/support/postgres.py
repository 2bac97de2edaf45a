"""A PostgreSQL cluster of a test's own, to stop, hang and restart at will.

The machine's server is shared by every test (and every engineer's tests):
an outage test must never touch it. This one lives in a fresh data folder
(``initdb``) on a free loopback port, with its socket in that folder too.
PostgreSQL refuses to run as root, so when the tests run as root the
cluster runs as the ``postgres`` user, and its folder belongs to that user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support.servers import STOP_TIMEOUT_SECONDS, free_loopback_port

START_TIMEOUT_SECONDS = 30.0
CLUSTER_USER = "postgres"


def postgres_bin_dir() -> Path | None:
    """The newest installed PostgreSQL's ``bin`` folder (Debian's layout), if any."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version_key)
    return Path(found[-1]).parent if found else None


def _version_key(path: str) -> int:
    version = Path(path).parts[4]
    return int(version) if version.isdigit() else 0


class PostgresCluster:
    """``postgres -D <dir> -p <port>``; ``stop``/``start`` and ``pause``/``resume`` it."""

    def __init__(self, bin_dir: Path, root: Path, port: int) -> None:
        self.bin_dir = bin_dir
        self.root = root
        self.data_dir = root / "data"
        self.port = port
        self.log_path = root / "postgres.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._run_as: dict[str, Any] = {}
        if os.geteuid() == 0:
            self._run_as = {"user": CLUSTER_USER, "group": CLUSTER_USER}

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def init(self) -> None:
        if self._run_as:
            account = pwd.getpwnam(CLUSTER_USER)
            os.chown(self.root, account.pw_uid, account.pw_gid)
        subprocess.run(
            [
                str(self.bin_dir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            timeout=120,
            **self._run_as,
        )

    def start(self) -> None:
        """Start the server (again, on the same port) and wait until it takes connections."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    str(self.bin_dir / "postgres"),
                    "-D",
                    str(self.data_dir),
                    "-p",
                    str(self.port),
                    "-k",
                    str(self.root),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    "fsync=off",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own process group, which its backends join: pause() stops them all.
                start_new_session=True,
                **self._run_as,
            )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited while starting:\n{self.log_tail()}")
            ready = subprocess.run(
                [str(self.bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                capture_output=True,
                check=False,
            )
            if ready.returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError(f"postgres did not start within {START_TIMEOUT_SECONDS:g} s")

    def stop(self) -> None:
        """A fast shutdown (SIGINT): sessions are cut, as when the server goes down."""
        if self.process is None or self.process.poll() is not None:
            return
        self.resume()  # a stopped process would not act on the signal
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            self.process.wait(timeout=STOP_TIMEOUT_SECONDS)

    def pause(self) -> None:
        """SIGSTOP the postmaster and its backends: connections stay open, nothing answers."""
        self._signal_all(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal_all(signal.SIGCONT)

    def _signal_all(self, signum: signal.Signals) -> None:
        # Each backend calls setsid(), so the process group holds the postmaster
        # alone: its children are found by their parent instead.
        if self.process is None or self.process.poll() is not None:
            return
        postmaster = self.process.pid
        for pid in [postmaster, *_children_of(postmaster)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def _signal_group(self, signum: signal.Signals) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signum)

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError as exc:
            return f"(no log: {exc})"


def _children_of(parent: int) -> list[int]:
    children: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            # /proc/<pid>/stat: "pid (comm) state ppid ..."; comm may hold spaces.
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == parent:
                children.append(int(entry.name))
    return children


@contextlib.contextmanager
def private_postgres() -> Iterator[PostgresCluster]:
    """A running cluster of this test's own, removed afterwards."""
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        raise RuntimeError("no PostgreSQL binaries under /usr/lib/postgresql/*/bin")
    # Not pytest's tmp_path: the postgres user must reach the folder, and a
    # socket path must stay short (about 100 bytes).
    root = Path(tempfile.mkdtemp(prefix="uploadsvc-pg-"))
    cluster = PostgresCluster(bin_dir, root, free_loopback_port())
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
