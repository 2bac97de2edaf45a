"""The async engine, the session factory and the declarative base."""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import DateTime, Enum, MetaData, event
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

from uploadsvc.config import Settings

# Stable constraint names, so Alembic migrations are identical on every database.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on every backend.

    PostgreSQL keeps the zone; SQLite stores naive text, so values read back
    from it are marked as UTC here rather than at every call site.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.UTC)

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is None or value.tzinfo is not None:
            return value
        return value.replace(tzinfo=dt.UTC)


def stored_enum(values: type[enum.StrEnum], *, name: str, length: int) -> Enum:
    """A column type holding a ``StrEnum``'s values as plain strings of at most ``length``.

    Not a native enum: adding a value is then no migration on PostgreSQL,
    and SQLite has none.
    """
    return Enum(
        values,
        name=name,
        native_enum=False,
        length=length,
        values_callable=lambda members: [member.value for member in members],
    )


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def create_engine(settings: Settings) -> AsyncEngine:
    if settings.uses_sqlite:
        # SQLite's one deadline is its busy timeout (here and in the PRAGMA):
        # how long a writer waits for the lock, which a request holds for its
        # whole transaction, so it stays long; "database is locked" is a 503.
        engine = create_async_engine(settings.database_url, connect_args={"timeout": 30})
        _configure_sqlite(engine)
        return engine
    statement_timeout = settings.database_statement_timeout_seconds
    engine = create_async_engine(
        settings.database_url,
        pool_size=settings.database_pool_size,
        max_overflow=0,
        pool_timeout=settings.database_pool_timeout_seconds,
        connect_args={
            # asyncpg's deadlines: opening a connection, and each statement
            # (which also bounds a server that stopped answering, SIGSTOP-like);
            # PostgreSQL's statement_timeout frees the server's side as well.
            "timeout": settings.database_connect_timeout_seconds,
            "command_timeout": statement_timeout,
            "server_settings": {"statement_timeout": str(int(statement_timeout * 1000))},
        },
    )
    _drop_closed_connections(engine)
    return engine


def _drop_closed_connections(engine: AsyncEngine) -> None:
    # Instead of pool_pre_ping: with asyncpg a pre-ping is three round trips
    # (BEGIN, ";", ROLLBACK) on every checkout, more than the one statement
    # of a read. asyncpg marks a connection closed as soon as the server ends
    # it (a restart, an idle-session timeout), so a checkout looks at that
    # flag; DisconnectionError makes the pool discard the connection and
    # hand out a new one.
    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(_dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if record.driver_connection.is_closed():
            raise DisconnectionError("the server closed this connection")


def _configure_sqlite(engine: AsyncEngine) -> None:
    # WAL lets readers run beside the single writer; BEGIN IMMEDIATE makes a
    # write transaction take the write lock at its start, so two concurrent
    # conditional updates serialise instead of failing with "database is locked".
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


@contextlib.asynccontextmanager
async def autocommit(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A pooled connection whose every statement commits as it runs.

    For the hot path's single statements (docs/architecture.md, "Reads and
    single writes"): on PostgreSQL a SELECT or an INSERT is then one round
    trip, with no BEGIN before it and no COMMIT or ROLLBACK after it, as an
    ORM session would send. SQLite keeps its ordinary transaction, committed
    when the block ends: its ``begin`` hook (above) is what makes its writers
    wait for one another.
    """
    async with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
        yield connection
        if connection.in_transaction():
            await connection.commit()
