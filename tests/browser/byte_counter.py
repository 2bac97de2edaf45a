"""A TCP proxy on loopback that counts the bytes clients send through it.

The browser tests put it in front of the service: the browser reaches the
API only through the proxy, so ``bytes_from_clients`` is everything the
service received from the browser (page loads, API calls), headers included.
Byte counting at the TCP level cannot be fooled by how a request is framed
(chunked bodies, keep-alive, a WebSocket...), which a count of access-log
lines or of Content-Length headers could be.
"""

from __future__ import annotations

import contextlib
import socket
import threading

CHUNK_SIZE = 64 * 1024
ACCEPT_POLL_SECONDS = 0.2


class CountingProxy:
    """Forwards ``127.0.0.1:<port>`` to ``127.0.0.1:<upstream_port>``, counting both directions."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        # accept() wakes up now and then to notice close().
        self._listener.settimeout(ACCEPT_POLL_SECONDS)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._from_clients = 0
        self._to_clients = 0
        self._connections = 0
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._closed = threading.Event()
        accept = threading.Thread(target=self._accept_loop, name="proxy-accept", daemon=True)
        accept.start()
        self._threads.append(accept)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def bytes_from_clients(self) -> int:
        with self._lock:
            return self._from_clients

    @property
    def bytes_to_clients(self) -> int:
        with self._lock:
            return self._to_clients

    @property
    def connections(self) -> int:
        with self._lock:
            return self._connections

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # the listener was closed
            client.settimeout(None)
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._connections += 1
                self._sockets.extend((client, upstream))
            for source, target, inbound in ((client, upstream, True), (upstream, client, False)):
                pump = threading.Thread(
                    target=self._pump, args=(source, target, inbound), daemon=True
                )
                pump.start()
                self._threads.append(pump)

    def _pump(self, source: socket.socket, target: socket.socket, inbound: bool) -> None:
        try:
            while data := source.recv(CHUNK_SIZE):
                with self._lock:
                    if inbound:
                        self._from_clients += len(data)
                    else:
                        self._to_clients += len(data)
                target.sendall(data)
        except OSError:
            pass  # either side went away
        finally:
            # Pass the end of the stream on; the other pump closes its side.
            with contextlib.suppress(OSError):
                target.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        """Stop accepting, cut every connection and wait for the threads."""
        self._closed.set()
        self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in self._threads:
            thread.join(timeout=5)
