"""The small test files under their first name, for the tests that still import them so.

They live in tests/support/files.py; import them from there.
"""

from tests.support.files import HTML, png, zip_archive

__all__ = ["HTML", "png", "zip_archive"]
