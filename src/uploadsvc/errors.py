"""One error hierarchy, rendered as RFC 9457 problem+json by one handler.

Services raise these; routers never build error responses themselves. Every
error carries a stable machine ``code`` that clients can switch on.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Message, Receive, Scope, Send

from uploadsvc.asgi import HttpMiddleware

logger = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPE_BASE = "https://uploadsvc.dev/problems/"
REF_TEMPLATE = "#/components/schemas/{model}"
PROBLEM_SCHEMA_REF = REF_TEMPLATE.format(model="Problem")


class FieldError(BaseModel):
    """One offending field of a validation error."""

    loc: list[str | int] = Field(description="Where: `body`, `query`, `path`... then the field.")
    msg: str
    type: str


class Problem(BaseModel):
    """The body of every error response."""

    type: str = Field(description="A URI naming the kind of problem.")
    title: str
    status: int
    detail: str
    code: str = Field(description="Stable machine-readable error code, e.g. `size_mismatch`.")
    errors: list[FieldError] | None = Field(
        default=None, description="For validation errors: the offending fields."
    )


class UploadsvcError(Exception):
    """Base of every error the service reports to a client."""

    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal server error"
    default_code: ClassVar[str] = "internal_error"

    def __init__(self, detail: str, *, code: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code or self.default_code
        self.headers: dict[str, str] = {}

    def to_problem(self) -> Problem:
        return Problem(
            type=PROBLEM_TYPE_BASE + self.code,
            title=self.title,
            status=self.status,
            detail=self.detail,
            code=self.code,
        )


class BadRequest(UploadsvcError):
    status = 400
    title = "Bad request"
    default_code = "bad_request"


class Unauthorized(UploadsvcError):
    status = 401
    title = "Unauthorized"
    default_code = "invalid_token"

    def __init__(self, detail: str, *, code: str | None = None) -> None:
        super().__init__(detail, code=code)
        self.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'


class Forbidden(UploadsvcError):
    status = 403
    title = "Forbidden"
    default_code = "forbidden"


class NotFound(UploadsvcError):
    status = 404
    title = "Not found"
    default_code = "not_found"


class Conflict(UploadsvcError):
    """The request is valid but the resource is not in a state that allows it (yet)."""

    status = 409
    title = "Conflict"
    default_code = "conflict"


class Gone(UploadsvcError):
    status = 410
    title = "Gone"
    default_code = "gone"


class LengthRequired(UploadsvcError):
    status = 411
    title = "Length required"
    default_code = "length_required"


class PayloadTooLarge(UploadsvcError):
    status = 413
    title = "Payload too large"
    default_code = "too_large"


class UnsupportedMediaType(UploadsvcError):
    status = 415
    title = "Unsupported media type"
    default_code = "unsupported_type"


class RangeNotSatisfiable(UploadsvcError):
    status = 416
    title = "Range not satisfiable"
    default_code = "range_not_satisfiable"


class Unprocessable(UploadsvcError):
    """The uploaded object failed a check (size, type, checksum)."""

    status = 422
    title = "Unprocessable content"
    default_code = "rejected"


class ServiceUnavailable(UploadsvcError):
    """A dependency is down or did not answer in time; the same request may succeed later."""

    status = 503
    title = "Service unavailable"
    default_code = "unavailable"
    # Seconds a client should wait before trying again: about the time a
    # restarted database or a failed-over S3 endpoint takes to answer again.
    retry_after_seconds: ClassVar[int] = 5

    def __init__(self, detail: str, *, code: str | None = None) -> None:
        super().__init__(detail, code=code)
        self.headers["Retry-After"] = str(self.retry_after_seconds)


class DatabaseUnavailable(ServiceUnavailable):
    """The database refused, dropped or did not answer a connection or a statement."""

    title = "Database unavailable"
    default_code = "database_unavailable"


class StorageError(ServiceUnavailable):
    """Object storage failed in a way the client cannot fix; safe to retry later."""

    title = "Storage unavailable"
    default_code = "storage_unavailable"


def problem_response(problem: Problem, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        problem.model_dump(exclude_none=True),
        status_code=problem.status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def error_responses(*errors: type[UploadsvcError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for a route that may raise the given errors.

    Every route may also answer 401 (token) and 422 (invalid fields, which
    the service answers with a ``Problem`` too, not FastAPI's default
    ``HTTPValidationError``). The body is documented under
    ``application/problem+json`` only, the type the service sends: with a
    ``model`` FastAPI would list it under ``application/json`` as well, and
    a generated client then reads the first entry (openapi-python-client
    typed every error as ``None``). ``install_error_handlers`` puts the
    ``Problem`` schema the ``$ref`` points at into the document.
    """
    problem = {PROBLEM_JSON: {"schema": {"$ref": PROBLEM_SCHEMA_REF}}}
    responses: dict[int | str, dict[str, Any]] = {}
    all_errors: tuple[type[UploadsvcError], ...] = (Unauthorized, *errors)
    for error in all_errors:
        responses[error.status] = {"description": error.title, "content": problem}
    responses.setdefault(422, {"description": "Validation error", "content": problem})
    return responses


def _document_problem_schema(app: FastAPI) -> None:
    """Add the ``Problem`` schema that ``error_responses`` refers to to the OpenAPI document."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        document = generate()  # built once; FastAPI keeps it in app.openapi_schema
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        if "Problem" not in schemas:
            problem = Problem.model_json_schema(ref_template=REF_TEMPLATE, mode="serialization")
            schemas.update(problem.pop("$defs", {}))
            schemas["Problem"] = problem
        return document

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way


async def _handle_uploadsvc_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, UploadsvcError)
    if exc.status >= 500:
        logger.error("request failed: %s (%s)", exc.code, exc.detail)
    return problem_response(exc.to_problem(), exc.headers)


async def _handle_validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    fields = [
        FieldError(loc=list(err.get("loc", ())), msg=err.get("msg", ""), type=err.get("type", ""))
        for err in exc.errors()
    ]
    names = ", ".join(".".join(str(part) for part in f.loc) for f in fields)
    problem = Problem(
        type=PROBLEM_TYPE_BASE + "validation_error",
        title="Validation error",
        status=422,
        detail=f"Invalid request fields: {names}",
        code="validation_error",
        errors=fields,
    )
    return problem_response(problem)


async def _handle_http_exception(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    problem = Problem(
        type=PROBLEM_TYPE_BASE + code,
        title=str(exc.detail) if exc.status_code != 404 else "Not found",
        status=exc.status_code,
        detail=str(exc.detail),
        code=code,
    )
    return problem_response(problem, dict(exc.headers or {}))


# PostgreSQL's SQLSTATE classes that mean "the server, not the request": a
# connection exception (08), too many connections (53), a cancelled statement
# (57014, statement_timeout) or a server shutting down or starting (57P0x).
_OUTAGE_SQLSTATE_CLASSES = ("08", "53", "57")


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception, then what it wraps: SQLAlchemy's ``orig``, ``__cause__``, ``__context__``."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for inner in (getattr(current, "orig", None), current.__cause__, current.__context__):
            if isinstance(inner, BaseException):
                pending.append(inner)


def outage_error(exc: BaseException) -> ServiceUnavailable | None:
    """The 503 for an exception that says a dependency is down or hung; ``None`` for a bug.

    Storage raises ``StorageError`` itself (storage/); this recognises what
    the database driver, the pool and the network raise instead (docs/api.md,
    "Outages").
    """
    for cause in _causes(exc):
        if isinstance(cause, ServiceUnavailable):
            return cause
        if isinstance(cause, sa_exc.TimeoutError):
            return DatabaseUnavailable("No database connection became free in time; try again.")
        if isinstance(cause, sa_exc.DBAPIError) and (
            cause.connection_invalidated
            or isinstance(cause, sa_exc.OperationalError | sa_exc.InterfaceError)
        ):
            return DatabaseUnavailable("The database is unavailable; try again later.")
        sqlstate = getattr(cause, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate.startswith(_OUTAGE_SQLSTATE_CLASSES):
            return DatabaseUnavailable("The database is unavailable; try again later.")
        if isinstance(cause, TimeoutError | OSError):
            # asyncio's and the socket's timeouts, refused and reset connections;
            # the pool lets those of a new database connection through unwrapped.
            if _raised_by_database_driver(cause):
                return DatabaseUnavailable("The database is unavailable; try again later.")
            return ServiceUnavailable("A service this one depends on is unavailable; try again.")
    return None


def _raised_by_database_driver(exc: BaseException) -> bool:
    return any(
        str(frame.f_globals.get("__name__", "")).startswith(("asyncpg", "aiosqlite"))
        for frame, _ in traceback.walk_tb(exc.__traceback__)
    )


def _unexpected_response(exc: Exception) -> JSONResponse:
    outage = outage_error(exc)
    if outage is not None:
        logger.error("dependency unavailable: %s (%r)", outage.code, exc)
        return problem_response(outage.to_problem(), outage.headers)
    # Log the traceback for operators; show the client nothing of it.
    logger.exception("unhandled error", exc_info=exc)
    return problem_response(UploadsvcError("An unexpected error occurred.").to_problem())


async def _handle_unexpected(_: Request, exc: Exception) -> JSONResponse:
    return _unexpected_response(exc)


class _AnswerUnexpected(HttpMiddleware):
    """Answers an exception no handler took, and ends the request there.

    Starlette's outermost middleware answers it too, with the handler for
    ``Exception``, but then raises it again for the server, and uvicorn
    closes a connection whose request raised: a keep-alive client's next
    request would meet a reset. Here the response is complete and nothing is
    raised. Once the response has started, the exception goes on: the body
    is cut short, and only closing the connection tells the client.
    """

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False
        client_failed = False

        async def send_tracking_start(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        async def receive_tracking_failure() -> Message:
            # An error while reading the request is the client's (it went
            # away, its body broke): there is nobody to answer, so it goes on.
            nonlocal client_failed
            try:
                return await receive()
            except BaseException:
                client_failed = True
                raise

        try:
            await self.app(scope, receive_tracking_failure, send_tracking_start)
        except Exception as exc:
            if started or client_failed:
                raise
            await _unexpected_response(exc)(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    """Render every error as problem+json, and document that body in OpenAPI."""
    _document_problem_schema(app)
    app.add_exception_handler(UploadsvcError, _handle_uploadsvc_error)
    app.add_exception_handler(RequestValidationError, _handle_validation_error)
    app.add_exception_handler(StarletteHTTPException, _handle_http_exception)
    # What raises past the middlewares installed later still gets this answer.
    app.add_exception_handler(Exception, _handle_unexpected)
    app.add_middleware(_AnswerUnexpected)


class PreconditionFailed(UploadsvcError):
    status = 412
    title = "Precondition failed"
    default_code = "precondition_failed"
