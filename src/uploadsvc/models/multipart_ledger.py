"""The multipart ledger: S3 multipart uploads the service may have left open."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from uploadsvc.db import Base, UTCDateTime, utcnow


class OpenMultipartUpload(Base):
    """A multipart upload that storage may hold open under an upload prefix.

    Written (and committed) before storage is asked to start one, removed once
    it is completed or aborted. A row that outlives its upload's process (a
    crash, a deploy) tells cleanup which key to look at, so cleanup never has
    to list every incomplete upload in the bucket. See repository/multipart_ledger.py.
    """

    __tablename__ = "open_multipart_uploads"

    key: Mapped[str] = mapped_column(String(1024), primary_key=True)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
