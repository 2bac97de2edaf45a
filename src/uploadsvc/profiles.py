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
from dataclasses import dataclass
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

_ATTACHMENT_TYPES = (
    ct.IMAGE_TYPES
    | {"application/pdf", "application/zip"}
    | ct.OFFICE_TYPES
    | ct.TEXT_TYPES
    | ct.AUDIO_TYPES
    | ct.VIDEO_TYPES
)


def profile_for(settings: Settings, purpose: Purpose) -> Profile:
    if purpose is Purpose.AVATAR:
        return Profile(purpose, ct.IMAGE_TYPES, settings.max_avatar_bytes)
    if purpose is Purpose.EVENT_IMPORT:
        return Profile(purpose, frozenset({"application/zip"}), settings.max_event_import_bytes)
    return Profile(purpose, _ATTACHMENT_TYPES, settings.max_attachment_bytes)


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


def sanitize_filename(filename: str) -> str:
    """A display name safe to store and to put in a header.

    Keeps the last path component only (browsers on Windows send full paths),
    drops control and reserved characters, and keeps the extension when it
    shortens a long name.
    """
    name = unicodedata.normalize("NFC", filename)
    name = re.split(r"[\\/]", name)[-1]
    name = _UNSAFE_FILENAME_CHARS.sub("_", name).strip(" .")
    if len(name) > MAX_FILENAME_LENGTH:
        stem, dot, ext = name.rpartition(".")
        if dot and 0 < len(ext) <= 16:
            name = stem[: MAX_FILENAME_LENGTH - len(ext) - 1] + "." + ext
        else:
            name = name[:MAX_FILENAME_LENGTH]
    return name or "file"


def content_disposition(filename: str, *, disposition: str = "attachment") -> str:
    """RFC 6266: an ASCII fallback plus ``filename*`` for non-ASCII names."""
    ascii_name = filename.encode("ascii", "replace").decode().replace("?", "_")
    ascii_name = ascii_name.replace("\\", "_").replace('"', "_")
    value = f'{disposition}; filename="{ascii_name}"'
    if ascii_name != filename:
        value += f"; filename*=UTF-8''{quote(filename, safe='')}"
    return value
