"""The bound on the bodies the framework reads whole, and the token checked before them.

FastAPI reads a route's whole body (to parse its JSON model) before it runs
any dependency, the token check included: unguarded, anyone could make a
process hold hundreds of MiB and only then hear 401. This pure ASGI
middleware (Starlette's ``BaseHTTPMiddleware`` would buffer the body itself)
wraps ``receive``; the first time the app asks for the body, the router has
chosen the route (``scope["route"]``), and the guard acts on it:

- a route that takes a JSON model: an honest ``Content-Length`` over
  ``MAX_JSON_BODY_BYTES`` is answered 413 before a byte is read, and a
  missing or invalid token 401, also before a byte is read; a chunked
  body is cut with 413 the moment it passes the bound. The part lists that
  complete a multipart upload grow with the upload, and have a bound of
  their own (``PART_LIST_BODY_BYTES``);
- a route whose handler takes the raw ``Request`` reads its body as a
  stream with its own bound (direct uploads, the Open Event routes, the
  event archive, local storage): left alone;
- every other route reads no body at all.

Any answer given while a body is still unread (a refusal here or by a
streaming route, or the answer of a route that takes no body) closes the
connection (``Connection: close``): otherwise the server would go on
reading, and throwing away, the rest of a body nobody will use.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security.base import SecurityBase
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from uploadsvc.asgi import HttpMiddleware
from uploadsvc.bodies import content_length
from uploadsvc.config import Settings
from uploadsvc.errors import PayloadTooLarge, UploadsvcError, problem_response
from uploadsvc.resources import Resources
from uploadsvc.schemas.multipart_uploads import CompleteRequest
from uploadsvc.schemas.uppy import UppyCompleteRequest
from uploadsvc.security import extract_bearer_token
from uploadsvc.storage.base import MAX_PART_NUMBER

# Up to MAX_PART_NUMBER entries of a part number and an ETag: under 100 bytes
# each as clients send them; 256 leaves room for escapes and whitespace.
PART_LIST_BODY_BYTES = MAX_PART_NUMBER * 256
_PART_LISTS = (CompleteRequest, UppyCompleteRequest)


@dataclass(frozen=True, slots=True)
class _Plan:
    """What the guard does for one route."""

    bounded: bool  # its body is held to `limit`
    authenticate_first: bool  # the token is checked before the body is read
    limit: int = 0


_LEAVE_ALONE = _Plan(bounded=False, authenticate_first=False)


def _needs_token(dependant: Dependant) -> bool:
    # The bearer scheme (deps.bearer_scheme) is a dependency of every
    # authenticated route; OpenAPI's security requirements come from the same place.
    if isinstance(dependant.call, SecurityBase):
        return True
    return any(_needs_token(sub) for sub in dependant.dependencies)


def _plan_for(route: object, limit: int) -> _Plan:
    if not isinstance(route, APIRoute):
        return _LEAVE_ALONE  # documentation pages, static files: no bodies
    body = route.body_field
    if body is None and route.dependant.request_param_name is not None:
        return _LEAVE_ALONE  # a streaming handler, with its own bound
    if body is not None and body.field_info.annotation in _PART_LISTS:
        limit = max(limit, PART_LIST_BODY_BYTES)
    return _Plan(
        bounded=True,
        authenticate_first=body is not None and _needs_token(route.dependant),
        limit=limit,
    )


class BodyGuard(HttpMiddleware):
    """ASGI middleware; see the module docstring."""

    def __init__(self, app: ASGIApp, *, max_json_body_bytes: int) -> None:
        super().__init__(app)
        self.limit = max_json_body_bytes
        self._plans: dict[int, _Plan] = {}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope)
        length = headers.get("content-length")
        if (length is None or length == "0") and "transfer-encoding" not in headers:
            await self.app(scope, receive, send)  # no body: nothing to guard
            return
        await _GuardedRequest(self, scope, headers)(receive, send)

    def plan(self, scope: Scope) -> _Plan:
        """The plan for the route the router chose (set in the scope before the route runs)."""
        route = scope.get("route")
        if route is None:  # no route (404, 405): nothing reads the body; bound it anyway
            return _Plan(bounded=True, authenticate_first=False, limit=self.limit)
        plan = self._plans.get(id(route))
        if plan is None:
            plan = self._plans[id(route)] = _plan_for(route, self.limit)
        return plan


class _GuardedRequest:
    """One request with a body, run through the app with a guarded ``receive`` and ``send``."""

    def __init__(self, guard: BodyGuard, scope: Scope, headers: Headers) -> None:
        self.guard = guard
        self.scope = scope
        self.headers = headers
        self.checked = False  # the first receive has decided
        self.received = 0
        self.body_complete = False
        self.refused = False  # this guard answered; the app's own answer is dropped
        self.response_started = False

    async def __call__(self, receive: Receive, send: Send) -> None:
        async def guarded_receive() -> Message:
            if self.refused:
                return {"type": "http.disconnect"}
            plan = self.guard.plan(self.scope)
            if not self.checked:
                self.checked = True
                if plan.bounded:
                    try:
                        await self._check(plan)
                    except UploadsvcError as refused:
                        await self._refuse(send, refused)
                        # The app sees the body end as a disconnect; its answer to that is dropped.
                        return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                self.received += len(message.get("body", b""))
                self.body_complete = not message.get("more_body", False)
                if plan.bounded and self.received > plan.limit:
                    too_large = PayloadTooLarge(
                        f"The body is over the {plan.limit}-byte limit of this route.",
                        code="too_large",
                    )
                    await self._refuse(send, too_large)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if self.refused:
                return
            if message["type"] == "http.response.start":
                self.response_started = True
                if not self.body_complete:
                    # An answer before the body was read (a refusal, or a route that
                    # takes no body): the server must not go on reading it afterwards.
                    message = {**message, "headers": [*message["headers"], _CLOSE]}
            await send(message)

        await self.guard.app(self.scope, guarded_receive, guarded_send)

    async def _check(self, plan: _Plan) -> None:
        """Before the first byte: the honest length, then the token."""
        length = content_length(self.headers.get("content-length"))
        if length is not None and length > plan.limit:
            raise PayloadTooLarge(
                f"The body has {length} bytes; this route takes at most {plan.limit}.",
                code="too_large",
            )
        if plan.authenticate_first:
            resources: Resources | None = getattr(self.scope["app"].state, "resources", None)
            if resources is not None:  # without a lifespan, the route's dependency answers
                token = extract_bearer_token(self.headers.get("authorization"))
                # The route's dependency verifies it again (a signature check, keys
                # cached); this one only decides whether the body is worth reading.
                await resources.token_verifier.verify(token)

    async def _refuse(self, send: Send, error: UploadsvcError) -> None:
        if self.response_started:
            # Too late for another answer; the app's is cut short by the disconnect.
            self.refused = True
            return
        self.refused = True
        response = problem_response(error.to_problem(), {**error.headers, "Connection": "close"})
        await response(self.scope, _no_receive, send)


_CLOSE = (b"connection", b"close")


async def _no_receive() -> Message:
    raise RuntimeError("a refusal does not read the request")


def install_body_guard(app: FastAPI, settings: Settings) -> None:
    """Bound the bodies the framework reads whole (``MAX_JSON_BODY_BYTES``); see above."""
    app.add_middleware(BodyGuard, max_json_body_bytes=settings.max_json_body_bytes)
