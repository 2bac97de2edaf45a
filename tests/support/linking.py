"""Linking many speakers to one session, timed: the import's linking step alone.

Used by tests/test_import_bounds.py (a bound) and bench/linking_bench.py (the
ratio between sizes). The records are handed to ``ImportStream`` in memory,
without a zip, so only the mapping runs.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

from uploadsvc.openevent.mapping import ImportStream


class _Records:
    def __init__(self, records: list[Any]) -> None:
        self._records = records
        self.count = 0
        self.done = 0
        self.size = 1

    def __iter__(self) -> Iterator[Any]:
        for record in self._records:
            self.count += 1
            yield record


class _Source:
    def __init__(self, files: dict[str, Any]) -> None:
        self._files = files

    def json(self, name: str) -> Any:
        return self._files.get(name)

    def records(self, name: str) -> _Records | None:
        records = self._files.get(name)
        return None if records is None else _Records(records)


def linking_seconds(speakers: int) -> tuple[int, float]:
    """Import ``speakers`` speakers who all name session 1: (links made, seconds spent linking).

    Only the linking step is timed, not the making of the speakers' rows.
    """
    files = {
        "event": {"name": "Crowded"},
        "speakers": [{"id": n, "name": f"S{n}", "sessions": [{"id": 1}]} for n in range(speakers)],
        "sessions": [{"id": 1, "title": "Everyone"}],
    }
    stream = ImportStream(
        _Source(files), event_id=uuid.uuid4(), owner_id="alice", import_job_id=uuid.uuid4()
    )
    link = stream._speaker_sessions
    linking = 0.0

    def timed(sid: str, speaker_id: str, record: dict[str, Any]) -> None:
        nonlocal linking
        started = time.perf_counter()
        link(sid, speaker_id, record)
        linking += time.perf_counter() - started

    stream._speaker_sessions = timed  # type: ignore[method-assign]
    links = sum(len(batch.rows.get("session_speakers", ())) for batch in stream.batches())
    return links, linking
