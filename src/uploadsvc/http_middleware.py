"""Request ids, access lines and HTTP metrics: one pure-ASGI middleware.

Pure ASGI rather than Starlette's ``BaseHTTPMiddleware``: it does not run the
app in another task, so the request's context (``logs.RequestContext``)
is the one the handler logs with, and streamed bodies pass untouched.

- The request id is the client's ``X-Request-ID`` when it is a plain token
  (letters, digits, ``.-_:``, up to 128), a new one otherwise; it goes back
  in the response's ``X-Request-ID`` header and on every log line.
- One access line per request, after the last byte of the response, with
  the method, the path (its query redacted like every line), the route
  template, the status and the duration. It replaces uvicorn's access log,
  which prints query strings as they are, signatures included.
- Metrics are labelled by the route template, never the raw path, so ids
  in paths do not make a series each (README.md, "Logs and metrics").
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from fastapi import FastAPI
from starlette.datastructures import MutableHeaders
from starlette.types import Message, Receive, Scope, Send

from uploadsvc import logs, metrics
from uploadsvc.asgi import HttpMiddleware

REQUEST_ID_HEADER = "X-Request-ID"
# Requests that no route matched (404s, CORS preflights answered by the
# middleware) share one label: a scanner's random paths must not add series.
UNMATCHED_ROUTE = "unmatched"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

access_logger = logging.getLogger("uploadsvc.access")


def request_id_from(header: str | None) -> str:
    """The client's request id when it is safe to log and echo; a fresh one otherwise."""
    if header is not None and _CLIENT_REQUEST_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


class RequestObservabilityMiddleware(HttpMiddleware):
    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        header = next(
            (
                value.decode("latin-1")
                for name, value in scope.get("headers", ())
                if name.lower() == b"x-request-id"
            ),
            None,
        )
        context = logs.RequestContext(request_id=request_id_from(header), scope=scope)
        token = logs.open_request_context(context)
        close_context = True
        started = time.perf_counter()
        status = 500  # what the client gets if the app fails before it answers

        async def send_with_request_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                if REQUEST_ID_HEADER not in headers:
                    headers.append(REQUEST_ID_HEADER, context.request_id)
            await send(message)

        metrics.HTTP_REQUESTS_IN_PROGRESS.inc()
        try:
            await self.app(scope, receive, send_with_request_id)
        except BaseException:
            # Starlette's ServerErrorMiddleware, outside this one, renders the
            # 500 and logs the traceback after this frame is gone: the request
            # context stays open for that line (the request's task ends with it).
            # A failure after the response started keeps the status that was sent.
            close_context = False
            raise
        finally:
            metrics.HTTP_REQUESTS_IN_PROGRESS.dec()
            self._record(scope, context, status, time.perf_counter() - started)
            if close_context:
                logs.close_request_context(token)

    @staticmethod
    def _record(scope: Scope, context: logs.RequestContext, status: int, duration: float) -> None:
        method = scope["method"] if scope["method"] in _METHODS else "OTHER"
        route = context.route or UNMATCHED_ROUTE
        labels = {"route": route, "method": method, "status": str(status)}
        metrics.HTTP_REQUESTS.labels(**labels).inc()
        metrics.HTTP_REQUEST_DURATION.labels(**labels).observe(duration)
        query = scope.get("query_string", b"").decode("latin-1")
        path = scope.get("path", "") + (f"?{query}" if query else "")
        client = scope.get("client")
        access_logger.info(
            "%s %s %s",
            scope["method"],
            path,
            status,
            extra={
                "http_method": scope["method"],
                "path": path,
                "status": status,
                "duration_ms": round(duration * 1000, 2),
                "client": f"{client[0]}:{client[1]}" if client else None,
            },
        )


def install_request_observability(app: FastAPI) -> None:
    """Request ids, access lines and HTTP metrics for every request of ``app``.

    Call it after the other ``add_middleware`` calls: the last added runs
    first, so the timing and the request id cover CORS as well.
    """
    app.add_middleware(RequestObservabilityMiddleware)
