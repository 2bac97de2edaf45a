"""The pixel work of image variants, run in a child process of its own.

``python -m uploadsvc.imaging REQUEST_JSON`` reads one image file and writes
its variants into a folder, then prints one JSON line: the variants made, or
why none were. services/images.py starts it with a deadline and kills it past
that, so a hostile image can cost a worker neither its event loop nor its
memory (docs/api.md, "Image variants"). This module imports Pillow and the
standard library only, so the child starts fast.

The image is refused from its header, before a pixel is decoded, when it
declares more pixels than the budget (a decompression bomb: a PNG of a few KB
that declares 100,000 x 100,000 pixels).
"""

from __future__ import annotations

import json
import math
import resource
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from PIL import Image, ImageOps

# The formats a variant is made of: the image types of the upload profiles.
SOURCE_FORMATS = frozenset({"JPEG", "PNG", "GIF", "WEBP"})
OUTPUT_TYPES = {"webp": "image/webp", "jpeg": "image/jpeg", "png": "image/png"}


class ImageRefused(Exception):
    """The image is not made into variants; ``code`` says why (recorded on its variants)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True, slots=True)
class MadeVariant:
    name: str
    path: str
    width: int
    height: int
    content_type: str
    size_bytes: int


def make_variants(
    source: Path,
    outdir: Path,
    *,
    sizes: dict[str, int],
    output_format: str,
    max_pixels: int,
) -> list[MadeVariant]:
    """Variants of ``source``: each fits ``sizes[name]`` px on its long side, never upscaled.

    EXIF orientation is applied; no metadata (EXIF, XMP, ICC, comments) is
    written; alpha is kept in WebP (JPEG has none: it is flattened on white),
    and an alpha channel with nothing transparent is dropped; of an animation,
    the first frame. The largest variant of a flat-colour PNG is the smaller
    of ``output_format`` and PNG.
    """
    # Pillow's own bomb check (in Image.open) then agrees with the budget.
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        image = Image.open(source)  # reads the header only
    except Image.DecompressionBombError as exc:
        raise ImageRefused("too_many_pixels", str(exc)) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageRefused("unreadable_image", f"Not a readable image: {exc}") from None
    with image:
        width, height = image.size
        if image.format not in SOURCE_FORMATS:
            raise ImageRefused(
                "unsupported_image", f"Images of format {image.format} are not made into variants."
            )
        if width * height > max_pixels:
            raise ImageRefused(
                "too_many_pixels",
                f"The image declares {width} x {height} pixels; the budget is {max_pixels}.",
            )
        # Bytes per pixel of the file: under 1, a PNG is flat colour or line
        # art, whose web copy may be smallest as a PNG still (a photo is 2-3).
        flat_png = image.format == "PNG" and source.stat().st_size < width * height
        try:
            current = _decoded(image, largest=max(sizes.values()))
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise ImageRefused("corrupt_image", f"The image could not be decoded: {exc}") from None
        made: list[MadeVariant] = []
        # Largest first, each resized in place from the one before (saved by
        # then): fewer pixels to filter each time, and no copy of the decoded
        # image, which is all the memory a PNG needs.
        for index, (name, side) in enumerate(sorted(sizes.items(), key=lambda item: -item[1])):
            current.thumbnail((side, side), Image.Resampling.LANCZOS, reducing_gap=3.0)
            variant = _save(current, outdir / f"{name}.{output_format}", name, output_format)
            if index == 0 and flat_png:
                png = _save(current, outdir / f"{name}.png", name, "png")
                variant = min(variant, png, key=_size)
            made.append(variant)
    return made


def _size(variant: MadeVariant) -> int:
    return variant.size_bytes


def _decoded(image: Image.Image, *, largest: int) -> Image.Image:
    """The first frame, upright, in RGB or RGBA, decoded at the smallest scale
    that still serves ``largest``."""
    orientation = image.getexif().get(0x0112, 1)
    width, height = image.size
    scale = largest / max(width, height)
    if image.format == "JPEG" and scale < 1:
        # Shrink on load: libjpeg decodes at 1/2, 1/4 or 1/8 scale when the
        # result still covers the largest variant, so a 24 MP photo is not
        # decoded whole (6000 x 4000 for 1280 px: decoded at 1500 x 1000).
        image.draft("RGB", (math.ceil(width * scale), math.ceil(height * scale)))
    image.seek(0)
    image.load()
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    mode = "RGBA" if has_alpha else "RGB"
    # The decoded image itself when it is in the mode already: convert() would copy it.
    frame = image if image.mode == mode else image.convert(mode)
    if has_alpha and frame.getchannel("A").getextrema() == (255, 255):
        # An alpha channel that hides nothing: opaque, so JPEG and WebP
        # without alpha serve it (smaller, and nothing to flatten).
        frame = frame.convert("RGB")
    if orientation != 1:
        frame.getexif()[0x0112] = orientation
        frame = ImageOps.exif_transpose(frame)
    # Nothing of the original's metadata may reach a variant.
    frame.info = {}
    return frame


def _save(image: Image.Image, path: Path, name: str, output_format: str) -> MadeVariant:
    out = image
    if output_format == "jpeg":
        if out.mode == "RGBA":
            flat = Image.new("RGB", out.size, (255, 255, 255))
            flat.paste(out, mask=out.getchannel("A"))
            out = flat
        out.save(path, "JPEG", quality=82, optimize=True, progressive=True)
    elif output_format == "png":
        out.save(path, "PNG", optimize=True)
    else:
        out.save(path, "WEBP", quality=80, method=4)
    return MadeVariant(
        name=name,
        path=str(path),
        width=out.width,
        height=out.height,
        content_type=OUTPUT_TYPES[output_format],
        size_bytes=path.stat().st_size,
    )


# JPEG markers kept by strip_metadata: JFIF (APP0), Adobe's colour transform
# (APP14); APP2 only for an ICC profile. Every other APPn (EXIF, XMP, IPTC,
# maker notes) and COM is dropped.
_JPEG_KEPT_APP = {0xE0, 0xEE}
_PNG_DROPPED = {b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"tIME"}
_WEBP_DROPPED = {b"EXIF", b"XMP "}


def strip_metadata(source: Path, dest: Path) -> bool:
    """Write ``source`` without its metadata to ``dest``, losslessly: the same
    pixels, entropy-coded data untouched. False (nothing written) when there
    was nothing to strip or the format is not JPEG, PNG or WebP.

    A JPEG whose EXIF orientation is not 1 keeps an EXIF block holding only
    that tag, so it still shows upright.
    """
    data = source.read_bytes()
    if data.startswith(b"\xff\xd8"):
        out = _strip_jpeg(data, source)
    elif data.startswith(b"\x89PNG\r\n\x1a\n"):
        out = _strip_png(data)
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        out = _strip_webp(data)
    else:
        return False
    if out is None or out == data:
        return False
    dest.write_bytes(out)
    return True


def _strip_jpeg(data: bytes, source: Path) -> bytes | None:
    kept: list[bytes] = []
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return None  # not a marker where one must be: leave the file alone
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker == 0xDA:  # start of scan: the rest is image data, copied as is
            kept.append(data[position:])
            # EXIF belongs right after SOI (after JFIF's APP0 when there is one).
            at = 1 if kept[0][1] == 0xE0 else 0
            kept.insert(at, _orientation_segment(source))
            return b"\xff\xd8" + b"".join(kept)
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        segment = data[position : position + 2 + length]
        is_app = 0xE0 <= marker <= 0xEF or marker == 0xFE
        icc = marker == 0xE2 and segment[4:16] == b"ICC_PROFILE\0"
        if not is_app or marker in _JPEG_KEPT_APP or icc:
            kept.append(segment)
        position += 2 + length
    return None


def _orientation_segment(source: Path) -> bytes:
    """An APP1 EXIF segment holding only the orientation, if it is not 1; else nothing."""
    try:
        with Image.open(source) as image:
            orientation = image.getexif().get(0x0112, 1)
    except (OSError, SyntaxError, ValueError):
        return b""
    if orientation == 1:
        return b""
    exif = Image.Exif()
    exif[0x0112] = orientation
    payload = exif.tobytes()
    return b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload


def _strip_png(data: bytes) -> bytes | None:
    out = bytearray(data[:8])
    position = 8
    while position + 12 <= len(data):
        length = int.from_bytes(data[position : position + 4], "big")
        kind = data[position + 4 : position + 8]
        end = position + 12 + length
        if end > len(data):
            return None
        if kind not in _PNG_DROPPED:
            out += data[position:end]
        position = end
        if kind == b"IEND":
            return bytes(out)
    return None


def _strip_webp(data: bytes) -> bytes | None:
    chunks = bytearray()
    position = 12
    while position + 8 <= len(data):
        kind = data[position : position + 4]
        length = int.from_bytes(data[position + 4 : position + 8], "little")
        end = position + 8 + length + (length & 1)
        if end > len(data) + (length & 1):
            return None
        chunk = bytearray(data[position:end])
        if kind == b"VP8X" and length >= 1:
            chunk[8] &= ~0x0C & 0xFF  # the EXIF and XMP flags
        if kind not in _WEBP_DROPPED:
            chunks += chunk
        position = end
    return b"RIFF" + (len(chunks) + 4).to_bytes(4, "little") + b"WEBP" + bytes(chunks)


def _limit_memory(mib: int | None) -> None:
    """Cap this process's address space: an image that would need more fails
    with MemoryError (recorded as ``too_much_memory``) instead of swapping the
    host. Set after the imports, so only the work counts against it."""
    if mib:
        limit = mib * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def main(argv: list[str]) -> int:
    request = json.loads(argv[1])
    sizes = {str(k): int(v) for k, v in request["sizes"].items()}
    _limit_memory(request.get("max_memory_mib"))
    try:
        made = (
            make_variants(
                Path(request["source"]),
                Path(request["outdir"]),
                sizes=sizes,
                output_format=request["format"],
                max_pixels=int(request["max_pixels"]),
            )
            if sizes
            else []
        )
    except ImageRefused as refused:
        sys.stdout.write(json.dumps({"refused": refused.code, "detail": refused.detail}) + "\n")
        return 0
    except MemoryError:
        limit = request.get("max_memory_mib")
        detail = f"Making the variants needs more than {limit} MiB."
        sys.stdout.write(json.dumps({"refused": "too_much_memory", "detail": detail}) + "\n")
        return 0
    result: dict[str, object] = {"made": [asdict(variant) for variant in made]}
    if request.get("strip_to"):
        result["stripped"] = strip_metadata(Path(request["source"]), Path(request["strip_to"]))
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
