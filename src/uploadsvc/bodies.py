"""Bounds on request bodies, checked before (or while) they are read.

Every body the service reads is bounded (docs/api.md, "Security bounds"): the JSON
bodies the framework reads whole by ``MAX_JSON_BODY_BYTES`` (``body_guard.py``),
the streamed ones by their route's limit plus the framing allowed here.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator

from uploadsvc.errors import (
    BadRequest,
    PayloadTooLarge,
    Unprocessable,
)

# Multipart framing around a file (boundaries, part headers, small fields):
# an honest Content-Length above limit + this is over the limit for sure.
FORM_OVERHEAD_BYTES = 64 * 1024

# A JSON body whose one big string is streamed (`{"data": "data:image/..."}`)
# may carry other, small members; this much before and after that string.
JSON_MEMBERS_BYTES = 4096


def content_length(header: str | None) -> int | None:
    """The declared body length; 400 when the header is not a length."""
    if header is None:
        return None
    value = header.strip()
    # int() would also take "+5", "1_000" or "٣": a length is plain ASCII digits.
    if not value.isascii() or not value.isdigit():
        raise BadRequest("Content-Length is not a number.", code="bad_content_length")
    return int(value)


def refuse_honest_oversize(content_length_header: str | None, limit: int) -> None:
    """413 before reading a byte when the client says the body is too big."""
    length = content_length(content_length_header)
    if length is not None and length > limit:
        raise PayloadTooLarge(
            f"The body has {length} bytes; the limit is {limit}.", code="too_large"
        )


async def limited(body: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    """``body`` as it arrives, cut with 413 as soon as it passes ``limit`` bytes."""
    received = 0
    async for chunk in body:
        received += len(chunk)
        if received > limit:
            raise PayloadTooLarge(f"The body is over the {limit}-byte limit.", code="too_large")
        yield chunk


async def read_limited(body: AsyncIterator[bytes], limit: int) -> bytes:
    """A small request body, read whole but refused (413) as soon as it passes ``limit``."""
    data = bytearray()
    async for chunk in limited(body, limit):
        data.extend(chunk)
    return bytes(data)


# --- one string member of a JSON object, streamed ------------------------------------


class _NotYet(Exception):
    """The start of the body does not show the member yet (or never will)."""


def _malformed(name: str) -> Unprocessable:
    return Unprocessable(
        f'The body must be a JSON object with a string member "{name}".',
        code="validation_error",
    )


async def json_string_member(body: AsyncIterator[bytes], name: str) -> AsyncIterator[bytes]:
    """The value of the string member ``name`` of a JSON object body, unescaped, as it arrives.

    The value is never held whole: a base64 image of many MiB passes through
    in the body's own chunks. The rest of the document is held to JSON all
    the same: one object, ``name`` present once and a string, other members
    (ignored) within ``JSON_MEMBERS_BYTES`` before and after it. A violation
    raises 422 ``validation_error`` where it is seen, which for what follows
    the value is after its last chunk; a consumer storing the chunks must
    treat that error like any other failure of the stream.
    """
    chunks = aiter(body)
    head = bytearray()
    ended = False
    start: int | None = None
    while start is None:
        window = bytes(head[:JSON_MEMBERS_BYTES])
        final = ended or len(head) >= JSON_MEMBERS_BYTES
        try:
            start = _value_start(window, name)
        except _NotYet:
            if final:
                raise _malformed(name) from None
            try:
                head.extend(await anext(chunks))
            except StopAsyncIteration:
                ended = True
    try:
        before = head[: start - 1].decode("utf-8")
    except UnicodeDecodeError:
        raise _malformed(name) from None

    reader = _StringReader(name)
    rest: bytes | None = None
    piece, rest = reader.feed(bytes(head[start:]))
    del head
    if piece:
        yield piece
    while rest is None:
        try:
            chunk = await anext(chunks)
        except StopAsyncIteration:
            raise _malformed(name) from None  # the body ended inside the string
        piece, rest = reader.feed(chunk)
        if piece:
            yield piece

    tail = bytearray(rest)
    async for chunk in chunks:
        tail.extend(chunk)
        if len(tail) > JSON_MEMBERS_BYTES:
            raise _malformed(name)
    _check_document(before, bytes(tail), name)


_WHITESPACE = " \t\n\r"


def _value_start(window: bytes, name: str) -> int:
    """The offset just after the opening quote of member ``name``'s value.

    Raises ``_NotYet`` when ``window`` ends (or fails to parse) before it:
    more of the body may show it, or the caller gives up.
    """
    text = window.decode("utf-8", "surrogateescape")
    decoder = json.JSONDecoder()

    def skip(i: int) -> int:
        while i < len(text) and text[i] in _WHITESPACE:
            i += 1
        if i >= len(text):
            raise _NotYet
        return i

    def value_at(i: int) -> tuple[object, int]:
        try:
            return decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            raise _NotYet from None

    i = skip(0)
    if text[i] != "{":
        raise _NotYet
    i = skip(i + 1)
    while text[i] == '"':
        key, i = value_at(i)
        i = skip(i)
        if text[i] != ":":
            raise _NotYet
        i = skip(i + 1)
        if key == name:
            if text[i] != '"':
                raise _NotYet
            return len(text[: i + 1].encode("utf-8", "surrogateescape"))
        _, i = value_at(i)
        i = skip(i)
        if text[i] != ",":
            raise _NotYet
        i = skip(i + 1)
    raise _NotYet


def _check_document(before: str, after: bytes, name: str) -> None:
    """The whole body is one JSON object with ``name`` once (its value stood in by "")."""
    try:
        # Objects become lists of pairs, so that a repeated member shows.
        members = json.loads(before + '""' + after.decode("utf-8"), object_pairs_hook=list)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _malformed(name) from None
    # `before` starts with "{" (see _value_start): `members` is the top-level object.
    if [key for key, _ in members].count(name) != 1:
        raise _malformed(name)


_SIMPLE_ESCAPES = {
    ord('"'): b'"',
    ord("\\"): b"\\",
    ord("/"): b"/",
    ord("b"): b"\b",
    ord("f"): b"\f",
    ord("n"): b"\n",
    ord("r"): b"\r",
    ord("t"): b"\t",
}
_SPECIAL = re.compile(rb'["\\\x00-\x1f]')
_HEX4 = re.compile(rb"[0-9A-Fa-f]{4}")


class _StringReader:
    """Unescapes a JSON string's content chunk by chunk, up to its closing quote."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._carry = b""  # an escape sequence cut by the end of a chunk

    def feed(self, data: bytes) -> tuple[bytes, bytes | None]:
        """The unescaped bytes of ``data``, and what follows the closing quote (None: not yet)."""
        if self._carry:
            data, self._carry = self._carry + data, b""
        out = bytearray()
        i, n = 0, len(data)
        while i < n:
            special = _SPECIAL.search(data, i)
            if special is None:
                out += data[i:]
                break
            j = special.start()
            out += data[i:j]
            char = data[j]
            if char == ord('"'):
                return bytes(out), data[j + 1 :]
            if char != ord("\\"):
                raise _malformed(self._name)  # a raw control character
            if j + 1 >= n:
                self._carry = data[j:]
                break
            escape = data[j + 1]
            if escape != ord("u"):
                if escape not in _SIMPLE_ESCAPES:
                    raise _malformed(self._name)
                out += _SIMPLE_ESCAPES[escape]
                i = j + 2
                continue
            decoded = self._unicode_escape(data, j)
            if decoded is None:
                self._carry = data[j:]
                break
            text, i = decoded
            out += text
        return bytes(out), None

    def _unicode_escape(self, data: bytes, j: int) -> tuple[bytes, int] | None:
        """``\\uXXXX`` (or a surrogate pair of them) at ``j``; None when cut off."""
        if j + 6 > len(data):
            return None
        if not _HEX4.fullmatch(data, j + 2, j + 6):
            raise _malformed(self._name)
        code = int(data[j + 2 : j + 6], 16)
        if 0xD800 <= code < 0xDC00:
            if j + 12 > len(data):
                return None
            if data[j + 6 : j + 8] == b"\\u" and _HEX4.fullmatch(data, j + 8, j + 12):
                low = int(data[j + 8 : j + 12], 16)
                if 0xDC00 <= low < 0xE000:
                    combined = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    return chr(combined).encode(), j + 12
        # A lone surrogate is valid JSON but no text; it stays an unusable byte sequence.
        return chr(code).encode("utf-8", "surrogatepass"), j + 6
