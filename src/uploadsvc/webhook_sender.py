"""The HTTP side of webhooks: sign a message as Standard Webhooks says, POST it, report.

Headers ``webhook-id``, ``webhook-timestamp`` (seconds) and
``webhook-signature`` (``v1,`` + HMAC-SHA256 of ``id.timestamp.body``, by
the specification's reference library), so any Standard Webhooks library
verifies it. This module knows no table and no event: the service tells
it what to send and records what it answers.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

import httpx
from standardwebhooks import Webhook

from uploadsvc.config import Settings


@dataclass(frozen=True, slots=True)
class SendResult:
    # The receiver's status, or None when it never answered (``error`` says why).
    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class WebhookSender:
    """One client for every delivery of a process (made and closed by ``open_resources``)."""

    def __init__(self, *, url: str, secret: str, timeout_seconds: float) -> None:
        self._url = url
        self._signer = Webhook(secret)
        # No redirects: a receiver that moved is a misconfiguration to see in
        # the attempts, not a reason to send the signed body somewhere else.
        self._client = httpx.AsyncClient(timeout=timeout_seconds, follow_redirects=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookSender | None:
        if settings.webhook_url is None or settings.webhook_secret is None:
            return None
        return cls(
            url=settings.webhook_url,
            secret=settings.webhook_secret.get_secret_value(),
            timeout_seconds=settings.webhook_timeout_seconds,
        )

    async def send(self, *, message_id: str, body: str) -> SendResult:
        now = dt.datetime.now(dt.UTC)
        headers = {
            "content-type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": self._signer.sign(message_id, now, body),
        }
        began = time.monotonic()
        try:
            response = await self._client.post(self._url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return SendResult(None, f"{type(exc).__name__}: {exc}", _ms_since(began))
        error = None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
        return SendResult(response.status_code, error, _ms_since(began))

    async def aclose(self) -> None:
        await self._client.aclose()


def _ms_since(began: float) -> int:
    return int((time.monotonic() - began) * 1000)
