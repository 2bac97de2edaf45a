"""Prometheus metrics, served at ``/metrics``.

Counters count state changes that won (the conditional UPDATE), so they are
exact even when many requests race on the same upload.
"""

from __future__ import annotations

from prometheus_client import Counter

UPLOADS_REQUESTED = Counter(
    "uploadsvc_uploads_requested", "Upload URLs handed out for new uploads.", ["purpose"]
)
UPLOADS_CONFIRMED = Counter("uploadsvc_uploads_confirmed", "Uploads confirmed as files.")
UPLOADS_REJECTED = Counter(
    "uploadsvc_uploads_rejected", "Uploads rejected at confirm, by reason.", ["code"]
)
