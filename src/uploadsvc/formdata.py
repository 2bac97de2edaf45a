"""A streaming ``multipart/form-data`` reader on top of python-multipart.

Starlette's ``request.form()`` spools every file to a temporary file before
the handler runs; here the body is parsed as it arrives, so a handler sees
the first bytes of a file while the rest is still on the wire, and can stop
reading (413, wrong type) without having stored anything.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from uploadsvc.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType


@dataclass(frozen=True, slots=True)
class PartStart:
    name: str
    filename: str | None
    content_type: str | None


@dataclass(frozen=True, slots=True)
class PartData:
    data: bytes


@dataclass(frozen=True, slots=True)
class PartEnd:
    pass


Event = PartStart | PartData | PartEnd

# A form field that is not a file (e.g. `purpose`) is small; refuse anything bigger.
MAX_FIELD_BYTES = 1024
MAX_PART_HEADERS = 16
# One header line of a part (a long filename fits); python-multipart's own default.
MAX_HEADER_BYTES = 4096 + 128


# RFC 2046 allows 70 characters; python-multipart refuses more than 256 (in its
# constructor, which is why that is called inside the `try` below too).
MAX_BOUNDARY_LENGTH = 256


def boundary_of(content_type: str | None) -> bytes:
    try:
        essence, options = parse_options_header(content_type or "")
    except (ValueError, UnicodeError):
        raise BadRequest(
            "The Content-Type header is malformed.", code="malformed_multipart"
        ) from None
    if essence != b"multipart/form-data":
        raise UnsupportedMediaType(
            "Send the file as multipart/form-data.", code="expected_multipart"
        )
    boundary = options.get(b"boundary")
    if not boundary:
        raise BadRequest("The multipart body has no boundary.", code="malformed_multipart")
    if len(boundary) > MAX_BOUNDARY_LENGTH:
        raise BadRequest(
            f"The multipart boundary is longer than {MAX_BOUNDARY_LENGTH} characters.",
            code="malformed_multipart",
        )
    return boundary


async def read_events(
    content_type: str | None, body: AsyncIterator[bytes], *, max_body_bytes: int | None = None
) -> AsyncGenerator[Event, None]:
    """The parts of a multipart body, as events, while it is being received.

    ``max_body_bytes`` bounds the whole body (413 as soon as it is passed).
    """
    events: list[Event] = []
    headers: dict[bytes, bytes] = {}
    field = bytearray()
    value = bytearray()
    finished = False

    def on_part_begin() -> None:
        headers.clear()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        field.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        value.extend(data[start:end])

    def on_header_end() -> None:
        headers[bytes(field).lower()] = bytes(value)
        field.clear()
        value.clear()

    def on_headers_finished() -> None:
        _, disposition = parse_options_header(headers.get(b"content-disposition", b""))
        name = disposition.get(b"name")
        if name is None:
            raise BadRequest("A multipart part has no name.", code="malformed_multipart")
        filename = disposition.get(b"filename")
        part_type = headers.get(b"content-type")
        events.append(
            PartStart(
                name=name.decode("utf-8", "replace"),
                filename=filename.decode("utf-8", "replace") if filename is not None else None,
                content_type=part_type.decode("latin-1") if part_type else None,
            )
        )

    def on_part_data(data: bytes, start: int, end: int) -> None:
        # Most calls cover a whole received chunk: pass it on without a copy.
        whole = start == 0 and end == len(data)
        events.append(PartData(data if whole else bytes(data[start:end])))

    def on_part_end() -> None:
        events.append(PartEnd())

    def on_end() -> None:
        nonlocal finished
        finished = True

    boundary = boundary_of(content_type)
    try:
        parser = MultipartParser(
            boundary,
            {
                "on_part_begin": on_part_begin,
                "on_header_field": on_header_field,
                "on_header_value": on_header_value,
                "on_header_end": on_header_end,
                "on_headers_finished": on_headers_finished,
                "on_part_data": on_part_data,
                "on_part_end": on_part_end,
                "on_end": on_end,
            },
            max_header_count=MAX_PART_HEADERS,
            max_header_size=MAX_HEADER_BYTES,
        )
    except FormParserError:
        raise BadRequest(
            "The multipart boundary is not usable.", code="malformed_multipart"
        ) from None
    received = 0
    try:
        async for chunk in body:
            received += len(chunk)
            if max_body_bytes is not None and received > max_body_bytes:
                raise PayloadTooLarge(
                    f"The body is over the {max_body_bytes}-byte limit.", code="too_large"
                )
            parser.write(chunk)
            for event in events:
                yield event
            events.clear()
        parser.finalize()
    except FormParserError:
        raise BadRequest("The multipart body is malformed.", code="malformed_multipart") from None
    for event in events:
        yield event
    if not finished:
        raise BadRequest("The multipart body ended early.", code="malformed_multipart")


class FormReader:
    """Walks a streamed form part by part: ``next_part()``, then its ``chunks()`` or ``text()``.

    ``max_body_bytes`` bounds the whole body, framing and skipped parts
    included (413 as soon as it is passed): the file limit alone would let a
    chunked body send endless parts that are not the file.
    """

    def __init__(
        self,
        content_type: str | None,
        body: AsyncIterator[bytes],
        *,
        max_body_bytes: int | None = None,
    ) -> None:
        self._events = read_events(content_type, body, max_body_bytes=max_body_bytes)
        self._in_part = False

    async def next_part(self) -> PartStart | None:
        """The next part's headers, skipping what is left of the current one; None at the end."""
        async for event in self._events:
            if isinstance(event, PartStart):
                self._in_part = True
                return event
        return None

    async def chunks(self) -> AsyncIterator[bytes]:
        """The current part's bytes, as they arrive."""
        if not self._in_part:
            return
        async for event in self._events:
            if isinstance(event, PartData):
                if event.data:
                    yield event.data
            elif isinstance(event, PartEnd):
                self._in_part = False
                return
        raise BadRequest("The multipart body ended inside a part.", code="malformed_multipart")

    async def text(self) -> str:
        """The current part as a short text field."""
        data = bytearray()
        async for chunk in self.chunks():
            data.extend(chunk)
            if len(data) > MAX_FIELD_BYTES:
                raise BadRequest("A form field is too long.", code="field_too_long")
        return data.decode("utf-8", "replace")

    async def aclose(self) -> None:
        await self._events.aclose()
