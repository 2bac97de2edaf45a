"""Open Event archives.

``archive`` is the strict zip reader; ``mapping`` the lenient JSON → rows mapping.
"""
