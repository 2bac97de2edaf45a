"""A TCP proxy on a loopback port in front of a real server, to stage an outage.

``close()`` stops listening and cuts every open connection, so clients see
what a crashed server or a lost network gives them (connections reset, then
refused); ``open()`` listens again on the same port. ``pause()`` keeps the
connections but passes nothing on (a server that hangs) until ``resume()``.
It runs in the test's event loop.

    proxy = await TcpProxy.start("127.0.0.1", 5432)
    ...  # point a client at proxy.port
    await proxy.close()  # outage
    await proxy.open()  # recovery
"""

from __future__ import annotations

import asyncio
import contextlib
import socket


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = port
        self.connections = 0  # accepted since the start
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._pipes: set[asyncio.Task[None]] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()

    @classmethod
    async def start(cls, target_host: str, target_port: int) -> TcpProxy:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        proxy = cls(target_host, target_port, port)
        await proxy.open()
        return proxy

    @property
    def is_open(self) -> bool:
        return self._server is not None

    async def open(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(
                self._accept, "127.0.0.1", self.port, reuse_address=True
            )

    def pause(self) -> None:
        """Keep connections open but pass no byte on: a server that hangs."""
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    async def close(self) -> None:
        """Refuse new connections and reset the open ones."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        for pipe in list(self._pipes):
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                self.target_host, self.target_port
            )
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, upstream_writer))
        pipes = [
            asyncio.create_task(self._pipe(reader, upstream_writer)),
            asyncio.create_task(self._pipe(upstream_reader, writer)),
        ]
        self._pipes.update(pipes)
        try:
            await asyncio.gather(*pipes, return_exceptions=True)
        finally:
            self._pipes.difference_update(pipes)
            for end in (writer, upstream_writer):
                self._writers.discard(end)
                end.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
        # One side ended: the other learns it (as with a real connection).
        with contextlib.suppress(OSError):
            if writer.can_write_eof():
                writer.write_eof()
