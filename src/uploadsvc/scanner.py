"""A client of ClamAV's daemon (clamd): ``PING`` and ``INSTREAM`` over asyncio streams.

The protocol (clamd(8), "INSTREAM"): send ``zINSTREAM\\0``, then the bytes as
chunks, each prefixed by its length (4 bytes, network order), then a chunk
of length 0; clamd answers one NUL-terminated line: ``stream: OK``,
``stream: <signature> FOUND`` or ``<reason> ERROR``. When the stream passes
its ``StreamMaxLength`` clamd answers ``INSTREAM size limit exceeded. ERROR``
and closes the connection, possibly while chunks are still being sent.

Chunks are sent as storage yields them (64 KiB to 1 MiB each): one length
prefix per chunk keeps the cost per byte low (the PyPI clients send 1 KiB chunks,
which caps them at a few MiB/s). One connection per scan: clamd handles each
connection in a thread of its own, and nothing is kept between scans.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass

from uploadsvc.config import Settings

_SIZE_LIMIT_REPLY = "INSTREAM size limit exceeded"
_MAX_REPLY_BYTES = 64 * 1024


class ScannerUnavailable(Exception):
    """clamd could not be reached, failed or took too long: scan again later."""


class StreamTooLong(Exception):
    """clamd refused the stream as longer than its ``StreamMaxLength``."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """clamd's answer for one stream: ``signature`` is None when nothing was found."""

    signature: str | None

    @property
    def infected(self) -> bool:
        return self.signature is not None


class ClamdClient:
    """Talks to clamd at ``unix:///path`` or ``tcp://host:port``, with one deadline per call."""

    def __init__(self, url: str, *, timeout: float) -> None:
        self.url = url
        self.timeout = timeout

    @classmethod
    def from_settings(cls, settings: Settings) -> ClamdClient:
        return cls(settings.clamd_url, timeout=settings.clamd_timeout_seconds)

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.url.startswith("unix://"):
            return await asyncio.open_unix_connection(self.url.removeprefix("unix://"))
        host, _, port = self.url.removeprefix("tcp://").rpartition(":")
        return await asyncio.open_connection(host.strip("[]"), int(port))

    async def ping(self) -> None:
        """Raise ``ScannerUnavailable`` unless clamd answers ``PONG``."""
        reply = await self._call(b"zPING\0", None)
        if reply != "PONG":
            raise ScannerUnavailable(f"clamd answered PING with {reply!r}")

    async def scan(self, chunks: AsyncIterator[bytes]) -> Verdict:
        """Stream ``chunks`` to clamd and return its verdict.

        Raises ``StreamTooLong`` past clamd's stream limit and
        ``ScannerUnavailable`` when clamd is down, slow or answers an error.
        An error raised by ``chunks`` itself (storage) propagates as it is.
        """
        reply = await self._call(b"zINSTREAM\0", chunks)
        if reply.endswith(" FOUND"):
            signature = reply.removeprefix("stream:").removesuffix(" FOUND").strip()
            return Verdict(signature=signature or "unknown")
        if reply.endswith(" OK") or reply == "stream: OK":
            return Verdict(signature=None)
        if reply.startswith(_SIZE_LIMIT_REPLY):
            raise StreamTooLong(reply)
        raise ScannerUnavailable(f"clamd answered {reply!r}")

    async def _call(self, command: bytes, chunks: AsyncIterator[bytes] | None) -> str:
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await self._connect()
                try:
                    return await self._exchange(reader, writer, command, chunks)
                finally:
                    writer.close()
                    with contextlib.suppress(OSError):
                        await writer.wait_closed()
        except TimeoutError:
            raise ScannerUnavailable(f"clamd at {self.url} did not answer in time") from None
        except OSError as exc:
            raise ScannerUnavailable(f"clamd at {self.url}: {exc}") from exc

    async def _exchange(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        command: bytes,
        chunks: AsyncIterator[bytes] | None,
    ) -> str:
        # The reply is read while the chunks are sent: clamd answers (and
        # closes) as soon as a stream passes its limit, and a reply read only
        # after the failed write would be lost with the connection.
        reply = asyncio.ensure_future(_read_reply(reader))
        try:
            writer.write(command)
            if chunks is not None:
                await _send_chunks(writer, chunks, reply)
            text = await reply
        finally:
            reply.cancel()
        if not text:
            raise ScannerUnavailable("clamd closed the connection without answering")
        return text


async def _send_chunks(
    writer: asyncio.StreamWriter, chunks: AsyncIterator[bytes], reply: asyncio.Future[str]
) -> None:
    try:
        async for chunk in chunks:
            if reply.done():
                return  # clamd has answered already (its stream limit, an error)
            if chunk:
                writer.write(struct.pack(">I", len(chunk)))
                writer.write(chunk)
                await writer.drain()
        writer.write(struct.pack(">I", 0))
        await writer.drain()
    except (BrokenPipeError, ConnectionResetError):
        # clamd stopped reading; its reply, if it sent one, says why.
        pass


async def _read_reply(reader: asyncio.StreamReader) -> str:
    try:
        raw = await reader.readuntil(b"\0")
    except asyncio.IncompleteReadError as exc:
        raw = exc.partial
    except asyncio.LimitOverrunError as exc:
        raw = await reader.read(min(exc.consumed, _MAX_REPLY_BYTES))
    except (BrokenPipeError, ConnectionResetError):
        return ""
    return raw.rstrip(b"\0").decode("utf-8", "replace").strip()
