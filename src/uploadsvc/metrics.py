"""Prometheus metrics: the series, and how a scrape reads them.

Upload counters count state changes that won (the conditional UPDATE), so
they are exact even when many requests race on the same upload.

``uploadsvc serve --workers N`` runs N processes, each with its own
counters. There, ``PROMETHEUS_MULTIPROC_DIR`` names a folder where every
process keeps its values in a memory-mapped file (prometheus_client's
multiprocess mode, chosen when ``prometheus_client`` is first imported), and
a scrape adds the files up, whichever process answers it
(README.md, "Logs and metrics").
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
    values,
)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

# --- HTTP (written by http_middleware) -------------------------------------

HTTP_REQUESTS = Counter(
    "uploadsvc_http_requests",
    "HTTP requests answered, by route template, method and status.",
    ["route", "method", "status"],
)
HTTP_REQUEST_DURATION = Histogram(
    "uploadsvc_http_request_duration_seconds",
    "Time from the request's arrival to the last byte of its response.",
    ["route", "method", "status"],
    # Up to the minutes a large direct upload or download can take.
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
HTTP_REQUESTS_IN_PROGRESS = Gauge(
    "uploadsvc_http_requests_in_progress",
    "HTTP requests being handled now.",
    # Summed over the processes that are alive; a dead worker's share is dropped.
    multiprocess_mode="livesum",
)

# --- uploads ---------------------------------------------------------------

UPLOADS_REQUESTED = Counter(
    "uploadsvc_uploads_requested", "Upload URLs handed out for new uploads.", ["purpose"]
)
UPLOADS_CONFIRMED = Counter("uploadsvc_uploads_confirmed", "Uploads confirmed as files.")
UPLOADS_REJECTED = Counter(
    "uploadsvc_uploads_rejected", "Uploads rejected at confirm, by reason.", ["code"]
)
UPLOAD_OUTCOMES = Counter(
    "uploadsvc_upload_outcomes",
    "Uploads requested, confirmed and rejected, by purpose and (for rejections) reason.",
    ["purpose", "outcome", "reason"],
)
BYTES_CONFIRMED = Counter(
    "uploadsvc_upload_confirmed_bytes", "Bytes of the files confirmed, by purpose.", ["purpose"]
)
DIRECT_UPLOAD_BYTES = Counter(
    "uploadsvc_direct_upload_bytes",
    "Bytes received through the API itself (direct and Open Event upload routes), by purpose.",
    ["purpose"],
)

# --- event imports -----------------------------------------------------------

IMPORT_JOBS = Counter("uploadsvc_import_jobs", "Event import jobs that ended, by state.", ["state"])
IMPORT_JOB_DURATION = Histogram(
    "uploadsvc_import_job_duration_seconds",
    "Run time of event import jobs, by the state they ended in.",
    ["state"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800),
)

# --- cleanup -----------------------------------------------------------------

CLEANUP_DELETED_OBJECTS = Counter(
    "uploadsvc_cleanup_deleted_objects", "Objects the cleanup job deleted from storage."
)
CLEANUP_DELETED_BYTES = Counter(
    "uploadsvc_cleanup_deleted_bytes", "Bytes the cleanup job freed in storage."
)


def upload_requested(*, purpose: str) -> None:
    """A new upload was granted a URL."""
    UPLOADS_REQUESTED.labels(purpose=purpose).inc()
    UPLOAD_OUTCOMES.labels(purpose=purpose, outcome="requested", reason="").inc()


def upload_confirmed(*, purpose: str, size_bytes: int) -> None:
    """An upload became a file (the transition that won)."""
    UPLOADS_CONFIRMED.inc()
    UPLOAD_OUTCOMES.labels(purpose=purpose, outcome="confirmed", reason="").inc()
    BYTES_CONFIRMED.labels(purpose=purpose).inc(size_bytes)


def upload_rejected(*, purpose: str, reason: str) -> None:
    """An upload was rejected; ``reason`` is the problem's ``code`` (``size_mismatch``)."""
    UPLOADS_REJECTED.labels(code=reason).inc()
    UPLOAD_OUTCOMES.labels(purpose=purpose, outcome="rejected", reason=reason).inc()


def direct_upload_received(*, purpose: str, size_bytes: int) -> None:
    """``size_bytes`` more bytes of a direct (or Open Event) upload came through the API."""
    DIRECT_UPLOAD_BYTES.labels(purpose=purpose).inc(size_bytes)


def import_finished(*, state: str, duration_seconds: float) -> None:
    """An import job ended (``SUCCESS``, ``FAILURE``, or ``RETRY`` when it will run again)."""
    IMPORT_JOBS.labels(state=state).inc()
    IMPORT_JOB_DURATION.labels(state=state).observe(duration_seconds)


def cleanup_deleted(*, objects: int, size_bytes: int) -> None:
    """A cleanup run deleted ``objects`` objects holding ``size_bytes`` bytes."""
    CLEANUP_DELETED_OBJECTS.inc(objects)
    CLEANUP_DELETED_BYTES.inc(size_bytes)


# --- quotas, rate limits, webhooks ------------------------------------------------

QUOTA_REFUSALS = Counter(
    "uploadsvc_quota_refusals", "Uploads refused (413) for passing their owner's quota."
)
RATE_LIMITED = Counter(
    "uploadsvc_rate_limited",
    "Requests refused (429) by a per-user rate limit, by route class.",
    ["route_class"],
)
RATE_LIMIT_UNCHECKED = Counter(
    "uploadsvc_rate_limit_unchecked",
    "Requests let through because the rate limits' storage (Redis) failed.",
)
WEBHOOK_ATTEMPTS = Counter(
    "uploadsvc_webhook_attempts",
    "Webhook attempts by outcome: delivered, retried or failed (the last attempt).",
    ["event_type", "outcome"],
)


def quota_refused() -> None:
    QUOTA_REFUSALS.inc()


def rate_limited(*, route_class: str) -> None:
    RATE_LIMITED.labels(route_class=route_class).inc()


def rate_limit_unchecked() -> None:
    RATE_LIMIT_UNCHECKED.inc()


def webhook_attempted(*, event_type: str, outcome: str) -> None:
    WEBHOOK_ATTEMPTS.labels(event_type=event_type, outcome=outcome).inc()


# --- reading them --------------------------------------------------------------


def multiprocess_dir() -> Path | None:
    """The folder of multiprocess mode, when this process stores its values there."""
    directory = os.environ.get(MULTIPROC_DIR_VARIABLE)
    # prometheus_client chose where values live when it was imported; the
    # variable alone does not say which way it went.
    if directory and values.ValueClass is not values.MutexValue:
        return Path(directory)
    return None


class _LiveProcessesCollector(MultiProcessCollector):
    """Adds up every process's file, after dropping the live gauges of dead processes.

    uvicorn replaces a worker that died without telling anyone; ``livesum``
    gauges (requests in progress) would count its last value for ever.
    Checking at each scrape covers a crash as well as a clean exit.
    """

    def __init__(self, registry: CollectorRegistry, path: Path) -> None:
        self._directory = path
        super().__init__(registry, path=str(path))  # type: ignore[no-untyped-call]

    # prometheus_client.multiprocess has no type hints: its signature, as it is.
    def collect(self):  # type: ignore[no-untyped-def]
        forget_dead_processes(self._directory)
        return super().collect()  # type: ignore[no-untyped-call]


def forget_dead_processes(directory: Path) -> None:
    """``mark_process_dead`` for each process that left live gauge files behind."""
    for file in directory.glob("gauge_live*_*.db"):
        pid_text = file.stem.rsplit("_", 1)[-1]
        if not pid_text.isdigit():
            continue
        pid = int(pid_text)
        if pid == os.getpid() or _is_alive(pid):
            continue
        with contextlib.suppress(FileNotFoundError):
            mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def scrape_registry() -> CollectorRegistry:
    """What a scrape reads: this process's registry, or every process's files."""
    directory = multiprocess_dir()
    if directory is None:
        return REGISTRY
    registry = CollectorRegistry()
    _LiveProcessesCollector(registry, directory)
    return registry


def render() -> tuple[bytes, str]:
    """The body and Content-Type of a scrape."""
    return generate_latest(scrape_registry()), CONTENT_TYPE_LATEST


def serve_on_port(*, host: str, port: int) -> None:
    """Serve the metrics on their own port, in a daemon thread of this process."""
    start_http_server(port, addr=host, registry=scrape_registry())
