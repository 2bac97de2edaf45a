"""The ASGI side of ``Idempotency-Key`` (rules in ``services/idempotency.py``).

Pure ASGI, like ``body_guard.py``: the routes it covers stream their bodies
(files, archives), so the request's fingerprint is a SHA-256 taken as the
body passes to the route, and the answer is held back until its row is
written, so a client that retries the moment it hears the answer gets it
again rather than a 409. The multipart boundary is left out of the
fingerprint: a client that builds its retry afresh picks a new one.

A request without the header, or with a token the route will refuse, goes
through untouched.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from uploadsvc.errors import (
    BadRequest,
    Conflict,
    Unprocessable,
    UploadsvcError,
    error_responses,
    problem_response,
)
from uploadsvc.models.idempotency import KeptAnswer
from uploadsvc.resources import Resources
from uploadsvc.security import extract_bearer_token
from uploadsvc.services import idempotency as service

logger = logging.getLogger(__name__)


class _Fingerprint:
    """SHA-256 of the method, path, query, media type and body, without the form boundary."""

    def __init__(self, scope: Scope, headers: Headers) -> None:
        media_type, _, parameters = headers.get("content-type", "").partition(";")
        head = f"{scope['method']} {scope['path']}?{scope['query_string'].decode('latin-1')}"
        self._hash = hashlib.sha256(f"{head}\n{media_type.strip().lower()}\n".encode())
        boundary = _boundary(parameters)
        self._cut = b"--" + boundary.encode("latin-1") if boundary else b""
        self._carry = b""
        self.length = 0
        self.complete = False

    def update(self, message: Message) -> None:
        data = self._carry + message.get("body", b"")
        if self._cut:
            data = data.replace(self._cut, b"")
            # A delimiter may straddle two chunks: keep its possible start back.
            keep = 0 if not message.get("more_body") else len(self._cut) - 1
            split = max(0, len(data) - keep)
            data, self._carry = data[:split], data[split:]
        self._hash.update(data)
        self.length += len(data)
        self.complete = not message.get("more_body", False)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def _boundary(parameters: str) -> str:
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "boundary":
            return value.strip().strip('"')
    return ""


class IdempotencyGuard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope) if scope["type"] == "http" else None
        if (
            headers is None
            or (scope["method"], scope["path"]) not in service.ROUTES
            or service.KEY_HEADER not in headers
        ):
            await self.app(scope, receive, send)
            return
        resources: Resources | None = getattr(scope["app"].state, "resources", None)
        try:
            key = service.parse_key(headers[service.KEY_HEADER])
            if resources is None:
                raise RuntimeError("idempotency keys need the app's lifespan")
            token = extract_bearer_token(headers.get("authorization"))
            principal = await resources.token_verifier.verify(token)
        except UploadsvcError as error:
            if error.status == 401:  # the route answers it, as it would without a key
                await self.app(scope, receive, send)
            else:
                await _refuse(scope, send, error)
            return
        request = _Request(scope, receive, send, resources, headers, principal.user_id, key)
        await request.run(self.app)


class _Request:
    """One request that carries a key: claim it, then run, replay or refuse."""

    def __init__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        resources: Resources,
        headers: Headers,
        owner_id: str,
        key: str,
    ) -> None:
        self.scope, self.receive, self.send = scope, receive, send
        self.engine = resources.engine
        self.owner_id, self.key = owner_id, key
        self.route = f"{scope['method']} {scope['path']}"
        self.fingerprint = _Fingerprint(scope, headers)

    async def run(self, app: ASGIApp) -> None:
        try:
            answer = await service.begin(
                self.engine, owner_id=self.owner_id, key=self.key, route=self.route
            )
            if answer is not None:
                await self._read_body(limit=answer.body_bytes)
                service.check_same_body(answer, fingerprint=self._digest())
        except UploadsvcError as error:
            await _refuse(self.scope, self.send, error, close=not self.fingerprint.complete)
            return
        if answer is not None:
            await self._replay(answer)
            return
        try:
            await app(self.scope, self._receive, self._send)
        except BaseException:
            await self._release()
            raise
        if not self._answered:
            await self._release()

    async def _release(self) -> None:
        # Best effort: a key left held is given up when its lock runs out.
        try:
            await service.release(self.engine, owner_id=self.owner_id, key=self.key)
        except Exception:
            logger.warning("could not release an idempotency key", exc_info=True)

    _answered = False
    _start: Message | None = None
    _body = b""
    _streaming = False

    async def _receive(self) -> Message:
        message = await self.receive()
        if message["type"] == "http.request":
            self.fingerprint.update(message)
        return message

    async def _send(self, message: Message) -> None:
        if self._streaming:
            await self.send(message)
            return
        if message["type"] == "http.response.start":
            self._start = message
            return
        if message["type"] != "http.response.body" or self._start is None:
            await self.send(message)
            return
        self._body += message.get("body", b"")
        if len(self._body) > service.MAX_KEPT_ANSWER_BYTES:
            await self._flush(keep=False)
        elif not message.get("more_body", False):
            await self._flush(keep=True)

    async def _flush(self, *, keep: bool) -> None:
        """Write (or give up) the key, then send what was held back."""
        assert self._start is not None
        self._answered = True
        self._streaming = True
        start_headers = Headers(raw=self._start["headers"])
        try:
            digest = self._digest()
            answer = None
            if keep and digest is not None:
                answer = KeptAnswer(
                    status=self._start["status"],
                    content_type=start_headers.get("content-type"),
                    body=self._body,
                    fingerprint=digest,
                    body_bytes=self.fingerprint.length,
                )
            await service.finish(self.engine, owner_id=self.owner_id, key=self.key, answer=answer)
        except Exception:
            # The work is done: its answer goes out even if the key could not
            # keep it (a retry then hears 409 until the lock runs out).
            logger.warning("could not keep the answer of an idempotency key", exc_info=True)
        await self.send(self._start)
        await self.send({"type": "http.response.body", "body": self._body, "more_body": not keep})

    def _digest(self) -> str | None:
        return self.fingerprint.hexdigest() if self.fingerprint.complete else None

    async def _read_body(self, *, limit: int) -> None:
        """Hash the body of a repeat, stopping once it is longer than the first one's."""
        while not self.fingerprint.complete and self.fingerprint.length <= limit:
            message = await self.receive()
            if message["type"] != "http.request":
                raise UploadsvcError("The client went away.")
            self.fingerprint.update(message)

    async def _replay(self, answer: KeptAnswer) -> None:
        headers = [(b"content-length", str(len(answer.body)).encode())]
        if answer.content_type:
            headers.append((b"content-type", answer.content_type.encode("latin-1")))
        headers.append((service.REPLAYED_HEADER.encode(), b"true"))
        await self.send(
            {"type": "http.response.start", "status": answer.status, "headers": headers}
        )
        await self.send({"type": "http.response.body", "body": answer.body})


async def _refuse(scope: Scope, send: Send, error: UploadsvcError, *, close: bool = True) -> None:
    # Refused before its body was read: the server must not go on reading it.
    extra = {"Connection": "close"} if close else {}
    response = problem_response(error.to_problem(), {**error.headers, **extra})
    await response(scope, _no_receive, send)


async def _no_receive() -> Message:
    raise RuntimeError("a refusal does not read the request")


def install_idempotency(app: FastAPI) -> None:
    """Honour ``Idempotency-Key`` on ``services.idempotency.ROUTES``, and document it."""
    app.add_middleware(IdempotencyGuard)
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        document = generate()
        for method, path in service.ROUTES:
            operation = document["paths"].get(path, {}).get(method.lower())
            if operation is None or any(
                parameter["name"] == "Idempotency-Key"
                for parameter in operation.get("parameters", [])
            ):
                continue
            operation.setdefault("parameters", []).append(_KEY_PARAMETER)
            operation["responses"].update(
                {
                    str(status): response
                    for status, response in error_responses(
                        BadRequest, Conflict, Unprocessable
                    ).items()
                }
            )
        return document

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way


_KEY_PARAMETER: dict[str, Any] = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Send the request again with the same key and body to get its first answer "
    "(marked `Idempotent-Replayed: true`) instead of doing it twice; another body with the "
    "same key is a 422, a key whose request still runs a 409. Kept 24 hours, per user.",
    "schema": {
        "type": "string",
        "minLength": 1,
        "maxLength": service.MAX_KEY_LENGTH,
        "pattern": "^[!-~]+$",
    },
}
