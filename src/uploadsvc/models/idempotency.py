"""Idempotency keys: the first answer to a request a client may send again."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import BigInteger, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from uploadsvc.db import Base, UTCDateTime


class IdempotencyKey(Base):
    """One user's ``Idempotency-Key`` on one route (docs/api.md, "Idempotency-Key").

    While the first request runs ``response_status`` is NULL and
    ``locked_until`` says when a process that died mid-request gives the key
    up; once it is answered the row holds the fingerprint of its body and the
    answer, replayed to the same key and body until ``expires_at``.
    """

    __tablename__ = "idempotency_keys"

    owner_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    route: Mapped[str] = mapped_column(String(64))
    fingerprint: Mapped[str | None] = mapped_column(String(64))
    body_bytes: Mapped[int | None] = mapped_column(BigInteger)
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_type: Mapped[str | None] = mapped_column(String(255))
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    locked_until: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)


@dataclass(frozen=True, slots=True)
class KeptAnswer:
    """The first answer to a key and the fingerprint of its request, replayed to a repeat."""

    status: int
    content_type: str | None
    body: bytes
    fingerprint: str
    body_bytes: int
