"""Database models, one module per feature.

Importing this package registers every table on ``Base.metadata`` (Alembic
and the tests need them all); code imports the module it needs.
"""

from uploadsvc.models import (
    cleanup,
    events,
    idempotency,
    images,
    multipart_ledger,
    uploads,
    webhooks,
)

__all__ = [
    "cleanup",
    "events",
    "idempotency",
    "images",
    "multipart_ledger",
    "uploads",
    "webhooks",
]
