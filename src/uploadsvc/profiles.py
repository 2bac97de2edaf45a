"""Upload profiles: what a ``purpose`` allows and where its objects go.

The table of profiles and key templates is in docs/api.md, "Profiles and keys".
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import re
import unicodedata
import uuid
from dataclasses import dataclass, field
from urllib.parse import quote

from uploadsvc import content_types as ct
from uploadsvc.config import Settings


class Purpose(enum.StrEnum):
    ATTACHMENT = "attachment"
    AVATAR = "avatar"
    EVENT_IMPORT = "event-import"


@dataclass(frozen=True, slots=True)
class Profile:
    purpose: Purpose
    allowed_types: frozenset[str]
    max_bytes: int
    # Image variant name → its long side in px (0: not made); docs/api.md, "Image variants".
    variant_px: dict[str, int] = field(default_factory=dict)

    def object_key(self, *, user_id: str, content_type: str, now: dt.datetime) -> str:
        """A fresh key for a new object; the extension comes from the checked type."""
        owner = key_safe_user_id(user_id)
        name = f"{uuid.uuid4()}{ct.extension_for(content_type)}"
        if self.purpose is Purpose.AVATAR:
            return f"users/{owner}/avatar/{name}"
        if self.purpose is Purpose.EVENT_IMPORT:
            return f"imports/{owner}/{name}"
        return f"uploads/{owner}/{now:%Y/%m/%d}/{name}"


# Prefixes under which user uploads live (cleanup scans these, never events/).
UPLOAD_PREFIXES = ("uploads/", "users/", "imports/")
# Where a single-request upload's URL puts the bytes (docs/api.md, "Profiles
# and keys"): confirm copies them to the file's key, which no URL names.
STAGING_PREFIX = "staging/"


def staging_key(file_key: str) -> str:
    """The key a single-request upload's URL writes to, until confirm moves it to ``file_key``."""
    return STAGING_PREFIX + file_key


def file_key_of(key: str) -> str:
    """The file's key for a key a client names: its own, or the staging key of its URL."""
    return key.removeprefix(STAGING_PREFIX)


_ATTACHMENT_TYPES = (
    ct.IMAGE_TYPES
    | {"application/pdf", "application/zip"}
    | ct.OFFICE_TYPES
    | ct.TEXT_TYPES
    | ct.AUDIO_TYPES
    | ct.VIDEO_TYPES
)


def default_variant_px(settings: Settings) -> dict[str, int]:
    """The image variant sizes of attachments and imported media."""
    return {
        "large": settings.image_large_px,
        "thumbnail": settings.image_thumbnail_px,
        "small": settings.image_small_px,
        "icon": settings.image_icon_px,
    }


def profile_for(settings: Settings, purpose: Purpose) -> Profile:
    if purpose is Purpose.AVATAR:
        sizes = default_variant_px(settings) | settings.image_avatar_px
        return Profile(purpose, ct.IMAGE_TYPES, settings.max_avatar_bytes, sizes)
    if purpose is Purpose.EVENT_IMPORT:
        return Profile(purpose, frozenset({"application/zip"}), settings.max_event_import_bytes)
    return Profile(
        purpose, _ATTACHMENT_TYPES, settings.max_attachment_bytes, default_variant_px(settings)
    )


_SAFE_USER_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}")


def key_safe_user_id(user_id: str) -> str:
    """The user id as one safe key segment.

    Ids made of plain characters are used as they are, so keys stay readable;
    anything else (slashes, dots only, unicode) is replaced by a stable hash,
    so a ``sub`` can never step outside its own prefix.
    """
    if _SAFE_USER_ID.fullmatch(user_id):
        return user_id
    return "u-" + hashlib.sha256(user_id.encode()).hexdigest()[:32]


_UNSAFE_FILENAME_CHARS = re.compile(r'[\x00-\x1f\x7f"\\/:*?<>|]+')
MAX_FILENAME_LENGTH = 255
# Removed from names, not replaced: control characters (C0 and C1), format
# characters (Cf: bidi overrides such as U+202E that make "exe.pdf" of
# "fdp.exe", zero-width characters), lone surrogates, line and paragraph separators.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def sanitize_filename(filename: str) -> str:
    """A display name safe to store and to put in a header.

    Keeps the last path component only (browsers on Windows send full paths),
    drops control, format and reserved characters, and keeps the extension
    when it shortens a long name.
    """
    name = unicodedata.normalize("NFC", filename)
    name = re.split(r"[\\/]", name)[-1]
    name = "".join(c for c in name if unicodedata.category(c) not in _INVISIBLE_CATEGORIES)
    name = _UNSAFE_FILENAME_CHARS.sub("_", name).strip(" .")
    return _shortened(name, MAX_FILENAME_LENGTH) or "file"


def _shortened(name: str, length: int) -> str:
    if len(name) <= length:
        return name
    stem, dot, ext = name.rpartition(".")
    if dot and 0 < len(ext) <= 16:
        return stem[: length - len(ext) - 1] + "." + ext
    return name[:length]


# Other extensions a checked type is commonly saved under; any other extension
# gets the type's own appended (or replaces it, when it is one of ours).
_ALSO_KNOWN_AS: dict[str, frozenset[str]] = {
    "image/jpeg": frozenset({".jpeg", ".jpe", ".jfif"}),
    "text/plain": frozenset({".text", ".log", ".md"}),
    "audio/ogg": frozenset({".oga", ".opus"}),
    "video/quicktime": frozenset({".qt"}),
}
_OUR_EXTENSIONS = frozenset(ct.extension_for(t) for t in ct.KNOWN_TYPES)


def download_filename(filename: str, content_type: str) -> str:
    """The name a download is saved under: sanitised, with an extension that agrees with the type.

    Operating systems open a file by its extension, not by the type that was
    checked: a zip named ``tool.jar`` runs as Java, JScript checked as
    ``text/plain`` but named ``invoice.js`` runs as a script. So an extension
    that does not belong to the checked type is replaced (``photo.png`` of a
    JPEG becomes ``photo.jpg``) or, when it is not a type of ours, kept with
    the type's own appended (``tool.jar.zip``, ``invoice.js.txt``).
    """
    name = sanitize_filename(filename)
    canonical = ct.canonical_type(content_type)
    if canonical not in ct.KNOWN_TYPES:
        return name
    wanted = ct.extension_for(canonical)
    stem, dot, current = name.rpartition(".")
    current = f".{current.lower()}" if dot and stem else ""
    if current == wanted or current in _ALSO_KNOWN_AS.get(canonical, frozenset()):
        return name
    if current in _OUR_EXTENSIONS:
        name = stem
    return _shortened(name, MAX_FILENAME_LENGTH - len(wanted)) + wanted


def content_disposition(
    filename: str, *, content_type: str, disposition: str = "attachment"
) -> str:
    """RFC 6266: an ASCII fallback plus ``filename*`` for non-ASCII names.

    The name is the ``download_filename`` of the stored one, so names stored
    before these rules (or by any other path) are made safe here too.
    """
    filename = download_filename(filename, content_type)
    ascii_name = filename.encode("ascii", "replace").decode().replace("?", "_")
    ascii_name = ascii_name.replace("\\", "_").replace('"', "_")
    value = f'{disposition}; filename="{ascii_name}"'
    if ascii_name != filename:
        value += f"; filename*=UTF-8''{quote(filename, safe='')}"
    return value
