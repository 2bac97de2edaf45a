"""A webhook receiver on loopback for the tests, and the settings that point the service at it."""

from __future__ import annotations

import base64
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
from standardwebhooks import Webhook

from tests.support.servers import serve_in_thread

SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()


@dataclass
class Receiver:
    """A webhook receiver on loopback: answers ``statuses`` in turn (then 204), keeps each call."""

    statuses: list[int]
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def events(self) -> list[dict[str, Any]]:
        """The bodies received, each verified with the Standard Webhooks library."""
        return [Webhook(SECRET).verify(body, headers) for headers, body in self.received]


@pytest.fixture(name="receiver")
def receiver_fixture() -> Iterator[Receiver]:
    state = Receiver(statuses=[])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with state.lock:
                state.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = state.statuses.pop(0) if state.statuses else 204
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            return

    with serve_in_thread(Handler) as server:
        state.url = f"http://127.0.0.1:{server.server_port}/hooks"
        yield state


def webhook_settings(receiver: Receiver) -> dict[str, Any]:
    """Webhooks to ``receiver``, three attempts at most, retried at once."""
    return {
        "webhook_url": receiver.url,
        "webhook_secret": SECRET,
        "webhook_retry_backoff_seconds": 0.01,
        "webhook_max_attempts": 3,
    }
