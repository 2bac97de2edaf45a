"""The content-type policy: which declared types exist, what their bytes may
look like, and which extension a stored object gets.

Confirm, the direct-upload route and the event importer all decide here
whether bytes are what the client says they are. libmagic (python-magic)
reads the first bytes; a declared type is accepted only when the detected
type is one of the types its bytes can legitimately be detected as.
"""

from __future__ import annotations

import codecs
import re

import magic
from anyio import to_thread

# libmagic needs only the start of a file for every type we accept; office
# formats are recognised from the first zip entry names, well inside this.
MAGIC_PREFIX_BYTES = 16 * 1024

# Client spellings that mean the same type.
ALIASES: dict[str, str] = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "audio/mp3": "audio/mpeg",
    "audio/x-wav": "audio/wav",
    "audio/wave": "audio/wav",
    "audio/vnd.wave": "audio/wav",
    "audio/x-flac": "audio/flac",
    "audio/x-m4a": "audio/mp4",
    "audio/m4a": "audio/mp4",
    "application/x-zip-compressed": "application/zip",
    "application/x-zip": "application/zip",
    "text/x-markdown": "text/markdown",
    # What browsers on Linux call a .log file (shared-mime-info).
    "text/x-log": "text/plain",
}

IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
# The originals STRIP_IMAGE_METADATA rewrites (losslessly: imaging.strip_metadata).
STRIPPABLE_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/webp"})

_OOXML = "application/vnd.openxmlformats-officedocument."
_OLE = frozenset({"application/x-ole-storage", "application/CDFV2", "application/vnd.ms-office"})
_ZIP = frozenset({"application/zip"})

# Declared type -> the extension of its key, and what libmagic may call its bytes.
_TYPES: dict[str, tuple[str, frozenset[str]]] = {
    "image/jpeg": (".jpg", frozenset()),
    "image/png": (".png", frozenset()),
    "image/gif": (".gif", frozenset()),
    "image/webp": (".webp", frozenset()),
    "application/pdf": (".pdf", frozenset()),
    "application/msword": (".doc", _OLE),
    "application/vnd.ms-excel": (".xls", _OLE),
    "application/vnd.ms-powerpoint": (".ppt", _OLE),
    _OOXML + "wordprocessingml.document": (".docx", _ZIP),
    _OOXML + "spreadsheetml.sheet": (".xlsx", _ZIP),
    _OOXML + "presentationml.presentation": (".pptx", _ZIP),
    "application/vnd.oasis.opendocument.text": (".odt", _ZIP),
    "application/vnd.oasis.opendocument.spreadsheet": (".ods", _ZIP),
    "application/vnd.oasis.opendocument.presentation": (".odp", _ZIP),
    # Harmless text: libmagic tells these apart only by guessing (a CSV or JSON
    # cut at the prefix reads as plain text), so each accepts the others' bytes.
    "text/plain": (".txt", frozenset({"text/csv", "text/markdown", "application/json"})),
    "text/markdown": (".md", frozenset({"text/plain"})),
    "text/csv": (".csv", frozenset({"text/plain"})),
    "application/json": (".json", frozenset({"text/plain"})),
    "audio/mpeg": (".mp3", frozenset()),
    "audio/ogg": (".ogg", frozenset({"application/ogg", "video/ogg"})),
    "audio/wav": (".wav", frozenset({"audio/x-wav"})),
    "audio/mp4": (".m4a", frozenset({"audio/x-m4a", "video/mp4"})),
    "audio/aac": (".aac", frozenset({"audio/x-hx-aac-adts", "audio/x-aac"})),
    "audio/flac": (".flac", frozenset({"audio/x-flac"})),
    "audio/webm": (".weba", frozenset({"video/webm"})),
    "video/mp4": (".mp4", frozenset({"video/x-m4v"})),
    "video/webm": (".webm", frozenset()),
    "video/quicktime": (".mov", frozenset()),
    "video/ogg": (".ogv", frozenset({"application/ogg"})),
    "application/zip": (".zip", frozenset()),
}

KNOWN_TYPES = frozenset(_TYPES)
OFFICE_TYPES = frozenset(t for t, (_, detected) in _TYPES.items() if detected in (_OLE, _ZIP))
# Office documents that are zip files inside (OOXML, ODF).
ZIP_DOCUMENT_TYPES = frozenset(t for t, (_, detected) in _TYPES.items() if detected is _ZIP)
TEXT_TYPES = frozenset({"text/plain", "text/markdown", "text/csv", "application/json"})
AUDIO_TYPES = frozenset(t for t in _TYPES if t.startswith("audio/"))
VIDEO_TYPES = frozenset(t for t in _TYPES if t.startswith("video/"))


def canonical_type(content_type: str) -> str:
    """``"Image/JPG; charset=x"`` -> ``"image/jpeg"``."""
    essence = content_type.split(";", 1)[0].strip().lower()
    return ALIASES.get(essence, essence)


def extension_for(content_type: str) -> str:
    return _TYPES[canonical_type(content_type)][0]


def bytes_match_type(declared: str, detected: str) -> bool:
    """Whether bytes libmagic calls ``detected`` may be stored as ``declared``.

    Active content (HTML, SVG, scripts, executables) is never in any accepted
    set, so it can never pass as an image or a document.
    """
    declared = canonical_type(declared)
    if declared not in _TYPES:
        return False
    detected_canonical = canonical_type(detected)
    return detected_canonical == declared or detected in _TYPES[declared][1]


# Every type libmagic may report for bytes we accept: such a guess is kept.
_RECOGNISED = frozenset(
    name.lower() for declared, (_, detected) in _TYPES.items() for name in (declared, *detected)
)
# Markup and programs that a browser, a viewer or a shell runs. Printable text
# that libmagic calls one of these keeps that name, so it never passes as plain text.
_ACTIVE_MARKERS = ("html", "xml", "svg", "script", "php", "postscript", "rtf")
# Other text/* names are kept (scripts are text/x-shellscript and the like),
# except this one that libmagic makes of ordinary prose: a first line starting
# with "." or "'" is troff to it.
_PROSE_MISREAD = frozenset({"text/troff"})
# C0 and C1 control characters other than tab, line feed, form feed and carriage return.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")


def is_printable_text(prefix: bytes) -> bool:
    """Whether bytes are UTF-8 text (ASCII included) with no control characters.

    The prefix may end inside a multi-byte character; that tail is not held
    against it.
    """
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(prefix, final=False)
    except UnicodeDecodeError:
        return False
    return bool(text) and _CONTROL.search(text) is None


def _text_unless_recognised(guess: str, prefix: bytes) -> str:
    """``text/plain`` for printable text that libmagic gave an exotic name."""
    lowered = guess.lower()
    if lowered in _RECOGNISED or any(marker in lowered for marker in _ACTIVE_MARKERS):
        return guess
    if lowered.startswith(("text/", "image/", "audio/", "video/")) and (
        lowered not in _PROSE_MISREAD
    ):
        return guess
    return "text/plain" if is_printable_text(prefix) else guess


def _detect_sync(prefix: bytes) -> str:
    # python-magic guards its shared libmagic handle with a lock, so this is
    # safe to call from worker threads.
    return _text_unless_recognised(str(magic.from_buffer(prefix, mime=True)), prefix)


def is_zip_document(data: bytes) -> bool:
    """Whether zip bytes are an office document (OOXML, ODF) rather than an archive (blocking).

    libmagic names them from their first entries (ODF's ``mimetype``,
    OOXML's ``[Content_Types].xml`` and part folders); zip bytes it calls
    only ``application/zip`` are an archive.
    """
    return _detect_sync(data[:MAGIC_PREFIX_BYTES]) in ZIP_DOCUMENT_TYPES


async def detect_type(prefix: bytes) -> str:
    """The MIME type libmagic reads from the first bytes of an object.

    Printable text that libmagic names as something exotic (text starting
    with ``NP`` is a pen plotter's commands to it) is ``text/plain``; markup
    and scripts keep their names, so they stay refused.

    libmagic is C code with unbounded worst cases on hostile input, so it
    runs in a worker thread rather than on the event loop.
    """
    return await to_thread.run_sync(_detect_sync, prefix[:MAGIC_PREFIX_BYTES])


class TypeRefused(Exception):
    """Bytes that may not be stored under the declared type or the profile."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


_UNDECLARED = frozenset({"", "application/octet-stream", "binary/octet-stream"})


def decide_type(declared: str | None, detected: str, allowed: frozenset[str]) -> str:
    """The type to store bytes as, or ``TypeRefused`` (code ``unsupported_type``/``type_mismatch``).

    With a declared type the bytes must match it; without one (or with
    ``application/octet-stream``) the magic bytes decide. Either way the type
    must be one the profile allows, so active content never gets in.
    """
    if declared is not None and canonical_type(declared) not in _UNDECLARED:
        wanted = canonical_type(declared)
        if wanted not in allowed:
            raise TypeRefused("unsupported_type", f"{declared!r} is not accepted here.")
        if not bytes_match_type(wanted, detected):
            raise TypeRefused(
                "type_mismatch", f"The bytes are {detected!r}, not the declared {declared!r}."
            )
        return wanted
    found = canonical_type(detected)
    if found not in allowed or not bytes_match_type(found, detected):
        raise TypeRefused("unsupported_type", f"Files of type {detected!r} are not accepted here.")
    return found
