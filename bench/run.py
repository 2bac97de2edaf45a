"""Run every benchmark; each rewrites its own section of BENCHMARKS.md.

uv run python bench/run.py            # all, full size (about 10 minutes)
uv run python bench/run.py --quick    # small sizes, nothing written
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODULES = [
    "bench.cleanup_bench",
    "bench.import_bench",
    "bench.direct_bench",
    "bench.presign_bench",
    "bench.scan_bench",
    "bench.request_path_bench",
    "bench.linking_bench",
    "bench.image_bench",
]


def main() -> int:
    extra = sys.argv[1:]
    failed = 0
    for module in MODULES:
        if not (REPO / (module.replace(".", "/") + ".py")).exists():
            continue
        print(f"== {module}", flush=True)
        result = subprocess.run([sys.executable, "-m", module, *extra], cwd=REPO, check=False)
        failed |= result.returncode
    return failed


if __name__ == "__main__":
    raise SystemExit(main())
