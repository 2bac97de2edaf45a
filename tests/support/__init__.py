"""Helpers shared by the tests: plain functions and classes, no fixtures.

The fixtures are in tests/conftest.py; what they and the tests build on is here:
``files`` (small real files and their digests), ``servers`` (free ports, the
``uploadsvc`` command, servers in their own process group or in a thread),
``localstack`` (the S3 server), ``tokens`` (hand-built JWTs).
"""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
