"""Idempotency key rows: claim, answer, release. Each is one committed statement."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from uploadsvc.db import autocommit
from uploadsvc.models.idempotency import IdempotencyKey, KeptAnswer

_T = IdempotencyKey


async def claim(
    engine: AsyncEngine,
    *,
    owner_id: str,
    key: str,
    route: str,
    now: dt.datetime,
    locked_until: dt.datetime,
    expires_at: dt.datetime,
) -> IdempotencyKey | None:
    """Take the key for a new request: ``None`` if taken, else the row that holds it.

    A key is free when it is new, expired, or held by a request whose lock
    ran out (its process died); one conditional upsert decides, so of two
    requests racing for a key exactly one gets it.
    """
    fresh = {"route": route, "created_at": now, "locked_until": locked_until}
    async with autocommit(engine) as connection:
        insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
        values = insert(_T).values(owner_id=owner_id, key=key, expires_at=expires_at, **fresh)
        claim_statement = values.on_conflict_do_update(
            index_elements=[_T.owner_id, _T.key],
            set_={
                **fresh,
                "expires_at": expires_at,
                "fingerprint": None,
                "body_bytes": None,
                "response_status": None,
                "response_type": None,
                "response_body": None,
            },
            where=or_(
                _T.expires_at < now, and_(_T.response_status.is_(None), _T.locked_until < now)
            ),
        ).returning(_T.key)
        held = select(_T).where(_T.owner_id == owner_id, _T.key == key)
        # The holder may give the key up between the two statements: then claim again.
        for _ in range(3):
            if (await connection.execute(claim_statement)).first() is not None:
                return None
            row = (await connection.execute(held)).first()
            if row is not None:
                return IdempotencyKey(**row._mapping)
    raise RuntimeError("an idempotency key kept changing hands")


async def record_answer(
    engine: AsyncEngine, *, owner_id: str, key: str, answer: KeptAnswer
) -> None:
    """Keep the first answer of the request that holds the key."""
    async with autocommit(engine) as connection:
        await connection.execute(
            update(_T)
            .where(_T.owner_id == owner_id, _T.key == key, _T.response_status.is_(None))
            .values(
                fingerprint=answer.fingerprint,
                body_bytes=answer.body_bytes,
                response_status=answer.status,
                response_type=answer.content_type,
                response_body=answer.body,
            )
        )


async def release(engine: AsyncEngine, *, owner_id: str, key: str) -> None:
    """Give up a key whose request left no answer to keep (an outage, a lost client)."""
    async with autocommit(engine) as connection:
        await connection.execute(
            delete(_T).where(_T.owner_id == owner_id, _T.key == key, _T.response_status.is_(None))
        )


async def delete_expired(
    session_factory: async_sessionmaker[AsyncSession], *, now: dt.datetime
) -> int:
    """Forget the keys past their expiry (cleanup runs it); how many."""
    async with session_factory.begin() as session:
        result = await session.execute(delete(_T).where(_T.expires_at < now))
    return int(getattr(result, "rowcount", 0) or 0)
