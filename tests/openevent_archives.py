"""Open Event archives for tests: build them, and read the expectation from their JSON.

``expected()`` computes what the read routes must return straight from the
archive's JSON, independently of ``uploadsvc.openevent``: counts, names,
the session → track/room/type links and the speaker ↔ session links.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "samples" / "open-event"


def build_zip(files: dict[str, Any], media: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content if isinstance(content, str) else json.dumps(content))
        for name, data in (media or {}).items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _key(record: dict[str, Any], *names: str) -> Any:
    for name in names:
        if name in record:
            return record[name]
    return None


def _sid(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("id")
    if value is None:
        return None
    text = str(value).strip()
    return str(int(text)) if text.lstrip("-").isdigit() else text


def _unique(records: list[Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for record in records or []:
        if isinstance(record, dict) and _sid(record.get("id")) is not None:
            found.setdefault(_sid(record["id"]) or "", record)
    return found


def expected(zip_bytes: bytes) -> dict[str, Any]:
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as archive:
        names = set(archive.namelist())

        def load(name: str) -> Any:
            return json.loads(archive.read(name)) if name in names else None

        event = load("event")
        sessions = _unique(load("sessions") or [])
        speakers = _unique(load("speakers") or [])
        tracks = _unique(load("tracks") or [])
        rooms = _unique(load("microlocations") or [])
        types = _unique(load("session_types") or [])
    # Entities a session embeds but whose file lacks them are created from the embedding.
    for session in sessions.values():
        for kind, table in (("track", tracks), ("microlocation", rooms)):
            ref = session.get(kind)
            if isinstance(ref, dict) and ref.get("name"):
                table.setdefault(_sid(ref) or "", ref)
        ref = _key(session, "session-type", "session_type")
        if isinstance(ref, dict) and ref.get("name"):
            types.setdefault(_sid(ref) or "", ref)
        for ref in session.get("speakers") or []:
            if isinstance(ref, dict) and ref.get("name"):
                speakers.setdefault(_sid(ref) or "", ref)

    def name_of(table: dict[str, dict[str, Any]], ref: Any) -> str | None:
        found = table.get(_sid(ref) or "")
        return found.get("name") if found else None

    links = set()
    for session in sessions.values():
        for ref in session.get("speakers") or []:
            if _sid(ref) in speakers:
                links.add((session["title"], speakers[_sid(ref) or ""]["name"]))
    for speaker in speakers.values():
        for ref in speaker.get("sessions") or []:
            if _sid(ref) in sessions:
                links.add((sessions[_sid(ref) or ""]["title"], speaker["name"]))
    return {
        "event_name": event["name"],
        "counts": {
            "sessions": len(sessions),
            "speakers": len(speakers),
            "tracks": len(tracks),
            "microlocations": len(rooms),
            "session_types": len(types),
        },
        "speaker_names": sorted(s["name"] for s in speakers.values()),
        "session_links": {
            s["title"]: (
                name_of(tracks, s.get("track")),
                name_of(rooms, s.get("microlocation")),
                name_of(types, _key(s, "session-type", "session_type")),
            )
            for s in sessions.values()
        },
        "speaker_session_links": links,
    }
