"""Benchmarks (``make bench``); results go to BENCHMARKS.md."""
