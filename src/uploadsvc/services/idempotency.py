"""``Idempotency-Key``: a retried upload or import gets the first answer, not a duplicate.

The semantics of the IETF draft "The Idempotency-Key HTTP Header Field"
(docs/api.md, "Idempotency-Key"): the same user, key and request body get
the first request's answer again; the same key with another body is a 422;
a key whose first request is still running is a 409. Keys are per user and
kept for ``KEY_LIFETIME``. The ASGI side (``idempotency.py``) hashes the
body as it streams past and keeps the answer; this module holds the rules.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy.ext.asyncio import AsyncEngine

from uploadsvc.db import utcnow
from uploadsvc.errors import BadRequest, Conflict, Unprocessable
from uploadsvc.models.idempotency import IdempotencyKey, KeptAnswer
from uploadsvc.repository import idempotency as repository

KEY_HEADER = "idempotency-key"
REPLAYED_HEADER = "idempotent-replayed"
# The routes that create something from a body a client cannot cheaply
# check for afterwards: files stored from the request, import jobs.
ROUTES = frozenset(
    {
        ("POST", "/v1/uploads/direct"),
        ("PUT", "/v1/uploads/direct"),
        ("POST", "/v1/upload/file"),
        ("POST", "/v1/events/import/json"),
        ("POST", "/v1/events/import"),
    }
)
# A day: longer than any client's retry schedule, short enough to keep the table small.
KEY_LIFETIME = dt.timedelta(hours=24)
# A request still holding its key after this long died with its process (an
# upload of the largest profile at 1 MB/s takes under an hour).
LOCK_LIFETIME = dt.timedelta(hours=1)
MAX_KEY_LENGTH = 255
# The answers kept are the routes' JSON bodies, well under this.
MAX_KEPT_ANSWER_BYTES = 64 * 1024


def parse_key(value: str) -> str:
    """The key of a header value: an sf-string (``"..."``, as the draft writes it) or a token."""
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    if not 1 <= len(value) <= MAX_KEY_LENGTH or not all(" " < c < "\x7f" for c in value):
        raise BadRequest(
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} visible ASCII characters.",
            code="invalid_idempotency_key",
        )
    return value


async def begin(engine: AsyncEngine, *, owner_id: str, key: str, route: str) -> KeptAnswer | None:
    """``None``: the key is this request's; a ``KeptAnswer``: its first request's, to replay.

    Raises 409 while the first request runs, 422 for the key of another route.
    """
    now = utcnow()
    held = await repository.claim(
        engine,
        owner_id=owner_id,
        key=key,
        route=route,
        now=now,
        locked_until=now + LOCK_LIFETIME,
        expires_at=now + KEY_LIFETIME,
    )
    if held is None:
        return None
    if held.route != route:
        raise _reused()
    if held.response_status is None:
        raise Conflict(
            "A request with this Idempotency-Key is still being processed; retry later.",
            code="idempotency_key_in_use",
        )
    return _answer_of(held)


def check_same_body(answer: KeptAnswer, *, fingerprint: str | None) -> None:
    """422 unless the repeat's body is the first one's (``None``: it was longer)."""
    if fingerprint != answer.fingerprint:
        raise _reused()


async def finish(
    engine: AsyncEngine, *, owner_id: str, key: str, answer: KeptAnswer | None
) -> None:
    """Keep a success whose body was read whole (``answer``); give the key up otherwise.

    A refused or failed request created nothing (these routes are all or
    nothing), so running it again cannot make a duplicate, and it may well
    succeed then (the outage is over, the upload it names is confirmed).
    """
    if answer is None or not 200 <= answer.status < 300:
        await repository.release(engine, owner_id=owner_id, key=key)
        return
    await repository.record_answer(engine, owner_id=owner_id, key=key, answer=answer)


async def release(engine: AsyncEngine, *, owner_id: str, key: str) -> None:
    await repository.release(engine, owner_id=owner_id, key=key)


def _answer_of(row: IdempotencyKey) -> KeptAnswer:
    assert row.response_status is not None
    assert row.fingerprint is not None
    return KeptAnswer(
        status=row.response_status,
        content_type=row.response_type,
        body=row.response_body or b"",
        fingerprint=row.fingerprint,
        body_bytes=row.body_bytes or 0,
    )


def _reused() -> Unprocessable:
    return Unprocessable(
        "This Idempotency-Key was used for another request; use a new key for a new request.",
        code="idempotency_key_reused",
    )
