"""Linking N speakers to one session: does the time grow with N, or with N²?

    uv run python -m bench.linking_bench           # 8,000 and 80,000 speakers
    uv run python -m bench.linking_bench --quick   # 800 and 8,000, prints only

Times the import's linking step alone (tests/support/linking.py), median of
interleaved rounds. Linear linking takes about ten times as long for ten
times the speakers; the quadratic one it replaced took a hundred times.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics

from tests.support.linking import linking_seconds

from bench.common import publish, table


def _medians(sizes: tuple[int, int], rounds: int, *, collector: bool) -> dict[int, float]:
    times: dict[int, list[float]] = {size: [] for size in sizes}
    if not collector:
        gc.disable()
    try:
        for _ in range(rounds):
            for size in sizes:
                links, seconds = linking_seconds(size)
                assert links == size
                times[size].append(seconds)
    finally:
        gc.enable()
    return {size: statistics.median(times[size]) for size in sizes}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    small = 800 if args.quick else 8_000
    sizes, rounds = (small, small * 10), 3 if args.quick else 5
    load_before = os.getloadavg()[0]
    with_gc = _medians(sizes, rounds, collector=True)
    without_gc = _medians(sizes, rounds, collector=False)
    rows = [
        [f"{size:,}", f"{with_gc[size] * 1000:.1f} ms", f"{without_gc[size] * 1000:.1f} ms"]
        for size in sizes
    ]
    ratio, algorithm_ratio = (times[sizes[1]] / times[sizes[0]] for times in (with_gc, without_gc))
    body = "\n".join(
        [
            "## Speaker linking",
            "",
            f"N speakers who all name one session, the linking step alone, median of {rounds} "
            f"interleaved rounds (`bench/linking_bench.py`, {platform.machine()}, 2 cores "
            f"shared with other work: load average {load_before:.2f} before, "
            f"{os.getloadavg()[0]:.2f} after).",
            "",
            table(["speakers", "linking", "linking, garbage collector off"], rows),
            "",
            f"Ten times the speakers take **{algorithm_ratio:.1f}×** the time with the "
            f"collector off, {ratio:.1f}× with it (its passes walk a heap ten times as "
            "large): linear. The quadratic linking it replaced took about 100× (80,000 "
            "speakers: 67 s).",
        ]
    )
    publish("linking", body, quick=args.quick)


if __name__ == "__main__":
    main()
