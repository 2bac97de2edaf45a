"""The database's part of readiness."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


async def ping(connection: AsyncConnection) -> None:
    """One round trip that needs no table: the database answers, or this raises."""
    await connection.execute(text("SELECT 1"))
