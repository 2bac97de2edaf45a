"""Request ids, access lines and HTTP metrics, on a small app of their own."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY

from uploadsvc import logs
from uploadsvc.errors import install_error_handlers
from uploadsvc.http_middleware import install_request_observability

BASE = "http://middleware.test"


def _app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    install_request_observability(app)
    inside = logging.getLogger("tests.inside")

    @app.get("/things/{thing_id}")
    async def read_thing(thing_id: str) -> dict[str, str]:
        logs.bind_user("bob")
        inside.info("reading thing %s", thing_id)
        return {"id": thing_id}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("cannot reach postgresql://uploadsvc:hunter2@db/uploadsvc")

    return app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        yield client


Lines = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def lines() -> Iterator[Lines]:
    """The service's JSON lines, formatted as they are logged (the request's context is then)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.formatter("json"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)

    def read() -> list[dict[str, Any]]:
        parsed = [json.loads(line) for line in stream.getvalue().splitlines()]
        # httpx logs the test client's side of each request; not the service's lines.
        return [line for line in parsed if line["logger"] != "httpx"]

    try:
        yield read
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def _count(route: str, method: str, status: str) -> float:
    labels = {"route": route, "method": method, "status": status}
    return REGISTRY.get_sample_value("uploadsvc_http_requests_total", labels) or 0.0


async def test_a_plain_client_request_id_is_echoed_and_on_every_line(
    client: httpx.AsyncClient, lines: Lines
) -> None:
    response = await client.get("/things/42", headers={"X-Request-ID": "order-7.retry:2"})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "order-7.retry:2"
    logged = lines()
    assert [line["event"] for line in logged] == ["reading thing 42", "GET /things/42 200"]
    for line in logged:
        assert line["request_id"] == "order-7.retry:2"
        assert line["route"] == "/things/{thing_id}"
    # The user is bound inside the handler; the access line, written after it, has it too.
    assert [line.get("user_id") for line in logged] == ["bob", "bob"]
    access = logged[-1]
    assert access["logger"] == "uploadsvc.access"
    assert (access["http_method"], access["path"], access["status"]) == ("GET", "/things/42", 200)
    assert access["duration_ms"] >= 0


@pytest.mark.parametrize("header", [None, "", "has spaces", "x" * 129, "line\\nbreak", 'quote"d'])
async def test_a_missing_or_unsafe_request_id_is_replaced_by_a_new_one(
    client: httpx.AsyncClient, lines: Lines, header: str | None
) -> None:
    headers = {} if header is None else {"X-Request-ID": header}
    first = await client.get("/things/1", headers=headers)
    second = await client.get("/things/1", headers=headers)
    ids = [first.headers["x-request-id"], second.headers["x-request-id"]]
    assert ids[0] != ids[1]
    assert all(len(request_id) == 32 and request_id != header for request_id in ids)
    assert [line["request_id"] for line in lines()] == [ids[0], ids[0], ids[1], ids[1]]


async def test_metrics_count_the_route_template_not_the_path(
    client: httpx.AsyncClient,
) -> None:
    before = _count("/things/{thing_id}", "GET", "200")
    unmatched_before = _count("unmatched", "GET", "404")
    for thing in ("a", "b", "c"):
        assert (await client.get(f"/things/{thing}")).status_code == 200
    assert (await client.get("/no/such/path-123")).status_code == 404
    assert _count("/things/{thing_id}", "GET", "200") - before == 3
    assert _count("unmatched", "GET", "404") - unmatched_before == 1
    paths = {
        sample.labels.get("route")
        for family in REGISTRY.collect()
        if family.name == "uploadsvc_http_requests"
        for sample in family.samples
    }
    assert not any("path-123" in str(path) or path == "/things/a" for path in paths)


async def test_an_unhandled_error_is_a_counted_500_whose_traceback_has_the_request_id(
    client: httpx.AsyncClient, lines: Lines
) -> None:
    before = _count("/boom", "GET", "500")
    response = await client.get("/boom", headers={"X-Request-ID": "boom-1"})
    assert response.status_code == 500
    assert "hunter2" not in response.text
    assert _count("/boom", "GET", "500") - before == 1
    logged = lines()
    traceback = next(line for line in logged if line["event"] == "unhandled error")
    assert traceback["request_id"] == "boom-1"
    assert "RuntimeError" in traceback["exception"]
    assert "hunter2" not in json.dumps(logged)
    access = next(line for line in logged if line["logger"] == "uploadsvc.access")
    assert (access["status"], access["request_id"]) == (500, "boom-1")
