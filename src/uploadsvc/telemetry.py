"""How each ``uploadsvc`` command sets up its logs and metrics.

- Long-running commands (``dev``, ``serve``, ``worker``) write their log
  lines to stdout; the one-shot ones to stderr, so that what they print
  (``uploadsvc token``) can still be captured by a shell.
- uvicorn is given the same logging configuration, which it applies again
  in each worker process it spawns, and no access log of its own.
- ``serve --workers N`` points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh folder
  before any worker starts, so that every worker's counters add up
  (README.md, "Logs and metrics").

``uploadsvc.metrics`` is imported only inside the functions here: where
prometheus_client keeps its values is fixed when it is first imported, and
that must be after the folder is set.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from uploadsvc.config import Settings
from uploadsvc.logs import LogFormat, LogStream, configure_logging, logging_config

LONG_RUNNING_COMMANDS = frozenset({"dev", "serve", "worker"})
MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

logger = logging.getLogger(__name__)


def _log_options(settings: Settings, command: str) -> dict[str, Any]:
    log_format: LogFormat = settings.log_format or ("console" if command == "dev" else "json")
    stream: LogStream = "stdout" if command in LONG_RUNNING_COMMANDS else "stderr"
    return {"log_format": log_format, "level": settings.log_level, "stream": stream}


def configure_command_logging(settings: Settings, command: str) -> None:
    """Logging of this process, for ``command``."""
    configure_logging(**_log_options(settings, command))


def uvicorn_logging(settings: Settings, command: str) -> dict[str, Any]:
    """Keyword arguments of ``uvicorn.run``: our log format in every worker, no raw access log."""
    return {"log_config": logging_config(**_log_options(settings, command)), "access_log": False}


@contextlib.contextmanager
def metrics_shared_by_workers() -> Iterator[Path]:
    """A ``PROMETHEUS_MULTIPROC_DIR`` for the worker processes about to be started.

    A folder the operator set is used, emptied first (values left by an
    earlier run would be added to this one's); otherwise a new temporary one,
    removed when the server stops.
    """
    preset = os.environ.get(MULTIPROC_DIR_VARIABLE)
    if preset:
        directory = Path(preset)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):
            stale.unlink()
        yield directory
        return
    directory = Path(tempfile.mkdtemp(prefix="uploadsvc-metrics-"))
    os.environ[MULTIPROC_DIR_VARIABLE] = str(directory)
    try:
        yield directory
    finally:
        os.environ.pop(MULTIPROC_DIR_VARIABLE, None)
        shutil.rmtree(directory, ignore_errors=True)


def serve_metrics_port(settings: Settings, *, host: str | None = None) -> None:
    """Serve the metrics on ``UPLOADSVC_METRICS_PORT`` from this process, when it is set."""
    if settings.metrics_port is None:
        return
    from uploadsvc import metrics

    host = host or settings.host
    metrics.serve_on_port(host=host, port=settings.metrics_port)
    logger.info("metrics on http://%s:%d/metrics", host, settings.metrics_port)
