"""Graceful shutdown under uvicorn: say "not ready" first, then stop (docs/api.md, "Processes").

On SIGTERM a load balancer must stop sending new requests before the
server stops accepting them, or those requests meet refused connections.
So the first SIGTERM only marks the process as shutting down (``/readyz``
answers 503 from then on) and hands the signal to uvicorn
``UPLOADSVC_SHUTDOWN_DRAIN_SECONDS`` later; uvicorn then stops accepting,
lets requests in flight finish (``UPLOADSVC_SHUTDOWN_TIMEOUT_SECONDS``) and
runs the lifespan's shutdown. A second SIGTERM or SIGINT goes to uvicorn at once.

Installed only where uvicorn handles the signals (``serve``, ``dev`` and
each ``serve --workers N`` child): the handler found must be a uvicorn
server's, which is also how this code knows it is not inside a test.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

logger = logging.getLogger(__name__)


@dataclass
class ShutdownState:
    """Whether this process has been asked to stop; read by ``/readyz``."""

    started: bool = False


def install_drain(state: ShutdownState, *, drain_seconds: float) -> Callable[[], None]:
    """Put the drain in front of uvicorn's SIGTERM handler; returns the undo (for the lifespan)."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    found = signal.getsignal(signal.SIGTERM)
    if not callable(found) or not _is_uvicorn_handler(found):
        return lambda: None
    uvicorn_handler: Callable[[int, FrameType | None], Any] = found
    loop = asyncio.get_running_loop()

    def stop(signum: int, frame: FrameType | None) -> None:
        uvicorn_handler(signum, frame)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        if state.started:
            stop(signum, frame)
            return
        state.started = True
        logger.info("shutting down: /readyz answers 503, stopping in %.1f s", drain_seconds)
        # A signal handler runs between two bytecodes of the loop's thread: it
        # only schedules, through the thread-safe entry, and returns.
        loop.call_soon_threadsafe(lambda: loop.call_later(drain_seconds, stop, signum, frame))

    signal.signal(signal.SIGTERM, on_sigterm)

    def undo() -> None:
        if signal.getsignal(signal.SIGTERM) is on_sigterm:
            signal.signal(signal.SIGTERM, found)

    return undo


def _is_uvicorn_handler(handler: Any) -> bool:
    owner = getattr(handler, "__self__", None)
    return type(owner).__module__.startswith("uvicorn.")
