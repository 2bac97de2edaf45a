"""Map an Open Event archive's JSON onto our tables (SPEC §5): strict about
shape where it must be, lenient about the data.

Pure, synchronous code: the worker runs ``build_plan`` in a thread. The
result is an ``ImportPlan`` of plain row dicts with our own UUIDs and the
references already resolved, ready for bulk inserts, plus the media to copy
from the archive and the warnings to report.

Both dialects are read: kebab-case (``starts-at``, ``logo-url``) and
snake_case (``start_time``, ``logo``). Only the fields listed here are read;
nothing in the JSON can set ownership, ids or the state of our rows.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from uploadsvc import content_types as ct

# Which names each field goes by in the two dialects (first match wins).
_F: dict[str, tuple[str, ...]] = {
    "starts_at": ("starts-at", "start_time", "starts_at", "start-time"),
    "ends_at": ("ends-at", "end_time", "ends_at", "end-time"),
    "logo": ("logo-url", "logo", "logo_url"),
    "photo": ("photo-url", "photo", "photo_url"),
    "audio": ("audio-url", "audio", "audio_url"),
    "video": ("video-url", "video", "video_url"),
    "slides": ("slides-url", "slides", "slides_url"),
    "session_type": ("session-type", "session_type"),
    "short_abstract": ("short-abstract", "short_abstract"),
    "long_abstract": ("long-abstract", "long_abstract"),
    "short_biography": ("short-biography", "short_biography"),
    "long_biography": ("long-biography", "long_biography"),
    "location_name": ("location-name", "location_name"),
    "social_links": ("social-links", "social_links"),
    "sponsor_type": ("type", "sponsor-type", "sponsor_type"),
}

MEDIA_TYPES: dict[str, frozenset[str]] = {
    "image": ct.IMAGE_TYPES,
    "audio": ct.AUDIO_TYPES,
    "video": ct.VIDEO_TYPES,
    "slides": frozenset({"application/pdf"}) | ct.OFFICE_TYPES,
}


class ImportDataError(Exception):
    """The archive's data cannot be imported at all (not just a messy record)."""

    def __init__(self, message: str, *, file: str | None = None, record_id: str | None = None):
        super().__init__(message)
        self.message = message
        self.file = file
        self.record_id = record_id


@dataclass(frozen=True, slots=True)
class MediaRef:
    """A file inside the archive that becomes our object at ``key``."""

    table: str  # "events", "speakers", "sponsors", "sessions"
    row_id: uuid.UUID
    column: str  # the *_key column that gets ``key`` once stored
    path: str
    key: str
    kind: str  # a MEDIA_TYPES key
    label: str  # for warnings: "speakers id 12 photo"


@dataclass
class ImportPlan:
    event: dict[str, Any]
    tracks: list[dict[str, Any]] = field(default_factory=list)
    microlocations: list[dict[str, Any]] = field(default_factory=list)
    session_types: list[dict[str, Any]] = field(default_factory=list)
    speakers: list[dict[str, Any]] = field(default_factory=list)
    sessions: list[dict[str, Any]] = field(default_factory=list)
    session_speakers: list[dict[str, Any]] = field(default_factory=list)
    sponsors: list[dict[str, Any]] = field(default_factory=list)
    social_links: list[dict[str, Any]] = field(default_factory=list)
    forms: list[dict[str, Any]] = field(default_factory=list)
    media: list[MediaRef] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            "sessions": len(self.sessions),
            "speakers": len(self.speakers),
            "tracks": len(self.tracks),
            "microlocations": len(self.microlocations),
            "session_types": len(self.session_types),
            "sponsors": len(self.sponsors),
            "social_links": len(self.social_links),
            "forms": len(self.forms),
        }


# A reader of one root JSON file by name ("event", "sessions"...); None if absent.
JsonReader = Callable[[str], Any]

MAX_WARNINGS = 500


def build_plan(read_json: JsonReader, *, event_id: uuid.UUID, owner_id: str) -> ImportPlan:
    builder = _Builder(event_id, owner_id)
    return builder.build(read_json)


def _pick(record: dict[str, Any], name: str) -> Any:
    for key in _F.get(name, (name, name.replace("_", "-"))):
        if key in record:
            return record[key]
    return None


def _text(value: Any, limit: int | None = None) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    text = value if isinstance(value, str) else str(value)
    text = text.replace("\x00", "")
    return text[:limit] if limit is not None else text


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and abs(number) != float("inf") else None


def source_id(value: Any) -> str | None:
    """Archive ids are numbers or numeric strings; one canonical text for both."""
    if value is None or isinstance(value, bool | dict | list):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        return str(int(text))
    return text[:64] or None


def _when(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.strip().replace(" ", "T", 1))
    except ValueError:
        return None
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed.astimezone(dt.UTC)


def _is_link(value: str) -> bool:
    return value.lower().startswith(("http://", "https://", "//"))


class _Builder:
    def __init__(self, event_id: uuid.UUID, owner_id: str) -> None:
        self.event_id = event_id
        self.owner_id = owner_id
        self.warnings: list[str] = []
        # (kind, source id) -> our id
        self.ids: dict[tuple[str, str], uuid.UUID] = {}
        self.plan: ImportPlan

    def warn(self, message: str) -> None:
        if len(self.warnings) < MAX_WARNINGS:
            self.warnings.append(message)
        elif len(self.warnings) == MAX_WARNINGS:
            self.warnings.append("more warnings were left out")

    def build(self, read_json: JsonReader) -> ImportPlan:
        event = read_json("event")
        if event is None:
            raise ImportDataError("The archive has no 'event' file.", file="event")
        if not isinstance(event, dict):
            raise ImportDataError("'event' must be a JSON object.", file="event")
        self.plan = ImportPlan(event={})
        self.plan.event = self._event(event)
        lists = {name: self._list(read_json, name) for name in _LIST_FILES}
        self._simple("tracks", lists["tracks"], self._track)
        self._simple("microlocations", lists["microlocations"], self._microlocation)
        self._simple("session_types", lists["session_types"], self._session_type)
        self._simple("speakers", lists["speakers"], self._speaker)
        self._simple("sponsors", lists["sponsors"], self._sponsor)
        links: set[tuple[uuid.UUID, uuid.UUID]] = set()
        sessions_seen: dict[str, uuid.UUID] = {}
        for sid, record in self._records("sessions", lists["sessions"]):
            row = self._session(sid, record)
            sessions_seen[sid] = row["id"]
            links.update((row["id"], speaker) for speaker in self._session_speakers(sid, record))
        # The speakers' side of the links: the union with the sessions' side.
        for speaker_source, speaker_record in self._speaker_records:
            speaker_id = self.ids[("speakers", speaker_source)]
            for ref in _as_list(speaker_record.get("sessions")):
                ref_id = source_id(ref.get("id") if isinstance(ref, dict) else ref)
                if ref_id is None:
                    continue
                session = sessions_seen.get(ref_id)
                if session is None:
                    self.warn(
                        f"speakers id {speaker_source}: session {ref_id} not found; link dropped"
                    )
                    continue
                links.add((session, speaker_id))
        self.plan.session_speakers = [
            {"session_id": session, "speaker_id": speaker} for session, speaker in sorted(links)
        ]
        for position, form in enumerate(lists["forms"]):
            if isinstance(form, dict):
                data = {k: v for k, v in form.items() if k != "id"}
                self.plan.forms.append(
                    {
                        "id": uuid.uuid4(),
                        "event_id": self.event_id,
                        "source_id": source_id(form.get("id")),
                        "data": data,
                    }
                )
            else:
                self.warn(f"forms record {position} is not an object; skipped")
        self.plan.warnings = self.warnings
        return self.plan

    def _list(self, read_json: JsonReader, name: str) -> list[Any]:
        data = read_json(name)
        if data is None:
            return []
        if not isinstance(data, list):
            raise ImportDataError(f"'{name}' must be a JSON array.", file=name)
        return data

    def _records(self, kind: str, items: Iterable[Any]) -> Iterable[tuple[str, dict[str, Any]]]:
        """(source id, record) of each usable record: skips null ids and duplicates."""
        seen: set[str] = set()
        for index, record in enumerate(items):
            if not isinstance(record, dict):
                self.warn(f"{kind} record {index} is not an object; skipped")
                continue
            sid = source_id(record.get("id"))
            if sid is None:
                self.warn(f"{kind} record {index} has no id; skipped")
                continue
            if sid in seen:
                self.warn(f"{kind} id {sid} appears twice; the first record was kept")
                continue
            seen.add(sid)
            yield sid, record

    def _simple(
        self,
        kind: str,
        items: list[Any],
        make: Callable[[str, dict[str, Any]], dict[str, Any] | None],
    ) -> None:
        rows: list[dict[str, Any]] = getattr(self.plan, kind)
        if kind == "speakers":
            self._speaker_records: list[tuple[str, dict[str, Any]]] = []
        for sid, record in self._records(kind, items):
            if (kind, sid) in self.ids:
                continue
            row = make(sid, record)
            if row is None:
                continue
            self.ids[(kind, sid)] = row["id"]
            rows.append(row)
            if kind == "speakers":
                self._speaker_records.append((sid, record))

    def _media(
        self,
        table: str,
        row: dict[str, Any],
        name: str,
        value: Any,
        kind: str,
        key: str,
        label: str,
    ) -> None:
        """A media field: an external link is kept, an archive path is copied later."""
        text = _text(value)
        if not text:
            return
        if _is_link(text):
            row[f"{name}_url"] = text[:2048]
            return
        self.plan.media.append(
            MediaRef(table, row["id"], f"{name}_key", text, key, kind, f"{label} {name}")
        )

    # --- one function per kind of record --------------------------------------------

    def _event(self, record: dict[str, Any]) -> dict[str, Any]:
        name = _text(record.get("name"), 1024)
        if not name:
            raise ImportDataError("The event has no name.", file="event")
        row: dict[str, Any] = {
            "id": self.event_id,
            "owner_id": self.owner_id,
            "source_id": source_id(record.get("id")),
            "name": name,
            "description": _text(record.get("description")),
            "starts_at": _when(_pick(record, "starts_at")),
            "ends_at": _when(_pick(record, "ends_at")),
            "timezone": _text(record.get("timezone"), 64),
            "location_name": _text(_pick(record, "location_name"), 1024),
            "email": _text(record.get("email"), 255),
            "logo_url": None,
            "logo_key": None,
        }
        self._media(
            "events",
            row,
            "logo",
            _pick(record, "logo"),
            "image",
            f"events/{self.event_id}/logo",
            "event",
        )
        self._social_links(_pick(record, "social_links"))
        return row

    def _social_links(self, links: Any) -> None:
        for index, link in enumerate(_as_list(links)):
            if not isinstance(link, dict) or not _text(link.get("link")):
                self.warn(f"event social link {index} has no link; skipped")
                continue
            self.plan.social_links.append(
                {
                    "id": uuid.uuid4(),
                    "event_id": self.event_id,
                    "name": _text(link.get("name"), 255) or "",
                    "link": _text(link.get("link"), 2048),
                }
            )

    def _track(self, sid: str, record: dict[str, Any]) -> dict[str, Any] | None:
        return {
            "id": uuid.uuid4(),
            "event_id": self.event_id,
            "source_id": sid,
            "name": _text(record.get("name"), 1024) or f"Track {sid}",
            "color": _text(record.get("color"), 32),
            "description": _text(record.get("description")),
        }

    def _microlocation(self, sid: str, record: dict[str, Any]) -> dict[str, Any] | None:
        return {
            "id": uuid.uuid4(),
            "event_id": self.event_id,
            "source_id": sid,
            "name": _text(record.get("name"), 1024) or f"Room {sid}",
            "floor": _text(record.get("floor"), 64),
            "room": _text(record.get("room"), 255),
            "latitude": _number(record.get("latitude")),
            "longitude": _number(record.get("longitude")),
        }

    def _session_type(self, sid: str, record: dict[str, Any]) -> dict[str, Any] | None:
        return {
            "id": uuid.uuid4(),
            "event_id": self.event_id,
            "source_id": sid,
            "name": _text(record.get("name"), 1024) or f"Session type {sid}",
            "length": _text(record.get("length"), 32),
        }

    def _speaker(self, sid: str, record: dict[str, Any]) -> dict[str, Any] | None:
        row: dict[str, Any] = {
            "id": uuid.uuid4(),
            "event_id": self.event_id,
            "source_id": sid,
            "name": _text(record.get("name"), 1024) or f"Speaker {sid}",
            "email": _text(record.get("email"), 255),
            "organisation": _text(record.get("organisation"), 1024),
            "position": _text(record.get("position"), 1024),
            "country": _text(record.get("country"), 255),
            "short_biography": _text(_pick(record, "short_biography")),
            "long_biography": _text(_pick(record, "long_biography")),
            "website": _text(record.get("website"), 2048),
            "twitter": _text(record.get("twitter"), 2048),
            "photo_url": None,
            "photo_key": None,
        }
        self._media(
            "speakers",
            row,
            "photo",
            _pick(record, "photo"),
            "image",
            f"events/{self.event_id}/speakers/{row['id']}/photo",
            f"speakers id {sid}",
        )
        return row

    def _sponsor(self, sid: str, record: dict[str, Any]) -> dict[str, Any] | None:
        row: dict[str, Any] = {
            "id": uuid.uuid4(),
            "event_id": self.event_id,
            "source_id": sid,
            "name": _text(record.get("name"), 1024) or f"Sponsor {sid}",
            "url": _text(record.get("url"), 2048),
            "level": _text(record.get("level"), 64),
            "sponsor_type": _text(_pick(record, "sponsor_type"), 255),
            "description": _text(record.get("description")),
            "logo_url": None,
            "logo_key": None,
        }
        self._media(
            "sponsors",
            row,
            "logo",
            _pick(record, "logo"),
            "image",
            f"events/{self.event_id}/sponsors/{row['id']}/logo",
            f"sponsors id {sid}",
        )
        return row

    def _reference(self, kind: str, value: Any, where: str) -> uuid.UUID | None:
        """A referenced entity: by id, or created once from an embedded object."""
        if value is None:
            return None
        sid = source_id(value.get("id") if isinstance(value, dict) else value)
        if sid is not None and (kind, sid) in self.ids:
            return self.ids[(kind, sid)]
        if isinstance(value, dict) and _text(value.get("name")):
            if sid is None:
                sid = f"embedded:{_text(value.get('name'), 50)}"
                if (kind, sid) in self.ids:
                    return self.ids[(kind, sid)]
            make = {
                "tracks": self._track,
                "microlocations": self._microlocation,
                "session_types": self._session_type,
                "speakers": self._speaker,
            }[kind]
            row = make(sid, value)
            assert row is not None
            new_id: uuid.UUID = row["id"]
            self.ids[(kind, sid)] = new_id
            getattr(self.plan, kind).append(row)
            if kind == "speakers":
                self._speaker_records.append((sid, value))
            return new_id
        self.warn(f"{where}: {kind[:-1].replace('_', ' ')} {sid} not found; left empty")
        return None

    def _session(self, sid: str, record: dict[str, Any]) -> dict[str, Any]:
        where = f"sessions id {sid}"
        row: dict[str, Any] = {
            "id": uuid.uuid4(),
            "event_id": self.event_id,
            "source_id": sid,
            "title": _text(record.get("title"), 2048) or f"Session {sid}",
            "subtitle": _text(record.get("subtitle"), 2048),
            "short_abstract": _text(_pick(record, "short_abstract")),
            "long_abstract": _text(_pick(record, "long_abstract")),
            "starts_at": _when(_pick(record, "starts_at")),
            "ends_at": _when(_pick(record, "ends_at")),
            "state": _text(record.get("state"), 64),
            "language": _text(record.get("language"), 64),
            "track_id": self._reference("tracks", record.get("track"), where),
            "microlocation_id": self._reference(
                "microlocations", record.get("microlocation"), where
            ),
            "session_type_id": self._reference(
                "session_types", _pick(record, "session_type"), where
            ),
        }
        for kind in ("audio", "video", "slides"):
            row[f"{kind}_url"] = None
            row[f"{kind}_key"] = None
            self._media(
                "sessions",
                row,
                kind,
                _pick(record, kind),
                kind,
                f"events/{self.event_id}/sessions/{row['id']}/{kind}",
                where,
            )
        self.plan.sessions.append(row)
        return row

    def _session_speakers(self, sid: str, record: dict[str, Any]) -> list[uuid.UUID]:
        where = f"sessions id {sid}"
        found = []
        for ref in _as_list(record.get("speakers")):
            speaker = self._reference("speakers", ref, where)
            if speaker is not None:
                found.append(speaker)
        return found


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


_LIST_FILES = (
    "tracks",
    "microlocations",
    "session_types",
    "speakers",
    "sponsors",
    "sessions",
    "forms",
)
