"""``GET /healthz`` every ~10 ms on a connection of its own (for the direct-upload benchmark).

    python -m bench.direct_probe BASE_URL OUT_FILE

Runs until terminated. Each line of OUT_FILE is ``<start> <latency_ms>``,
the start on the ``time.monotonic()`` clock, which every process of the
machine shares, so the benchmark keeps the requests that started while an
upload ran. It is a process of its own: timed from the uploading client's
event loop, the latency would include that loop's stalls.
"""

from __future__ import annotations

import sys
import time

import httpx

INTERVAL_SECONDS = 0.01


def main() -> None:
    base, out_path = sys.argv[1], sys.argv[2]
    with open(out_path, "w") as out, httpx.Client(base_url=base, timeout=10) as client:
        while True:
            start = time.monotonic()
            response = client.get("/healthz")
            latency_ms = (time.monotonic() - start) * 1000
            ok = "" if response.status_code == 200 else f" status={response.status_code}"
            out.write(f"{start:.6f} {latency_ms:.3f}{ok}\n")
            out.flush()
            time.sleep(INTERVAL_SECONDS)


if __name__ == "__main__":
    main()
