"""The hot routes: download URLs in lists, and one statement per read or single write."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from tests.conftest import Api
from uploadsvc.db import autocommit
from uploadsvc.repository import uploads as repository


async def test_listed_files_carry_download_urls_with_urls_true(api: Api) -> None:
    bodies = [b"first file\n", b"second file\n"]
    files = [await api.upload(body, filename=f"n{n}.txt") for n, body in enumerate(bodies)]

    plain = await api.app_client.get("/v1/files", headers=api.headers())
    assert plain.status_code == 200, plain.text
    assert [item["download_url"] for item in plain.json()["items"]] == [None, None]

    listed = await api.app_client.get("/v1/files?urls=true", headers=api.headers())
    assert listed.status_code == 200, listed.text
    items = listed.json()["items"]
    assert [item["file_id"] for item in items] == [f["file_id"] for f in files[::-1]]
    for item, body, name in zip(items, bodies[::-1], ["n1.txt", "n0.txt"], strict=True):
        assert item["expires_in"] == api.settings.download_url_expires_seconds
        download = await api.app_client.get(item["download_url"])
        assert download.status_code == 200, download.text
        assert download.content == body
        assert download.headers["content-type"].startswith("text/plain")
        assert name in download.headers["content-disposition"]


async def test_urls_in_a_list_are_only_for_the_callers_files(api: Api) -> None:
    await api.upload(b"bob's file\n", user="bob")
    listed = await api.app_client.get("/v1/files?urls=true", headers=api.headers("alice"))
    assert listed.status_code == 200, listed.text
    assert listed.json()["items"] == []


@contextlib.contextmanager
def recorded_statements(api: Api) -> Iterator[list[tuple[str, bool]]]:
    """(SQL, whether a transaction was open when it ran) for each statement sent."""
    statements: list[tuple[str, bool]] = []

    def after(conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        in_transaction = conn.connection.driver_connection.is_in_transaction()
        statements.append((statement.split()[0].upper(), in_transaction))

    # The hot path's statements go to asyncpg itself (repository/uploads.py),
    # past SQLAlchemy's events: asyncpg's query logger sees those (and BEGIN).
    def on_checkout(dbapi_connection: Any, *_: Any) -> None:
        driver = dbapi_connection.driver_connection

        def logged(query: Any) -> None:
            statements.append((query.query.split()[0].upper(), driver.is_in_transaction()))

        loggers[id(driver)] = logged
        driver.add_query_logger(logged)

    def on_checkin(dbapi_connection: Any, *_: Any) -> None:
        if dbapi_connection is not None:
            driver = dbapi_connection.driver_connection
            driver.remove_query_logger(loggers.pop(id(driver)))

    loggers: dict[int, Any] = {}
    engine = api.resources.engine.sync_engine
    hooks = (("after_cursor_execute", after), ("checkout", on_checkout), ("checkin", on_checkin))
    for name, hook in hooks:
        event.listen(engine if name == "after_cursor_execute" else engine.pool, name, hook)
    try:
        yield statements
    finally:
        for name, hook in hooks:
            event.remove(engine if name == "after_cursor_execute" else engine.pool, name, hook)


@pytest.mark.parametrize("backend", ["pg-local"], indirect=True)
async def test_hot_routes_send_one_statement_outside_a_transaction(api: Api) -> None:
    file = await api.upload(b"hello\n")
    headers = api.headers()
    calls = [
        ("GET", "/v1/files?limit=1", None, "SELECT"),
        ("GET", "/v1/files?limit=1&urls=true", None, "SELECT"),
        ("GET", f"/v1/files/{file['file_id']}", None, "SELECT"),
        ("GET", f"/v1/files/{file['file_id']}/download", None, "SELECT"),
        ("POST", "/v1/uploads/confirm", {"file_key": file["file_key"]}, "SELECT"),
        (
            "POST",
            "/v1/uploads/request-url",
            {"filename": "a.txt", "content_type": "text/plain", "size": 5},
            "INSERT",
        ),
    ]
    for method, path, body, verb in calls:
        with recorded_statements(api) as statements:
            response = await api.app_client.request(method, path, json=body, headers=headers)
        assert response.status_code in (200, 201), (path, response.text)
        assert statements == [(verb, False)], path


@pytest.mark.parametrize("backend", ["pg-local"], indirect=True)
async def test_requested_upload_is_committed_before_the_answer(api: Api) -> None:
    grant = await api.request_url(b"hello\n")
    assert grant.status_code == 201, grant.text
    # Read through another connection: the row is there, pending, and the caller's.
    assert await api.status_of(grant.json()["upload_id"]) == "pending"
    assert (await api.confirm(grant.json()["file_key"], user="bob")).status_code == 404


async def test_confirming_a_confirmed_upload_of_someone_else_answers_404(api: Api) -> None:
    file = await api.upload(b"alice's\n")
    again = await api.confirm(file["file_key"], user="bob")
    assert again.status_code == 404, again.text
    assert again.json()["code"] == "upload_not_found"
    mine = await api.confirm(file["file_key"])
    assert mine.status_code == 200, mine.text
    assert mine.json()["file_id"] == file["file_id"]


@pytest.mark.parametrize("backend", ["pg-local"], indirect=True)
async def test_a_connection_the_server_closed_is_replaced_at_checkout(api: Api) -> None:
    # The pool checks no connection with a round trip (db.py): it relies on
    # asyncpg noticing that the server ended it.
    assert (await api.app_client.get("/v1/files", headers=api.headers())).status_code == 200
    admin = create_async_engine(
        api.settings.database_url, poolclass=NullPool, isolation_level="AUTOCOMMIT"
    )
    try:
        async with admin.connect() as connection:
            # With a timeout, pg_terminate_backend returns once the backend has exited.
            ended = await connection.scalar(
                text(
                    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 30000)) "
                    "FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
                )
            )
    finally:
        await admin.dispose()
    assert ended, "the pooled connection of the first request was not found"
    for path in ("/v1/files", "/v1/files?urls=true"):
        again = await api.app_client.get(path, headers=api.headers())
        assert again.status_code == 200, again.text


@pytest.mark.parametrize("backend", ["pg-local"], indirect=True)
async def test_a_burst_of_concurrent_requests_keeps_the_connections_it_opened(api: Api) -> None:
    # A connection opened past the pool and closed when returned costs each
    # burst request a connect (TLS attempt, authentication, preparation).
    burst = 16
    async with contextlib.AsyncExitStack() as held:
        for _ in range(burst):
            await held.enter_async_context(api.resources.engine.connect())
    assert api.resources.engine.pool.checkedin() == burst  # type: ignore[attr-defined]


@pytest.mark.parametrize("backend", ["pg-local"], indirect=True)
async def test_rows_read_by_asyncpg_itself_are_sqlalchemys_rows(api: Api) -> None:
    # The hot path's reads skip SQLAlchemy's execution (repository/uploads.py,
    # _Statement): the values, and their types, must be the ones it gives.
    first = await api.upload(b"first\n", filename="a.txt")
    await api.upload(b"second\n", filename="b.txt")
    owner = {"owner_id": "alice"}
    cases = [
        (repository._PAGES[0], {**owner, "limit": 5}),
        (repository._VISIBLE["by_id"][1], {**owner, "upload_id": uuid.UUID(first["file_id"])}),
        (repository._VISIBLE["by_key"][0], {"file_key": first["file_key"]}),
    ]
    for statement, values in cases:
        async with autocommit(api.resources.engine) as connection:
            ours = await statement.run(connection, values)
            theirs = [tuple(row) for row in await connection.execute(statement.statement, values)]
        assert ours
        assert ours == theirs
        assert [[type(value) for value in row] for row in ours] == [
            [type(value) for value in row] for row in theirs
        ]
