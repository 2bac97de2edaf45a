"""An import's cost stays bounded by its input: linear linking, a zip refused from its end record.

Linking N speakers to one session once rebuilt a tuple per speaker (O(N²));
a zip's whole central directory was parsed before its entry count was
checked. Hostile ids (non-ASCII digits, numbers longer than the
``source_id`` column) become warnings, never a failed import
(docs/api.md, "The Open Event archive").
"""

from __future__ import annotations

import io
import struct
import time
import tracemalloc
import zipfile
import zlib
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Api
from tests.openevent_archives import build_zip
from tests.support.linking import linking_seconds
from tests.test_imports import import_zip
from uploadsvc.openevent.archive import ArchiveError, ArchiveLimits, OpenEventArchive
from uploadsvc.openevent.mapping import source_id

MiB = 1024 * 1024
SPEAKERS = 50_000
# Time in the linking step alone (not in making the speakers' rows): linear
# takes a fraction of this even on a loaded machine; quadratic, several times it.
LINKING_SECONDS = 2.5
# The zip bomb of a central directory: a million empty entries (90 MB).
EMPTY_ENTRIES = 1_000_000
ZIP_REFUSAL_SECONDS = 1.0
ZIP_PEAK_BYTES = 8 * MiB


def test_linking_many_speakers_to_one_session_is_linear() -> None:
    links, linking = linking_seconds(SPEAKERS)
    assert links == SPEAKERS
    assert linking < LINKING_SECONDS, f"linking {SPEAKERS} speakers took {linking:.2f} s"


# A stored, empty entry named by 7 digits: its local header and its central
# directory record (zipfile's structFileHeader and structCentralDir).
_LOCAL = struct.Struct("<4s5H3L2H")
_CENTRAL = struct.Struct("<4s6H3L5H2L")
_NAME_LENGTH = 7
_WRITE_BATCH = 65_536


def write_empty_entries_zip(path: Path, entries: int) -> None:
    """A real zip (zip64 end records) of ``entries`` empty files, written in batches.

    (zipfile reads it back: 70,000 entries, each name and empty body.)

    zipfile would take tens of seconds for a million entries; this takes
    two, in memory that does not grow with the count.
    """
    crc = zlib.crc32(b"")
    local_size = _LOCAL.size + _NAME_LENGTH

    def local(n: int) -> bytes:
        return _LOCAL.pack(b"PK\x03\x04", 20, 0, 0, 0, 0x21, crc, 0, 0, _NAME_LENGTH, 0)

    def central(n: int) -> bytes:
        return _CENTRAL.pack(
            b"PK\x01\x02",
            20,
            20,
            0,
            0,
            0,
            0x21,
            crc,
            0,
            0,
            _NAME_LENGTH,
            0,
            0,
            0,
            0,
            0,
            n * local_size,
        )

    with path.open("wb") as out:
        for record in (local, central):
            if record is central:
                directory_start = out.tell()
            for start in range(0, entries, _WRITE_BATCH):
                numbers = range(start, min(start + _WRITE_BATCH, entries))
                out.write(b"".join(record(n) + b"%07d" % n for n in numbers))
        directory_size = out.tell() - directory_start
        zip64_end = out.tell()
        out.write(
            struct.pack(
                "<4sQ2H2L4Q",
                b"PK\x06\x06",
                44,
                45,
                45,
                0,
                0,
                entries,
                entries,
                directory_size,
                directory_start,
            )
        )
        out.write(struct.pack("<4sLQL", b"PK\x06\x07", 0, zip64_end, 1))
        out.write(
            struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 2**32 - 1, 2**32 - 1, 0)
        )


def test_a_zip_of_many_empty_entries_is_refused_from_its_end_record(tmp_path: Path) -> None:
    path = tmp_path / "many.zip"
    write_empty_entries_zip(path, EMPTY_ENTRIES)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(ArchiveError) as caught:
            OpenEventArchive.open(path)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "entries" in str(caught.value)
    assert peak < ZIP_PEAK_BYTES, f"peak {peak / MiB:.1f} MiB"
    # A hang bound (it takes a tenth of this); parsing the directory took 15 s.
    assert elapsed < ZIP_REFUSAL_SECONDS, f"refused after {elapsed:.2f} s"


def test_a_central_directory_larger_than_its_entries_allow_is_refused(tmp_path: Path) -> None:
    # Few entries, each with a long name: the directory's size is what gives it away.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for n in range(20):
            archive.writestr(zipfile.ZipInfo(f"{n}-" + "n" * 60_000), b"")
    path = tmp_path / "long-names.zip"
    path.write_bytes(buffer.getvalue())
    with pytest.raises(ArchiveError) as caught:
        OpenEventArchive.open(path, ArchiveLimits(max_entries=100))
    assert "central directory" in str(caught.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (7, "7"),
        ("007", "7"),
        ("-3", "-3"),
        (" 12 ", "12"),
        (4.0, "4"),
        ("abc", "abc"),
        ("²", None),
        ("٣", None),
        ("--5", "--5"),
        ("1" * 300, None),
        (int("9" * 300), None),
        ("0" * 100 + "5", "5"),
    ],
)
def test_source_ids(value: Any, expected: str | None) -> None:
    assert source_id(value) == expected


@pytest.mark.parametrize("backend", ["pg-local", "sqlite-local"])
async def test_unusable_ids_are_warnings_not_a_failed_import(api: Api) -> None:
    long_number = "1" * 300
    files = {
        "event": {"name": "Odd ids"},
        "tracks": [{"id": "²", "name": "Superscript"}, {"id": 1, "name": "Fine"}],
        "speakers": [
            {"id": long_number, "name": "Long"},
            {"id": 2, "name": "Named", "sessions": [{"id": "²"}, {"id": long_number}, 1]},
        ],
        "sessions": [
            {"id": 1, "title": "Talk", "track": "²", "speakers": [long_number, 2]},
            {"id": "9" * 300, "title": "Long id"},
        ],
    }
    task = await import_zip(api, build_zip(files))
    assert task["state"] == "SUCCESS", task
    warnings: list[str] = task["result"]["warnings"]
    assert "tracks record 0 has an unusable id; skipped" in warnings
    assert "speakers record 0 has an unusable id; skipped" in warnings
    assert "sessions record 1 has an unusable id; skipped" in warnings
    counts = task["result"]["counts"]
    assert (counts["tracks"], counts["speakers"], counts["sessions"]) == (1, 1, 1)
