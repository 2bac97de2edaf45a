"""Map an Open Event archive's JSON onto our tables: strict about shape
where it must be, lenient about the data (docs/api.md, "The Open Event
archive").

Pure, synchronous code: the worker runs it in a thread. ``ImportStream``
reads the archive file by file and record by record, and yields
``RowBatch``es: plain row dicts with our own UUIDs (as text, see ``RowId``)
and the references already resolved, ready for bulk inserts in ``TABLES``
order, plus the media those rows point at. Between records it keeps only what resolving references
needs: for each kind, a map from the archive's ids to ours, and the
speaker → session links that the speakers file names until those sessions
are read. So memory follows the number of records (a few hundred bytes
each), never the size of the JSON.

Both dialects are read: kebab-case (``starts-at``, ``logo-url``) and
snake_case (``start_time``, ``logo``). Only the fields listed here are read;
nothing in the JSON can set ownership, ids or the state of our rows.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from uploadsvc import content_types as ct
from uploadsvc.models.events import Progress

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

# The records sessions refer to (``_entity`` makes them), in the order their files are read.
ENTITY_KINDS = ("tracks", "microlocations", "session_types", "speakers", "sponsors")
# Tables in an order the foreign keys accept: each batch is written in this order.
TABLES = ("events", "social_links", *ENTITY_KINDS, "sessions", "session_speakers", "custom_forms")
# What ``counts`` reports, by the name the API uses.
COUNTED = {
    "sessions": "sessions",
    "speakers": "speakers",
    "tracks": "tracks",
    "microlocations": "microlocations",
    "session_types": "session_types",
    "sponsors": "sponsors",
    "social_links": "social_links",
    "custom_forms": "forms",
}
# Rows per batch: large enough for COPY to pay off, small enough to keep a
# batch (and the one being parsed behind it) to a few MiB.
BATCH_ROWS = 1000
MAX_WARNINGS = 500
# How an entity that a session embeds without an id is known while importing.
_EMBEDDED = "embedded:"


# Our ids in the rows: UUIDs in their canonical text form. A dict that holds only
# strings, numbers, datetimes and None is never tracked by Python's cyclic garbage
# collector; one holding uuid.UUID objects is. With UUID objects, the rows and id
# maps of a 5,000-session import (some 40,000 objects) lived long enough to be
# promoted, which set off a full collection of the worker's whole heap in every
# import: 130 ms of a 0.5 s job. asyncpg encodes the text in C (faster than
# UUID.bytes); the SQLAlchemy path (SQLite) turns it back into uuid.UUID.
RowId = str


def new_id() -> RowId:
    return str(uuid.uuid4())


class ImportDataError(Exception):
    """The archive's data cannot be imported at all (not just a messy record)."""

    def __init__(self, message: str, *, file: str | None = None, record_id: str | None = None):
        super().__init__(message)
        self.message = message
        self.file = file
        self.record_id = record_id


class Records(Protocol):
    """The records of one JSON array file, read as they are parsed
    (``uploadsvc.archive.JsonRecords``)."""

    @property
    def count(self) -> int: ...  # records read so far

    @property
    def done(self) -> int: ...  # bytes read so far

    @property
    def size(self) -> int: ...  # bytes in the file, as the archive declares it

    def __iter__(self) -> Iterator[Any]: ...


class JsonSource(Protocol):
    """Where the JSON comes from (``uploadsvc.archive.OpenEventArchive``)."""

    def json(self, name: str) -> Any: ...  # a small file, whole; None when absent

    def records(self, name: str) -> Records | None: ...  # None when absent


@dataclass(frozen=True, slots=True)
class MediaRef:
    """A file inside the archive that becomes our object at ``key``."""

    table: str  # "events", "speakers", "sponsors", "sessions"
    row_id: RowId
    column: str  # the *_key column that gets ``key`` once stored
    path: str
    key: str
    kind: str  # a MEDIA_TYPES key
    label: str  # for warnings: "speakers id 12 photo"
    file: str  # for errors: the JSON file and the record's archive id
    record_id: str | None


@dataclass
class RowBatch:
    """Rows to insert together, by table (write them in ``TABLES`` order), and the
    media of the archive that those rows point at."""

    progress: Progress
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    media: list[MediaRef] = field(default_factory=list)
    size: int = 0  # rows in all tables; asked after every record, so kept, not summed

    def add(self, table: str, row: dict[str, Any]) -> None:
        rows = self.rows.get(table)
        if rows is None:
            self.rows[table] = rows = []
        rows.append(row)
        self.size += 1

    def __len__(self) -> int:
        return self.size


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


# The width of every ``source_id`` column.
SOURCE_ID_CHARS = 64


def source_id(value: Any) -> str | None:
    """Archive ids are numbers or numeric strings; one canonical text for both.

    None when there is no usable id: none given, digits that are not ASCII
    (``"²"``, which ``int()`` refuses), or a number too long for the column
    (it cannot be cut short without merging different ids).
    """
    kind = type(value)
    if kind is int and value.bit_length() < 64:  # the common case, and already canonical
        return str(value)
    if value is None or kind is bool or kind is dict or kind is list:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        # Over 2**256 a number has more than SOURCE_ID_CHARS digits: refused
        # without building its text (which costs quadratic time when huge).
        if value.bit_length() > SOURCE_ID_CHARS * 4:
            return None
        text = str(value)
    else:
        text = str(value).strip()
    digits = text[1:] if text.startswith("-") else text
    if digits.isdigit():
        if not digits.isascii():
            return None
        # Canonical without int(): no leading zeros, no "-0".
        canonical = digits.lstrip("0") or "0"
        if text.startswith("-") and canonical != "0":
            canonical = "-" + canonical
        return canonical if len(canonical) <= SOURCE_ID_CHARS else None
    return text[:SOURCE_ID_CHARS] or None


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


class ImportStream:
    """One archive's rows, batch by batch; ``batches()`` runs once.

    When it is done, ``event_name``, ``counts`` and ``warnings`` describe the
    import. References are resolved as docs/api.md ("The Open Event
    archive") says: tracks, rooms, session types, speakers and sponsors are
    read before the sessions that point at them; a session embedding an
    entity its file lacks creates it once; anything else unresolvable
    becomes null with a warning. Speaker ↔ session links are the union of
    both sides.
    """

    def __init__(
        self,
        source: JsonSource,
        *,
        event_id: uuid.UUID,
        owner_id: str,
        import_job_id: uuid.UUID,
        batch_rows: int = BATCH_ROWS,
    ) -> None:
        self.event_id = event_id
        self.owner_id = owner_id
        self.import_job_id = import_job_id
        self._event_id: RowId = str(event_id)
        self.event_name = ""
        self.warnings: list[str] = []
        self.counts = dict.fromkeys(COUNTED.values(), 0)
        self._source = source
        self._batch_rows = batch_rows
        # Per kind: archive id -> our id. Also how duplicate ids are recognised.
        self._ids: dict[str, dict[str, RowId]] = {kind: {} for kind in (*ENTITY_KINDS, "sessions")}
        # Archive session id -> (archive id, our id) of each speaker whose
        # "sessions" names it, until that session is read. One list per
        # session, appended to: linking N speakers to one session is linear.
        # The pairs are tuples of text, which the garbage collector stops
        # tracking (see RowId).
        self._speaker_side: dict[str, list[tuple[str, RowId]]] = {}
        self._file: tuple[str, Records | None] = ("event", None)
        self._batch = RowBatch(self._progress())
        self._makers: dict[str, Callable[[str, dict[str, Any], dict[str, Any]], None]] = {
            "tracks": self._track,
            "microlocations": self._microlocation,
            "session_types": self._session_type,
            "speakers": self._speaker,
            "sponsors": self._sponsor,
        }

    def warn(self, message: str) -> None:
        if len(self.warnings) < MAX_WARNINGS:
            self.warnings.append(message)
        elif len(self.warnings) == MAX_WARNINGS:
            self.warnings.append("more warnings were left out")

    def batches(self) -> Generator[RowBatch, None, None]:
        self._read_event()
        for kind in ENTITY_KINDS:
            yield from self._read_file(kind, self._entity)
        yield from self._read_file("sessions", self._session)
        for session, speakers in self._speaker_side.items():
            for speaker, _ in speakers:
                self.warn(f"speakers id {speaker}: session {session} not found; link dropped")
        self._speaker_side.clear()
        yield from self._read_forms()
        yield self._take()

    # --- reading ----------------------------------------------------------------------

    def _progress(self) -> Progress:
        stage, records = self._file
        if records is None:
            return Progress(stage, 0, 0, f"Importing {stage}")
        # ``done`` counts inflated bytes, ``size`` is what the zip declares: a
        # lying zip must not report more than all of its file.
        return Progress(
            stage,
            min(records.done, records.size),
            records.size,
            f"Importing {stage} ({records.count} read)",
        )

    @property
    def progress(self) -> Progress:
        """Where the stream is now: the file being read (an error names this stage)."""
        return self._progress()

    def _take(self) -> RowBatch:
        progress = self._progress()
        batch, self._batch = self._batch, RowBatch(progress)
        batch.progress = progress
        return batch

    def _open(self, name: str) -> Records | None:
        records = self._source.records(name)
        self._file = (name, records)
        return records

    def _read_event(self) -> None:
        event = self._source.json("event")
        if event is None:
            raise ImportDataError("The archive has no 'event' file.", file="event")
        if not isinstance(event, dict):
            raise ImportDataError("'event' must be a JSON object.", file="event")
        self._event(event)

    def _read_file(
        self, kind: str, handle: Callable[[str, str, dict[str, Any]], object]
    ) -> Iterator[RowBatch]:
        """Each usable record of one file: skips null ids and duplicates, with warnings."""
        records = self._open(kind)
        if records is None:
            return
        seen = self._ids[kind]
        for index, record in enumerate(records):
            if not isinstance(record, dict):
                self.warn(f"{kind} record {index} is not an object; skipped")
                continue
            sid = source_id(record.get("id"))
            if sid is None:
                what = "no id" if record.get("id") is None else "an unusable id"
                self.warn(f"{kind} record {index} has {what}; skipped")
                continue
            if sid in seen:
                self.warn(f"{kind} id {sid} appears twice; the first record was kept")
                continue
            handle(kind, sid, record)
            if self._batch.size >= self._batch_rows:
                yield self._take()

    def _read_forms(self) -> Iterator[RowBatch]:
        records = self._open("forms")
        for position, form in enumerate(records or ()):
            if not isinstance(form, dict):
                self.warn(f"forms record {position} is not an object; skipped")
                continue
            self._add(
                "custom_forms",
                {
                    "id": new_id(),
                    "event_id": self._event_id,
                    "source_id": source_id(form.get("id")),
                    "data": {k: v for k, v in form.items() if k != "id"},
                },
            )
            if self._batch.size >= self._batch_rows:
                yield self._take()

    def _add(self, table: str, row: dict[str, Any]) -> None:
        self._batch.add(table, row)
        if table in COUNTED:
            self.counts[COUNTED[table]] += 1

    def _name(self, record: dict[str, Any], field: str, limit: int, label: str) -> str:
        """A name or title as the archive has it. None is made up for a record
        that has none: it stays empty (the columns are NOT NULL), with a warning."""
        name = _text(record.get(field), limit)
        if not name:
            self.warn(f"{label} has no {field}; left empty")
            return ""
        return name

    def _entity(self, kind: str, sid: str, record: dict[str, Any]) -> RowId:
        """A track, room, session type, speaker or sponsor, from its file or embedded."""
        # Embedded without an id: the key only finds it again; it is no archive id.
        row = self._row(None if sid.startswith(_EMBEDDED) else sid)
        row["name"] = self._name(record, "name", 1024, f"{kind} id {sid}")
        self._makers[kind](sid, record, row)
        entity_id: RowId = row["id"]
        self._ids[kind][sid] = entity_id
        self._add(kind, row)
        if kind == "speakers":
            self._speaker_sessions(sid, entity_id, record)
        return entity_id

    def _speaker_sessions(self, sid: str, speaker_id: RowId, record: dict[str, Any]) -> None:
        """The speaker's side of the speaker ↔ session links."""
        speaker = (sid, speaker_id)
        named = {
            ref_id
            for ref in _as_list(record.get("sessions"))
            if (ref_id := source_id(ref.get("id") if isinstance(ref, dict) else ref)) is not None
        }
        for ref_id in named:
            session_id = self._ids["sessions"].get(ref_id)
            if session_id is None:
                # Not read yet (always so for the speakers file, which comes
                # first): the session adds the link when it is read.
                self._speaker_side.setdefault(ref_id, []).append(speaker)
            else:
                # A speaker embedded in a later session names an earlier one.
                # That session could not link to a speaker that did not exist
                # yet, so this link is new.
                self._add("session_speakers", {"session_id": session_id, "speaker_id": speaker_id})

    def _media(
        self,
        table: str,
        row: dict[str, Any],
        name: str,
        value: Any,
        kind: str,
        where: tuple[str, str, str | None],
    ) -> None:
        """A media field: an external link is kept, an archive path is copied later
        to the Open Event key: ``events/{event}/logo``, ``events/{event}/{table}/{row}/{name}``.
        """
        if value is None:  # most records have no media: nothing to build for them
            return
        text = _text(value)
        if not text:
            return
        if _is_link(text):
            row[f"{name}_url"] = text[:2048]
            return
        if table == "events":
            key = f"events/{self._event_id}/{name}"
        else:
            key = f"events/{self._event_id}/{table}/{row['id']}/{name}"
        label, file, record_id = where
        self._batch.media.append(
            MediaRef(
                table, row["id"], f"{name}_key", text, key, kind, f"{label} {name}", file, record_id
            )
        )

    # --- one function per kind of record --------------------------------------------

    def _event(self, record: dict[str, Any]) -> None:
        name = self._name(record, "name", 1024, "event")
        self.event_name = name
        sid = source_id(record.get("id"))
        row: dict[str, Any] = {
            "id": self._event_id,
            "owner_id": self.owner_id,
            "import_job_id": str(self.import_job_id),
            "source_id": sid,
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
            ("event", "event", sid),
        )
        self._add("events", row)
        for index, link in enumerate(_as_list(_pick(record, "social_links"))):
            if not isinstance(link, dict) or not _text(link.get("link")):
                self.warn(f"event social link {index} has no link; skipped")
                continue
            self._add(
                "social_links",
                {
                    "id": new_id(),
                    "event_id": self._event_id,
                    "name": _text(link.get("name"), 255) or "",
                    "link": _text(link.get("link"), 2048),
                },
            )

    def _row(self, sid: str | None) -> dict[str, Any]:
        """The columns every row of the programme starts with: its id, its event, the archive id."""
        return {"id": new_id(), "event_id": self._event_id, "source_id": sid}

    # The makers add a record's own columns to the row ``_entity`` started.

    def _track(self, sid: str, record: dict[str, Any], row: dict[str, Any]) -> None:
        row["color"] = _text(record.get("color"), 32)
        row["description"] = _text(record.get("description"))

    def _microlocation(self, sid: str, record: dict[str, Any], row: dict[str, Any]) -> None:
        row |= {
            "floor": _text(record.get("floor"), 64),
            "room": _text(record.get("room"), 255),
            "latitude": _number(record.get("latitude")),
            "longitude": _number(record.get("longitude")),
        }

    def _session_type(self, sid: str, record: dict[str, Any], row: dict[str, Any]) -> None:
        row["length"] = _text(record.get("length"), 32)

    def _speaker(self, sid: str, record: dict[str, Any], row: dict[str, Any]) -> None:
        row |= {
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
            (f"speakers id {sid}", "speakers", sid),
        )

    def _sponsor(self, sid: str, record: dict[str, Any], row: dict[str, Any]) -> None:
        row |= {
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
            (f"sponsors id {sid}", "sponsors", sid),
        )

    def _reference(self, kind: str, value: Any, where: str) -> RowId | None:
        """A referenced entity: by id, or created once from an embedded object."""
        if value is None:
            return None
        sid = source_id(value.get("id") if isinstance(value, dict) else value)
        known = self._ids[kind]
        if sid is not None and sid in known:
            return known[sid]
        if isinstance(value, dict) and _text(value.get("name")):
            if sid is None:
                sid = f"{_EMBEDDED}{_text(value.get('name'), 50)}"
                if sid in known:
                    return known[sid]
            return self._entity(kind, sid, value)
        self.warn(f"{where}: {kind[:-1].replace('_', ' ')} {sid} not found; left empty")
        return None

    def _session(self, kind: str, sid: str, record: dict[str, Any]) -> None:
        where = f"sessions id {sid}"
        row = self._row(sid) | {
            "title": self._name(record, "title", 2048, where),
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
        for media in ("audio", "video", "slides"):
            row[f"{media}_url"] = None
            row[f"{media}_key"] = None
            self._media(
                "sessions",
                row,
                media,
                _pick(record, media),
                media,
                (where, "sessions", sid),
            )
        self._add("sessions", row)
        # The union of both sides. Speakers this session embeds are created
        # first; when they name this session, they land in _speaker_side too.
        speakers = {
            speaker
            for ref in _as_list(record.get("speakers"))
            if (speaker := self._reference("speakers", ref, where)) is not None
        }
        speakers.update(speaker for _, speaker in self._speaker_side.pop(sid, ()))
        for speaker in speakers:
            self._add("session_speakers", {"session_id": row["id"], "speaker_id": speaker})
        self._ids["sessions"][sid] = row["id"]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
