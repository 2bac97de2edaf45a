"""Alembic environment: runs the migrations on the async engine of the settings."""

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

import uploadsvc.models  # noqa: F401  (registers every table on Base.metadata)
from uploadsvc.config import Settings
from uploadsvc.db import Base, create_engine

config = context.config
target_metadata = Base.metadata


def _settings() -> Settings:
    # `uploadsvc migrate` passes its settings; the alembic CLI reads the environment.
    settings = config.attributes.get("settings")
    return settings if isinstance(settings, Settings) else Settings()


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite can only alter tables by copying them.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_online() -> None:
    engine = create_engine(_settings())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_settings().database_url, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_online())
