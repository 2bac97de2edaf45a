"""The strict archive reader refuses every hostile zip, naming the entry."""

from __future__ import annotations

import io
import json
import random
import stat
import struct
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from tests.openevent_archives import SAMPLES
from tests.support.files import zip_document
from uploadsvc.content_types import ZIP_DOCUMENT_TYPES
from uploadsvc.openevent import archive as archive_module
from uploadsvc.openevent.archive import ArchiveError, ArchiveLimits, OpenEventArchive


def _zip(entries: dict[str, bytes | str], *, method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in entries.items():
            archive.writestr(zipfile.ZipInfo(name), data, compress_type=method)
    return buffer.getvalue()


def _open(tmp_path: Path, data: bytes, **limits: int) -> OpenEventArchive:
    path = tmp_path / "archive.zip"
    path.write_bytes(data)
    return OpenEventArchive.open(path, ArchiveLimits(**limits))


def _refused(tmp_path: Path, data: bytes, entry: str | None = None, **limits: int) -> str:
    def read_all() -> None:
        archive = _open(tmp_path, data, **limits)
        archive.json("event")
        archive.json("sessions")

    with pytest.raises(ArchiveError) as caught:
        read_all()
    if entry is not None:
        assert caught.value.entry == entry, str(caught.value)
    return str(caught.value)


def _central_records(data: bytes) -> list[int]:
    offsets, start = [], 0
    while (found := data.find(b"PK\x01\x02", start)) != -1:
        offsets.append(found)
        start = found + 4
    return offsets


@pytest.mark.parametrize("name", ["../evil", "a/../../evil", "/etc/passwd", "C:/windows/x", "a\\b"])
def test_names_that_escape_the_archive(tmp_path: Path, name: str) -> None:
    _refused(tmp_path, _zip({"event": "{}", name: "x"}), entry=name)


def test_symlink_entry(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("event", "{}")
        link = zipfile.ZipInfo("images/logo.png")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
    assert "symbolic" in _refused(tmp_path, buffer.getvalue(), entry="images/logo.png")


def test_duplicate_names(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("event", "{}")
        with pytest.warns(UserWarning, match="Duplicate name"):
            archive.writestr("event", '{"name": "second"}')
    assert "duplicate" in _refused(tmp_path, buffer.getvalue(), entry="event")


def test_duplicate_names_after_normalisation(tmp_path: Path) -> None:
    assert "duplicate" in _refused(tmp_path, _zip({"a/b": "1", "a/./b": "2"}), entry="a/./b")


def test_entries_sharing_their_data(tmp_path: Path) -> None:
    data = bytearray(_zip({"event": '{"name": "x"}' * 50, "sessions": "[]" * 50}))
    second = _central_records(bytes(data))[1]
    # Both central records point at the first local header: one copy, read twice.
    struct.pack_into("<L", data, second + 42, 0)
    assert "overlap" in _refused(tmp_path, bytes(data))


def test_partially_overlapping_entries(tmp_path: Path) -> None:
    data = bytearray(
        _zip({"event": '{"name": "x"}', "sessions": "[]" * 50}, method=zipfile.ZIP_STORED)
    )
    first, second = _central_records(bytes(data))
    second_local = struct.unpack_from("<L", data, second + 42)[0]
    # The first entry's data now runs over the second entry's local header.
    grown = second_local + 40
    for offset in (first + 20, first + 24):
        struct.pack_into("<L", data, offset, grown)
    assert "overlap" in _refused(tmp_path, bytes(data), entry="sessions")


def test_nested_archive_entry(tmp_path: Path) -> None:
    inner = _zip({"event": "{}"})
    assert "nested" in _refused(
        tmp_path, _zip({"event": "{}", "inner.zip": inner}), entry="inner.zip"
    )


def test_nested_archive_as_media(tmp_path: Path) -> None:
    inner = _zip({"event": "{}"})
    archive = _open(tmp_path, _zip({"event": "{}", "images/x.png": inner}))
    with pytest.raises(ArchiveError, match="nested"):
        archive.media("/images/x.png")


def test_encrypted_entry(tmp_path: Path) -> None:
    data = bytearray(_zip({"event": "{}"}))
    central = _central_records(bytes(data))[0]
    struct.pack_into("<H", data, central + 8, data[central + 8] | 1)
    struct.pack_into("<H", data, 6, data[6] | 1)
    assert "encrypted" in _refused(tmp_path, bytes(data), entry="event")


def test_compression_ratio_over_the_limit(tmp_path: Path) -> None:
    bomb = _zip({"event": "{}", "sessions": b" " * (10 * 1024 * 1024)})
    assert "ratio" in _refused(tmp_path, bomb, entry="sessions")


def test_bomb_with_lying_sizes_is_cut_off_in_bounded_memory(tmp_path: Path) -> None:
    size = 64 * 1024 * 1024
    data = bytearray(_zip({"event": "{}", "sessions": b"[" + b" " * size + b"]"}))
    central = _central_records(bytes(data))[1]
    local = struct.unpack_from("<L", data, central + 42)[0]
    # Declare a modest size so nothing looks wrong before reading.
    struct.pack_into("<L", data, central + 24, 1000)
    struct.pack_into("<L", data, local + 22, 1000)
    tracemalloc.start()
    try:
        _refused(tmp_path, bytes(data), entry="sessions")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024, peak


def test_too_many_entries(tmp_path: Path) -> None:
    entries: dict[str, bytes | str] = {f"images/{n}.png": "x" for n in range(11)}
    assert "entries" in _refused(tmp_path, _zip({"event": "{}", **entries}), max_entries=10)


def test_truncated_zip(tmp_path: Path) -> None:
    data = _zip({"event": '{"name": "x"}' * 1000})
    _refused(tmp_path, data[: len(data) // 2])


def test_not_a_zip(tmp_path: Path) -> None:
    assert "zip" in _refused(tmp_path, b"this is a text file, not a zip\n" * 10)


@pytest.mark.parametrize("depth", [100, 30_000])
def test_json_nested_beyond_the_limit(tmp_path: Path, depth: int) -> None:
    nested = "[" * depth + "]" * depth
    message = _refused(tmp_path, _zip({"event": "{}", "sessions": nested}), entry="sessions")
    assert "nested" in message


@pytest.mark.parametrize("number", ["1" + "0" * 1000, "1e999999", "NaN", "-Infinity"])
def test_huge_numbers(tmp_path: Path, number: str) -> None:
    _refused(tmp_path, _zip({"event": "{}", "sessions": f"[{number}]"}), entry="sessions")


def test_invalid_json_names_line_and_column(tmp_path: Path) -> None:
    message = _refused(tmp_path, _zip({"event": '{"name": "x",\n  oops}'}), entry="event")
    assert "line 2" in message


@pytest.mark.parametrize("path", ["../../secret", "/../x", "images/../../x", "a\x00b"])
def test_media_paths_outside_the_archive(tmp_path: Path, path: str) -> None:
    archive = _open(tmp_path, _zip({"event": "{}", "images/x.png": "x"}))
    with pytest.raises(ArchiveError):
        archive.media(path)


def test_missing_media_is_none_and_present_media_is_read(tmp_path: Path) -> None:
    archive = _open(tmp_path, _zip({"event": "{}", "images/x.png": b"\x89PNG..."}))
    assert archive.media("/images/x.png") == b"\x89PNG..."
    assert archive.media("images/missing.png") is None
    assert archive.json("sessions") is None


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="../shared/samples is not beside the repo")
@pytest.mark.parametrize("name", ["FOSSASIASummit2014", "OpenTechSummit2018", "EhealthAfrica"])
def test_real_samples_are_accepted(name: str) -> None:
    with OpenEventArchive.open(SAMPLES / f"{name}.zip") as archive:
        assert isinstance(archive.json("event"), dict)
        assert isinstance(archive.json("sessions") or [], list)


# --- the streamed path: records() -------------------------------------------------

# Brackets, quotes, backslashes and digits inside strings, escapes of every
# kind, non-ASCII text: what the byte-level checks must not miscount.
TRICKY_RECORDS: list[object] = [
    {"id": 1, "title": 'a "quoted" [bracket] {brace}', "n": -12.5e3},
    {"id": "2", "path": "C:\\dir\\", "tail": '\\"', "unicode": "Grüße \u00e9 \U0001f600"},
    {"id": 3, "nested": [[{"deep": [1, 2, {"x": None}]}]], "flags": [True, False]},
    {"id": 4, "digits": "1" * 500, "long": "x" * 3000, "empty": {}, "list": []},
    [],
    None,
    12345678901234567,
]


def _records(tmp_path: Path, text: str | bytes, **limits: int) -> list[object]:
    data = text.encode() if isinstance(text, str) else text
    archive = _open(tmp_path, _zip({"event": "{}", "sessions": data}), **limits)
    with archive:
        records = archive.records("sessions")
        assert records is not None
        return list(records)


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 256 * 1024])
@pytest.mark.parametrize("indent", [None, 2])
def test_records_split_across_read_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int, indent: int | None
) -> None:
    # Every record, escape, string and number cut at every possible place.
    monkeypatch.setattr(archive_module, "_READ_CHUNK", chunk)
    text = json.dumps(TRICKY_RECORDS, indent=indent, ensure_ascii=indent is None)
    assert _records(tmp_path, text) == TRICKY_RECORDS


def test_records_after_a_byte_order_mark(tmp_path: Path) -> None:
    assert _records(tmp_path, b"\xef\xbb\xbf [1, 2]") == [1, 2]


def test_records_of_null_and_of_a_missing_file(tmp_path: Path) -> None:
    assert _records(tmp_path, " null ") == []
    archive = _open(tmp_path, _zip({"event": "{}"}))
    assert archive.records("sessions") is None


def _refused_records(tmp_path: Path, text: str | bytes, **limits: int) -> ArchiveError:
    with pytest.raises(ArchiveError) as caught:
        _records(tmp_path, text, **limits)
    assert caught.value.entry == "sessions", str(caught.value)
    return caught.value


@pytest.mark.parametrize("chunk", [5, 256 * 1024])
@pytest.mark.parametrize("depth", [100, 30_000])
def test_records_nested_beyond_the_limit_name_the_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int, depth: int
) -> None:
    monkeypatch.setattr(archive_module, "_READ_CHUNK", chunk)
    nested = "[" * depth + "]" * depth
    error = _refused_records(tmp_path, f'[{{"id": 1}}, {{"id": 2}}, {{"id": 3, "x": {nested}}}]')
    assert error.message.startswith("record 2:"), error.message
    assert "nested" in error.message


def test_records_as_deep_as_the_limit_are_read(tmp_path: Path) -> None:
    # The array of records is level 1: a record may nest 63 more levels.
    record = "[" * 63 + "]" * 63
    assert len(_records(tmp_path, f"[1, {record}]")) == 2


@pytest.mark.parametrize(
    "number", ["1" + "0" * 1000, "1" * 101, "1e999999", "-9223372036854775809", "NaN", "-Infinity"]
)
def test_records_with_huge_numbers_name_the_record(tmp_path: Path, number: str) -> None:
    error = _refused_records(tmp_path, f'[{{"id": 1}}, {{"id": 2, "n": {number}}}]')
    assert error.message.startswith("record 1:"), error.message


@pytest.mark.parametrize("number", ["1" * 100, "9223372036854775807", "1e308", "-0.5e-300"])
def test_records_with_large_but_allowed_numbers(tmp_path: Path, number: str) -> None:
    if len(number) == 100:
        # 100 digits as a float: allowed by the digit limit, refused only past a double.
        number = "0." + number[2:]
    assert _records(tmp_path, f"[{number}]") == [json.loads(number)]


def test_a_record_over_the_record_limit_is_refused(tmp_path: Path) -> None:
    small = ", ".join(json.dumps({"id": n, "text": "x" * 500}) for n in range(40))
    # Many small records add up past the limit: fine.
    assert len(_records(tmp_path, f"[{small}]", max_record_bytes=4096)) == 40
    # Incompressible text, or the ratio limit would refuse it first.
    big = json.dumps({"id": 40, "text": random.Random(0).randbytes(400_000).hex()})
    error = _refused_records(tmp_path, f"[{small}, {big}]", max_record_bytes=4096)
    assert error.message.startswith("record 40:"), error.message
    assert "4096 bytes" in error.message


def test_records_of_a_file_that_is_not_an_array(tmp_path: Path) -> None:
    assert "array" in _refused_records(tmp_path, '{"not": "a list"}').message


@pytest.mark.parametrize(
    ("text", "record"),
    [("[1, 2, {]", "record 2:"), ('[{"a": 1} {"b": 2}]', "record 1:"), ("[1, 2", "record 2:")],
)
def test_records_with_invalid_json_name_the_record(tmp_path: Path, text: str, record: str) -> None:
    error = _refused_records(tmp_path, text)
    assert error.message.startswith(record), error.message
    assert "invalid JSON" in error.message


def test_records_of_a_bomb_with_lying_sizes_are_cut_off(tmp_path: Path) -> None:
    size = 64 * 1024 * 1024
    data = bytearray(_zip({"event": "{}", "sessions": b"[" + b" " * size + b"]"}))
    central = _central_records(bytes(data))[1]
    local = struct.unpack_from("<L", data, central + 42)[0]
    struct.pack_into("<L", data, central + 24, 1000)
    struct.pack_into("<L", data, local + 22, 1000)
    archive = _open(tmp_path, bytes(data))
    records = archive.records("sessions")
    assert records is not None
    with pytest.raises(ArchiveError) as caught:
        list(records)
    assert caught.value.entry == "sessions"
    # Cut off long before the 64 MiB: at the record limit or the ratio limit.
    assert records.done < 8 * 1024 * 1024


def test_records_beyond_the_archive_limit(tmp_path: Path) -> None:
    entries: dict[str, bytes | str] = {
        "event": "{}",
        "speakers": json.dumps([{"id": n} for n in range(6)]),
        "sessions": json.dumps([{"id": n} for n in range(6)]),
    }
    with _open(tmp_path, _zip(entries), max_records=10) as archive:
        speakers, sessions = archive.records("speakers"), archive.records("sessions")
        assert speakers is not None
        assert sessions is not None
        assert len(list(speakers)) == 6
        with pytest.raises(ArchiveError, match="more than 10 records") as caught:
            list(sessions)
    assert caught.value.entry == "sessions"


@pytest.mark.parametrize("content_type", sorted(ZIP_DOCUMENT_TYPES))
def test_zip_based_documents_are_media_not_nested_archives(
    tmp_path: Path, content_type: str
) -> None:
    document = zip_document(content_type)
    archive = _open(tmp_path, _zip({"event": "{}", "slides/talk": document}))
    assert archive.media("/slides/talk") == document
