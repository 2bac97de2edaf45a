"""A small, valid Open Event archive built in code: ``uploadsvc example-archive PATH``.

The README's import example needs an archive a fresh clone can make without
downloading anything. This one is the kebab-case dialect of real exports
(docs/api.md, "The Open Event archive"): the JSON files at the root, the
media under ``images/`` and ``slides/``, every reference resolvable, so it
imports with no warnings.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from typing import Any

EVENT_NAME = "uploadsvc Example Conference"


def _png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A valid PNG of one colour (libmagic reads its signature and IHDR)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


def _pdf(title: str) -> bytes:
    """A one-page PDF with a correct cross-reference table."""
    text = title.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    stream = f"BT /F1 24 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def example_files() -> tuple[dict[str, Any], dict[str, bytes]]:
    """The archive's JSON files (by name) and its media (by path inside the archive)."""
    event = {
        "id": 1,
        "name": EVENT_NAME,
        "description": "A small event to try the importer with.",
        "starts-at": "2026-06-01T09:00:00+00:00",
        "ends-at": "2026-06-02T18:00:00+00:00",
        "timezone": "UTC",
        "location-name": "Main Hall",
        "logo-url": "/images/logo.png",
    }
    tracks = [
        {"id": 1, "name": "Storage", "color": "#2f80ed"},
        {"id": 2, "name": "Web", "color": "#27ae60"},
    ]
    microlocations = [{"id": 1, "name": "Room A", "floor": 1}, {"id": 2, "name": "Room B"}]
    session_types = [
        {"id": 1, "name": "Talk", "length": "00:30"},
        {"id": 2, "name": "Workshop", "length": "01:30"},
    ]
    speakers = [
        {
            "id": 1,
            "name": "Ada Lovelace",
            "organisation": "Analytical Engines",
            "short-biography": "Writes programs for machines that do not exist yet.",
            "photo-url": "/images/speakers/ada.png",
            "sessions": [{"id": 1}, {"id": 3}],
        },
        {
            "id": 2,
            "name": "Grace Hopper",
            "organisation": "Compilers Inc.",
            "short-biography": "Finds the bugs, literally.",
            "photo-url": "/images/speakers/grace.png",
            "sessions": [{"id": 2}],
        },
    ]
    sessions = [
        {
            "id": 1,
            "title": "Presigned uploads, end to end",
            "short-abstract": "Request a URL, PUT the bytes, confirm.",
            "starts-at": "2026-06-01T10:00:00+00:00",
            "ends-at": "2026-06-01T10:30:00+00:00",
            "track": {"id": 1, "name": "Storage"},
            "microlocation": {"id": 1, "name": "Room A"},
            "session-type": {"id": 1, "name": "Talk"},
            "speakers": [{"id": 1, "name": "Ada Lovelace"}],
            "slides-url": "/slides/presigned-uploads.pdf",
        },
        {
            "id": 2,
            "title": "Magic bytes and why they matter",
            "starts-at": "2026-06-01T11:00:00+00:00",
            "ends-at": "2026-06-01T11:30:00+00:00",
            "track": {"id": 1, "name": "Storage"},
            "microlocation": {"id": 2, "name": "Room B"},
            "session-type": {"id": 1, "name": "Talk"},
            "speakers": [{"id": 2, "name": "Grace Hopper"}],
        },
        {
            "id": 3,
            "title": "Build a drop zone in plain JavaScript",
            "starts-at": "2026-06-02T09:30:00+00:00",
            "ends-at": "2026-06-02T11:00:00+00:00",
            "track": {"id": 2, "name": "Web"},
            "microlocation": {"id": 1, "name": "Room A"},
            "session-type": {"id": 2, "name": "Workshop"},
            "speakers": [{"id": 1, "name": "Ada Lovelace"}],
        },
    ]
    sponsors = [
        {
            "id": 1,
            "name": "Object Storage Co.",
            "url": "https://example.com",
            "type": "Gold",
            "level": 1,
            "logo-url": "/images/sponsors/object-storage.png",
        }
    ]
    files: dict[str, Any] = {
        "event": event,
        "tracks": tracks,
        "microlocations": microlocations,
        "session_types": session_types,
        "speakers": speakers,
        "sessions": sessions,
        "sponsors": sponsors,
        "forms": [],
        "meta": {"root_url": None},
    }
    media = {
        "images/logo.png": _png(64, 64, (47, 128, 237)),
        "images/speakers/ada.png": _png(32, 32, (155, 81, 224)),
        "images/speakers/grace.png": _png(32, 32, (39, 174, 96)),
        "images/sponsors/object-storage.png": _png(48, 24, (242, 153, 74)),
        "slides/presigned-uploads.pdf": _pdf("Presigned uploads, end to end"),
    }
    return files, media


def build_example_archive() -> bytes:
    """The archive as zip bytes."""
    files, media = example_files()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, json.dumps(content, indent=2))
        for name, data in media.items():
            archive.writestr(name, data)
    return buffer.getvalue()
