"""Hostile images cost the variants child little memory: measured on the child itself."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.test_image_variants import jpeg_rotated_with_gps, png_bomb

MiB = 1024
# Run the child as services/images.py does, from a parent whose only child it
# is: RUSAGE_CHILDREN's ru_maxrss is then the child's own peak RSS (KiB).
_PARENT = """
import resource, subprocess, sys
out = subprocess.run([sys.executable, "-m", "uploadsvc.imaging", sys.argv[1]],
                     capture_output=True, text=True, timeout=60, check=True).stdout
print(out.strip().splitlines()[-1])
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def jpeg_declaring(width: int, height: int) -> bytes:
    """A small JPEG whose frame header (SOF0) declares width x height pixels."""
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (90, 90, 90)).save(out, "JPEG")
    data = bytearray(out.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def _half(body: bytes) -> bytes:
    return body[: len(body) // 2]


def _variants_child(
    tmp_path: Path, body: bytes, *, max_memory_mib: int = 1024
) -> tuple[dict[str, str], int]:
    source = tmp_path / "source"
    source.write_bytes(body)
    request = {
        "source": str(source),
        "outdir": str(tmp_path),
        "sizes": {"large": 1280, "thumbnail": 512, "small": 256, "icon": 64},
        "format": "webp",
        "max_pixels": 50_000_000,
        "max_memory_mib": max_memory_mib,
    }
    done = subprocess.run(
        [sys.executable, "-c", _PARENT, json.dumps(request)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result, peak_kib = done.stdout.strip().splitlines()[-2:]
    outcome: dict[str, str] = json.loads(result)
    return outcome, int(peak_kib)


@pytest.mark.parametrize(
    ("body", "refusal"),
    [
        pytest.param(png_bomb(), "too_many_pixels", id="png-100000x100000"),
        pytest.param(jpeg_declaring(60_000, 60_000), "too_many_pixels", id="jpeg-60000x60000"),
        pytest.param(_half(jpeg_rotated_with_gps(4000, 3000)), "corrupt_image", id="cut-12mp-jpeg"),
    ],
)
def test_a_hostile_image_is_refused_within_64_mib(
    tmp_path: Path, body: bytes, refusal: str
) -> None:
    outcome, peak_kib = _variants_child(tmp_path, body)
    assert outcome["refused"] == refusal, outcome
    # The child's whole peak, interpreter and Pillow included (about 22 MiB).
    assert peak_kib < 64 * MiB, peak_kib


def test_an_image_needing_more_memory_than_the_cap_fails_cleanly(tmp_path: Path) -> None:
    # 49 MP of RGBA, within the pixel budget: 196 MiB once decoded.
    out = io.BytesIO()
    Image.new("RGBA", (7000, 7000), (10, 20, 30, 128)).save(out, "PNG")
    outcome, _ = _variants_child(tmp_path, out.getvalue(), max_memory_mib=160)
    assert outcome["refused"] == "too_much_memory", outcome
