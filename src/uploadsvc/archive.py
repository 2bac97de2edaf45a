"""A strict reader of Open Event archives (SPEC §5): everything about the zip
is checked before and while it is read.

Plain blocking code: the import job runs it in a worker thread. Nothing
trusts the sizes a zip declares: every read counts the bytes it actually
inflates, so a zip bomb with lying headers is cut off at the limit, in
bounded memory.

Refused, naming the entry: names that escape the archive (``..``, absolute,
drive letters, backslashes, NUL), symlinks, duplicate names, encrypted
entries, nested archives, compression methods other than stored/deflate,
compression ratios and sizes over the limits, and *overlapping entries*
(central-directory records sharing local data, a zip-bomb technique that
CPython 3.11's zipfile does not detect).
"""

from __future__ import annotations

import json
import posixpath
import stat
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

MiB = 1024 * 1024
_READ_CHUNK = 256 * 1024
# Entries this small may have any ratio (a tiny JSON file of spaces compresses well).
_RATIO_EXEMPT_BYTES = 64 * 1024
_NESTED_SUFFIXES = (".zip", ".jar", ".7z", ".rar", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".zst")
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # zipfile's structFileHeader


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


class ArchiveError(Exception):
    """The archive is refused; ``entry`` names the offending member when there is one."""

    def __init__(self, message: str, *, entry: str | None = None) -> None:
        super().__init__(f"{entry}: {message}" if entry else message)
        self.message = message
        self.entry = entry


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

    @classmethod
    def open(cls, path: Path, limits: ArchiveLimits | None = None) -> OpenEventArchive:
        limits = limits or ArchiveLimits()
        size = path.stat().st_size
        if size > limits.max_compressed_bytes:
            raise ArchiveError(f"the archive is over {limits.max_compressed_bytes} bytes")
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

    def _read(self, name: str, info: zipfile.ZipInfo, limit: int) -> bytes:
        """Inflate one entry, counting real bytes against every limit."""
        data = bytearray()
        try:
            with self._zip.open(info) as stream:
                while chunk := stream.read(_READ_CHUNK):
                    data.extend(chunk)
                    self._inflated += len(chunk)
                    if len(data) > limit:
                        raise ArchiveError(f"entry is over {limit} bytes", entry=name)
                    if self._inflated > self._limits.max_total_uncompressed_bytes:
                        raise ArchiveError("the archive inflates beyond its limit", entry=name)
                    if (
                        len(data) > _RATIO_EXEMPT_BYTES
                        and len(data) > info.compress_size * self._limits.max_ratio
                    ):
                        raise ArchiveError(
                            f"compression ratio over {self._limits.max_ratio}:1", entry=name
                        )
        except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
            raise ArchiveError(f"entry cannot be read ({exc})", entry=name) from None
        return bytes(data)

    def json(self, name: str) -> Any | None:
        """The root-level JSON file ``name`` (or ``name.json``); None when absent."""
        entry = name if name in self._entries else f"{name}.json"
        info = self._entries.get(entry)
        if info is None or info.is_dir():
            return None
        raw = self._read(entry, info, self._limits.max_json_bytes)
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

    def _int(self, text: str) -> int:
        if len(text) > self._limits.max_number_digits:
            raise _NumberError(f"a number has more than {self._limits.max_number_digits} digits")
        return int(text)

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
        if data.startswith(_ZIP_MAGIC):
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
