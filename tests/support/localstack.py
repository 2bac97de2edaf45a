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

import os
import time
from pathlib import Path

from tests.support.servers import (
    START_TIMEOUT_SECONDS,
    ServerProcess,
    free_loopback_port,
    spawn,
    wait_until_answers,
)

# Logs of earlier runs (one per port) older than this are removed at start.
LOG_MAX_AGE_SECONDS = 24 * 3600

VENV_DIR = ".venv-localstack"
STATE_DIR = ".localstack-state"
LAUNCHER = Path("scripts") / "ls_launch.py"
INSTALL_HINT = "run `make test` (scripts/bootstrap.sh --test) to install LocalStack"


class LocalStackServer(ServerProcess):
    """A running LocalStack: its S3 endpoint and how to stop it."""

    @property
    def endpoint_url(self) -> str:
        return self.base_url


def start_localstack(
    repo_root: Path, *, timeout: float = START_TIMEOUT_SECONDS
) -> LocalStackServer:
    """Start LocalStack on a free loopback port and wait until it answers."""
    python = repo_root / VENV_DIR / "bin" / "python"
    if not python.is_file():
        raise RuntimeError(f"{python} is missing: {INSTALL_HINT}")
    # A ``pytest -n`` worker has a state folder of its own: two LocalStacks that
    # build their first-start cache into one folder at once would corrupt it.
    state_dir = repo_root / (STATE_DIR + os.environ.get("PYTEST_XDIST_WORKER", ""))
    state_dir.mkdir(exist_ok=True)
    _remove_old_logs(state_dir)

    port = free_loopback_port()
    log_path = state_dir / f"localstack-{port}.log"
    process = spawn(
        [str(python), str(repo_root / LAUNCHER), str(port)],
        env={**os.environ, "LS_STATE_DIR": str(state_dir)},
        cwd=repo_root,
        log_path=log_path,
    )
    server = LocalStackServer("LocalStack", port, process, log_path)
    try:
        wait_until_answers(
            server,
            "/_localstack/health",
            timeout=timeout,
            hint=f"if it cannot import localstack, {INSTALL_HINT}",
        )
    except BaseException:
        server.stop()
        raise
    return server


def _remove_old_logs(state_dir: Path) -> None:
    cutoff = time.time() - LOG_MAX_AGE_SECONDS
    for old in state_dir.glob("localstack-*.log"):
        try:
            if old.stat().st_mtime < cutoff:
                old.unlink()
        except OSError:
            pass  # another session removed it first
