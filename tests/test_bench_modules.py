"""The benchmarks (bench/, `make bench`) still fit the code they measure.

They are not run here (timed runs do not belong in the test suite), but a
storage interface that grew a method, or a renamed service function, should
fail here rather than halfway through a benchmark run.
"""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize(
    "module",
    [
        "bench.cleanup_bench",
        "bench.import_bench",
        "bench.loadtest",
        "bench.direct_bench",
        "bench.scan_bench",
        "bench.request_path_bench",
        "bench.request_path_server",
        "bench.linking_bench",
        "bench.image_bench",
        "bench.run",
    ],
)
def test_benchmark_modules_import(module: str) -> None:
    importlib.import_module(module)


def test_the_null_storage_of_the_direct_benchmark_implements_storage() -> None:
    from bench.direct_server import NullStorage

    NullStorage()  # abstract methods left unimplemented would raise TypeError
