"""Image variants: the service's way against the naive Pillow way, and pyvips, side by side.

    uv run python -m bench.image_bench            # writes the image section of BENCHMARKS.md
    uv run python -m bench.image_bench --quick    # 3 runs, prints only

Two photos made here (noise over a gradient, so that neither compresses to
nothing): a 24 MP JPEG (6000 x 4000, quality 90) and a 12 MP PNG (4000 x
3000). Each makes the four default variants (1280 / 512 / 256 / 64 px,
WebP quality 80), in three ways:

- naive Pillow: for each size, ``Image.open``, ``thumbnail`` from the full
  image, save: the usual way, which decodes the whole image four times;
- service (Pillow): ``uploadsvc.imaging.make_variants``, the code the
  variants job runs: the header checked first, JPEG draft mode (libjpeg
  decodes at 1/2, 1/4 or 1/8 scale), one decode, each size from the one
  before;
- pyvips (libvips 8.18, from the ``pyvips-binary`` wheel, when installed):
  ``pyvips.Image.thumbnail`` per size, libvips' shrink-on-load, streaming.

Each run is a fresh ``python`` process, so that no run inherits another's
heap, and the runs of the three ways are interleaved. Time is the wall time
of the work inside the process (not its start-up); peak RSS is the
process's high-water mark (VmHWM) after the work, and its growth is that
minus the high-water mark before the work (the interpreter and the imports).
Figures are the median of the runs, with their minimum and maximum. The
machine is shared (two cores, other work running), so times spread; the
peak RSS figures barely move.

Pillow (the service's way) is the library: on the JPEG, the case that
dominates uploads, draft mode decodes 1/16 of the pixels and the result
beats both the naive way and libvips here, with nothing to install on the
host; on the PNG (no shrink-on-load in either) the two are close, libvips a
little smaller.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# bench.common is imported where it is used, not here: it imports the whole
# service, and the measured child processes must hold no more than the
# variants job's child does (Pillow and uploadsvc.imaging).
REPO = Path(__file__).resolve().parents[1]
SIZES = {"large": 1280, "thumbnail": 512, "small": 256, "icon": 64}
WAYS = ("naive", "service", "pyvips")
MiB = 1024 * 1024


def _make_inputs(folder: Path) -> dict[str, Path]:
    from PIL import Image

    def photo(width: int, height: int) -> Image.Image:
        noise = [Image.effect_noise((width, height), 40) for _ in range(3)]
        gradient = Image.linear_gradient("L").resize((width, height))
        return Image.merge("RGB", [Image.blend(n, gradient, 0.6) for n in noise])

    jpeg, png = folder / "photo-24mp.jpg", folder / "photo-12mp.png"
    photo(6000, 4000).save(jpeg, "JPEG", quality=90)
    photo(4000, 3000).save(png, "PNG")
    return {"24 MP JPEG": jpeg, "12 MP PNG": png}


def _high_water_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def _naive(source: Path, outdir: Path) -> None:
    from PIL import Image

    for name, px in SIZES.items():
        with Image.open(source) as image:
            copy = image.convert("RGB")
            copy.thumbnail((px, px), Image.Resampling.LANCZOS)
            copy.save(outdir / f"{name}.webp", "WEBP", quality=80, method=4)


def _service(source: Path, outdir: Path) -> None:
    from uploadsvc.imaging import make_variants

    make_variants(source, outdir, sizes=SIZES, output_format="webp", max_pixels=50_000_000)


def _pyvips(source: Path, outdir: Path) -> None:
    import pyvips

    for name, px in SIZES.items():
        image = pyvips.Image.thumbnail(str(source), px, size="down")
        image.webpsave(str(outdir / f"{name}.webp"), Q=80, keep="none")


def _one(way: str, source: Path) -> dict[str, float]:
    """One run in this process: the work's seconds and peak RSS (MiB), with and without
    what the process held before it."""
    work = {"naive": _naive, "service": _service, "pyvips": _pyvips}[way]
    if way == "pyvips":
        import pyvips  # noqa: F401  (imported before the baseline, as Pillow is)
    import PIL.Image  # noqa: F401

    import uploadsvc.imaging  # noqa: F401

    with tempfile.TemporaryDirectory(prefix="image-bench-") as outdir:
        before = _high_water_kib()
        started = time.perf_counter()
        work(source, Path(outdir))
        seconds = time.perf_counter() - started
        after = _high_water_kib()
    return {"seconds": seconds, "peak_mib": after / 1024, "growth_mib": (after - before) / 1024}


def _run_child(way: str, source: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.image_bench", "--one", way, str(source)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _spread(values: list[float], fmt: str) -> str:
    return (
        f"{fmt.format(statistics.median(values))} "
        f"({fmt.format(min(values))}–{fmt.format(max(values))})"
    )


def _has_pyvips() -> bool:
    try:
        import pyvips  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


def run(rounds: int) -> str:
    from bench.common import table

    ways = [w for w in WAYS if w != "pyvips" or _has_pyvips()]
    rows: list[list[str]] = []
    ratios: list[str] = []
    with tempfile.TemporaryDirectory(prefix="image-bench-in-") as folder:
        inputs = _make_inputs(Path(folder))
        for label, source in inputs.items():
            runs: dict[str, list[dict[str, float]]] = {way: [] for way in ways}
            for _ in range(rounds):
                for way in ways:  # interleaved: drift hits every way alike
                    runs[way].append(_run_child(way, source))
            medians = {}
            for way in ways:
                seconds = [r["seconds"] for r in runs[way]]
                peak = [r["peak_mib"] for r in runs[way]]
                growth = [r["growth_mib"] for r in runs[way]]
                medians[way] = (
                    statistics.median(seconds),
                    statistics.median(peak),
                    statistics.median(growth),
                )
                rows.append(
                    [
                        label,
                        way,
                        _spread(seconds, "{:.3f}"),
                        _spread(peak, "{:.0f}"),
                        _spread(growth, "{:.0f}"),
                    ]
                )
            naive = medians["naive"]
            if "pyvips" in medians:
                t, p, _ = medians["pyvips"]
                ratios.append(
                    f"- {label}, service vs pyvips: {t / medians['service'][0]:.1f}x faster, "
                    f"peak RSS {medians['service'][1] / p:.2f} of pyvips'"
                )
            for way in ways[1:]:
                t, p, g = medians[way]
                ratios.append(
                    f"- {label}, {way} vs naive: {naive[0] / t:.1f}x faster, peak RSS "
                    f"{p / naive[1]:.2f} of naive, peak growth {g / naive[2]:.2f} of naive"
                )
    headers = ["image", "way", "seconds", "peak RSS MiB", "peak growth MiB"]
    return (
        f"{rounds} runs of each way per image, interleaved, each a fresh process; "
        f"median (min–max). {platform.python_implementation()} {platform.python_version()}, "
        f"{platform.machine()}.\n\n" + table(headers, rows) + "\n\n" + "\n".join(ratios) + "\n"
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="3 runs, print only")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--one", nargs=2, metavar=("WAY", "SOURCE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(_one(args.one[0], Path(args.one[1]))))
        return 0
    body = run(3 if args.quick else max(args.rounds, 5))
    print(body)
    if not args.quick:
        from bench.common import write_section

        write_section(
            "image-variants", "## Image variants\n\n" + __doc__.split("\n\n", 2)[2] + "\n" + body
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
