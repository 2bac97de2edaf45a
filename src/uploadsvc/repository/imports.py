"""Queries on import jobs, and the bulk writes of the rows an import brings in.

The job's own bookkeeping (start, progress, heartbeat, outcome) is written in
short transactions of its own; the imported rows go in through
``insert_rows`` inside the one transaction that ends with the job's SUCCESS.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import JSON, Table, Uuid, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from uploadsvc.db import utcnow
from uploadsvc.models.events import Event, ImportJob, ImportState, Progress

# Rows per INSERT statement where COPY is not available (SQLite).
INSERT_BATCH = 1000
# How many of a user's import jobs the list shows, newest first.
LIST_LIMIT = 200


async def add_job(
    session: AsyncSession, *, owner_id: str, source_key: str, progress: Progress
) -> ImportJob:
    now = utcnow()
    job = ImportJob(
        id=uuid.uuid4(),
        owner_id=owner_id,
        source_key=source_key,
        state=ImportState.PENDING,
        progress=progress.as_json(),
        attempts=0,
        created_at=now,
        heartbeat_at=now,
    )
    session.add(job)
    await session.flush()
    return job


async def list_jobs(session: AsyncSession, *, owner_id: str) -> list[ImportJob]:
    return list(
        await session.scalars(
            select(ImportJob)
            .where(ImportJob.owner_id == owner_id)
            .order_by(ImportJob.created_at.desc())
            .limit(LIST_LIMIT)
        )
    )


async def lock_job(
    session: AsyncSession, *, job_id: uuid.UUID, for_update: bool
) -> ImportJob | None:
    """The job's row, locked for the rest of the transaction where the database can
    (PostgreSQL; SQLite's BEGIN IMMEDIATE already serialises writers)."""
    return await session.get(ImportJob, job_id, with_for_update=for_update)


async def set_progress(session: AsyncSession, *, job_id: uuid.UUID, progress: Progress) -> None:
    """Report progress; it doubles as the heartbeat the reconciler looks at."""
    await session.execute(
        update(ImportJob)
        .where(ImportJob.id == job_id)
        .values(progress=progress.as_json(), heartbeat_at=utcnow())
    )


async def touch(session: AsyncSession, *, job_id: uuid.UUID) -> None:
    await session.execute(
        update(ImportJob).where(ImportJob.id == job_id).values(heartbeat_at=utcnow())
    )


async def mark_succeeded(
    session: AsyncSession, *, job_id: uuid.UUID, result: dict[str, Any], progress: Progress
) -> None:
    now = utcnow()
    await session.execute(
        update(ImportJob)
        .where(ImportJob.id == job_id)
        .values(
            state=ImportState.SUCCESS,
            result=result,
            progress=progress.as_json(),
            finished_at=now,
            heartbeat_at=now,
        )
    )


async def mark_failed(
    session: AsyncSession, *, job_id: uuid.UUID, error: dict[str, Any], progress: Progress | None
) -> None:
    """FAILURE, unless another run of the job succeeded in the meantime."""
    values: dict[str, Any] = {"state": ImportState.FAILURE, "error": error, "finished_at": utcnow()}
    if progress is not None:
        values["progress"] = progress.as_json()
    await session.execute(
        update(ImportJob)
        .where(ImportJob.id == job_id, ImportJob.state != ImportState.SUCCESS)
        .values(**values)
    )


async def stale_job_ids(session: AsyncSession, *, cutoff: dt.datetime) -> Sequence[uuid.UUID]:
    """Jobs not finished whose heartbeat is older than ``cutoff``."""
    return (
        await session.scalars(
            select(ImportJob.id).where(
                ImportJob.state.in_([ImportState.PENDING, ImportState.STARTED]),
                ImportJob.heartbeat_at < cutoff,
            )
        )
    ).all()


# --- the imported rows ---------------------------------------------------------


async def insert_rows(session: AsyncSession, *, table: str, rows: list[dict[str, Any]]) -> None:
    """Rows of one of the event tables, as ``openevent.ImportStream`` builds them."""
    if not rows:
        return
    if table == Event.__tablename__:
        # One row, through SQLAlchemy so that its column defaults (created_at) apply.
        await session.execute(insert(Event), _as_uuids(Event.metadata.tables[table], rows))
        return
    await _bulk_insert(session, Event.metadata.tables[table], rows)


def _as_uuids(table: Table, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows for SQLAlchemy, whose Uuid type wants uuid.UUID where the stream has text."""
    names = [column.name for column in table.columns if isinstance(column.type, Uuid)]
    return [
        {**row, **{name: uuid.UUID(row[name]) for name in names if row.get(name) is not None}}
        for row in rows
    ]


async def _bulk_insert(session: AsyncSession, table: Table, rows: list[dict[str, Any]]) -> None:
    connection = await session.connection()
    if connection.dialect.name == "postgresql":
        # COPY is PostgreSQL's bulk path: an order of magnitude faster than
        # multi-row INSERTs, and inside the same transaction.
        raw = await connection.get_raw_connection()
        columns = [column.name for column in table.columns]
        records = [tuple(map(row.get, columns)) for row in rows]
        if any(isinstance(column.type, JSON) for column in table.columns):
            records = [tuple(map(_copy_value, record)) for record in records]
        await raw.driver_connection.copy_records_to_table(  # type: ignore[union-attr]
            table.name, records=records, columns=columns
        )
        return
    for start in range(0, len(rows), INSERT_BATCH):
        await session.execute(insert(table), _as_uuids(table, rows[start : start + INSERT_BATCH]))


def _copy_value(value: Any) -> Any:
    # COPY bypasses SQLAlchemy's type processing: JSON goes in as text.
    return json.dumps(value) if isinstance(value, dict | list) else value
