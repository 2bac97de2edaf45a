"""Log lines: JSON on stdout (or a console format for ``uploadsvc dev``), redacted.

structlog renders every line. The code logs through the standard library
(``logging.getLogger(__name__)``), and so do uvicorn, arq, SQLAlchemy and
Alembic: structlog's ``ProcessorFormatter`` gives their records the same
fields and the same renderer as structlog's own loggers, so one parser
reads the whole stream (README.md, "Logs and metrics").

Every line written while a request is handled carries its request id, the
route template and, once the caller is authenticated, the user id. They come
from :class:`RequestContext`, which ``http_middleware`` opens per request.

Nothing secret reaches a line: bearer tokens, JWTs, passwords in URLs and
the signing parts of presigned URLs and POST policies are replaced by
``[REDACTED]`` in every string of the line, the message and the traceback
included. The URLs themselves stay readable, so a line still says which
object a request was about.
"""

from __future__ import annotations

import functools
import logging
import logging.config
import os
import re
from collections.abc import Callable, Mapping, MutableMapping
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any, Literal

import structlog
from structlog.types import EventDict, Processor, WrappedLogger

LogFormat = Literal["json", "console"]
LogStream = Literal["stdout", "stderr"]

REDACTED = "[REDACTED]"

# Query and form parameters that sign or authorise a request: SigV4 presigned
# URLs, the local backend's HMAC URLs, S3 POST policy fields, stray tokens.
_SECRET_PARAMETERS = (
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
    "x-signature",
    "signature",
    "policy",
    "token",
    "access_token",
    "id_token",
    "jwt",
)
_NAMES = "|".join(re.escape(name) for name in _SECRET_PARAMETERS)
_BEARER_HINT = re.compile(r"(?i)bearer")
# Each pattern with a cheap test of the one thing it cannot match without,
# so that most strings of a line (ids, routes, numbers, paths without a
# query) cost a few substring checks instead of five regular expression
# scans: redaction was most of the cost of an access line.
_TEXT_PATTERNS: tuple[tuple[re.Pattern[str], str, Callable[[str], bool]], ...] = (
    # name=value in a query string or a form body: keep the name, drop the value.
    (
        re.compile(rf"(?i)((?<![\w-])(?:{_NAMES})=)[^&\s\"'#<>]*"),
        rf"\1{REDACTED}",
        lambda text: "=" in text,
    ),
    # 'name': 'value' in a repr or a JSON text (headers, POST form fields).
    (
        re.compile(
            rf"(?i)([\"'](?:{_NAMES}|authorization|password|secret|cookie)[\"']\s*:\s*[\"'])"
            r"[^\"']*"
        ),
        rf"\1{REDACTED}",
        lambda text: ":" in text and ('"' in text or "'" in text),
    ),
    (
        re.compile(r"(?i)(\bbearer\s+)[^\s\"',;]+"),
        rf"\1{REDACTED}",
        lambda text: _BEARER_HINT.search(text) is not None,
    ),
    # A JWT anywhere (the "JWT <token>" scheme of Open Event clients included).
    (re.compile(r"\beyJ[\w-]{4,}\.[\w-]{4,}\.[\w-]*"), REDACTED, lambda text: "eyJ" in text),
    # The password of a URL's userinfo (a database or Redis DSN).
    (
        re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^/\s:@]*:)[^@\s/]+@"),
        rf"\1{REDACTED}@",
        lambda text: "@" in text and "://" in text,
    ),
)
# Fields whose whole value is a secret, whatever it looks like.
_SECRET_KEY = re.compile(
    r"(?i)(token|secret|password|passwd|authorization|signature|credential|policy|cookie|api_?key)"
)


# Something at least one pattern above needs; most strings have none of it.
_HINT = re.compile(r"[=\"'@]|eyJ|(?i:bearer)")


def redact_text(text: str) -> str:
    """``text`` with every token, password and signature replaced by ``[REDACTED]``."""
    if _HINT.search(text) is None:
        return text
    for pattern, replacement, may_match in _TEXT_PATTERNS:
        if may_match(text):
            text = pattern.sub(replacement, text)
    return text


@functools.lru_cache(maxsize=1024)
def _is_secret_key(key: str) -> bool:
    # Lines reuse a few dozen field names; the cache is bounded for the rest.
    return _SECRET_KEY.search(key) is not None


def redact(value: Any) -> Any:
    """A log field's value, redacted; containers are copied, not changed in place."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {
            key: REDACTED if isinstance(key, str) and _is_secret_key(key) else redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(item) for item in value]
    return value


def _redact_event(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    redacted: EventDict = redact(event_dict)
    return redacted


@dataclass
class RequestContext:
    """What every line of one request carries.

    One mutable object per request, held by a context variable: code that
    runs in a copied context (a thread, a task started by the handler)
    still fills in the same object, so the access line written at the end
    of the request sees the user id that a dependency bound.
    """

    request_id: str
    scope: MutableMapping[str, Any]
    user_id: str | None = None

    @property
    def route(self) -> str | None:
        return route_template(self.scope)


_request_context: ContextVar[RequestContext | None] = ContextVar(
    "uploadsvc_request_context", default=None
)


def route_template(scope: Mapping[str, Any]) -> str | None:
    """The path template the router matched (``/v1/files/{file_id}``), if it matched one."""
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return template if isinstance(template, str) else None


def current_request() -> RequestContext | None:
    return _request_context.get()


def open_request_context(context: RequestContext) -> Token[RequestContext | None]:
    """Make ``context`` the current request's; returns the token to close it with."""
    return _request_context.set(context)


def close_request_context(token: Token[RequestContext | None]) -> None:
    _request_context.reset(token)


def bind_user(user_id: str) -> None:
    """Put the authenticated caller's id on the lines of the current request.

    Called where the principal is resolved (``deps.bearer_scheme``); outside a
    request it does nothing.
    """
    context = _request_context.get()
    if context is not None:
        context.user_id = user_id


def _add_request_context(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    context = _request_context.get()
    if context is not None:
        event_dict.setdefault("request_id", context.request_id)
        route = context.route
        if route is not None:
            event_dict.setdefault("route", route)
        if context.user_id is not None:
            event_dict.setdefault("user_id", context.user_id)
    return event_dict


def _add_pid(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    # `serve --workers N` writes N processes into one stream: say which one.
    event_dict.setdefault("pid", os.getpid())
    return event_dict


def _drop_color_message(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    # uvicorn's copy of its message with terminal colours: noise in a log line.
    event_dict.pop("color_message", None)
    return event_dict


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        _add_request_context,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_pid,
    ]


def _renderer(log_format: LogFormat) -> Processor:
    if log_format == "console":
        return structlog.dev.ConsoleRenderer(colors=False)
    return structlog.processors.JSONRenderer()


def formatter(log_format: LogFormat = "json") -> structlog.stdlib.ProcessorFormatter:
    """The ``logging.Formatter`` of every handler (named in :func:`logging_config`).

    ``logging.config.dictConfig`` builds it in each process, uvicorn's worker
    processes included (uvicorn applies its ``log_config`` in every child it
    spawns), so it also configures structlog's own loggers there.
    """
    _configure_structlog()
    return structlog.stdlib.ProcessorFormatter(
        # `extra=` fields first: what the caller passed wins over the context.
        foreign_pre_chain=[
            structlog.stdlib.ExtraAdder(),
            _drop_color_message,
            *_shared_processors(),
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            # Tracebacks become text before redaction, so their strings are redacted too.
            structlog.processors.format_exc_info,
            structlog.processors.StackInfoRenderer(),
            _redact_event,
            _renderer(log_format),
        ],
    )


def _configure_structlog() -> None:
    if structlog.is_configured():
        return
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def logging_config(
    *, log_format: LogFormat, level: str = "INFO", stream: LogStream = "stdout"
) -> dict[str, Any]:
    """The ``logging.config.dictConfig`` of a process; also uvicorn's ``log_config``.

    Every logger propagates to the root's one handler. uvicorn's access log
    is silenced: it prints the raw query string, signatures included; the
    HTTP middleware writes a redacted access line instead.
    """
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"structlog": {"()": formatter, "log_format": log_format}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "stream": f"ext://sys.{stream}",
                "formatter": "structlog",
            }
        },
        "root": {"handlers": ["default"], "level": level},
        "loggers": {
            "uvicorn": {"handlers": [], "propagate": True, "level": level},
            "uvicorn.error": {"handlers": [], "propagate": True, "level": level},
            "uvicorn.access": {"handlers": [], "propagate": False, "level": "WARNING"},
            # arq prints one line per job start and end at INFO; keep them.
            "arq": {"handlers": [], "propagate": True, "level": level},
        },
    }


def configure_logging(
    *, log_format: LogFormat, level: str = "INFO", stream: LogStream = "stdout"
) -> None:
    """Configure this process's logging (uvicorn reapplies :func:`logging_config` itself)."""
    logging.config.dictConfig(logging_config(log_format=log_format, level=level, stream=stream))
    # Warnings (deprecations from libraries) become log lines like the rest.
    logging.captureWarnings(True)
