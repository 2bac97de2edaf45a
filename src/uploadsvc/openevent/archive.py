"""A strict reader of Open Event archives: everything about the zip is
checked before and while it is read (the rules: docs/api.md, "The Open
Event archive").

Plain blocking code: the import job runs it in worker threads, two at once
(one parses JSON while another copies media), so a lock serialises every use
of the zip file and of the shared byte count. Nothing
trusts the sizes a zip declares: every read counts the bytes it actually
inflates, so a zip bomb with lying headers is cut off at the limit, in
bounded memory.

The big JSON files (``sessions``, ``speakers``...) are read with
``records()``: parsed as they inflate, one array element at a time (ijson's C
parser), so memory follows the largest record, not the file. The limits a
streaming parser does not enforce itself (nesting depth, digits in a number,
bytes in one record) are checked on the raw bytes before the parser sees
them; an error names the file and the index of the record it is in.

Refused, naming the entry: names that escape the archive (``..``, absolute,
drive letters, backslashes, NUL), symlinks, duplicate names, encrypted
entries, nested archives (zip-based office documents are documents, not
archives), compression methods other than stored/deflate,
compression ratios and sizes over the limits, and *overlapping entries*
(central-directory records sharing local data, a zip-bomb technique that
CPython 3.11's zipfile does not detect).
"""

from __future__ import annotations

import codecs
import itertools
import json
import posixpath
import re
import stat
import struct
import threading
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import ijson  # type: ignore[import-untyped]
from ijson.common import JSONError  # type: ignore[import-untyped]

from uploadsvc import content_types as ct

MiB = 1024 * 1024
_READ_CHUNK = 256 * 1024
# Entries this small may have any ratio (a tiny JSON file of spaces compresses well).
_RATIO_EXEMPT_BYTES = 64 * 1024
_NESTED_SUFFIXES = (".zip", ".jar", ".7z", ".rar", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".zst")
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # zipfile's structFileHeader
# The end of central directory record, and its zip64 locator and record
# (zipfile's structEndArchive, structEndArchive64Locator, structEndArchive64).
_END_RECORD = struct.Struct("<4s4H2LH")
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_END_RECORD = struct.Struct("<4sQ2H2L4Q")
_END_RECORD_MAX_COMMENT = 0xFFFF
# What one entry may take in the central directory: its 46 fixed bytes, and
# its name, extra field and comment (real archives' are well under a KiB).
_CENTRAL_RECORD_ALLOWANCE = 46 + 1024
# The C backend explicitly: failing at import beats silently parsing ten times slower
# with the pure-Python fallback ijson would otherwise pick.
_IJSON = ijson.get_backend("yajl2_c")
# JSON numbers must fit the types they become (the streaming parser refuses the
# rest as overflow; the whole-file parser is held to the same range).
_INT_RANGE = range(-(2**63), 2**63)


@dataclass(frozen=True, slots=True)
class ArchiveLimits:
    max_compressed_bytes: int = 200 * MiB
    max_total_uncompressed_bytes: int = 1024 * MiB
    max_entries: int = 10_000
    max_ratio: int = 100
    max_json_bytes: int = 256 * MiB
    max_media_bytes: int = 50 * MiB
    max_json_depth: int = 64
    max_number_digits: int = 100
    # One record of a streamed file, or the whole ``event`` file. Real records
    # are a few KiB; the bound keeps a single pathological record from
    # costing more than a few times this much memory.
    max_record_bytes: int = 4 * MiB
    # Records in all streamed files together. An import remembers a couple of
    # hundred bytes per record (its id maps), so this bounds that memory too;
    # real events have thousands.
    max_records: int = 500_000


class ArchiveError(Exception):
    """The archive is refused; ``entry`` names the offending member when there is one."""

    def __init__(self, message: str, *, entry: str | None = None) -> None:
        super().__init__(f"{entry}: {message}" if entry else message)
        self.message = message
        self.entry = entry


def _check_end_record(fp: IO[bytes], size: int, limits: ArchiveLimits) -> None:
    """Refuse a zip whose end record declares too many entries or too large a directory."""
    tail_size = min(size, _END_RECORD.size + _END_RECORD_MAX_COMMENT)
    fp.seek(size - tail_size)
    tail = fp.read(tail_size)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < _END_RECORD.size:
        raise ArchiveError("not a readable zip archive (no end of central directory record)")
    fields = _END_RECORD.unpack_from(tail, at)
    entries, directory_bytes = fields[4], fields[5]
    locator_at = at - _ZIP64_LOCATOR.size
    if locator_at >= 0 and tail[locator_at : locator_at + 4] == b"PK\x06\x07":
        # Zip64: the real counts are in the zip64 record. Without one, the
        # 16- and 32-bit fields' "see zip64" values are over any limit anyway.
        offset = _ZIP64_LOCATOR.unpack_from(tail, locator_at)[2]
        fp.seek(offset)
        record = fp.read(_ZIP64_END_RECORD.size)
        if len(record) == _ZIP64_END_RECORD.size and record[:4] == b"PK\x06\x06":
            zip64 = _ZIP64_END_RECORD.unpack(record)
            entries, directory_bytes = zip64[7], zip64[8]
    if entries > limits.max_entries:
        raise ArchiveError(f"{entries} entries; at most {limits.max_entries} are allowed")
    if directory_bytes > limits.max_entries * _CENTRAL_RECORD_ALLOWANCE:
        raise ArchiveError(
            f"the central directory is {directory_bytes} bytes; at most "
            f"{limits.max_entries * _CENTRAL_RECORD_ALLOWANCE} are allowed"
        )


def _check_name(name: str) -> str:
    """The normalised name of an entry, or ArchiveError if it could escape the archive."""
    if not name or "\x00" in name or "\\" in name:
        raise ArchiveError("entry name is empty or holds NUL or a backslash", entry=name)
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise ArchiveError("absolute entry names are not allowed", entry=name)
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ArchiveError("entry name points outside the archive", entry=name)
    return "/".join(parts) + ("/" if name.endswith("/") else "")


class OpenEventArchive:
    def __init__(self, zip_file: zipfile.ZipFile, limits: ArchiveLimits) -> None:
        self._zip = zip_file
        self._limits = limits
        self._entries: dict[str, zipfile.ZipInfo] = {}
        self._inflated = 0
        self._records = 0
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path, limits: ArchiveLimits | None = None) -> OpenEventArchive:
        limits = limits or ArchiveLimits()
        size = path.stat().st_size
        if size > limits.max_compressed_bytes:
            raise ArchiveError(f"the archive is over {limits.max_compressed_bytes} bytes")
        # zipfile builds an object per entry of the whole central directory
        # before anything can count them: its end record is checked first.
        with path.open("rb") as fp:
            _check_end_record(fp, size, limits)
        try:
            zip_file = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            raise ArchiveError(f"not a readable zip archive ({exc})") from None
        archive = cls(zip_file, limits)
        try:
            archive._check(size)
        except BaseException:
            zip_file.close()
            raise
        return archive

    def _check(self, archive_size: int) -> None:
        limits = self._limits
        infos = self._zip.infolist()
        if len(infos) > limits.max_entries:
            raise ArchiveError(f"{len(infos)} entries; at most {limits.max_entries} are allowed")
        declared_total = 0
        for info in infos:
            name = _check_name(info.filename)
            if name in self._entries:
                raise ArchiveError("duplicate entry name", entry=info.filename)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise ArchiveError("symbolic links are not allowed", entry=info.filename)
            if info.flag_bits & 0x1:
                raise ArchiveError("encrypted entries are not allowed", entry=info.filename)
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise ArchiveError("unsupported compression method", entry=info.filename)
            if name.lower().endswith(_NESTED_SUFFIXES):
                raise ArchiveError("nested archives are not allowed", entry=info.filename)
            if info.file_size > _RATIO_EXEMPT_BYTES and (
                info.compress_size == 0 or info.file_size / info.compress_size > limits.max_ratio
            ):
                raise ArchiveError(
                    f"compression ratio over {limits.max_ratio}:1", entry=info.filename
                )
            declared_total += info.file_size
            self._entries[name] = info
        if declared_total > limits.max_total_uncompressed_bytes:
            raise ArchiveError(
                f"{declared_total} bytes uncompressed; at most "
                f"{limits.max_total_uncompressed_bytes} are allowed"
            )
        self._check_overlaps(infos, archive_size)

    def _check_overlaps(self, infos: list[zipfile.ZipInfo], archive_size: int) -> None:
        """Each entry's local header + data must lie before the next one's, and
        before the central directory: no two records may share bytes."""
        fp: IO[bytes] | None = self._zip.fp
        assert fp is not None
        central_start = self._zip.start_dir
        spans = []
        for info in sorted(infos, key=lambda i: i.header_offset):
            fp.seek(info.header_offset)
            header = fp.read(_LOCAL_HEADER.size)
            if len(header) != _LOCAL_HEADER.size or header[:4] != b"PK\x03\x04":
                raise ArchiveError("local file header is missing or damaged", entry=info.filename)
            fields = _LOCAL_HEADER.unpack(header)
            name_length, extra_length = fields[10], fields[11]
            data_start = info.header_offset + _LOCAL_HEADER.size + name_length + extra_length
            end = data_start + info.compress_size
            spans.append((info.header_offset, end, info.filename))
        previous_end, previous_name = 0, None
        for start, end, name in spans:
            if start < previous_end:
                raise ArchiveError(f"entry overlaps {previous_name!r}", entry=name)
            previous_end, previous_name = end, name
        if previous_end > min(central_start, archive_size):
            raise ArchiveError("entry data runs into the central directory", entry=previous_name)

    # --- reading -------------------------------------------------------------------

    def names(self) -> list[str]:
        return list(self._entries)

    def _count_record(self, entry: str) -> None:
        self._records += 1
        if self._records > self._limits.max_records:
            raise ArchiveError(
                f"the archive holds more than {self._limits.max_records} records", entry=entry
            )

    def _count_inflated(self, size: int, entry: str) -> None:
        self._inflated += size
        if self._inflated > self._limits.max_total_uncompressed_bytes:
            raise ArchiveError("the archive inflates beyond its limit", entry=entry)

    def _read(self, name: str, info: zipfile.ZipInfo, limit: int) -> bytes:
        """Inflate one entry whole, counting real bytes against every limit."""
        data = bytearray()
        with _EntryReader(self, name, info, limit) as reader:
            while chunk := reader.read(_READ_CHUNK):
                data.extend(chunk)
        return bytes(data)

    def _json_entry(self, name: str) -> tuple[str, zipfile.ZipInfo] | None:
        entry = name if name in self._entries else f"{name}.json"
        info = self._entries.get(entry)
        if info is None or info.is_dir():
            return None
        return entry, info

    def json(self, name: str) -> Any | None:
        """The root-level JSON file ``name`` (or ``name.json``), parsed whole; None when
        absent. For small files such as ``event``: parsing whole costs memory in
        proportion, so the file may be no longer than one record of a streamed file
        (``max_record_bytes``). The big files are read with ``records()``."""
        found = self._json_entry(name)
        if found is None:
            return None
        entry, info = found
        limit = min(self._limits.max_record_bytes, self._limits.max_json_bytes)
        raw = self._read(entry, info, limit)
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ArchiveError("is not UTF-8", entry=entry) from None
        try:
            value = json.loads(
                text,
                parse_int=self._int,
                parse_float=self._float,
                parse_constant=self._constant,
            )
        except json.JSONDecodeError as exc:
            raise ArchiveError(
                f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}", entry=entry
            ) from None
        except RecursionError:
            raise ArchiveError(
                f"JSON nested deeper than {self._limits.max_json_depth}", entry=entry
            ) from None
        except _NumberError as exc:
            raise ArchiveError(str(exc), entry=entry) from None
        if _depth(value) > self._limits.max_json_depth:
            raise ArchiveError(
                f"JSON nested deeper than {self._limits.max_json_depth}", entry=entry
            )
        return value

    def records(self, name: str) -> JsonRecords | None:
        """The elements of the root-level JSON array ``name`` (or ``name.json``), parsed
        one at a time while the entry inflates; None when the file is absent.

        A file holding ``null`` has no records; any other value that is not an array
        is refused. The same limits as ``json()`` hold; each record may be at most
        ``max_record_bytes`` long, and all files together hold at most ``max_records``.
        """
        found = self._json_entry(name)
        if found is None:
            return None
        entry, info = found
        return JsonRecords(
            entry,
            info.file_size,
            lambda: _EntryReader(self, entry, info, self._limits.max_json_bytes),
            lambda: self._count_record(entry),
            self._limits,
        )

    def _int(self, text: str) -> int:
        if len(text) > self._limits.max_number_digits:
            raise _NumberError(f"a number has more than {self._limits.max_number_digits} digits")
        value = int(text)
        if value not in _INT_RANGE:
            raise _NumberError(f"the number {text[:20]} is out of range")
        return value

    def _float(self, text: str) -> float:
        if len(text) > self._limits.max_number_digits:
            raise _NumberError(f"a number has more than {self._limits.max_number_digits} digits")
        value = float(text)
        if value in (float("inf"), float("-inf")):
            raise _NumberError(f"the number {text[:20]} is out of range")
        return value

    @staticmethod
    def _constant(text: str) -> Any:
        raise _NumberError(f"{text} is not a JSON number")

    def media(self, path: str) -> bytes | None:
        """A media file the JSON points at (``/images/x.png``); None when the archive lacks it."""
        if not path or "\x00" in path or "\\" in path:
            raise ArchiveError("media path is not a plain archive path", entry=path)
        relative = posixpath.normpath("/" + path.split("?", 1)[0]).lstrip("/")
        if ".." in path.split("/") or relative.startswith(".."):
            raise ArchiveError("media path points outside the archive", entry=path)
        info = self._entries.get(relative)
        if info is None or info.is_dir():
            return None
        data = self._read(relative, info, self._limits.max_media_bytes)
        # Slides in OOXML or ODF are zip files inside: documents, stored (and
        # scanned) as they are, never opened. Any other zip is an archive.
        if data.startswith(_ZIP_MAGIC) and not ct.is_zip_document(data):
            raise ArchiveError("nested archives are not allowed", entry=relative)
        return data

    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> OpenEventArchive:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class _NumberError(ValueError):
    pass


class _EntryReader:
    """One entry, inflated chunk by chunk; every chunk counts against the limits."""

    def __init__(
        self, archive: OpenEventArchive, name: str, info: zipfile.ZipInfo, limit: int
    ) -> None:
        self._archive = archive
        self._name = name
        self._info = info
        self._limit = limit
        self._max_ratio = archive._limits.max_ratio
        self.done = 0
        try:
            with archive._lock:
                self._stream: IO[bytes] = archive._zip.open(info)
        except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
            raise ArchiveError(f"entry cannot be read ({exc})", entry=name) from None

    def read(self, size: int) -> bytes:
        try:
            with self._archive._lock:
                chunk = self._stream.read(size)
                self._archive._count_inflated(len(chunk), self._name)
        except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
            raise ArchiveError(f"entry cannot be read ({exc})", entry=self._name) from None
        self.done += len(chunk)
        if self.done > self._limit:
            raise ArchiveError(f"entry is over {self._limit} bytes", entry=self._name)
        if (
            self.done > _RATIO_EXEMPT_BYTES
            and self.done > self._info.compress_size * self._max_ratio
        ):
            raise ArchiveError(f"compression ratio over {self._max_ratio}:1", entry=self._name)
        return chunk

    def close(self) -> None:
        with self._archive._lock:
            self._stream.close()

    def __enter__(self) -> _EntryReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _RecordError(Exception):
    """A limit broken inside a streamed file; JsonRecords adds which record."""


class JsonRecords:
    """The records of one root-level JSON array, parsed while the entry inflates.

    Iterate it once. ``count`` is the number of records read so far; ``done`` and
    ``size`` are the bytes inflated and the size the zip declares (for progress
    reports only: nothing trusts ``size``).
    """

    def __init__(
        self,
        name: str,
        size: int,
        open_entry: Callable[[], _EntryReader],
        count_record: Callable[[], None],
        limits: ArchiveLimits,
    ) -> None:
        self.name = name
        self.size = size
        self.count = 0
        self._open_entry = open_entry
        self._count_record = count_record
        self._limits = limits
        self._entry: _EntryReader | None = None

    @property
    def done(self) -> int:
        return self._entry.done if self._entry is not None else 0

    def __iter__(self) -> Iterator[Any]:
        with self._open_entry() as entry:
            self._entry = entry
            source = _GuardedJson(entry, self._limits)
            if source.first_byte() == b"[":
                yield from self._parse(source, "item")
                return
            # Not an array: parse the one value (bounded like a record) to tell a
            # valid ``null``, which means "no records", from everything else.
            for value in self._parse(source, ""):
                if value is not None:
                    raise ArchiveError("the file must hold a JSON array", entry=self.name)

    def _parse(self, source: _GuardedJson, prefix: str) -> Iterator[Any]:
        items = _IJSON.items(source, prefix, use_float=True, buf_size=_READ_CHUNK)
        try:
            for record in items:
                source.record_done()
                self._count_record()
                self.count += 1
                yield record
        except JSONError as exc:
            raise self._error(_parser_problem(exc), prefix) from None
        except _RecordError as exc:
            raise self._error(str(exc), prefix) from None

    def _error(self, problem: str, prefix: str) -> ArchiveError:
        # ijson yields every record that ends before the offending byte first, so
        # ``count`` is the index of the record that holds it.
        where = f"record {self.count}: " if prefix else ""
        return ArchiveError(where + problem, entry=self.name)


def _parser_problem(exc: Exception) -> str:
    """The first line of yajl's message (the rest quotes the input)."""
    text = exc.args[0] if exc.args else ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    lines = str(text).strip().splitlines()
    first = lines[0] if lines else "unexpected end"
    if "overflow" in first:
        return f"a number is out of range ({first})"
    return f"invalid JSON ({first})"


_JSON_WHITESPACE = b" \t\r\n"


class _GuardedJson:
    """The bytes of one JSON entry, as ijson reads them, checked before it sees them."""

    def __init__(self, entry: _EntryReader, limits: ArchiveLimits) -> None:
        self._entry = entry
        self._guard = _JsonGuard(limits.max_json_depth, limits.max_number_digits)
        # Bytes handed to ijson since it last finished a record. It reads one chunk
        # ahead, so they include at most one chunk of earlier records: past the
        # limit plus one chunk, the record being read is over the limit.
        self._max_unfinished = limits.max_record_bytes + _READ_CHUNK
        self._max_record = limits.max_record_bytes
        self._unfinished = 0
        self._ahead = b""
        self._failure: _RecordError | None = None

    def first_byte(self) -> bytes:
        """The first byte of the JSON value, past a BOM and whitespace; b"" if none."""
        first = True
        while chunk := self._entry.read(_READ_CHUNK):
            if first and chunk.startswith(codecs.BOM_UTF8):
                chunk = chunk[len(codecs.BOM_UTF8) :]
            first = False
            if chunk := chunk.lstrip(_JSON_WHITESPACE):
                self._ahead = chunk
                return chunk[:1]
        return b""

    def read(self, size: int) -> bytes:
        if size == 0:  # ijson's check that this is a binary stream
            return b""
        if self._failure is not None:
            raise self._failure
        data, self._ahead = self._ahead or self._entry.read(_READ_CHUNK), b""
        safe = self._guard.check(data)
        if safe < len(data):
            # Hand over only the bytes before the offending one: ijson yields every
            # record that ends before it, then the next read fails.
            self._failure = _RecordError(self._guard.problem)
            data = data[:safe]
            if not data:
                raise self._failure
        self._unfinished += len(data)
        if self._unfinished > self._max_unfinished:
            raise _RecordError(f"longer than {self._max_record} bytes")
        return data

    def record_done(self) -> None:
        self._unfinished = 0


@dataclass(frozen=True, slots=True)
class _ScanState:
    depth: int = 0
    in_string: bool = False
    escaped: bool = False  # the last chunk ended in a backslash inside a string
    digits: int = 0  # length of the number the last chunk ended in


_ESCAPES = re.compile(rb"\\.", re.DOTALL)
_NOT_BRACKETS = bytes(byte for byte in range(256) if byte not in b"[]{}")
_DEPTH_STEP = [1 if byte in b"[{" else -1 if byte in b"]}" else 0 for byte in range(256)]
# A translation table: number characters become "0", everything else " ".
_AS_DIGITS = bytes(0x30 if byte in b"0123456789+-.eE" else 0x20 for byte in range(256))


class _JsonGuard:
    """Nesting depth and number length of JSON text, checked on the raw bytes.

    A streaming parser would build a 30,000-deep record before anyone could
    look at it. Here each chunk is checked first, in a few passes that run in C
    (split, join, translate, accumulate) rather than a Python loop per byte:
    escapes are dropped, then strings cut out, so that brackets and digits inside
    strings do not count. Only valid JSON has to be measured exactly; for invalid
    JSON either this or the parser reports an error.
    """

    def __init__(self, max_depth: int, max_digits: int) -> None:
        self._max_depth = max_depth
        self._max_digits = max_digits
        self._too_long = b"0" * (max_digits + 1)
        self._state = _ScanState()
        self.problem = ""

    def check(self, data: bytes) -> int:
        """How many leading bytes of ``data`` stay within the limits (normally all)."""
        state, problem = self._scan(self._state, data)
        if problem is None:
            self._state = state
            return len(data)
        self.problem = problem
        # The first offending byte: every prefix longer than a failing one fails too.
        within, failing = 0, len(data)
        while failing - within > 1:
            middle = (within + failing) // 2
            if self._scan(self._state, data[:middle])[1] is None:
                within = middle
            else:
                failing = middle
        return within

    def _scan(self, state: _ScanState, data: bytes) -> tuple[_ScanState, str | None]:
        if state.escaped:
            data = data[1:]
        if b"\\" in data:
            data = _ESCAPES.sub(b"", data)
        escaped = data.endswith(b"\\")
        pieces = data.split(b'"')
        outside = b"".join(pieces[1::2] if state.in_string else pieces[0::2])
        in_string = state.in_string != (len(pieces) % 2 == 0)

        depth = deepest = state.depth
        if brackets := outside.translate(None, _NOT_BRACKETS):
            levels = list(
                itertools.accumulate(map(_DEPTH_STEP.__getitem__, brackets), initial=depth)
            )
            depth, deepest = levels[-1], max(levels)
        if deepest > self._max_depth:
            return state, f"JSON nested deeper than {self._max_depth}"

        numbers = b"0" * state.digits + outside.translate(_AS_DIGITS)
        if self._too_long in numbers:
            return state, f"a number has more than {self._max_digits} digits"
        digits = len(numbers) - len(numbers.rstrip(b"0"))
        return _ScanState(depth, in_string, escaped and in_string, digits), None


def _depth(value: Any) -> int:
    """Nesting depth of parsed JSON, without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in item)
    return deepest
