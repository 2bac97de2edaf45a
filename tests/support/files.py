"""Small, real files for tests, and their digests: libmagic must recognise each of them."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import struct
import zipfile
import zlib

MiB = 1024 * 1024

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PDF_HEADER = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n"
HTML = b"<!DOCTYPE html><html><head><script>alert(1)</script></head><body>hi</body></html>\n"
TEXT_LINE = b"All work and no play makes Jack a dull boy.\n"


def sha256_b64(data: bytes) -> str:
    """The SHA-256 as the API spells it: base64 of the 32-byte digest."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def sha256_hex(data: bytes) -> str:
    """The SHA-256 as S3's X-Amz-Content-SHA256 header (and a lock-file marker) spells it."""
    return hashlib.sha256(data).hexdigest()


def data_uri(content_type: str, data: bytes) -> str:
    """``data`` as a base64 data: URI, as Open Event clients post images."""
    return f"data:{content_type};base64," + base64.b64encode(data).decode()


def png(width: int = 4, height: int = 4, *, noise: bool = False) -> bytes:
    """A valid RGB PNG (signature, IHDR, IDAT, IEND).

    ``noise``: random pixels, which do not compress, so the file is about
    ``3 * width * height`` bytes; otherwise every pixel is the same colour.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    def row() -> bytes:
        return b"\x00" + (os.urandom(3 * width) if noise else b"\x80\x40\x20" * width)

    rows = b"".join(row() for _ in range(height))
    return (
        PNG_SIGNATURE
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def pdf(size: int) -> bytes:
    """``size`` bytes: a PDF header, then random bytes (libmagic calls it a PDF)."""
    return PDF_HEADER + os.urandom(size - len(PDF_HEADER))


def plain_text(size: int) -> bytes:
    """``size`` bytes of plain text lines."""
    return (TEXT_LINE * (size // len(TEXT_LINE) + 1))[:size]


def zip_archive() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("event.json", '{"name": "test"}' * 20)
    return buffer.getvalue()


def zip_document(content_type: str) -> bytes:
    """A minimal zip-based office document that libmagic names ``content_type``.

    ODF (``application/vnd.oasis.opendocument.*``): its ``mimetype`` entry
    first and stored, as the format requires. OOXML: ``[Content_Types].xml``
    first, then the part folder of its kind (``ppt/``, ``word/``, ``xl/``).
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as document:
        if content_type.startswith("application/vnd.oasis.opendocument."):
            document.writestr("mimetype", content_type, compress_type=zipfile.ZIP_STORED)
            document.writestr("META-INF/manifest.xml", "<manifest/>")
            document.writestr("content.xml", "<office:document-content/>")
        else:
            folder = {"presentationml": "ppt", "wordprocessingml": "word", "spreadsheetml": "xl"}
            kind = next(folder[name] for name in folder if name in content_type)
            document.writestr("[Content_Types].xml", "<Types/>")
            document.writestr("_rels/.rels", "<Relationships/>")
            document.writestr(f"{kind}/document.xml", "<document/>")
    return buffer.getvalue()
