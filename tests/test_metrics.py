"""Prometheus metrics: the series a flow moves, and sums that hold across workers."""

from __future__ import annotations

import asyncio
import collections
import os
import re
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Api, make_settings, running_api
from tests.service_process import log_lines, served
from tests.support.servers import ServerProcess, free_loopback_port
from uploadsvc.cli import run_migrations

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]

NEW_SERIES = (
    "uploadsvc_http_requests",
    "uploadsvc_http_request_duration_seconds",
    "uploadsvc_http_requests_in_progress",
    "uploadsvc_upload_outcomes",
    "uploadsvc_upload_confirmed_bytes",
    "uploadsvc_direct_upload_bytes",
    "uploadsvc_import_jobs",
    "uploadsvc_import_job_duration_seconds",
    "uploadsvc_cleanup_deleted_objects",
    "uploadsvc_cleanup_deleted_bytes",
)


def parse(text: str) -> tuple[set[str], Series]:
    """The family names and every sample of a scrape."""
    names: set[str] = set()
    samples: Series = {}
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return names, samples


def value(samples: Series, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def requests(samples: Series, route: str, method: str, status: str) -> float:
    return value(
        samples, "uploadsvc_http_requests_total", route=route, method=method, status=status
    )


async def scrape(api: Api) -> Series:
    response = await api.app_client.get("/metrics")
    assert response.status_code == 200
    return parse(response.text)[1]


@pytest.mark.parametrize("backend", ["sqlite-local"])
async def test_a_flow_moves_the_request_and_upload_series(api: Api) -> None:
    before = await scrape(api)
    body = b"counted\n" * 8
    file = await api.upload(body, filename="counted.txt")
    link = await api.app_client.get(f"/v1/files/{file['file_id']}/download", headers=api.headers())
    assert link.status_code == 200
    missing = await api.app_client.get(f"/v1/files/{uuid.uuid4()}", headers=api.headers())
    assert missing.status_code == 404
    response = await api.app_client.get("/metrics")
    names, after = parse(response.text)

    def moved(route: str, method: str, status: str) -> float:
        return requests(after, route, method, status) - requests(before, route, method, status)

    assert moved("/v1/uploads/request-url", "POST", "201") == 1
    assert moved("/v1/storage/{key}", "PUT", "200") == 1
    assert moved("/v1/uploads/confirm", "POST", "200") == 1
    assert moved("/v1/files/{file_id}/download", "GET", "200") == 1
    assert moved("/v1/files/{file_id}", "GET", "404") == 1
    assert moved("/metrics", "GET", "200") == 1  # the first scrape
    confirm = {"route": "/v1/uploads/confirm", "method": "POST", "status": "200"}
    duration = "uploadsvc_http_request_duration_seconds_count"
    assert value(after, duration, **confirm) - value(before, duration, **confirm) == 1
    # No series carries a raw path with an id in it.
    assert not [key for key in after if any(file["file_id"] in v for _, v in key[1])]

    requested = "uploadsvc_uploads_requested_total"
    assert (
        value(after, requested, purpose="attachment")
        - value(before, requested, purpose="attachment")
        == 1
    )
    confirmed = "uploadsvc_uploads_confirmed_total"
    assert value(after, confirmed) - value(before, confirmed) == 1
    # The scrape itself is the one request in progress.
    assert value(after, "uploadsvc_http_requests_in_progress") == 1
    assert set(NEW_SERIES) <= names


async def test_metrics_can_be_left_off_the_public_app(tmp_path: Path) -> None:
    settings = make_settings("sqlite-local", tmp_path=tmp_path, metrics_public=False)
    await asyncio.to_thread(run_migrations, settings)
    async with running_api(settings) as api:
        assert (await api.app_client.get("/metrics")).status_code == 404
        assert (await api.app_client.get("/healthz")).status_code == 200


def test_serve_with_two_workers_counts_every_request_once(tmp_path: Path) -> None:
    """N requests to `uploadsvc serve --workers 2`, answered by both workers:
    /metrics (whichever worker answers) and the metrics port both sum to N,
    also after a worker was killed."""
    metrics_port = free_loopback_port()
    with served(tmp_path, workers=2, metrics_port=str(metrics_port)) as (service, _):
        sent = 0
        with httpx.Client(base_url=service.base_url, timeout=30) as client:
            # Fresh connections, many at once, until both workers have answered some.
            for _ in range(40):
                assert _concurrently(f"{service.base_url}/healthz", 20) == [200] * 20
                sent += 20
                if len(_healthz_pids(service, sent)) == 2:
                    break
            per_pid = _healthz_pids(service, sent)
            assert len(per_pid) == 2, per_pid
            assert sum(per_pid.values()) == sent

            for _ in range(3):  # each scrape may be answered by either worker
                _, scraped = parse(client.get("/metrics").text)
                assert requests(scraped, "/healthz", "GET", "200") == sent
                duration = "uploadsvc_http_request_duration_seconds_count"
                assert (
                    value(scraped, duration, route="/healthz", method="GET", status="200") == sent
                )
            _, on_port = parse(httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text)
            assert requests(on_port, "/healthz", "GET", "200") == sent

            folder = _multiprocess_folder(service)
            killed = min(per_pid)
            assert (folder / f"gauge_livesum_{killed}.db").exists()
            os.kill(killed, signal.SIGKILL)
            _wait_for_exit(killed)
            _, on_port = parse(httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text)
            # A dead worker's counts stay in the sum; its in-progress gauge goes.
            assert requests(on_port, "/healthz", "GET", "200") == sent
            assert not (folder / f"gauge_livesum_{killed}.db").exists()
    lines = log_lines(service)
    ready = {line["pid"] for line in lines if line["event"].startswith("uploadsvc ready")}
    assert len(ready) >= 2  # the workers' own INFO lines reach stdout, as JSON
    assert not folder.exists()  # the folder goes with the server


def _concurrently(url: str, count: int) -> list[int]:
    with ThreadPoolExecutor(max_workers=count) as pool:
        # A new connection each: the kernel hands them to whichever worker accepts first.
        futures = [
            pool.submit(lambda: httpx.get(url, timeout=30).status_code) for _ in range(count)
        ]
        return [future.result() for future in futures]


def _healthz_pids(service: ServerProcess, sent: int) -> collections.Counter[int]:
    """Which worker answered the /healthz requests, from the access lines.

    A worker counts a request and writes its access line just after the last
    byte of the response: wait (within a hang bound) for all ``sent`` lines.
    """
    deadline = time.monotonic() + 30
    while True:
        per_pid = collections.Counter(
            line["pid"]
            for line in log_lines(service)
            if line.get("logger") == "uploadsvc.access" and line.get("route") == "/healthz"
        )
        if sum(per_pid.values()) >= sent or time.monotonic() > deadline:
            return per_pid
        time.sleep(0.1)


def _multiprocess_folder(service: ServerProcess) -> Path:
    for line in log_lines(service):
        found = re.fullmatch(r"metrics of 2 workers add up in (\S+)", line["event"])
        if found:
            return Path(found.group(1))
    raise AssertionError("serve did not say where the workers' metrics are")


def _wait_for_exit(pid: int) -> None:
    """Until the process is gone and reaped (uvicorn's supervisor reaps within a second)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise AssertionError(f"worker {pid} did not go away")
